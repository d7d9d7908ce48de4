"""Install surface: console script, module entry point, pins kept in sync between pip and conda files."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_environment_yml_mirrors_requirements():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    requirements = _pins((REPO / "requirements.txt").read_text().splitlines())
    assert _pins(pip_section) == requirements
    assert requirements["torch"] == "2.14.1" and requirements["torchvision"] == "0.29.1"
    assert requirements["jupyter-book"].startswith("1.")


def test_module_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "stlm_core", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("data", "weights"):
        assert command in result.stdout


def test_unknown_command_fails():
    result = subprocess.run([sys.executable, "-m", "stlm_core", "frobnicate"], capture_output=True, text=True)
    assert result.returncode != 0 and "invalid choice" in result.stderr
