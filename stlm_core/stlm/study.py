"""Learning curves of STLM variants on the CPU: pixel AUROC / AUPRO / image AUROC of the FA and w/o-FA maps
against training steps, from one training run per variant (the model is evaluated in memory at chosen steps).

Used by ``stlm bench learning`` and the book's learning-study chapter. Variants are named sets of config
overrides (:data:`VARIANTS`), each applied on top of a profile, so every row says exactly what changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from stlm_core.data.spec import DataSpec


def _variant_table() -> dict[str, dict[str, Any]]:
    import yaml

    return yaml.safe_load((Path(__file__).with_name("variants.yaml")).read_text())


# The one table of variants (``variants.yaml``): name -> StlmConfig overrides on top of the profile they are run
# with, and, for the ablation table (STLM-T5), name -> (factor changed, its setting), in the table's order.
VARIANT_TABLE = _variant_table()
VARIANTS: dict[str, dict[str, Any]] = {name: dict(v.get("overrides") or {}) for name, v in VARIANT_TABLE.items()}
ABLATION_FACTORS: dict[str, tuple[str, str]] = {name: (v["factor"], v["setting"]) for name, v in VARIANT_TABLE.items()
                                                if "factor" in v}


def standardised_wo_fa(model, config, images: np.ndarray, train_images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The w/o-FA map with per-level standardisation (``level_norm="normal_stats"``) of a model trained
    without it, statistics from ``train_images``: (maps float32 (N, E, E) at ``config.eval_size``, image scores
    (N,) = mean of the top-k pixels). For the learning study: one training run shows both maps."""
    import torch

    from stlm_core.stlm.model import image_scores, measure_level_stats, upsample
    from stlm_core.stlm.training import sam_batches

    device = next(model.parameters()).device
    stats = measure_level_stats(model, sam_batches(train_images, device))
    maps, scores = [], []
    model.eval()
    with torch.no_grad():
        for x in sam_batches(images, device):
            distances = model.level_distances(*model.streams(x))
            combined = sum((d.double() - mean) / std for d, (mean, std) in zip(distances, stats.to(device)))
            full = upsample(combined.float(), config.eval_size)
            maps.append(full.cpu().numpy().astype(np.float32))
            scores.append(image_scores(full, config.top_k).cpu().numpy())
    return np.concatenate(maps), np.concatenate(scores)


def evaluate_in_memory(model, config, data: DataSpec, images: np.ndarray, masks: np.ndarray,
                       labels: np.ndarray, train_images: np.ndarray | None = None,
                       standardised: bool = True) -> dict[str, dict]:
    """Metrics of every map of ``model`` on preloaded test images (eval mode; restores nothing), plus
    diagnostics per map: ``inside`` = mean map value on defective pixels, ``outside`` = on the other pixels of
    the test images (they show whether a map loses its contrast or only its ranking), and ``image_auroc_max``
    (image score = the map's maximum instead of the top-k mean).

    With ``train_images`` (uint8 clean training images at the model's input size): a model with ``level_norm``
    measures its per-level statistics on them first; a model without gets one more map, ``wo_fa_norm`` (the
    w/o-FA map it would give with ``level_norm="normal_stats"``, see :func:`standardised_wo_fa`) unless
    ``standardised`` is false (it costs an inference pass over the training and test images)."""
    from sklearn.metrics import roc_auc_score

    from stlm_core.runs import RunMaps, score_maps
    from stlm_core.stlm.evaluation import infer
    from stlm_core.stlm.training import calibrate_level_norm

    device = next(model.parameters()).device
    if train_images is not None:
        calibrate_level_norm(model, train_images, device)
    model.eval()
    maps, scores = infer(model, images, config, device=device.type, progress=False)
    if standardised and train_images is not None and model.level_norm == "none" and model.levels > 1:
        maps["wo_fa_norm"], scores["wo_fa_norm"] = standardised_wo_fa(model, config, images, train_images)
    n = len(labels)
    run_maps = RunMaps(primary="fa" if "fa" in maps else "wo_fa", maps=maps, scores=scores, labels=labels,
                       masks=masks, defects=np.array([""] * n), paths=np.array([""] * n))
    metrics = score_maps(run_maps)
    defective = np.asarray(masks, bool)
    both_classes = len(set(np.asarray(labels).tolist())) == 2
    for name, values in maps.items():
        values = np.asarray(values, np.float64)
        metrics[name]["inside"] = float(values[defective].mean()) if defective.any() else None
        metrics[name]["outside"] = float(values[~defective].mean())
        metrics[name]["image_auroc_max"] = (float(roc_auc_score(labels, values.reshape(n, -1).max(axis=1)))
                                            if both_classes else None)
    return metrics


