"""``stlm export``: a finished STLM or PatchCore run as an ONNX or OpenVINO file with a JSON sidecar.

Files land in ``<run>/export/``: ``<method>[-int8].onnx`` (ONNX, opset :data:`OPSET`) or ``<method>[-int8].xml`` +
``.bin`` (OpenVINO IR), each with ``<file>.json`` beside it (input size and layout, normalisation, opset, the source
run's record and weights identities, the model file's sha256, the backend versions).

fp32 graphs come from ``torch.onnx.export`` (the TorchScript exporter: these are plain CNN/attention graphs with a
dynamic batch axis). int8 is post-training static quantisation into a QDQ ONNX model calibrated on ``calibration``
training images of the run's category; the OpenVINO int8 file is the same QDQ model converted (OpenVINO executes QDQ
models as int8), so both backends share one calibration. The quantiser differs per method, chosen by measurement on
the real MVTec AD bottle sample and the synthetic categories (:data:`QUANTISERS`):

- STLM: onnxruntime's ``quantize_static`` of every operator (per-channel int8 weights, uint8 activations, min-max);
  NNCF's was measured worse for STLM in OpenVINO (pixel AUROC down 4-12 points).
- PatchCore: NNCF's ``quantize`` of the backbone only (the memory-bank distances, upsampling and blur stay fp32),
  with the overflow fix (7-bit weights) and full bias correction (fast where NNCF cannot cut the graph). Quantised
  as STLM is, PatchCore's maps collapse to a near-constant (pixel AUROC ~50 %): its 1-NN distances need fp32, and
  on CPUs without VNNI int8 products of 8-bit weights saturate their 16-bit sums, which the overflow fix avoids.

PatchCore's nearest-neighbour search stays inside the graph (one file, no extra runtime dependency):
``stlm bench knn`` measured faiss's exact flat index beside the graph at 0.83-1.06x the in-graph onnxruntime time and
within 2 % of the in-graph OpenVINO time (banks of 20480 x 152 and 15680 x 1536, 1 and 2 threads).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from stlm_core.errors import StlmError

OPSET = 17
FORMATS = ("onnx", "openvino")
BACKENDS = {"onnx": "onnxruntime", "openvino": "openvino"}  # the runtime that runs each format
SIDECAR_FORMAT = 1
QUANTISERS = {
    "stlm": "onnxruntime quantize_static of every operator, QDQ, per-channel int8 weights, uint8 activations, "
            "min-max calibration",
    "patchcore": "NNCF quantize of the backbone only (1-NN distances, upsampling and blur in fp32), QDQ, overflow fix "
                 "(7-bit weights), {bias} bias correction",
}
PATCHCORE_QUANTISED_SCOPE = "/backbone/"  # ONNX node-name prefix of PatchCoreGraph's backbone (its attribute name)


def _versions() -> dict[str, str | None]:
    out = {}
    for name in ("torch", "onnx", "onnxruntime", "openvino", "stlm_core"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def export_onnx(graph, input_size: int, path: Path) -> Path:
    """``graph`` (B, 3, S, S) -> (map, score) as an ONNX file, written atomically: with a dynamic batch axis when
    the traced graph computes a batch of two as the eager graph does, else for batch 1 only (TinyViT's patch
    merging takes the batch size as a Python number, which tracing freezes; runtimes then feed one image at a
    time)."""
    import torch

    from stlm_core.fileio import atomic_write_bytes

    example = torch.zeros(1, 3, input_size, input_size)
    tmp = path.with_name(path.name + ".tmp")
    for dynamic in (True, False):
        axes = {"image": {0: "batch"}, "map": {0: "batch"}, "score": {0: "batch"}} if dynamic else None
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(graph, (example,), str(tmp), dynamo=False, opset_version=OPSET, input_names=["image"],
                              output_names=["map", "score"], dynamic_axes=axes)
        if not dynamic or _batch_of_two_agrees(graph, tmp, input_size):
            break
    atomic_write_bytes(path, tmp.read_bytes())
    tmp.unlink()
    return path


def _batch_of_two_agrees(graph, onnx_file: Path, input_size: int) -> bool:
    import onnxruntime as ort
    import torch

    images = np.random.default_rng(0).uniform(0, 255, (2, 3, input_size, input_size)).astype(np.float32)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        maps = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"]).run(
            None, {"image": images})[0]
    except Exception:  # onnxruntime's own exception types: the frozen batch size does not fit
        return False
    with torch.no_grad():
        eager = graph(torch.from_numpy(images))[0].numpy()
    return maps.shape == eager.shape and bool(np.allclose(maps, eager, rtol=1e-3, atol=1e-4))


def calibration_images(record: dict, data_root: str | None, input_size: int, n: int) -> np.ndarray:
    """(n, 3, S, S) float32 in [0, 255]: ``n`` of the run's training images, evenly spaced, resized as at test
    time (PIL bilinear). For STLM every second one carries a pseudo anomaly of the run's own generator (its
    recorded fill and seed): calibrated on normal images only, the activations of anomalies (what the map is for)
    fall outside the int8 ranges and saturate."""
    from stlm_core.data.spec import DataSpec
    from stlm_core.deploy.runtime import resize_rgb, to_model_input

    data = DataSpec(record["dataset"], data_root, record["category"])
    data.validate(("train",), action="calibrate the int8 export")
    samples = data.open("train")
    picks = np.unique(np.linspace(0, len(samples) - 1, min(n, len(samples))).round().astype(int))
    images = [resize_rgb(samples[int(i)].image, input_size) for i in picks]
    if record["method"] == "stlm":
        from stlm_core.stlm.config import StlmConfig
        from stlm_core.stlm.pseudo_anomaly import anomaly_fill, synthesize, texture_source

        config = StlmConfig.from_dict(record["config"])
        rng = np.random.default_rng(config.seed)
        fill = anomaly_fill(config.anomaly_source, texture_source(None), np.stack(images))
        images = [synthesize(im, fill, rng, 1.0, config.beta_max, config.perlin_max_exp, config.perlin_threshold)[0]
                  if k % 2 else im for k, im in enumerate(images)]
    return to_model_input(images, input_size)


def quantise_int8(fp32: Path, out: Path, images: np.ndarray, method: str = "stlm") -> str:
    """Post-training static int8 quantisation of an ONNX file into a QDQ ONNX file ``out`` with ``images``
    (N, 3, S, S) as the calibration set, by the quantiser of ``method`` (:data:`QUANTISERS`); the result is checked to
    run in onnxruntime. Returns how it was quantised (for the sidecar)."""
    import onnxruntime as ort

    tmp = out.with_name(out.name + ".tmp")
    if method == "patchcore":
        described = QUANTISERS[method].format(bias=_quantise_backbone_nncf(fp32, tmp, images,
                                                                          PATCHCORE_QUANTISED_SCOPE))
    else:
        _quantise_onnxruntime(fp32, tmp, images)
        described = QUANTISERS[method]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:  # some graphs quantise into kernels onnxruntime cannot run (seen: TinyViT's patch merging)
        ort.InferenceSession(str(tmp), options, providers=["CPUExecutionProvider"]).run(None, {"image": images[:1]})
    except Exception as exc:  # onnxruntime's own exception types
        tmp.unlink(missing_ok=True)
        raise StlmError(f"the int8 model of {fp32.name} does not run in onnxruntime ({str(exc).splitlines()[0][:200]});"
                        " export this run in fp32.") from None
    tmp.replace(out)
    return described


@contextlib.contextmanager
def _logger_at_errors(name: str | None):
    """Within the block, the logger ``name`` (None: the root logger) shows errors only."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _quantise_onnxruntime(fp32: Path, out: Path, images: np.ndarray) -> None:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"image": images[i:i + 1]} for i in range(len(images))])

        def get_next(self):
            return next(self.batches, None)

    with _logger_at_errors(None):  # the quantiser logs advice for every rank-1 weight
        quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)


