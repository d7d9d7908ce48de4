"""The ``Examples`` sections of the metric docstrings run and give the numbers they show."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["stlm_core.metrics.ranking", "stlm_core.metrics.pro",
                                    "stlm_core.metrics.compute"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
