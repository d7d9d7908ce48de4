"""Build the report: execute every chapter notebook with papermill, then render HTML with Jupyter Book 1.x.

    python book/build.py                                  # the embedded default (synthetic data, see below)
    python book/build.py --data mvtec=/data/mvtec_anomaly_detection --profile cpu --full
    python book/build.py --data mvtec=/data/mvtec_anomaly_detection --profile paper --full

The embedded default runs every chapter with its notebook's own defaults (the learning ``cpu`` profile) except
where ``chapters.yml`` gives ``budget`` parameters that keep a fresh build within about 15 minutes on 2 cores
(shorter schedules, fewer variants; each such page says so). ``--full`` ignores the budgets; ``--profile``
sets every chapter's profile and also ignores them (each chapter then runs its profile's own schedule).

Chapters are listed in ``book/chapters.yml``. Executed notebooks go to ``book/generated/`` (git-ignored), the table of
contents is written to ``book/_toc.yml``, and the HTML lands in ``book/_build/html/``. A notebook that fails stops the
build with a message naming the notebook and the cell; its partly executed copy is kept for inspection.

The embedded default also starts from the package's recorded runs (``stlm_core/runs/recorded_runs.json``: the
records of a full build's training runs, without weights or maps; see ``stlm_core.runs.archive``), unpacked into the
runs folder where the local data are the recorded data, except one run that every build trains again as a check of
the recording; the pages say which rows are recorded. ``--live`` trains every run here instead.

A second build re-executes only what changed: each executed chapter records a fingerprint of its inputs (the
notebook, its parameters, the library's source and the fingerprints of the chapters executed before it, since later
chapters read their runs); a chapter whose fingerprint is unchanged keeps its executed copy. Finished runs are
reused in any case (``runs/``). ``--rerun`` executes every chapter again (e.g. after changing files of a dataset).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

BOOK = Path(__file__).resolve().parent
sys.path.insert(0, str(BOOK))  # report_cells.py beside this script
REPO = BOOK.parent
NOTEBOOKS = REPO / "notebooks"
GENERATED = BOOK / "generated"


BUILD_START = time.perf_counter()


class ChapterFailed(RuntimeError):
    pass


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", default=[], metavar="NAME=ROOT",
                        help="dataset to run per-dataset chapters on (repeatable), e.g. mvtec=/data/mvtec. "
                             "Default: synthetic=<--data-root>")
    parser.add_argument("--data-root", default="data/synthetic",
                        help="root of the synthetic dataset (generated there if missing; default data/synthetic)")
    parser.add_argument("--profile", default=None, choices=("paper", "cpu", "smoke"),
                        help="profile for every chapter that declares a `profile` parameter (default: each "
                             "notebook's own, the learning cpu profile, or its chapters.yml budget)")
    parser.add_argument("--full", action="store_true",
                        help="ignore the chapters' `budget` parameters (full schedules and grids; slower); "
                             "implied by --profile")
    parser.add_argument("--live", action="store_true",
                        help="train every run on this machine instead of starting from the package's recorded runs "
                             "(implied by --full and --profile)")
    parser.add_argument("--runs-dir", type=Path, default=REPO / "runs",
                        help="where run records are written and reused (default: runs/ in the repository)")
    parser.add_argument("--only", action="append", default=[], metavar="NOTEBOOK",
                        help="execute only these chapter notebooks (others keep their previous output)")
    parser.add_argument("--skip-execute", action="store_true", help="only render what book/generated/ holds")
    parser.add_argument("--no-html", action="store_true", help="execute the chapters only (no Jupyter Book HTML)")
    parser.add_argument("--rerun", action="store_true",
                        help="execute every chapter even when its inputs are unchanged since the last build")
    return parser.parse_args(argv)


def datasets_from(args: argparse.Namespace) -> list[tuple[str, Path]]:
    pairs = []
    for item in args.data or [f"synthetic={args.data_root}"]:
        if "=" not in item:
            raise SystemExit(f"--data expects NAME=ROOT, got {item!r}")
        name, root = item.split("=", 1)
        pairs.append((name, (REPO / root).resolve() if not Path(root).is_absolute() else Path(root)))
    return pairs


def ensure_synthetic(root: Path) -> None:
    if (root / "README.txt").is_file():
        return
    from stlm_core.data.synthetic import generate

    print(f"[book] generating the synthetic dataset in {root}", flush=True)
    generate(root)


def unpack_recorded_runs(runs_dir: Path, datasets: list[tuple[str, Path]]) -> None:
    """Unpack the package's recorded runs for these datasets (where the local data match) into ``runs_dir``."""
    from stlm_core.runs.archive import unpack_runs

    outcome = unpack_runs(runs_dir, dict(datasets))
    print(f"[book] recorded runs: {len(outcome['unpacked'])} unpacked into {runs_dir}, {len(outcome['kept'])} "
          f"already there, {len(outcome['held_back'])} held back to be trained here as a check of the recording "
          "(--live trains every run here)", flush=True)
    if outcome["other_data"]:
        print(f"[book] {len(outcome['other_data'])} recorded runs not used: the local data of their categories "
              "differ from the recorded data, so those runs are trained here", flush=True)


