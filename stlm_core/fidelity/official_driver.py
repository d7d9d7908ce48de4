"""The official STLM code's side of the equivalence check; run as a script in its own process.

Usage (by :mod:`stlm_core.fidelity.official`, not by hand): ``python official_driver.py WORKDIR``. ``WORKDIR/job.json``
names the user's clone, the prepared ``mobile_sam`` overlay and stubs, and the inputs the project side wrote; the
outputs go to ``WORKDIR/official.pt``.

This file imports nothing from ``stlm_core`` (whose ``mobile_sam`` is the unmodified package): ``sys.path`` is
``[stubs, overlay, clone]`` first, so ``mob_sam``, ``model.*`` and ``data.*`` are the clone's modules, and
``mobile_sam`` is the installed package with the clone's modified ``mask_decoder.py``. The training-loop body of
``trainSTLM.py`` cannot be imported (it is inside ``train()``, which also fails on its first iteration, see the
method chapter), so :func:`official_step` performs the same operations in the same order by calling the clone's
modules and loss functions; every function that computes something is the clone's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _setup_path(job: dict) -> None:
    for entry in reversed([job["stubs"], job["overlay"], job["repo"]]):
        sys.path.insert(0, entry)


def official_inference(twostream, segmentation, images, l2_norm, top_k: int):
    """The map computation of ``evalSTLM.evaluate`` (eval mode, no grad) for uint8 (B, H, W, 3) ``images``."""
    import torch
    import torch.nn.functional as F

    twostream.eval()
    segmentation.eval()
    with torch.no_grad():
        plain, denoise = twostream(images)
        p_hat = [l2_norm(p.detach()) for p in plain]
        d_hat = [l2_norm(d.detach()) for d in denoise]
        grid = d_hat[0].shape[2:]
        fa_input = torch.cat([F.interpolate(-p * d, size=grid, mode="bilinear", align_corners=False)
                              for p, d in zip(p_hat, d_hat)], dim=1)
        fa_map = segmentation(fa_input)
        tlm = [1 - torch.sum(p * d, dim=1, keepdim=True) for p, d in zip(p_hat, d_hat)]
        tlm_map = torch.prod(torch.cat([F.interpolate(t, size=grid, mode="bilinear", align_corners=False)
                                        for t in tlm], dim=1), dim=1, keepdim=True)
        size = images.shape[1:3]
        fa_up = F.interpolate(fa_map, size=size, mode="bilinear", align_corners=False)
        tlm_up = F.interpolate(tlm_map, size=size, mode="bilinear", align_corners=False)

        def top(maps):
            return torch.sort(maps.view(maps.size(0), -1), dim=1, descending=True)[0][:, :top_k].mean(dim=1)

    return {"plain": plain, "denoise": denoise, "fa_map": fa_map, "tlm_map": tlm_map,
            "fa_score": top(fa_up), "tlm_score": top(tlm_up)}


def official_step(twostream, targets, segmentation, img_pseudo, img_origin, mask, losses, l2_norm, lr_res,
                  lr_head, gamma):
    """One iteration of ``trainSTLM.train``'s loop: the same optimisers, forwards, losses and step. ``targets``:
    the frozen teacher's features on [I_a, I_n] (each level (2B, 256, 64, 64)), given so that both sides' steps
    use the same ones (the teacher itself is compared in inference)."""
    import torch
    import torch.nn.functional as F

    tlm_optimizer = torch.optim.Adam(twostream.parameters(), betas=(0.5, 0.999), lr=0.0005)
    seg_optimizer = torch.optim.SGD([{"params": segmentation.res.parameters(), "lr": lr_res},
                                     {"params": segmentation.head.parameters(), "lr": lr_head}],
                                    lr=0.001, momentum=0.9, weight_decay=1e-4, nesterov=False)
    twostream.train()
    segmentation.train()
    tlm_optimizer.zero_grad()
    seg_optimizer.zero_grad()
    half = img_pseudo.shape[0]
    teacher_pseudo = [t[:half] for t in targets]
    teacher_origin = [t[half:] for t in targets]
    plain, denoise = twostream(img_pseudo)
    t_plain = [l2_norm(t.detach()) for t in teacher_pseudo]
    t_denoise = [l2_norm(t.detach()) for t in teacher_origin]
    s_plain = [l2_norm(p) for p in plain]
    s_denoise = [l2_norm(d) for d in denoise]
    plain_maps = [1 - torch.sum(s * t, dim=1, keepdim=True) for t, s in zip(t_plain, s_plain)]
    denoise_maps = [1 - torch.sum(s * t, dim=1, keepdim=True) for t, s in zip(t_denoise, s_denoise)]
    grid = s_denoise[0].size()[2:]
    fa_input = torch.cat([F.interpolate(-p * d, size=grid, mode="bilinear", align_corners=False)
                          for p, d in zip(s_plain, s_denoise)], dim=1)
    output = segmentation(fa_input)
    target = F.interpolate(mask, size=output.size()[2:], mode="bilinear", align_corners=False)
    target = torch.where(target < 0.5, torch.zeros_like(target), torch.ones_like(target))
    terms = {"plain": losses.cosine_similarity_loss(plain_maps),
             "denoise": losses.cosine_similarity_loss(denoise_maps),
             "focal": losses.focal_loss(output, target, gamma=gamma),
             "l1": losses.l1_loss(output, target)}
    total = terms["focal"] + terms["l1"] + terms["plain"] + terms["denoise"]
    total.backward()
    grads = {owner: {name: p.grad.detach().clone() for name, p in module.named_parameters() if p.grad is not None}
             for owner, module in (("twostream", twostream), ("segmentation", segmentation))}
    tlm_optimizer.step()
    seg_optimizer.step()
    return {"target": target,
            "losses": {k: v.item() for k, v in terms.items()}, "loss": total.item(), "grads": grads}


def official_pseudo_anomalies(data_utils, draws: int, size: int, seed: int) -> dict:
    """Statistics of ``data_utils.perlin_noise`` over ``draws`` calls on a flat grey image and texture."""
    import numpy as np
    import torch
    from PIL import Image
    from scipy import ndimage

    np.random.seed(seed)
    torch.manual_seed(seed)
    image = Image.fromarray(np.full((size, size, 3), 128, np.uint8))
    texture = Image.fromarray(np.full((size, size, 3), 32, np.uint8))
    anomalous, area, regions = [], [], []
    for _ in range(draws):
        _, mask = data_utils.perlin_noise(image, texture, aug_prob=0.5)
        binary = np.asarray(mask)[0] > 0.5
        anomalous.append(bool(binary.any()))
        if binary.any():
            area.append(float(binary.mean()))
            regions.append(int(ndimage.label(binary, structure=np.ones((3, 3)))[1]))
    return {"anomalous": anomalous, "area": area, "regions": regions}


def main(workdir: str) -> None:
    work = Path(workdir)
    job = json.loads((work / "job.json").read_text())
    _setup_path(job)
    import torch

    torch.set_num_threads(job["threads"])
    from mob_sam import Batch_Sam, Batch_SamE, SegmentationNet  # the clone's modules
    from model import losses
    from model.model_utils import l2_norm

    device = "cpu"
    inputs = torch.load(work / "inputs.pt", weights_only=True)
    init = torch.load(work / "init_official.pt", weights_only=True)
    out: dict = {}

    twostream = Batch_SamE(job["mobile_sam"], "vit_t", "train", device)
    result = twostream.load_state_dict(init["twostream"], strict=False)
    out["twostream_missing"] = list(result.missing_keys)
    out["twostream_unexpected"] = list(result.unexpected_keys)
    segmentation = SegmentationNet(512)
    segmentation.load_state_dict(init["segmentation"], strict=True)
    teacher = Batch_Sam(job["teacher_checkpoint"], job["teacher_arch"], "eval", device)

    out["inference"] = official_inference(twostream, segmentation, inputs["images"], l2_norm, job["top_k"])
    out["inference"]["teacher"] = list(teacher(inputs["images"]))
    del teacher
    dtype = getattr(torch, job["step_dtype"])
    for module in (twostream, segmentation):
        module.to(dtype)
        for sub in module.modules():  # SAM builds its position-encoding grid in float32: keep its matrix float32
            matrix = getattr(sub, "positional_encoding_gaussian_matrix", None)
            if isinstance(matrix, torch.Tensor):
                sub.positional_encoding_gaussian_matrix = matrix.float()
    targets = [t.to(dtype) for t in inputs["targets"]]
    out["step"] = official_step(twostream, targets, segmentation, inputs["pseudo"], inputs["origin"],
                                inputs["mask"].to(dtype), losses, l2_norm, job["lr_res"], job["lr_head"], job["gamma"])
    out["after_step"] = {"twostream": {k: v.detach().clone() for k, v in twostream.state_dict().items()},
                         "segmentation": {k: v.detach().clone() for k, v in segmentation.state_dict().items()}}
    if job["draws"]:
        from data import data_utils

        out["pseudo_anomalies"] = official_pseudo_anomalies(data_utils, job["draws"], job["draw_size"], job["seed"])
    torch.save(out, work / "official.pt")


if __name__ == "__main__":
    main(sys.argv[1])