def _quantise_backbone_nncf(fp32: Path, out: Path, images: np.ndarray, scope: str) -> str:
    """NNCF (ONNX backend) quantisation of the nodes whose names start with ``scope``; everything else stays fp32.
    Full bias correction where NNCF manages it, else its fast bias correction (NNCF 3.4 fails to cut some graphs,
    e.g. WideResNet-50's, into the subgraphs full correction needs); returns which (``full`` / ``fast``)."""
    import re

    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    model = onnx.load(str(fp32))
    dataset = nncf.Dataset([{"image": images[i:i + 1]} for i in range(len(images))])
    with _logger_at_errors("nncf"):  # one INFO line per node left in fp32
        for bias in ("full", "fast"):
            try:
                quantised = nncf.quantize(
                    model, dataset, subset_size=len(images), fast_bias_correction=bias == "fast",
                    ignored_scope=nncf.IgnoredScope(patterns=[f"^(?!{re.escape(scope)}).*"], validate=False),
                    advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE))
                break
            except (RuntimeError, KeyError):  # NNCF's subgraph extraction for full bias correction
                if bias == "fast":
                    raise
    onnx.save(quantised, str(out))
    return bias


def to_openvino(onnx_file: Path, xml: Path) -> Path:
    """Convert an ONNX file to OpenVINO IR (``.xml`` + ``.bin``), fp32 weights kept as they are."""
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_file)), str(xml), compress_to_fp16=False)
    return xml


