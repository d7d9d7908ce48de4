"""One problem found in a dataset split, and the error that lists several of them.

A :class:`DataProblem` names the file (``path``), what is wrong with it (``problem``) and what to do (``fix``).
Readers collect them while scanning a split (see :meth:`~stlm_core.data.base.DatasetReader.scan`);
:func:`~stlm_core.data.validate.validate_split` adds the ones found by decoding every file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from stlm_core.errors import DatasetError


@dataclass(frozen=True)
class DataProblem:
    """``path``: the file or folder concerned; ``problem``: what is wrong; ``fix``: how to repair it."""

    path: Path
    problem: str
    fix: str

    @property
    def message(self) -> str:
        """Problem and fix as one sentence pair, the message a reader raises for its first problem."""
        return f"{self.problem}. {self.fix}" if self.fix else f"{self.problem}."

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}; {self.fix}" if self.fix else f"{self.path}: {self.problem}"

    def as_dict(self) -> dict[str, str]:
        """JSON-ready ``{"path", "problem", "fix"}``."""
        return {"path": str(self.path), "problem": self.problem, "fix": self.fix}


def format_problems(problems: Iterable[DataProblem]) -> str:
    """One ``path: problem; fix`` line per problem, indented by two spaces."""
    return "\n".join(f"  {p}" for p in problems)


def raise_for_problems(problems: Iterable[DataProblem], *, action: str) -> None:
    """Raise :class:`DatasetError` listing every problem (one per line, with a count) if there are any.

    ``action`` says what was refused, e.g. ``"train STLM on mvtec/bottle"``; the message states that nothing was
    written, so callers must call this before they create any output.
    """
    problems = list(problems)
    if not problems:
        return
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    raise DatasetError(
        f"cannot {action}: the dataset has {count} (nothing was written):\n{format_problems(problems)}\n"
        "Fix them and run again ('stlm data check' lists them too)."
    )
