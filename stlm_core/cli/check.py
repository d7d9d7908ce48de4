"""``stlm check official``: compare ``stlm_core``'s STLM with a local clone of the official code.

Light module (no torch import at module level); the work happens in :mod:`stlm_core.fidelity.official`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stlm_core.cli.options import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    check = subparsers.add_parser("check", help="equivalence checks against the official code",
                                  description="Equivalence checks against the papers' official code.")
    targets = check.add_subparsers(dest="check_target", metavar="<target>")
    targets.required = True
    official = targets.add_parser(
        "official",
        help="STLM against a local clone of github.com/Qi5Lei/STLM",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Build stlm_core's paper-profile STLM and the official code's model with the same seeded random\n"
            "weights, load them into each other (key map), run two images through both, one training step on\n"
            "the same batch, and compare the pseudo-anomaly generators by statistics. Prints a table (quantity,\n"
            "max abs, max rel, tolerance, verdict); exits 0 when everything is within tolerance, 1 otherwise.\n\n"
            "The official repository has no licence: clone it yourself (git clone\n"
            "https://github.com/Qi5Lei/STLM) and pass the clone's path. It is read, never modified; its code runs\n"
            "in a separate process with the installed mobile_sam plus its modified mask decoder, and stubs for\n"
            "the old metric imports it never calls. About 3-6 minutes on 2 CPU cores with the vit_b teacher."),
    )
    official.add_argument("--repo", required=True, type=Path, help="your clone of the official STLM code")
    official.add_argument("--teacher", default="vit_b", choices=("vit_b", "vit_l", "vit_h"),
                          help="SAM teacher architecture, seeded random weights on both sides (default vit_b; "
                               "vit_h is the paper's and costs minutes per image on a CPU)")
    official.add_argument("--seed", type=int, default=0, help="seed of the weights and inputs (default 0)")
    official.add_argument("--draws", type=int, default=300,
                          help="pseudo-anomaly draws per side for the statistics (0 skips them; default 300)")
    official.add_argument("--draw-size", type=positive_int, default=256,
                          help="image side for the pseudo-anomaly draws, a multiple of 32 (default 256)")
    official.add_argument("--image", type=Path, action="append",
                          help="an input image (repeat for two); default: two procedural images")
    official.add_argument("--step-dtype", default="float64", choices=("float64", "float32"),
                          help="precision of the training-step comparison (default float64: in float32 the FA "
                               "head's batch-normalised, nearly uniform first gradients amplify rounding, and "
                               "Adam's first step turns a sign difference into 2 x lr)")
    official.add_argument("--threads", type=positive_int, help="torch threads (default: torch's)")
    official.add_argument("--json", type=Path, help="also write the table, key map and provenance to this file")
    official.add_argument("--keep-workdir", type=Path, help="keep the intermediate files in this folder")
    official.set_defaults(func=_official)


def _official(args: argparse.Namespace) -> int:
    from stlm_core.fidelity.official import Row, format_table, run_check

    if args.draw_size % 32:
        from stlm_core.errors import StlmError

        raise StlmError(f"--draw-size must be a multiple of 32 (the largest Perlin scale), got {args.draw_size}")
    result = run_check(args.repo, teacher=args.teacher, seed=args.seed, draws=args.draws, draw_size=args.draw_size,
                       images=args.image, threads=args.threads, keep=args.keep_workdir,
                       step_dtype=args.step_dtype)
    print("key map (stlm_core -> official):")
    for line in result["key_map"]:
        print(f"  {line}")
    prov = result["provenance"]
    print(f"  {result['keys_mapped']} keys mapped; official keys left at their own init: "
          f"{len(prov['official_keys_not_loaded'])} (unused classifier heads), unexpected: "
          f"{len(prov['official_unexpected_keys'])}")
    rows = [Row(**r) for r in result["rows"]]
    print(format_table(rows))
    print(f"official commit {prov['official_commit']}; {prov['date']}; torch {prov['torch']}; "
          f"{prov['threads']} threads; {prov['seconds']} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=float))
        print(f"wrote {args.json}")
    failing = [r for r in rows if not r.ok]
    if failing:
        print(f"NOT equivalent: first failing quantity: {failing[0].part} / {failing[0].quantity}")
        return 1
    print("equivalent within every stated tolerance")
    return 0
