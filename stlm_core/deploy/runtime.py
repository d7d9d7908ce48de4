"""``stlm predict``: anomaly maps and image scores from an exported model file alone.

No ``torch`` at run time: onnxruntime runs ``.onnx`` files, OpenVINO runs ``.xml`` IR; images are read with PIL and
resized as the evaluation does (PIL bilinear to the model's input size). Outputs: one PNG per image (the map as a JET
overlay on the resized image) and ``scores.csv`` (file, image score). Every user-fixable problem (a file that is not
an image, a truncated or foreign model file, a sidecar whose input size the model does not have) raises
:class:`DeployError` naming the file.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from stlm_core.errors import StlmError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class DeployError(StlmError):
    """An exported model or an input image cannot be used; the message names the file and the fix."""


def to_model_input(images: Sequence[np.ndarray], size: int) -> np.ndarray:
    """uint8 RGB images (H, W, 3) -> float32 (B, 3, size, size) in [0, 255], PIL-bilinear resized (the evaluation's
    resize), as the exported graphs take them."""
    out = [np.asarray(resize_rgb(image, size), dtype=np.float32).transpose(2, 0, 1) for image in images]
    return np.ascontiguousarray(np.stack(out))


def resize_rgb(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> (size, size, 3), PIL bilinear (aspect ratio not kept), as the evaluation resizes."""
    from PIL import Image

    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def read_sidecar(model_file: Path) -> dict[str, Any]:
    sidecar = Path(str(model_file) + ".json")
    if not sidecar.is_file():
        raise DeployError(f"{model_file} has no sidecar {sidecar.name} beside it (input size, normalisation); "
                          "export the model with 'stlm export', which writes both.")
    try:
        return json.loads(sidecar.read_text())
    except ValueError as exc:
        raise DeployError(f"{sidecar} is not valid JSON ({exc}); export the model again with 'stlm export'.") from None


@dataclass
class ExportedModel:
    """An exported model file with its sidecar, ready to run: :meth:`__call__` maps float32 (B, 3, S, S) in
    [0, 255] to (maps (B, E, E), scores (B,))."""

    path: Path
    sidecar: dict
    runner: Any
    backend: str
    fixed_batch: bool = False  # the graph takes one image at a time (see deploy.export.export_onnx)

    @property
    def input_size(self) -> int:
        return int(self.sidecar["input"]["size"])

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None, *, backend: str | None = None,
             sidecar: bool = True) -> "ExportedModel":
        """Open ``path`` with ``threads`` intra-op threads (default: the backend's own). ``backend``:
        ``onnxruntime`` | ``openvino`` (default by suffix: ``.onnx`` onnxruntime, ``.xml`` OpenVINO, which also reads
        ``.onnx``). ``sidecar``: read and check ``<file>.json``; without it (benchmark files) the input size comes
        from the graph."""
        path = Path(path)
        if not path.is_file():
            raise DeployError(f"model file {path} does not exist; export one with 'stlm export --run RUN'.")
        backend = backend or {".onnx": "onnxruntime", ".xml": "openvino"}.get(path.suffix)
        if backend is None:
            raise DeployError(f"{path}: unknown model file type {path.suffix!r}; pass an .onnx or an OpenVINO .xml "
                              "file written by 'stlm export'.")
        described = read_sidecar(path) if sidecar else None
        fix = "the file is truncated or not a model written by 'stlm export'; export it again."
        try:
            if backend == "onnxruntime":
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.log_severity_level = 3  # errors only (not the optimiser's notes on unused constants)
                if threads:
                    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
                runner = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                shape = [str(d) for d in runner.get_inputs()[0].shape]
            else:
                import openvino as ov

                config = {"INFERENCE_PRECISION_HINT": "f32", **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
                runner = ov.Core().compile_model(str(path), "CPU", config)
                shape = [str(d.get_length()) if d.is_static else "?" for d in runner.inputs[0].get_partial_shape()]
        except Exception as exc:  # both runtimes raise their own exception types for damaged files
            raise DeployError(f"cannot load {path} with {backend} ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200]}); {fix}") from None
        model = cls(path, described or {"input": {"size": int(shape[-1])}}, runner, backend,
                    fixed_batch=shape[0] == "1")
        if shape[2:] != [str(model.input_size)] * 2:
            raise DeployError(f"{path} takes {'x'.join(shape[2:])} inputs but its sidecar says {model.input_size}; "
                              "the sidecar belongs to another export. Export the model again with 'stlm export'.")
        return model

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.fixed_batch and len(batch) > 1:
            parts = [self(batch[i:i + 1]) for i in range(len(batch))]
            return np.concatenate([m for m, _ in parts]), np.concatenate([s for _, s in parts])
        if self.backend == "onnxruntime":
            maps, scores = self.runner.run(None, {"image": batch})
        else:
            result = self.runner(batch)
            maps, scores = result[0], result[1]
        return np.asarray(maps, np.float32), np.asarray(scores, np.float32)


def input_images(source: str | Path) -> list[Path]:
    """The image files of ``source``: the file itself, or every image file in the folder (sorted, recursive)."""
    source = Path(source)
    if source.is_file():
        return [source]
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DeployError(f"{source} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
        return files
    raise DeployError(f"input {source} does not exist; pass an image file or a folder of images.")


def read_input_image(path: Path) -> np.ndarray:
    from stlm_core.data.imageio import FileProblemError, read_rgb

    try:
        return read_rgb(path)
    except FileProblemError as exc:
        raise DeployError(f"{path} is not a readable image ({exc}); pass image files only.") from None


def jet_overlay_uint8(image: np.ndarray, anomaly_map: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The map min-max normalised, JET-coloured (OpenCV) and blended over the uint8 image (both at the map's size)."""
    import cv2

    span = float(anomaly_map.max() - anomaly_map.min())
    scaled = ((anomaly_map - anomaly_map.min()) / (span if span > 0 else 1.0) * 255).astype(np.uint8)
    heat = cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return (alpha * heat + (1 - alpha) * image).clip(0, 255).astype(np.uint8)


def predict(model: ExportedModel, source: str | Path, out_dir: str | Path, batch_size: int = 8,
            progress: bool = True) -> Path:
    """Run ``model`` on every image of ``source``; write ``<out_dir>/<name>.png`` overlays and
    ``<out_dir>/scores.csv``; returns the CSV's path."""
    from PIL import Image
    from tqdm import tqdm

    files = input_images(source)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for lo in tqdm(range(0, len(files), batch_size), desc="predict", disable=not progress, leave=False):
        chunk = files[lo:lo + batch_size]
        images = [read_input_image(p) for p in chunk]
        maps, scores = model(to_model_input(images, model.input_size))
        for path, image, anomaly_map, score in zip(chunk, images, maps, scores):
            shown = np.asarray(Image.fromarray(image).resize(anomaly_map.shape[::-1], Image.BILINEAR))
            name = "_".join(path.relative_to(source).with_suffix("").parts) if Path(source).is_dir() else path.stem
            Image.fromarray(jet_overlay_uint8(shown, anomaly_map)).save(out_dir / f"{name}.png")
            rows.append((str(path), float(score)))
    csv_path = out_dir / "scores.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "score"])
        writer.writerows(rows)
    return csv_path