def pseudo_anomaly_probes(config, data: DataSpec, n: int = 8, seed: int = 1234, textures=None) -> dict:
    """Fixed pseudo-anomalous copies of the first ``n`` training images (probability 1, seeded), for
    :func:`denoising_diagnostics`: ``x_a``, ``x_n`` (n, 3, S, S) normalised as in training, ``masks`` (n, 1, S, S)
    in {0, 1}. ``textures``: a :class:`~stlm_core.stlm.pseudo_anomaly.TextureSource` (default: resolved here)."""
    import torch

    from stlm_core.data.transforms import resize_image, to_tensor
    from stlm_core.stlm.pseudo_anomaly import synthesize, texture_source

    textures = texture_source(None) if textures is None else textures
    rng = np.random.default_rng(seed)
    x_a, x_n, masks = [], [], []
    for sample in data.open("train")[:n]:
        image = resize_image(sample.image, config.image_size)
        anomalous, mask = synthesize(image, textures, rng, 1.0, config.beta_max, config.perlin_max_exp,
                                     config.perlin_threshold)
        x_a.append(to_tensor(anomalous, "sam"))
        x_n.append(to_tensor(image, "sam"))
        masks.append(torch.from_numpy(mask)[None])
    return {"x_a": torch.stack(x_a), "x_n": torch.stack(x_n), "masks": torch.stack(masks)}


def denoising_diagnostics(model, teacher, probes: dict) -> dict[str, float]:
    """What the two streams do on pseudo-anomalous training images I_a (their normal originals I_n known), as
    means of 1 - cos over feature pixels, averaged over levels; "inside" = inside the pseudo-anomaly masks (each
    feature pixel weighted by the share of its area inside), "outside" = the rest:

    - ``gap_inside``: between T(I_a) and T(I_n), the change the denoising stream has to undo;
    - ``denoise_error_inside`` / ``_outside``: between D(I_a) and its target T(I_n);
    - ``undone``: 1 - denoise_error_inside / gap_inside: 1 = the anomaly removed from D's features, 0 = copied
      as it is, below 0 = worse than copying;
    - ``plain_error_inside`` / ``_outside``: between P(I_a) and its target T(I_a) (0 where P is the teacher);
    - ``reproduced``: 1 - plain_error_inside / gap_inside: 1 = P keeps the anomaly as its target asks, 0 = P
      removed it as well (then P and D agree on it and the w/o-FA map has nothing to show);
    - ``streams_inside`` / ``_outside``: between P(I_a) and D(I_a), the w/o-FA signal on these anomalies.

    Hand-written: no library measures a distillation student against two targets inside and outside masks.
    """
    import torch
    import torch.nn.functional as F

    from stlm_core.stlm.model import cosine_distance

    device = next(model.parameters()).device
    x_a, x_n = probes["x_a"].to(device), probes["x_n"].to(device)
    model.eval()
    per_level: dict[str, list[float]] = {}
    with torch.no_grad():
        t_a, t_n = teacher(x_a)[:model.levels], teacher(x_n)[:model.levels]
        plain, denoise = model.streams(x_a)
        for ta, tn, pl, de in zip(t_a, t_n, plain, denoise):
            # soft assignment: each feature pixel weighs by the share of its area inside the mask, so small
            # anomalies count on coarse grids too
            inside = F.adaptive_avg_pool2d(probes["masks"].to(device).float(), ta.shape[-2:])
            if not 0 < float(inside.sum()) < inside.numel():
                continue
            for name, distance in (("gap", cosine_distance(ta, tn)), ("denoise_error", cosine_distance(de, tn)),
                                   ("plain_error", cosine_distance(pl, ta)), ("streams", cosine_distance(pl, de))):
                per_level.setdefault(f"{name}_inside", []).append(
                    float((distance * inside).sum() / inside.sum()))
                per_level.setdefault(f"{name}_outside", []).append(
                    float((distance * (1 - inside)).sum() / (1 - inside).sum()))
    out = {key: float(np.mean(values)) for key, values in per_level.items() if key != "gap_outside"}
    if out.get("gap_inside"):
        out["undone"] = 1.0 - out["denoise_error_inside"] / out["gap_inside"]
        out["reproduced"] = 1.0 - out["plain_error_inside"] / out["gap_inside"]
    return out


