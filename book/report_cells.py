"""How an executed chapter notebook reads as a report page: code folded, each setting shown once.

Applied by ``book/build.py`` to the executed copy in ``book/generated/`` (the notebooks in ``notebooks/`` are not
touched, so a student who opens one still sees every cell):

- every code cell gets the ``hide-input`` tag (Jupyter Book shows its output and a toggle for the code), except the
  parameters cell and cells already tagged ``remove-*`` / ``hide-*``;
- papermill's injected-parameters cell is merged into the notebook's parameters cell (an overridden value replaces
  the default on its own line, the line's comment kept) and removed from the page (``remove-cell``), so the one
  visible code cell of a page is "the settings of this build", each setting once.
"""

from __future__ import annotations

import ast
import io
import tokenize

SETTINGS_HEADER = "# Settings of this build (the notebook's defaults, with the values this build passed)\n"
KEEP_TAGS = ("remove-cell", "remove-input", "hide-input", "hide-cell", "parameters", "injected-parameters")


def _comments(source: str) -> dict[int, str]:
    """1-based line number -> the comment on that line (with its leading ``#``)."""
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string
    return comments


def _assignments(source: str) -> list[tuple[str, int, int, str]]:
    """(name, first line, last line, value source) of every top-level ``name = value`` statement."""
    out = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out.append((node.targets[0].id, node.lineno, node.end_lineno, ast.get_source_segment(source, node.value)))
    return out


def merge_parameters(defaults: str, injected: str) -> str:
    """The parameters cell ``defaults`` with every assignment of ``injected`` (papermill's cell) applied: an
    overridden name's statement is replaced by ``name = <injected value>`` keeping the comment of its last line; a
    name the defaults do not assign is appended. Other lines stay as they are."""
    values = {name: value for name, _, _, value in _assignments(injected)}
    lines = defaults.splitlines()
    comments = _comments(defaults)
    replaced: dict[int, tuple[int, str]] = {}  # first line -> (last line, new text)
    seen = set()
    for name, first, last, _ in _assignments(defaults):
        if name in values:
            comment = comments.get(last, "")
            text = f"{name} = {values[name]}"
            replaced[first] = (last, f"{text}  {comment}" if comment else text)
            seen.add(name)
    out, number = [], 1
    while number <= len(lines):
        if number in replaced:
            last, text = replaced[number]
            out.append(text)
            number = last + 1
        else:
            out.append(lines[number - 1])
            number += 1
    out += [f"{name} = {value}" for name, value in values.items() if name not in seen]
    return "\n".join(out)


def _tags(cell: dict) -> list[str]:
    return cell.setdefault("metadata", {}).setdefault("tags", [])


def fold_code(notebook: dict) -> dict:
    """Apply the report rules above to an executed notebook (a ``nbformat``-style dict); returns it."""
    cells = notebook["cells"]
    parameters = next((c for c in cells if c["cell_type"] == "code" and "parameters" in _tags(c)), None)
    injected = next((c for c in cells if c["cell_type"] == "code" and "injected-parameters" in _tags(c)), None)
    if injected is not None:
        if parameters is not None:
            merged = merge_parameters("".join(parameters["source"]), "".join(injected["source"]))
            parameters["source"] = SETTINGS_HEADER + merged
        _tags(injected).append("remove-cell")
    for cell in cells:
        if cell["cell_type"] == "code" and not any(t in _tags(cell) for t in KEEP_TAGS):
            _tags(cell).append("hide-input")
    return notebook


def suffix_figure_names(notebook: dict, suffix: str) -> dict:
    """Give every named figure of a per-dataset chapter copy (``mystnb.figure.name`` in a cell's metadata) the
    suffix ``-<suffix>`` and rewrite the notebook's ``{numref}`` references to match, so that copies of one chapter
    for several datasets never define the same label twice (Sphinx labels are global to the book)."""
    import re

    renamed = {}
    for cell in notebook["cells"]:
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
        if figure.get("name"):
            renamed[figure["name"]] = figure["name"] = f"{figure['name']}-{suffix}"
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown" and renamed:
            source = "".join(cell["source"])
            cell["source"] = re.sub(r"\{numref\}`([^`<]+)`",
                                    lambda m: "{numref}`" + renamed.get(m.group(1), m.group(1)) + "`", source)
    return notebook
