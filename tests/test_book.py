"""The book pipeline: papermill executes every chapter, Jupyter Book renders them, and headless Chromium opens
every page of the built book (navigation, images, error-free outputs, provenance banners)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]


def _copy_book(root: Path) -> Path:
    shutil.copytree(REPO / "book", root / "book", ignore=shutil.ignore_patterns("_build", "generated", "_toc.yml"))
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    return root


@pytest.fixture
def book_copy(tmp_path: Path) -> Path:
    return _copy_book(tmp_path)


def _build(root: Path, *args: str) -> subprocess.CompletedProcess:
    # the timeout is a hang guard only: about 5x the build's time on the slowest 2-core machine seen
    return subprocess.run([sys.executable, str(root / "book" / "build.py"), *args], cwd=root,
                          capture_output=True, text=True, timeout=3600)


@dataclass(frozen=True)
class BuiltBook:
    root: Path
    result: subprocess.CompletedProcess

    def check(self) -> None:
        assert self.result.returncode == 0, self.result.stdout[-3000:] + self.result.stderr[-3000:]


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory, synthetic_root: Path) -> BuiltBook:
    """The whole book, built once per module at the smoke profile on the synthetic dataset."""
    root = _copy_book(tmp_path_factory.mktemp("smoke_book"))
    return BuiltBook(root, _build(root, "--data-root", str(synthetic_root), "--profile", "smoke"))


def test_book_builds_every_chapter_on_the_smoke_profile(smoke_book: BuiltBook):
    """Every notebook of chapters.yml executes (papermill) and renders (Jupyter Book, warnings are errors)."""
    import yaml

    smoke_book.check()
    book_copy = smoke_book.root
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
    navigation = (html_dir / "intro.html").read_text()
    for chapter in chapters:  # the sidebar uses chapters.yml's titles
        assert re.search(rf'class="reference internal" href="generated/[^"]+">{re.escape(chapter["title"])}</a>',
                         navigation), chapter["title"]


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


# ------------------------------------------------------------------------------------------ the book in a browser

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RANDOM_WEIGHT_CHAPTERS = {"efficiency",                         # latency and counts of randomly initialised models
                          "stlm_fidelity"}                      # the equivalence check: seeded random weights
RUN_CHAPTERS = {"stlm_main_results", "clipsam_zero_shot"}      # their run records feed the scorecard's numbers
ERROR_TEXT = re.compile(r"Traceback \(most recent call last\)|\b\w*(Error|Exception): ")
PAGE_SCRIPT = """
const nav = Array.from(document.querySelectorAll('.bd-sidebar-primary a')).map(a => a.href);
const outputs = Array.from(document.querySelectorAll('.cell_output')).map(e => e.innerText);
return {nav: nav, outputs: outputs, banners: document.querySelectorAll('.stlm-banner').length,
        tracebacks: document.querySelectorAll('.cell_output .traceback, .cell_output .output.error').length};
"""
IMAGES_SCRIPT = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images);
images.forEach(i => { i.loading = 'eager'; });
const settled = i => i.complete ? Promise.resolve() : new Promise(r => {
    i.addEventListener('load', r); i.addEventListener('error', r); setTimeout(r, 10000); });
Promise.all(images.map(settled)).then(() => done(images.map(i => ({src: i.currentSrc || i.src,
                                                                    width: i.naturalWidth}))));
"""


