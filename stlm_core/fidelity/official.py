"""Equivalence check of ``stlm_core``'s STLM against a local clone of the official code (``stlm check official``).

The official repository (github.com/Qi5Lei/STLM) has no licence: this project never copies, vendors or downloads
it. The user points at their own clone; the clone is read, never modified. Its code runs in a separate process
(:mod:`stlm_core.fidelity.official_driver`) whose ``sys.path`` starts with

- stubs for the old ``torchmetrics`` / ``anomalib`` imports of ``model/metrics.py`` (never called here), and a
  stand-in for ``imgaug``'s ``Affine(rotate=...)`` (imgaug 0.4 does not import with NumPy 2): a bilinear rotation
  about the centre with zero fill, which is what the official Perlin mask uses it for;
- an overlay of the installed ``mobile_sam`` package with the clone's modified ``mask_decoder.py`` (the official
  set-up: "replace MobileSAM's decoder by hand");
- the clone itself.

What is compared, with the same seeded random weights on both sides (SAM ``vit_b`` teacher by default: ViT-H
costs minutes per image on a CPU; the teacher is frozen and only supplies targets) and the same inputs:

1. inference (eval mode, float32) on two images: the teacher's two feature levels, both streams' two levels,
   the FA map, the TLM (w/o FA) map and the top-k image scores of both;
2. one training step on one batch, in float64 by default (same pseudo-anomalous and clean images and mask, made
   once and fed to both sides, since the two sides draw pseudo-anomalies from different generators; the teacher's
   targets for the batch are computed once and given to both): the FA target, the four loss terms, every gradient
   and every parameter and BatchNorm buffer after one step of both optimisers. In float32 the step's gradients
   are ill-conditioned at initialisation (see ``--step-dtype``);
3. the pseudo-anomaly generators, by statistics over many draws (share of images with an anomaly, anomaly
   area fraction, number of connected regions): distributions, not pixels.

"max rel" is ``max|ours - official| / max|official|`` over a quantity (its scale), so values near zero do not
inflate it. The check exits 0 when every quantity is within tolerance, 1 otherwise (naming the first that is not).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from stlm_core.errors import StlmError

DRIVER = Path(__file__).with_name("official_driver.py")
REQUIRED_FILES = ("mob_sam.py", "trainSTLM.py", "model/losses.py", "model/model_utils.py", "data/data_utils.py",
                  "mobile_sam/mask_decoder.py")

# Tolerances (stated in the table). Float32 on a CPU: differences come from summation order only.
TOL_FEATURES_REL = 1e-5
TOL_MAP_ABS = 1e-5
TOL_LOSS_REL = 1e-5
TOL_PARAM_REL = 1e-5
TOL_GRAD_REL = 1e-4  # gradients: relative to the largest gradient of the group
TOL_P_VALUE = 0.01  # distributions: a two-sample test must not reject at this level

STUBS = {
    "torchmetrics/__init__.py": "class Metric:\n    pass\n\n\nclass AUROC:\n    pass\n",
    "torchmetrics/functional/__init__.py": "def auc(*a, **k):\n    raise NotImplementedError('stub')\n\n\n"
                                           "def roc(*a, **k):\n    raise NotImplementedError('stub')\n",
    "torchmetrics/utilities/__init__.py": "",
    "torchmetrics/utilities/data.py": "def dim_zero_cat(*a, **k):\n    raise NotImplementedError('stub')\n",
    "anomalib/__init__.py": "",
    "anomalib/utils/__init__.py": "",
    "anomalib/utils/metrics/__init__.py": "",
    "anomalib/utils/metrics/plotting_utils.py": "def plot_figure(*a, **k):\n    raise NotImplementedError('stub')\n",
    "anomalib/utils/metrics/pro.py": "def connected_components_cpu(*a, **k):\n    raise NotImplementedError('stub')\n\n\n"
                                     "def connected_components_gpu(*a, **k):\n    raise NotImplementedError('stub')\n",
    "tensorboardX/__init__.py": "class SummaryWriter:\n    pass\n",
    # imgaug 0.4 fails to import under NumPy 2 (np.sctypes). The official code uses one augmenter: a random
    # rotation of the Perlin noise (Affine defaults: bilinear, constant zero fill, about the image centre).
    "imgaug/__init__.py": "",
    "imgaug/augmenters.py": (
        "import numpy as np\nfrom scipy import ndimage\n\n\n"
        "class Affine:\n"
        "    def __init__(self, rotate=(-90, 90)):\n        self.rotate = rotate\n\n"
        "    def __call__(self, images):\n"
        "        angle = np.random.uniform(*self.rotate)\n"
        "        return ndimage.rotate(images, angle, reshape=False, order=1, mode='constant', cval=0.0)\n\n\n"
        "class Sequential:\n"
        "    def __init__(self, children):\n        self.children = children\n\n"
        "    def __call__(self, images=None):\n"
        "        for child in self.children:\n            images = child(images)\n        return images\n"),
}


@dataclass
class Row:
    """One line of the equivalence table."""

    part: str
    quantity: str
    max_abs: float
    max_rel: float | None
    tolerance: str
    ok: bool


def _difference(ours, theirs) -> tuple[float, float]:
    import torch

    a = torch.as_tensor(ours).detach().double()
    b = torch.as_tensor(theirs).detach().double()
    if a.shape != b.shape:
        raise StlmError(f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}")
    diff = (a - b).abs().max().item() if a.numel() else 0.0
    scale = b.abs().max().item() if b.numel() else 0.0
    return diff, diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def _row(part: str, quantity: str, ours, theirs, *, rel: float | None = None, abs_: float | None = None) -> Row:
    diff, relative = _difference(ours, theirs)
    if rel is not None:
        return Row(part, quantity, diff, relative, f"rel <= {rel:g}", relative <= rel)
    return Row(part, quantity, diff, relative, f"abs <= {abs_:g}", diff <= abs_)


# ---------------------------------------------------------------------------------------------- preparation


def validate_clone(repo: Path) -> str | None:
    """Raise :class:`StlmError` unless ``repo`` looks like the official STLM code; return its commit if a git
    checkout."""
    if not repo.is_dir():
        raise StlmError(f"--repo {repo} is not a folder; clone the official code first "
                        "(git clone https://github.com/Qi5Lei/STLM) and pass the clone's path.")
    missing = [name for name in REQUIRED_FILES if not (repo / name).is_file()]
    if missing:
        raise StlmError(f"{repo} is not a clone of the official STLM code: missing {', '.join(missing)}.")
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def prepare_environment(repo: Path, work: Path) -> tuple[Path, Path]:
    """(stubs folder, mobile_sam overlay folder) under ``work``; the clone is only read."""
    from stlm_core.modeling import mobilesam as _  # noqa: F401  (imports mobile_sam with its warnings silenced)

    stubs = work / "stubs"
    for name, text in STUBS.items():
        path = stubs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    overlay = work / "overlay"
    package = Path(sys.modules["mobile_sam"].__file__).parent
    shutil.copytree(package, overlay / "mobile_sam", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(repo / "mobile_sam" / "mask_decoder.py", overlay / "mobile_sam" / "modeling" / "mask_decoder.py")
    return stubs, overlay


def write_weights(work: Path, teacher_arch: str, seed: int) -> tuple[Path, Path]:
    """Seeded random checkpoints in the official formats: ``mobile_sam.pt`` (MobileSAM ``vit_t``) and a SAM
    ``teacher_arch`` file; both sides load them through their own loaders."""
    import torch
    from segment_anything import sam_model_registry

    from stlm_core.modeling.mobilesam import sam_model_registry as mobile_registry

    torch.manual_seed(seed)
    mobile = work / "mobile_sam.pt"
    torch.save(mobile_registry["vit_t"](checkpoint=None).state_dict(), mobile)
    torch.manual_seed(seed + 1)
    teacher = work / f"sam_{teacher_arch}.pth"
    torch.save(sam_model_registry[teacher_arch](checkpoint=None).state_dict(), teacher)
    return mobile, teacher


def make_inputs(seed: int, size: int = 1024, images: list[Path] | None = None) -> dict:
    """Two uint8 (size, size, 3) images (the given files, else procedural textures), their pseudo-anomalous
    versions and masks (the project's generator, anomaly forced on), as tensors for both sides."""
    import torch

    from stlm_core.data.imageio import read_rgb
    from stlm_core.data.transforms import resize_image
    from stlm_core.stlm.pseudo_anomaly import ProceduralTextures, synthesize

    rng = np.random.default_rng(seed)
    textures = ProceduralTextures()
    if images:
        pictures = [resize_image(read_rgb(path), size) for path in images[:2]]
        while len(pictures) < 2:
            pictures.append(np.ascontiguousarray(pictures[0][:, ::-1]))
    else:
        pictures = [textures.sample(size, rng) for _ in range(2)]
    pseudo, masks = zip(*(synthesize(p, textures, rng, aug_prob=1.0) for p in pictures))
    return {"images": torch.from_numpy(np.stack(pictures)), "origin": torch.from_numpy(np.stack(pictures)),
            "pseudo": torch.from_numpy(np.stack(pseudo)), "mask": torch.from_numpy(np.stack(masks))[:, None]}


# ------------------------------------------------------------------------------------------------ our side


class FixedTargets:
    """Stands in for the teacher inside a training step: returns the given features for the batch [I_a, I_n],
    so that both sides' steps see the same teacher targets (the teacher itself is compared in inference)."""

    def __init__(self, features: list, levels_dtype):
        self.features = [f.to(levels_dtype) for f in features]

    def __call__(self, x):
        if x.shape[0] != self.features[0].shape[0]:
            raise ValueError(f"expected the batch the targets were computed for, got {tuple(x.shape)}")
        return self.features


def _normalise(batch, dtype=None):
    """uint8 (B, H, W, 3) -> SAM-normalised (B, 3, H, W) with :func:`stlm_core.data.transforms.to_tensor`."""
    import torch

    from stlm_core.data.transforms import to_tensor

    return torch.stack([to_tensor(image.numpy(), "sam", dtype or torch.float32) for image in batch])


def project_teacher(config, weights: dict, inputs: dict) -> dict:
    """Our frozen teacher (float32): its features on the two test images (compared with the official teacher)
    and on [I_a, I_n] of the training batch (the targets both sides' steps use)."""
    import torch

    from stlm_core.stlm.build import build_teacher

    teacher = build_teacher(config, weights["teacher"])
    with torch.no_grad():
        on_images = teacher(_normalise(inputs["images"]))
        targets = teacher(torch.cat([_normalise(inputs["pseudo"]), _normalise(inputs["origin"])]))
    return {"on_images": on_images, "targets": targets}


def project_side(config, weights: dict, inputs: dict, targets: list, step_dtype: str = "float64") -> dict:
    """The same computations with ``stlm_core``: inference in float32, one training step in ``step_dtype`` with
    the given teacher ``targets`` (see the module docstring)."""
    import torch

    from stlm_core.stlm.build import build_stlm
    from stlm_core.stlm.model import image_scores, upsample
    from stlm_core.stlm.training import fa_target, make_optimisers, training_step

    model = build_stlm(config, {"mobile_sam": weights["mobile_sam"]})
    model.load_state_dict(inputs["init"])
    model.eval()
    with torch.no_grad():
        plain, denoise = model.streams(_normalise(inputs["images"]))
        maps = model.maps(plain, denoise)
    size = inputs["images"].shape[1]
    out: dict = {"lr_tlm": config.lr_tlm, "inference": {
        "plain": plain, "denoise": denoise, "fa_map": maps["fa_map"], "tlm_map": maps["wo_fa_map"],
        "fa_score": image_scores(upsample(maps["fa_map"], size), config.top_k),
        "tlm_score": image_scores(upsample(maps["wo_fa_map"], size), config.top_k)}}
    dtype = getattr(torch, step_dtype)
    to_dtype_keeping_position_encoding(model, dtype)
    model.train()
    x_a, x_n = _normalise(inputs["pseudo"], dtype), _normalise(inputs["origin"], dtype)
    mask = inputs["mask"].to(dtype)
    losses = training_step(model, FixedTargets(targets, dtype), make_optimisers(model, config), x_a, x_n, mask)
    grads = {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}
    out["step"] = {"target": fa_target(mask, maps["fa_map"].shape[-2:]), "losses": losses, "grads": grads}
    out["after_step"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out["step_dtype"] = step_dtype
    out["zero_gradient"] = key_bias_elements(model)
    return out


def to_dtype_keeping_position_encoding(module, dtype) -> None:
    """``module.to(dtype)``, except SAM's random-Fourier position-encoding matrix, which stays float32: SAM builds
    its coordinate grid in float32 and multiplies it with that matrix, so a float64 copy cannot run. The encoding
    is then computed identically on both sides and promoted to ``dtype`` where it is added."""
    import torch

    module.to(dtype)
    for sub in module.modules():
        matrix = getattr(sub, "positional_encoding_gaussian_matrix", None)
        if isinstance(matrix, torch.Tensor):
            sub.positional_encoding_gaussian_matrix = matrix.float()


def key_bias_elements(model) -> dict[str, "torch.Tensor"]:
    """Boolean masks of the attention **key** biases, by ``stlm_core`` parameter name.

    Adding a bias to every key shifts all of one query's attention logits by the same amount, which softmax
    ignores: these parameters have a zero gradient in exact arithmetic, and float32 leaves rounding noise there.
    Adam's first step is about ``lr * g / |g|``, so that noise becomes a step of +-lr with a random sign on either
    side: after one step the two implementations may differ by up to 2 lr there, and nowhere else.
    """
    import torch

    masks = {}
    for name, module in model.named_modules():
        if hasattr(module, "qkv") and hasattr(module, "key_dim") and module.qkv.bias is not None:  # TinyViT
            per_head = 2 * module.key_dim + module.d
            mask = torch.zeros(module.qkv.bias.shape, dtype=torch.bool)
            for head in range(module.num_heads):
                start = head * per_head + module.key_dim
                mask[start:start + module.key_dim] = True
            masks[f"{name}.qkv.bias"] = mask
        elif hasattr(module, "k_proj") and module.k_proj.bias is not None:  # SAM decoder attention
            masks[f"{name}.k_proj.bias"] = torch.ones(module.k_proj.bias.shape, dtype=torch.bool)
    return masks


def project_pseudo_anomalies(draws: int, size: int, seed: int, aug_prob: float, beta_max: float, max_exp: int,
                             threshold: float) -> dict:
    """The same statistics as the driver's, from :func:`stlm_core.stlm.pseudo_anomaly.synthesize`."""
    from scipy import ndimage

    from stlm_core.stlm.pseudo_anomaly import synthesize

    class Flat:
        name = "flat"

        def sample(self, size: int, rng) -> np.ndarray:
            return np.full((size, size, 3), 32, np.uint8)

    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 128, np.uint8)
    anomalous, area, regions = [], [], []
    for _ in range(draws):
        _, mask = synthesize(image, Flat(), rng, aug_prob, beta_max, max_exp, threshold)
        binary = mask > 0.5
        anomalous.append(bool(binary.any()))
        if binary.any():
            area.append(float(binary.mean()))
            regions.append(int(ndimage.label(binary, structure=np.ones((3, 3)))[1]))
    return {"anomalous": anomalous, "area": area, "regions": regions}


# -------------------------------------------------------------------------------------------- comparison


def compare(ours: dict, theirs: dict) -> list[Row]:
    """The rows of the table (see the module docstring for what each part holds)."""
    from stlm_core.fidelity.keymap import official_key, to_official

    rows: list[Row] = []
    inf_o, inf_t = ours["inference"], theirs["inference"]
    for stream in ("plain", "denoise"):
        for level in range(2):
            rows.append(_row("inference", f"{stream} stream, level {level + 1}", inf_o[stream][level],
                             inf_t[stream][level], rel=TOL_FEATURES_REL))
    for name, label in (("fa_map", "FA map (grid)"), ("tlm_map", "TLM map (grid)"),
                        ("fa_score", "FA image score (top-k)"), ("tlm_score", "TLM image score (top-k)")):
        rows.append(_row("inference", label, inf_o[name], inf_t[name], abs_=TOL_MAP_ABS))
    step_o, step_t = ours["step"], theirs["step"]
    step = f"training step ({ours['step_dtype']})"
    after_step = f"after one step ({ours['step_dtype']})"
    gradient = f"gradient ({ours['step_dtype']})"
    for level in range(2):
        rows.insert(level, _row("inference", f"teacher, level {level + 1}", ours["teacher"][level],
                                inf_t["teacher"][level], rel=TOL_FEATURES_REL))
    rows.append(_row(step, "FA target (mask >= 0.5 on the grid)", step_o["target"], step_t["target"],
                     abs_=0.0))
    for term in ("plain", "denoise", "focal", "l1"):
        rows.append(_row(step, f"loss: {term}", step_o["losses"][term], step_t["losses"][term],
                         rel=TOL_LOSS_REL))
    grads_o, grads_t = to_official(step_o["grads"]), step_t["grads"]
    same = all(set(grads_o[o]) == set(grads_t[o]) for o in grads_o)
    count = sum(len(g) for g in grads_o.values())
    rows.append(Row(step, f"parameters with a gradient ({count} vs "
                    f"{sum(len(g) for g in grads_t.values())}, same names: {same})", 0.0 if same else 1.0, None,
                    "same set", same))
    after = to_official(ours["after_step"])
    zero_grad = {official_key(k)[1]: m for k, m in ours["zero_gradient"].items()}
    groups = {"plain student": ("twostream", "encoderT."), "denoising student": ("twostream", "encoderS."),
              "shared mask decoder": ("twostream", "model.mask_decoder."),
              "prompt encoder": ("twostream", "model.prompt_encoder."),
              "FA res": ("segmentation", "res."), "FA head": ("segmentation", "head.")}

    def gather(tensors: dict, keys: list[str], select) -> np.ndarray:
        parts = [tensors[k].double().flatten().numpy()[select(k)] for k in keys]
        return np.concatenate(parts) if parts else np.zeros(0)

    def regular(k: str):
        return slice(None) if k not in zero_grad else ~zero_grad[k].flatten().numpy()

    for label, (owner, prefix) in groups.items():
        keys = sorted(k for k in grads_o[owner] if k.startswith(prefix))
        if keys:
            rows.append(_row(gradient, f"{label}: {len(keys)} tensors", gather(grads_o[owner], keys, regular),
                             gather(grads_t[owner], keys, regular), rel=TOL_GRAD_REL))
    for label, (owner, prefix) in groups.items():
        keys = sorted(k for k in after[owner] if k.startswith(prefix))
        rows.append(_row(after_step, f"{label}: {len(keys)} tensors", gather(after[owner], keys, regular),
                         gather(theirs["after_step"][owner], keys, regular), rel=TOL_PARAM_REL))
    keys = sorted(k for k in zero_grad if k in after["twostream"])
    if keys:
        lr = ours["lr_tlm"]
        def only(k: str):
            return zero_grad[k].flatten().numpy()
        a, b = gather(after["twostream"], keys, only), gather(theirs["after_step"]["twostream"], keys, only)
        diff, relative = _difference(a, b)
        rows.append(Row(after_step, f"attention key biases ({a.size} values, zero gradient in exact "
                        "arithmetic; Adam turns rounding noise into +-lr)", diff, relative, f"abs <= 2 lr = {2 * lr:g}",
                        diff <= 2 * lr * (1 + 1e-3)))
    return rows


def compare_pseudo_anomalies(ours: dict, theirs: dict) -> list[Row]:
    """Two-sample tests: Kolmogorov-Smirnov on area and region counts, Fisher's exact test on the anomalous share.
    ``max_abs`` holds the difference of the means (shares), ``max_rel`` the p-value."""
    from scipy import stats

    rows = []
    a, b = np.array(ours["anomalous"]), np.array(theirs["anomalous"])
    table = [[a.sum(), (~a).sum()], [b.sum(), (~b).sum()]]
    p = stats.fisher_exact(table).pvalue
    rows.append(Row("pseudo anomalies", f"share with an anomaly ({a.mean():.3f} vs {b.mean():.3f})",
                    abs(a.mean() - b.mean()), p, f"p >= {TOL_P_VALUE:g}", p >= TOL_P_VALUE))
    for key, label in (("area", "anomaly area fraction"), ("regions", "connected regions")):
        x, y = np.array(ours[key], float), np.array(theirs[key], float)
        p = stats.ks_2samp(x, y).pvalue
        rows.append(Row("pseudo anomalies", f"{label} (mean {x.mean():.3f} vs {y.mean():.3f})",
                        abs(x.mean() - y.mean()), p, f"KS p >= {TOL_P_VALUE:g}", p >= TOL_P_VALUE))
    return rows


def format_table(rows: list[Row]) -> str:
    """Plain-text table: part, quantity, max abs, max rel (p-value for distributions), tolerance, verdict."""
    header = f"{'part':<25} {'quantity':<48} {'max abs':>10} {'max rel / p':>12}  {'tolerance':<14} verdict"
    lines = [header, "-" * len(header)]
    for r in rows:
        rel = "n/a" if r.max_rel is None else f"{r.max_rel:.2e}"
        lines.append(f"{r.part:<25} {r.quantity:<48} {r.max_abs:>10.2e} {rel:>12}  {r.tolerance:<14} "
                     f"{'ok' if r.ok else 'FAIL'}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- the check


def run_check(repo: str | Path, *, teacher: str = "vit_b", seed: int = 0, draws: int = 300, draw_size: int = 256,
              images: list[Path] | None = None, threads: int | None = None, keep: Path | None = None,
              step_dtype: str = "float64", log=print) -> dict:
    """Run the whole check; returns ``{"rows": [...], "key_map": [readable lines], "keys_mapped": n,
    "provenance": {...}, "passed": bool}``."""
    import torch

    from stlm_core import __version__
    from stlm_core.fidelity.keymap import key_map, key_map_summary, to_official
    from stlm_core.runs import git_commit
    from stlm_core.stlm.build import build_stlm
    from stlm_core.stlm.config import StlmConfig

    repo = Path(repo).resolve()
    commit = validate_clone(repo)
    if teacher not in ("vit_b", "vit_l", "vit_h"):
        raise StlmError(f"--teacher must be vit_b, vit_l or vit_h, got {teacher!r}")
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    work = Path(tempfile.mkdtemp(prefix="stlm_check_")) if keep is None else Path(keep)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        log(f"official code: {repo} (commit {commit or 'unknown'}); work folder {work}")
        stubs, overlay = prepare_environment(repo, work)
        mobile, teacher_file = write_weights(work, teacher, seed)
        config = StlmConfig.from_profile("paper", teacher=teacher, seed=seed)
        inputs = make_inputs(seed, config.image_size, images)
        weights = {"teacher": teacher_file, "mobile_sam": mobile}
        torch.manual_seed(seed)
        init = build_stlm(config, {"mobile_sam": mobile}).state_dict()  # the students' and FA head's random init
        mapping = key_map(init.keys())
        torch.save(to_official(init), work / "init_official.pt")
        log("stlm_core teacher: features of the test images and the training batch's targets ...")
        teacher_out = project_teacher(config, weights, inputs)
        inputs["targets"] = teacher_out["targets"]
        torch.save(inputs, work / "inputs.pt")
        job = {"repo": str(repo), "stubs": str(stubs), "overlay": str(overlay), "mobile_sam": str(mobile),
               "teacher_checkpoint": str(teacher_file), "teacher_arch": teacher, "top_k": config.top_k,
               "lr_res": config.lr_fa_res, "lr_head": config.lr_fa_head, "gamma": 4.0, "seed": seed,
               "draws": draws, "draw_size": draw_size, "threads": threads, "step_dtype": step_dtype}
        (work / "job.json").write_text(json.dumps(job, indent=1))
        log("official side: the same in a separate process with the clone's modules ...")
        result = subprocess.run([sys.executable, "-I", str(DRIVER), str(work)], capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-15:])
            raise StlmError(f"the official code failed in its own process (exit {result.returncode}):\n{tail}")
        theirs = torch.load(work / "official.pt", weights_only=False)
        log("stlm_core side: the paper-profile model with the same weights, inference, one step ...")
        ours = project_side(config, weights, {**inputs, "init": init}, teacher_out["targets"], step_dtype)
        ours["teacher"] = teacher_out["on_images"]
        rows = compare(ours, theirs)
        if draws:
            log(f"pseudo-anomaly statistics: {draws} draws per side at {draw_size} px ...")
            rows += compare_pseudo_anomalies(
                project_pseudo_anomalies(draws, draw_size, seed, config.aug_prob, config.beta_max,
                                         config.perlin_max_exp, config.perlin_threshold),
                theirs["pseudo_anomalies"])
        unmapped = [k for k in theirs["twostream_missing"] if not k.startswith("model.image_encoder.")]
        provenance = {
            "official_repository": "github.com/Qi5Lei/STLM", "official_commit": commit,
            "date": time.strftime("%Y-%m-%d"), "stlm_core": __version__, "stlm_core_commit": git_commit(),
            "torch": torch.__version__, "threads": threads, "teacher": f"SAM {teacher}, seeded random weights",
            "seed": seed, "image_size": config.image_size, "inference_dtype": "float32", "step_dtype": step_dtype,
            "step_teacher_targets": "computed once (stlm_core's teacher, float32) and given to both sides",
            "draws": draws, "draw_size": draw_size,
            "imgaug": "stand-in (imgaug 0.4 does not import with NumPy 2)",
            "official_keys_not_loaded": unmapped, "official_unexpected_keys": theirs["twostream_unexpected"],
            "seconds": round(time.perf_counter() - started, 1)}
        rows_dicts = [asdict(r) for r in rows]
        return {"rows": rows_dicts, "key_map": key_map_summary(mapping), "keys_mapped": len(mapping),
                "provenance": provenance,
                "passed": all(r.ok for r in rows)}
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
