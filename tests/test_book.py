"""The book pipeline: papermill executes the datasets chapter, Jupyter Book renders it with its table and gallery."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def book_copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "book", tmp_path / "book", ignore=shutil.ignore_patterns("_build", "generated", "_toc.yml"))
    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    return tmp_path


def _build(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(root / "book" / "build.py"), *args], cwd=root,
                          capture_output=True, text=True, timeout=600)


def test_book_builds_every_chapter_on_the_smoke_profile(book_copy: Path, synthetic_root: Path):
    """Every notebook of chapters.yml executes (papermill) and renders (Jupyter Book, warnings are errors)."""
    import yaml

    result = _build(book_copy, "--data-root", str(synthetic_root), "--profile", "smoke")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    html_dir = book_copy / "book" / "_build" / "html"
    chapters = yaml.safe_load((REPO / "book" / "chapters.yml").read_text())["chapters"]
    for chapter in chapters:
        stem = Path(chapter["notebook"]).stem + ("_synthetic" if chapter.get("per_dataset") else "")
        assert (html_dir / "generated" / f"{stem}.html").is_file(), stem
        executed = json.loads((book_copy / "book" / "generated" / f"{stem}.ipynb").read_text())
        outputs = [o for cell in executed["cells"] for o in cell.get("outputs", [])]
        assert outputs, f"{stem} produced no output"
        assert not [o for o in outputs if o["output_type"] == "error" or "Traceback" in "".join(o.get("text", ""))]
    assert (book_copy / "runs").is_dir()  # runs land in the book's repository, not the working directory
    assert (html_dir / "index.html").is_file()
    page = (html_dir / "generated" / "datasets_overview_synthetic.html").read_text()
    assert "Counts per category and split" in page
    assert 'class="dataframe"' in page and "carpet_like" in page  # the counts table
    assert "stlm-banner" in page and "SYNTHETIC DATA" in page
    images = [src for src in page.split('src="')[1:] if src.startswith("../_images/")]
    assert images, "the gallery figure is missing"
    assert (html_dir / "_images" / Path(images[0].split('"')[0]).name).stat().st_size > 10_000
    assert "datasets_overview_synthetic" in (html_dir / "index.html").read_text() or \
        "datasets_overview_synthetic" in (html_dir / "intro.html").read_text()


def test_failing_notebook_names_notebook_and_cell(book_copy: Path, synthetic_root: Path):
    import nbformat

    path = book_copy / "notebooks" / "datasets_overview.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[4].source = "raise RuntimeError('deliberate failure')"
    nbformat.write(nb, path)
    result = _build(book_copy, "--data-root", str(synthetic_root), "--only", "datasets_overview.ipynb")
    assert result.returncode != 0
    assert "notebooks/datasets_overview.ipynb failed in cell 4" in result.stderr
    assert "deliberate failure" in result.stderr
    assert not (book_copy / "book" / "_build" / "html" / "index.html").exists()