def expected_banners(chapters: list[dict], datasets: list[str]) -> dict[str, bool]:
    """Page (relative to the HTML root) -> whether its numbers come from synthetic data or random weights.

    Per-dataset chapters: on the synthetic dataset. Efficiency: always (randomly initialised models). The scorecard
    and the verdict page (made from its rows): when a chapter whose runs it reads ran on synthetic data. Method
    chapters, the intro and the references: never.
    """
    per_dataset = {Path(c["notebook"]).stem for c in chapters if c.get("per_dataset")}
    scorecard_synthetic = "synthetic" in datasets and bool(per_dataset & RUN_CHAPTERS)
    pages = {"intro.html": False, "references.html": False}
    for chapter in chapters:
        stem = Path(chapter["notebook"]).stem
        if chapter.get("per_dataset"):
            pages.update({f"generated/{stem}_{name}.html": name == "synthetic" for name in datasets})
        else:
            pages[f"generated/{stem}.html"] = stem in RANDOM_WEIGHT_CHAPTERS or (
                stem in ("scorecard", "verdict") and scorecard_synthetic)
    return pages


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _webdriver(url: str, body: dict | None = None, method: str = "POST", timeout: float = 60) -> Any:
    """One W3C WebDriver command against chromedriver (no proxy); returns the response's ``value``."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return json.loads(response.read())["value"]
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"WebDriver {method} {url} failed: {exc.read().decode()[:2000]}") from None


def _wait_for_driver(base: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "chromedriver exited at start-up"
        with contextlib.suppress(OSError, AssertionError):
            if _webdriver(f"{base}/status", method="GET", timeout=2).get("ready"):
                return
        time.sleep(0.2)
    raise AssertionError("chromedriver did not become ready")


@contextlib.contextmanager
def chromium(chromium_path: str, driver_path: str, profile_dir: Path) -> Iterator[Callable[..., Any]]:
    """A headless Chromium session through Debian's chromedriver; yields ``command(path, body=None, method=...)``."""
    port = _free_port()
    process = subprocess.Popen([driver_path, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_driver(base, process)
        options = {"binary": chromium_path, "args": CHROMIUM_FLAGS + [f"--user-data-dir={profile_dir}"]}
        session = _webdriver(f"{base}/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": options, "timeouts": {"pageLoad": 60000, "script": 30000}}}})
        url = f"{base}/session/{session['sessionId']}"
        try:
            yield lambda path, body=None, method="POST": _webdriver(url + path, body, method)
        finally:
            _webdriver(url, method="DELETE")
    finally:
        process.terminate()
        process.wait(timeout=30)


def _open(command: Callable[..., Any], page: Path) -> dict:
    command("/url", {"url": page.as_uri()})
    state = command("/execute/sync", {"script": PAGE_SCRIPT, "args": []})
    state["images"] = command("/execute/async", {"script": IMAGES_SCRIPT, "args": []})
    return state


def _chromium_or_skip() -> tuple[str, str]:
    """Paths of Debian's chromium and chromedriver; skips the test when they are not installed."""
    chromium_path, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium_path and driver_path):
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium chromium-driver)")
    return chromium_path, driver_path


def test_every_page_of_the_built_book_in_headless_chromium(smoke_book: BuiltBook, tmp_path: Path):
    """Headless Chromium opens every page: the navigation lists every chapter, every image loads, no cell output
    holds a traceback or an error, and the banner is on exactly the pages whose numbers come from synthetic data or
    random weights (the expectation comes from chapters.yml and the build's dataset, not from the HTML)."""
    import yaml

    chromium_path, driver_path = _chromium_or_skip()
    smoke_book.check()
    html = smoke_book.root / "book" / "_build" / "html"
    chapters = yaml.safe_load((smoke_book.root / "book" / "chapters.yml").read_text())["chapters"]
    expected = expected_banners(chapters, ["synthetic"])
    pages = sorted(p for p in html.rglob("*.html") if not {"_static", "_sources"} & set(p.relative_to(html).parts))
    missing = [name for name in expected if not (html / name).is_file()]
    assert not missing, f"chapters without a page: {missing}"
    chapter_urls = {(html / name).as_uri() for name in expected if name.startswith("generated/")}
    problems = []
    with chromium(chromium_path, driver_path, tmp_path / "chromium-profile") as command:
        for page in pages:
            name = page.relative_to(html).as_posix()
            state = _open(command, page)
            if name in expected:
                absent = sorted(chapter_urls - {u.split("#")[0] for u in state["nav"]})
                if absent:
                    problems.append(f"{name}: navigation lacks {absent}")
                if bool(state["banners"]) != expected[name]:
                    problems.append(f"{name}: {state['banners']} banner(s), expected "
                                    f"{'one' if expected[name] else 'none'}")
            elif state["banners"]:
                problems.append(f"{name}: unexpected banner")
            problems += [f"{name}: image not loaded: {i['src']}" for i in state["images"] if not i["width"]]
            errors = [t[:300] for t in state["outputs"] if ERROR_TEXT.search(t)]
            if state["tracebacks"] or errors:
                problems.append(f"{name}: error output {errors}")
    assert not problems, "\n".join(problems)


