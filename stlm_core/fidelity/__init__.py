"""Fidelity checks against the papers' official code (run by the user on their own clone)."""

from __future__ import annotations

import json
from pathlib import Path

RECORDED_CHECK = Path(__file__).with_name("official_check.json")


def load_check_result(path: str | Path | None = None) -> dict:
    """A result of ``stlm check official --json FILE`` (default: the one recorded with this package, run by the
    developers on their clone; see its ``provenance``)."""
    path = Path(path) if path is not None else RECORDED_CHECK
    if not path.is_file():
        from stlm_core.errors import StlmError

        raise StlmError(f"no equivalence-check result at {path}; run 'stlm check official --repo CLONE --json {path}'.")
    return json.loads(path.read_text())


def check_table(result: dict):
    """The check's rows as a pandas DataFrame (part, quantity, max abs, max rel or p-value, tolerance, verdict)."""
    import pandas as pd

    frame = pd.DataFrame(result["rows"])
    frame["verdict"] = frame.pop("ok").map({True: "within tolerance", False: "NOT within tolerance"})
    return frame.rename(columns={"max_abs": "max abs", "max_rel": "max rel / p"})


def check_provenance(result: dict) -> dict:
    """What the check ran against: official commit, date, library versions, teacher, seed, sizes, timing."""
    prov = dict(result["provenance"])
    prov["official_keys_not_loaded"] = len(prov.get("official_keys_not_loaded", []))
    prov["official_unexpected_keys"] = len(prov.get("official_unexpected_keys", []))
    prov["keys_mapped"] = result.get("keys_mapped")
    return prov
