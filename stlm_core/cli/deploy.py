"""``stlm export`` and ``stlm predict``: deployment of finished runs on a CPU.

Light module (no torch import at module level; ``stlm predict`` never imports torch).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stlm_core.cli.options import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export", help="export a finished STLM or PatchCore run to ONNX or OpenVINO (fp32 or int8)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Export what inference needs (STLM: the streams, decoder, FA head and the map post-processing; PatchCore:\n"
            "backbone, memory bank and nearest-neighbour scoring) from a finished run to <run>/export/, with a JSON\n"
            "sidecar (input size, normalisation, opset, source run, sha256, backend versions). The graph takes\n"
            "float32 RGB in [0, 255] at the run's input size and returns the map and the image score.\n\n"
            "examples:\n"
            "  stlm export --run runs/stlm/mvtec/bottle/<run-id> --format onnx\n"
            "  stlm export --run runs/patchcore/mvtec/bottle/<run-id> --format openvino --int8 --calibration 32"))
    export.add_argument("--run", required=True, type=Path, help="a finished STLM or PatchCore run directory")
    export.add_argument("--format", default="onnx", choices=("onnx", "openvino"), help="file format (default onnx)")
    export.add_argument("--int8", action="store_true",
                        help="post-training static int8 quantisation into a QDQ model (STLM: onnxruntime's quantiser; "
                             "PatchCore: NNCF, backbone only, distances kept fp32); OpenVINO runs the same model")
    export.add_argument("--calibration", type=positive_int, default=32, metavar="N",
                        help="training images of the run's category used to calibrate int8 (default 32)")
    export.add_argument("--root", default=None, help="the dataset root now, if it moved since training")
    export.add_argument("--out", type=Path, default=None, help="output folder (default <run>/export)")
    export.add_argument("--threads", type=positive_int, default=None, help="torch threads while exporting")
    export.set_defaults(func=_export)

    predict = subparsers.add_parser(
        "predict", help="anomaly maps and scores from an exported model file (no torch needed)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run an exported model (.onnx with onnxruntime, .xml with OpenVINO) on an image or a folder of images.\n"
            "Writes one PNG per image (the map over the image, JET colours) and scores.csv (file, image score).\n\n"
            "example:\n"
            "  stlm predict --model runs/stlm/mvtec/bottle/<run-id>/export/stlm.onnx --input line_images/ "
            "--out predictions/"))
    predict.add_argument("--model", required=True, type=Path, help="a model file written by 'stlm export'")
    predict.add_argument("--input", required=True, type=Path, help="an image file or a folder of images")
    predict.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (default predictions)")
    predict.add_argument("--batch-size", type=positive_int, default=8, help="images per inference call (default 8)")
    predict.add_argument("--threads", type=positive_int, default=None, help="inference threads (default: all)")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(func=_predict)


def _export(args: argparse.Namespace) -> int:
    from stlm_core.deploy.export import export_run
    from stlm_core.runtime import set_threads

    if args.threads:
        set_threads(args.threads)
    model_file = export_run(args.run, args.format, int8=args.int8, calibration=args.calibration,
                            data_root=args.root, out_dir=args.out)
    print(f"wrote {model_file} (sidecar {model_file.name}.json)")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from stlm_core.deploy.runtime import ExportedModel, predict

    model = ExportedModel.load(args.model, threads=args.threads)
    csv_path = predict(model, args.input, args.out, batch_size=args.batch_size, progress=not args.quiet)
    print(f"wrote {csv_path} and one overlay PNG per image in {args.out}")
    return 0
