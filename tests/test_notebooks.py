"""Every notebook's parameters cell is one papermill can read: each assigned name is a parameter it can override."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def _parameter_cell(path: Path) -> str | None:
    cells = json.loads(path.read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    return "".join(tagged[0]["source"]) if tagged else None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter(path, caplog):
    from papermill.inspection import inspect_notebook

    source = _parameter_cell(path)
    if source is None:
        pytest.skip("no parameters cell (a text-only chapter)")
    assigned = [t.id for node in ast.parse(source).body if isinstance(node, ast.Assign) for t in node.targets]
    with caplog.at_level("WARNING", logger="papermill"):
        found = list(inspect_notebook(str(path)))
    assert found == assigned
    assert "Unable to parse" not in caplog.text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_valid_nbformat_with_cell_ids(path):
    """nbformat 4.5 requires a unique id per cell (an edited notebook without them only warns today)."""
    import nbformat

    text = path.read_text()
    ids = [cell.get("id") for cell in json.loads(text)["cells"]]  # raw JSON: nbformat fills missing ids on reading
    assert all(ids) and len(set(ids)) == len(ids), f"{path.name}: cells without a unique id"
    nbformat.validate(nbformat.reads(text, as_version=nbformat.NO_CONVERT))