def export_run(run_dir: str | Path, fmt: str = "onnx", *, int8: bool = False, calibration: int = 32,
               data_root: str | None = None, out_dir: str | Path | None = None) -> Path:
    """Export a finished STLM or PatchCore run; returns the model file (``.onnx`` or ``.xml``) and writes its
    sidecar ``<file>.json``. ``int8``: quantise with ``calibration`` training images (``data_root``: where the
    data is now, default the root recorded with the run)."""
    import torch

    from stlm_core.deploy.graphs import graph_for_run
    from stlm_core.fileio import atomic_write_json, file_sha256, read_json
    from stlm_core.runs import DATA_FILE, is_finished

    if fmt not in FORMATS:
        raise StlmError(f"unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}.")
    run_dir = Path(run_dir)
    if not is_finished(run_dir):
        raise StlmError(f"{run_dir} is not a finished run (no finished.json); train and evaluate it first.")
    if int8 and calibration < 1:
        raise StlmError(f"--calibration must be at least 1 image, got {calibration}.")
    graph, facts = graph_for_run(run_dir)
    method, record = facts["method"], facts["record"]
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "export"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{method}-int8" if int8 else method
    onnx_file = out_dir / f"{stem}.onnx"
    fp32_file = out_dir / f"{method}.onnx"
    if not int8 or not fp32_file.is_file():
        export_onnx(graph, facts["input_size"], fp32_file)
    quantisation = None
    if int8:
        root = data_root or read_json(run_dir / DATA_FILE)["root"]
        images = calibration_images(record, root, facts["input_size"], calibration)
        quantisation = {"method": quantise_int8(fp32_file, onnx_file, images, method),
                        "calibration_images": int(len(images))}
    model_file = onnx_file if fmt == "onnx" else to_openvino(onnx_file, out_dir / f"{stem}.xml")
    sidecar = {
        "format": SIDECAR_FORMAT, "backend": BACKENDS[fmt], "method": method,
        "precision": "int8" if int8 else "fp32", "quantisation": quantisation,
        "input": {"name": "image", "layout": "NCHW", "dtype": "float32", "range": "RGB 0-255",
                  "batch": "any" if _dynamic_batch(onnx_file) else 1,
                  "size": facts["input_size"], "resize": "PIL bilinear to size x size (aspect ratio not kept)",
                  "normalisation": f"{facts['normalisation']} mean/std, inside the graph"},
        "outputs": {"map": f"(B, {facts['eval_size']}, {facts['eval_size']}) float32, higher = more anomalous",
                    "score": f"(B,) image score: {facts['score']}"},
        "eval_size": facts["eval_size"], "opset": OPSET,
        "source_run": {"run_dir": str(run_dir.resolve()), "dataset": record["dataset"], "category": record["category"],
                       "weights": record.get("weights"), "config": record.get("config")},
        "model_sha256": file_sha256(model_file), "versions": _versions(),
        "torch_threads": torch.get_num_threads(),
        **{k: v for k, v in facts.items() if k == "memory_bank"},
    }
    atomic_write_json(model_file.with_name(model_file.name + ".json"), sidecar)
    return model_file


def _dynamic_batch(onnx_file: Path) -> bool:
    import onnx

    dim = onnx.load(str(onnx_file), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    return not dim.HasField("dim_value")
