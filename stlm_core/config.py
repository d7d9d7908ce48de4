"""Profiles, defined once and selected by name (DESIGN.md section 2).

- ``paper``: the papers' exact settings; requires the official weights (fails naming the download command).
- ``cpu``: the same architectures where affordable, reduced resolution/epochs; official weights if present,
  random initialisation otherwise (recorded as ``random-init``).
- ``smoke``: tiny configurations of the same model classes, random weights; used by tests and the default book.

Each method keeps its own per-profile settings next to its code (``stlm_core.stlm.config``,
``stlm_core.clipsam.config``); this module only names the profiles and validates a choice.
"""

from __future__ import annotations

from stlm_core.errors import StlmError

PROFILES: tuple[str, ...] = ("paper", "cpu", "smoke")

PROFILE_HELP = (
    "paper = the paper's exact settings (official weights required); cpu = same architectures, reduced "
    "resolution/epochs, random init if weights are absent; smoke = tiny models for tests and the default book"
)


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is a known profile name, else raise a :class:`StlmError` listing them."""
    if profile not in PROFILES:
        raise StlmError(f"unknown profile {profile!r}; use one of: {', '.join(PROFILES)}.")
    return profile