def retitle(notebook: Path, suffix: str) -> None:
    """Append ``suffix`` to the notebook's first H1 heading so per-dataset copies have distinct titles."""
    nb = json.loads(notebook.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        source = "".join(cell["source"])
        if source.startswith("# "):
            first, _, rest = source.partition("\n")
            cell["source"] = f"{first} ({suffix})\n{rest}"
            break
    notebook.write_text(json.dumps(nb, indent=1))


def fold_for_report(notebook: Path, suffix: str | None = None) -> None:
    """Fold the code of an executed chapter and show each setting once; in a per-dataset copy (``suffix``), give
    its figure labels the dataset's name (see ``report_cells.py``)."""
    from report_cells import fold_code, suffix_figure_names

    content = fold_code(json.loads(notebook.read_text()))
    if suffix:
        content = suffix_figure_names(content, suffix)
    notebook.write_text(json.dumps(content, indent=1))


FINGERPRINT_KEY = "stlm_book_inputs"  # notebook metadata of an executed chapter


def library_fingerprint() -> str:
    """sha256 over the library's source and data files and this script's own: a change to any of them re-executes
    every chapter."""
    digest = hashlib.sha256()
    files = [*sorted((REPO / "stlm_core").rglob("*")), BOOK / "build.py", BOOK / "report_cells.py"]
    for path in files:
        if path.is_file() and path.suffix in {".py", ".yaml", ".yml", ".json"} and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def chapter_fingerprint(previous: str, library: str, notebook: Path, parameters: dict) -> str:
    """What an executed chapter depends on: the chapter before it in execution order (its runs feed later
    summaries), the library, the notebook's text and its parameters."""
    digest = hashlib.sha256()
    for part in (previous, library, notebook.read_text(), json.dumps(parameters, sort_keys=True, default=str)):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def recorded_fingerprint(output: Path) -> str | None:
    """The input fingerprint stored in an executed chapter (``None``: absent, partly executed or unreadable)."""
    try:
        return json.loads(output.read_text())["metadata"].get(FINGERPRINT_KEY)
    except (OSError, ValueError, KeyError):
        return None


def record_fingerprint(output: Path, fingerprint: str) -> None:
    content = json.loads(output.read_text())
    content["metadata"][FINGERPRINT_KEY] = fingerprint
    output.write_text(json.dumps(content, indent=1))


def execute(chapter: dict, output: Path, parameters: dict) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = NOTEBOOKS / chapter["notebook"]
    declared = papermill.inspect_notebook(str(source))
    params = {k: v for k, v in parameters.items() if k in declared}
    started = time.perf_counter()
    print(f"[book] executing {source.relative_to(REPO)} -> {output.relative_to(REPO)} with {params}", flush=True)
    try:
        papermill.execute_notebook(str(source), str(output), parameters=params, kernel_name="python3",
                                   cwd=str(NOTEBOOKS), progress_bar=True, log_output=False)  # cells done / left
    except PapermillExecutionError as exc:
        # papermill counts its injected-parameters cell; report the cell's index in the source notebook instead.
        cells = json.loads(source.read_text())["cells"]
        matches = [i for i, cell in enumerate(cells) if "".join(cell["source"]) == exc.source]
        where = f"cell {matches[0]}" if matches else f"output cell {exc.cell_index}"
        raise ChapterFailed(
            f"notebook {source.relative_to(REPO)} failed in {where} (0-based; execution count "
            f"{exc.exec_count}): {exc.ename}: {exc.evalue}\n--- cell source ---\n{exc.source}\n"
            f"The partly executed notebook is {output}."
        ) from None
    print(f"[book]   done in {time.perf_counter() - started:.1f} s ({time.perf_counter() - BUILD_START:.0f} s since "
          "the build started)", flush=True)


def execution_rank(job: tuple) -> int:
    """Chapters execute in navigation order, except ``run_early`` ones first (their runs are reused by later
    chapters) and ``run_last`` ones last (they summarise the others)."""
    chapter = job[0]
    return 0 if chapter.get("run_early") else 2 if chapter.get("run_last") else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = yaml.safe_load((BOOK / "chapters.yml").read_text())
    datasets = datasets_from(args)
    GENERATED.mkdir(exist_ok=True)
    toc_entries = []
    for name, root in datasets:
        if name == "synthetic" and not args.skip_execute:
            ensure_synthetic(root)
    if not (args.skip_execute or args.live or args.full or args.profile):
        unpack_recorded_runs(args.runs_dir, datasets)
    jobs = []  # (chapter, output stem, parameters, dataset suffix), in navigation order
    for chapter in config["chapters"]:
        stem = Path(chapter["notebook"]).stem
        runs = [(f"{stem}_{name}", {"dataset": name, "data_root": str(root)}, name) for name, root in datasets] \
            if chapter.get("per_dataset") else [(stem, {}, None)]
        jobs += [(chapter, out_stem, params, suffix) for out_stem, params, suffix in runs]
    pages: dict[str, list[str]] = {}
    for chapter, out_stem, _, _ in jobs:
        pages.setdefault(Path(chapter["notebook"]).stem, []).append(out_stem)
    library = library_fingerprint()
    previous = ""
    for chapter, out_stem, params, suffix in sorted(jobs, key=execution_rank):
        output = GENERATED / f"{out_stem}.ipynb"
        budget = {} if args.full or args.profile else chapter.get("budget", {})
        params = {**chapter.get("params", {}), **budget, **params, "runs_dir": str(args.runs_dir), "pages": pages}
        if args.profile is not None:
            params["profile"] = args.profile
        fingerprint = chapter_fingerprint(previous, library, NOTEBOOKS / chapter["notebook"], params)
        wanted = not args.only or chapter["notebook"] in args.only
        unchanged = not args.rerun and recorded_fingerprint(output) == fingerprint
        if not args.skip_execute and wanted and unchanged:
            print(f"[book] {output.relative_to(REPO)}: inputs unchanged since the last build, kept "
                  "(--rerun executes it again)", flush=True)
        elif not args.skip_execute and wanted:
            try:
                execute(chapter, output, params)
            except ChapterFailed as exc:
                print(f"[book] BUILD FAILED: {exc}", file=sys.stderr)
                return 1
            if suffix and len(datasets) > 1:
                retitle(output, suffix)
            fold_for_report(output, suffix)
            record_fingerprint(output, fingerprint)
        # a chapter kept from an earlier build passes on the fingerprint it was executed with
        previous = recorded_fingerprint(output) or fingerprint
    for chapter, out_stem, _, suffix in jobs:
        if (GENERATED / f"{out_stem}.ipynb").is_file():  # the sidebar shows the short title; the page keeps its heading
            title = chapter["title"] + (f" ({suffix})" if suffix and len(datasets) > 1 else "")
            toc_entries.append({"file": f"generated/{out_stem}", "title": title})
    toc_entries += [{"file": Path(page).stem} for page in config.get("end_pages", [])]
    toc = {"format": "jb-book", "root": Path(config["intro"]).stem, "chapters": toc_entries}
    (BOOK / "_toc.yml").write_text("# Generated by book/build.py from chapters.yml; do not edit.\n" + yaml.safe_dump(toc, sort_keys=False))
    if args.no_html:
        return 0
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book), "build", "--all", "-W", "--keep-going", str(BOOK)]
    print(f"[book] {' '.join(command)}", flush=True)
    result = subprocess.run(command, cwd=REPO)
    if result.returncode != 0:
        print("[book] BUILD FAILED: jupyter-book reported errors (see above)", file=sys.stderr)
        return result.returncode
    print(f"[book] HTML: {BOOK / '_build' / 'html' / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