def _report_cells():
    import importlib.util

    spec = importlib.util.spec_from_file_location("report_cells", REPO / "book" / "report_cells.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_injected_parameters_merge_into_the_settings_cell_once():
    report_cells = _report_cells()
    defaults = ('dataset = "synthetic"   # mvtec | visa\nvariants = ["cpu",\n            "no_fa"]  # variant names\n'
                'steps = None            # default schedule\nforce = False\n')
    injected = '# Parameters\ndataset = "visa"\nsteps = 60\nruns_dir = "/runs"\n'
    merged = report_cells.merge_parameters(defaults, injected)
    assert merged.splitlines() == ['dataset = "visa"  # mvtec | visa', 'variants = ["cpu",', '            "no_fa"]  # variant names',
                                   'steps = 60  # default schedule', 'force = False', 'runs_dir = "/runs"']
    notebook = {"cells": [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": defaults},
        {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "source": injected},
        {"cell_type": "code", "metadata": {}, "source": "load_runs(...)"},
        {"cell_type": "markdown", "metadata": {}, "source": "text"}]}
    cells = report_cells.fold_code(notebook)["cells"]
    assert cells[0]["source"].startswith(report_cells.SETTINGS_HEADER) and "steps = 60" in cells[0]["source"]
    assert cells[0]["metadata"]["tags"] == ["parameters"]  # the one visible code cell
    assert "remove-cell" in cells[1]["metadata"]["tags"]
    assert cells[2]["metadata"]["tags"] == ["hide-input"]
    assert cells[3]["metadata"] == {}


LAYOUT_SCRIPT = """
const article = document.querySelector('article.bd-article') || document.querySelector('main');
const column = article.clientWidth;
const visible = e => e.getClientRects().length > 0 && !e.closest('details:not([open])')
    && getComputedStyle(e).visibility !== 'hidden';
const wide = [];
for (const e of article.querySelectorAll('*')) {
    if (!visible(e) || e.closest('mjx-container, .MathJax, span.math')) continue;  // inline math: sub-pixel rounding
    const width = e.getBoundingClientRect().width;
    const style = getComputedStyle(e);  // inline boxes have no clientWidth: only blocks can overflow inside
    const overflows = style.display !== 'inline' && style.overflowX !== 'visible' && e.scrollWidth > e.clientWidth + 1;
    if (width > column + 1 || overflows) {
        wide.push(`${e.tagName.toLowerCase()}.${e.className}`.slice(0, 80) + ` ${Math.round(Math.max(width, e.scrollWidth))}px`);
    }
}
const openCode = Array.from(article.querySelectorAll('.cell .cell_input'))
    .filter(e => visible(e) && !e.closest('.tag_parameters')).length;
const images = Array.from(article.querySelectorAll('.cell_output img'));
const uncaptioned = images.filter(i => !(i.closest('figure') && i.closest('figure').querySelector('figcaption'))).length;
return {column: column, wide: wide.slice(0, 5), nWide: wide.length, openCode: openCode, images: images.length,
        uncaptioned: uncaptioned, text: article.innerText};
"""


def layout_problems(command: Callable[..., Any], page: Path, name: str, width: int, shots: Path | None) -> list[str]:
    """What a reader at ``width`` px would hit on ``page``: elements wider than the text column, code cells open
    by default (the settings cell excepted), images without a figure caption."""
    import base64

    command("/window/rect", {"width": width, "height": 1000})
    command("/url", {"url": page.as_uri()})
    state = command("/execute/sync", {"script": LAYOUT_SCRIPT, "args": []})
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
        (shots / f"{name.replace('/', '_')}-{width}.png").write_bytes(base64.b64decode(command("/screenshot", method="GET")))
    problems = []
    if state["nWide"]:
        problems.append(f"{name} at {width}px: {state['nWide']} element(s) wider than the {state['column']}px column, "
                        f"e.g. {state['wide']}")
    if state["openCode"]:
        problems.append(f"{name}: {state['openCode']} code cell(s) open by default")
    if state["uncaptioned"]:
        problems.append(f"{name}: {state['uncaptioned']} of {state['images']} figure(s) without a caption")
    return problems


def test_the_book_reads_as_a_report_at_1280_and_800_px(smoke_book: BuiltBook, tmp_path: Path):
    """At 1280 px and 800 px no chapter has an element wider than its text column, no code cell open by default (the
    one settings cell excepted), every figure has a caption, and the verdict page lists every item of the papers'
    results registry. Screenshots of every chapter at both widths go to book/_build/screenshots/ (not in git)."""
    import yaml

    from stlm_core.paper_results import load_paper_results

    chromium_path, driver_path = _chromium_or_skip()
    smoke_book.check()
    html = smoke_book.root / "book" / "_build" / "html"
    chapters = yaml.safe_load((smoke_book.root / "book" / "chapters.yml").read_text())["chapters"]
    names = [name for name in expected_banners(chapters, ["synthetic"]) if name.startswith("generated/")]
    shots = REPO / "book" / "_build" / "screenshots"
    problems = []
    with chromium(chromium_path, driver_path, tmp_path / "chromium-profile") as command:
        for name in names:
            for width in (1280, 800):
                problems += layout_problems(command, html / name, name, width, shots)
        command("/url", {"url": (html / "generated" / "verdict.html").as_uri()})
        text = command("/execute/sync", {"script": "return document.body.innerText;", "args": []})
    items = sorted(set(load_paper_results()["table"]))
    missing = [item for item in items if item not in text]
    assert not missing, f"the verdict page lacks items {missing}"
    assert not problems, "\n".join(problems)


def _build_module(root: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("book_build_copy", root / "book" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_second_build_executes_only_what_changed(book_copy: Path, synthetic_root: Path, monkeypatch, capsys):
    """Chapters whose inputs are unchanged keep their executed copy; a changed notebook re-executes itself and every
    chapter after it (later chapters read its runs); --rerun executes everything. Execution and Jupyter Book are
    replaced by stand-ins here: the real pipeline is the smoke book above."""
    build = _build_module(book_copy)
    (book_copy / "stlm_core").symlink_to(REPO / "stlm_core")  # the library fingerprint reads it
    executed: list[str] = []

    def fake_execute(chapter: dict, output: Path, parameters: dict) -> None:
        executed.append(chapter["notebook"])
        output.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))

    monkeypatch.setattr(build, "execute", fake_execute)
    monkeypatch.setattr(build, "fold_for_report", lambda output, suffix=None: None)
    monkeypatch.setattr(build.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0))
    args = ["--data-root", str(synthetic_root), "--runs-dir", str(book_copy / "runs")]
    order = None
    for attempt in ("first", "second"):
        executed.clear()
        assert build.main(args) == 0
        order = order or list(executed)
        if attempt == "second":
            assert executed == [] and "inputs unchanged since the last build, kept" in capsys.readouterr().out
    assert len(order) >= 5
    changed = order[len(order) // 2]
    notebook = book_copy / "notebooks" / changed
    content = json.loads(notebook.read_text())
    content["cells"].append({"cell_type": "markdown", "metadata": {}, "source": ["an edit"]})
    notebook.write_text(json.dumps(content))
    executed.clear()
    assert build.main(args) == 0
    assert executed == order[order.index(changed):]  # the edited chapter and every one after it
    executed.clear()
    assert build.main([*args, "--rerun"]) == 0
    assert executed == order