CURVE_FILE = "curve.json"


def variant_config(variant: str, *, profile: str = "cpu", steps: int | None = None, seed: int = 0, **extra: Any):
    """The :class:`~stlm_core.stlm.config.StlmConfig` of a named variant trained for ``steps`` steps (``None``: the
    profile's schedule)."""
    from stlm_core.stlm.config import StlmConfig

    if variant not in VARIANTS:
        from stlm_core.errors import ConfigError

        raise ConfigError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}.")
    schedule = {} if steps is None else {"train_steps": steps}
    return StlmConfig.from_profile(profile, **{**VARIANTS[variant], **extra, **schedule, "seed": seed})


def learning_curve(variant: str, data: DataSpec, *, profile: str = "cpu", steps: int | None = None,
                   eval_every: int = 100, runs_dir: str | Path = "runs", seed: int = 0, force: bool = False,
                   progress: bool = False, on_row: Callable[[dict], None] | None = None,
                   **extra: Any) -> list[dict]:
    """Train ``variant`` for ``steps`` optimisation steps (``None``: the profile's schedule), evaluating at every
    epoch end that crosses a multiple of ``eval_every``; returns one row per evaluation (variant, step, training
    seconds, ``run_dir``, ``<map>.<metric>`` (``wo_fa_norm`` at the last evaluation only), and ``probe.<name>``: :func:`denoising_diagnostics` on
    :func:`pseudo_anomaly_probes`).

    The run is an ordinary STLM run record (final metrics, maps) with the curve in ``curve.json``, rewritten after
    every evaluation, so an interrupted curve keeps its rows: called again, it resumes from the run's last
    checkpoint (the same weights and rows as an uninterrupted run). A finished curve is reused. ``force`` restarts
    both. ``on_row(row)`` is called with every row in step order, as it is measured or, for the rows of a reused or
    resumed curve, when they are read (progress printing).
    """
    from stlm_core.stlm.training import plan_stlm, train

    config = variant_config(variant, profile=profile, steps=steps, seed=seed, **extra)
    run = plan_stlm(config, data, runs_dir=runs_dir)  # the texture source, resolved once, also draws the probes
    textures = run.resources["textures"]
    saved = None if force else run.read_json(CURVE_FILE)
    if saved is not None and saved.get("eval_every") != eval_every:
        saved = None  # another evaluation grid: measure the curve again
    finished = saved is not None and saved.get("complete", True) and run.is_finished
    resume = not finished and saved is not None and run.checkpoint_path.is_file()  # rows and weights continue
    rows: list[dict] = list(saved["rows"]) if finished or resume else []
    for row in rows if on_row is not None else []:
        on_row(row)
    if finished:
        return [{**row, "run_dir": str(run.run_dir)} for row in rows]
    n_train = len(data.open("train"))
    total_epochs = (-(-config.train_steps // max(1, n_train // config.batch_size)) if config.train_steps
                    else config.epochs)
    test = data.load_test(config.image_size, config.eval_size, progress=False)
    images, masks, labels = test["images"], test["masks"], test["labels"]
    next_step = [(rows[-1]["step"] // eval_every + 1) * eval_every if rows else eval_every]  # next multiple
    probes = pseudo_anomaly_probes(config, data, textures=textures)
    train_images = data.load_images("train", config.image_size, progress=False)  # level statistics

    def save(complete: bool) -> None:
        run.write_json(CURVE_FILE, {"variant": variant, "eval_every": eval_every, "complete": complete, "rows": rows})

    def on_epoch_end(end) -> None:
        step = end.step
        if step < next_step[0] and end.epoch < total_epochs:
            return
        # the standardised map (an extra pass over train and test images) only at the last evaluation
        metrics = evaluate_in_memory(end.model, config, data, images, masks, labels, train_images,
                                     standardised=end.epoch >= total_epochs)
        row = {"variant": variant, "dataset": data.dataset, "category": data.category, "seed": seed, "step": step,
               "train_s": end.train_s}
        for name, values in metrics.items():
            row.update({f"{name}.{k}": v for k, v in values.items()})
        row.update({f"probe.{k}": v for k, v in denoising_diagnostics(end.model, end.teacher, probes).items()})
        rows.append(row)
        save(complete=False)
        if on_row is not None:
            on_row(row)
        while next_step[0] <= step:
            next_step[0] += eval_every

    train(config, data, planned=run, resume=resume, force=not resume, progress=progress, on_epoch_end=on_epoch_end)
    save(complete=True)
    return [{**row, "run_dir": str(run.run_dir)} for row in rows]


def ablation_table(curves, reference: str = "cpu"):
    """STLM-T5 from learning-study rows: the final evaluation of every (variant, category, seed), then per variant
    the mean (and, with several seeds, the standard deviation over seeds of the category mean) of the reported
    map's pixel AUROC and AUPRO and the difference to ``reference``.

    The reported map is the FA map where the variant has one, else the w/o-FA map. Rows follow
    :data:`ABLATION_FACTORS`' order. Returns a ``pandas.DataFrame`` indexed by variant with columns ``factor,
    setting, map, seeds, categories, pixel_auroc, pixel_auroc_sd, pixel_aupro, pixel_aupro_sd, delta_auroc``
    (fractions in [0, 1]; sd NaN with one seed).
    """
    import pandas as pd

    frame = curves.assign(seed=curves["seed"].fillna(0) if "seed" in curves else 0)
    final = frame.sort_values("step").groupby(["variant", "category", "seed"]).tail(1)
    rows = []
    for variant, group in final.groupby("variant", sort=False):
        has_fa = "fa.pixel_auroc" in group and group["fa.pixel_auroc"].notna().all()
        name = "fa" if has_fa else "wo_fa"
        per_seed = group.groupby("seed")[[f"{name}.pixel_auroc", f"{name}.pixel_aupro"]].mean()
        factor, setting = ABLATION_FACTORS.get(variant, (variant, ""))
        rows.append({"variant": variant, "factor": factor, "setting": setting, "map": name,
                     "seeds": len(per_seed), "categories": group["category"].nunique(),
                     "pixel_auroc": per_seed.iloc[:, 0].mean(), "pixel_auroc_sd": per_seed.iloc[:, 0].std(),
                     "pixel_aupro": per_seed.iloc[:, 1].mean(), "pixel_aupro_sd": per_seed.iloc[:, 1].std()})
    table = pd.DataFrame(rows).set_index("variant")
    order = [v for v in ABLATION_FACTORS if v in table.index] + [v for v in table.index if v not in ABLATION_FACTORS]
    table = table.loc[order]
    base = table.loc[reference, "pixel_auroc"] if reference in table.index else float("nan")
    table["delta_auroc"] = table["pixel_auroc"] - base
    return table


# Maps a learning-study row can hold, in the order a recipe would report them.
STUDY_MAPS = ("fa", "wo_fa", "wo_fa_norm")


# What a recipe must reach on every category (the project's generalisation targets for the reported map).
TARGET_PIXEL_AUROC = 0.95
TARGET_AUPRO = 0.85
# Worst-category pixel AUROC differences below this many percentage points are ties (broken by the worst AUPRO).
TIE_POINTS = 0.5


def robustness_table(curves, metric: str = "pixel_auroc"):
    """Every (variant, map) recipe of a learning study judged by its **worst** category: from the final evaluation
    of each (variant, category) (seed 0 where several), per recipe the ``metric`` on each category, the worst
    value, the category it comes from, the mean and the spread (best - worst), the worst AUPRO and image AUROC, and
    ``meets_targets``: worst pixel AUROC >= :data:`TARGET_PIXEL_AUROC` and worst AUPRO >= :data:`TARGET_AUPRO`.
    ``map``: ``fa``, ``wo_fa`` or ``wo_fa_norm`` (the w/o-FA map with per-level standardisation, measured on the
    same model). Order: recipes measured on every category of the study first, then those meeting the targets,
    then by the worst ``metric``, where recipes within :data:`TIE_POINTS` of a better one count as tied and are
    ordered by their worst AUPRO (one seed and a few dozen test images cannot tell such differences apart), then the
    mean. A ``pandas.DataFrame`` with columns ``variant, map, categories,
    worst, worst_category, mean, spread, worst_aupro, worst_image_auroc, meets_targets`` and one column per category
    (fractions in [0, 1])."""
    import pandas as pd

    frame = curves.assign(seed=curves["seed"].fillna(0) if "seed" in curves else 0)
    frame = frame[frame["seed"] == frame["seed"].min()]
    final = frame.sort_values("step", kind="stable").groupby(["variant", "category"]).tail(1)
    rows = []
    for variant, group in final.groupby("variant", sort=False):
        for name in STUDY_MAPS:
            column = f"{name}.{metric}"
            if column not in group or group[column].isna().all():
                continue
            values = group.set_index("category")[column].dropna()
            aupro = group[f"{name}.pixel_aupro"] if f"{name}.pixel_aupro" in group else pd.Series(dtype=float)
            image = group[f"{name}.image_auroc"] if f"{name}.image_auroc" in group else pd.Series(dtype=float)
            worst_auroc = group[f"{name}.pixel_auroc"].min() if f"{name}.pixel_auroc" in group else float("nan")
            rows.append({"variant": variant, "map": name, "categories": len(values), "worst": values.min(),
                         "worst_category": values.idxmin(), "mean": values.mean(),
                         "spread": values.max() - values.min(), "worst_aupro": aupro.min(),
                         "worst_image_auroc": image.min(),
                         "meets_targets": bool(worst_auroc >= TARGET_PIXEL_AUROC and aupro.min() >= TARGET_AUPRO),
                         **values.to_dict()})
    columns = ["variant", "map", "categories", "worst", "worst_category", "mean", "spread", "worst_aupro",
               "worst_image_auroc", "meets_targets"]
    if not rows:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame(rows)
    categories = sorted(c for c in table.columns if c not in columns)
    table["_complete"] = table["categories"] == table["categories"].max()
    table = table.sort_values(["_complete", "meets_targets", "worst", "mean"], ascending=False)
    # ties: a recipe within TIE_POINTS of the leader of its tie group (same coverage and target verdict) joins it
    group, leader, keys = 0, None, []
    for complete, meets, worst in zip(table["_complete"], table["meets_targets"], table["worst"]):
        if leader is None or (complete, meets) != leader[0] or leader[1] - worst >= TIE_POINTS / 100:
            group, leader = group + 1, ((complete, meets), worst)
        keys.append(group)
    table = table.assign(_tie=keys).sort_values(["_tie", "worst_aupro", "worst", "mean"],
                                                 ascending=[True, False, False, False], kind="stable")
    return table[columns + categories].reset_index(drop=True)


RECORDED_STUDY = Path(__file__).with_name("recipe_study.json")


def record_study(rows: list[dict], path: str | Path, **provenance: Any) -> Path:
    """Write learning-study rows (e.g. the JSON lines of ``stlm bench learning --out``) with their provenance
    to ``path`` as one JSON file; a row repeated (same variant, dataset, category, seed, step) is kept once (the
    last one)."""
    from stlm_core.fileio import atomic_write_json

    unique: dict[tuple, dict] = {}
    for row in rows:
        unique[(row["variant"], row.get("dataset"), row["category"], row.get("seed", 0), row["step"])] = row
    return atomic_write_json(Path(path), {"provenance": provenance, "rows": list(unique.values())})


def load_recorded_study(path: str | Path | None = None):
    """(rows as a ``pandas.DataFrame``, provenance dict) of a recorded study (default: the one recorded with this
    package by its developers; its provenance says on which data, commit and machine)."""
    import pandas as pd

    from stlm_core.fileio import read_json

    path = Path(path) if path is not None else RECORDED_STUDY
    if not path.is_file():
        from stlm_core.errors import StlmError

        raise StlmError(f"no recorded learning study at {path}; record one with 'stlm bench record-study ROWS.jsonl "
                        f"--out {path}'.")
    record = read_json(path)
    return pd.DataFrame(record["rows"]), dict(record["provenance"])
