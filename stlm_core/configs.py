"""Configs as data: one frozen dataclass per method, its profiles in a YAML table beside it.

Both methods follow the same pattern (open_clip-style configs as data, one factory):

- a frozen dataclass lists every setting with its type and validates itself at construction;
- a YAML file next to it (``stlm/profiles.yaml``, ``clipsam/profiles.yaml``) holds the values per profile: the
  ``paper`` profile gives every field, ``cpu`` and ``smoke`` only what they change. Each entry carries its
  provenance: ``source`` is ``paper`` (stated in the paper), ``code`` (the official code or the library the paper
  builds on) or ``ours`` (an open choice this project made), with ``why`` for the reasoning;
- ``Config.from_profile(name, **overrides)`` is the one factory; ``to_dict`` / ``from_dict`` round-trip what a run
  record stores; :meth:`ProfileConfig.replace` returns a validated copy. A built config is never mutated.

Profiles: ``paper`` = the papers' exact settings (official weights required); ``cpu`` = a laptop-sized version that
learns offline; ``smoke`` = tiny models for tests.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from stlm_core.errors import ConfigError

PROFILES: tuple[str, ...] = ("paper", "cpu", "smoke")
DEFAULT_PROFILE = "cpu"
SOURCES = ("paper", "code", "ours")

PROFILE_HELP = (
    "paper = the paper's exact settings (official weights required); cpu = laptop-sized, learns offline "
    "(the default); smoke = tiny models for tests"
)

C = TypeVar("C", bound="ProfileConfig")


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is a known profile name, else raise :class:`ConfigError` listing them."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; use one of: {', '.join(PROFILES)}.")
    return profile


def check_choice(name: str, value: object, allowed: tuple) -> None:
    """Raise :class:`ConfigError` naming the field and the allowed values when ``value`` is not one of them."""
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}; use one of: {', '.join(map(str, allowed))}.")


@functools.lru_cache(maxsize=None)
def load_profile_table(path: str) -> dict[str, dict[str, dict[str, Any]]]:
    """The YAML profile table at ``path``: ``{profile: {field: {"value", "source", "why"}}}`` (validated)."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        table = yaml.safe_load(handle)
    if set(table) != set(PROFILES):
        raise ConfigError(f"{path} must define exactly the profiles {PROFILES}, found {sorted(table)}.")
    for profile, fields in table.items():
        for name, entry in (fields or {}).items():
            if not isinstance(entry, dict) or "value" not in entry or entry.get("source") not in SOURCES:
                raise ConfigError(f"{path}: {profile}.{name} needs 'value' and a 'source' in {SOURCES}.")
    return {p: dict(table[p] or {}) for p in PROFILES}


def _coerce(value: Any, annotation: Any) -> Any:
    """Lists from YAML/JSON become tuples where the field is a tuple (frozen configs hold no lists)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(annotation):
            if typing.get_origin(arm) is tuple and isinstance(value, (list, tuple)):
                return tuple(value)
        return value
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    return value


# Each method's profile table (the PROFILE_TABLE of its config class), for reading run records without importing
# the methods; and the fields that set a schedule or a seed rather than the recipe.
PROFILE_TABLES = {
    "stlm": Path(__file__).parent / "stlm" / "profiles.yaml",
    "clipsam": Path(__file__).parent / "clipsam" / "profiles.yaml",
    "patchcore": Path(__file__).parent / "baselines" / "profiles.yaml",
}
SCHEDULE_FIELDS = ("seed", "train_steps", "epochs")
# fields a method sets from its inputs rather than its recipe (CLIP-SAM: the localiser follows the adapter file)
DERIVED_FIELDS = {"clipsam": ("localiser",)}


def table_values(table_path: Path, profile: str) -> dict[str, Any]:
    """Every field's value in ``profile`` of a profile table (the ``paper`` values updated with the profile's)."""
    table = load_profile_table(str(table_path))
    values = {name: entry["value"] for name, entry in table["paper"].items()}
    values.update({name: entry["value"] for name, entry in table[profile].items()})
    return values


def changed_from_profile(method: str, config: dict[str, Any], ignore: tuple[str, ...] = SCHEDULE_FIELDS) -> list[str]:
    """The fields of a recorded config (``to_dict()``, with ``profile``) whose values differ from its profile's,
    sorted, ``ignore`` left out: ``[]`` = the profile's own recipe (e.g. not an ablation variant). Unknown
    methods or profiles give ``["?"]``."""
    from stlm_core.fileio import to_jsonable

    table_path, profile = PROFILE_TABLES.get(method), config.get("profile")
    if table_path is None or profile not in PROFILES:
        return ["?"]
    values = to_jsonable(table_values(table_path, profile))
    ignore = (*ignore, *DERIVED_FIELDS.get(method, ()))
    return sorted(name for name, value in config.items()
                  if name not in ignore and name != "profile" and name in values and values[name] != value)


@dataclasses.dataclass(frozen=True)
class ProfileConfig:
    """Base of the per-method configs: the profile factory, dict round-trip and validated copies."""

    PROFILE_TABLE: ClassVar[Path]   # the YAML table of the subclass
    METHOD: ClassVar[str]           # "stlm" | "clipsam"

    profile: str

    # ---- construction -----------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        check_profile(self.profile)
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(getattr(self, f.name), hints[f.name]))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field and the fix when a value is invalid (subclasses)."""

    @classmethod
    def profile_values(cls, profile: str) -> dict[str, Any]:
        """Every field's value in ``profile`` (the ``paper`` table updated with the profile's changes)."""
        check_profile(profile)
        return table_values(cls.PROFILE_TABLE, profile)

    @classmethod
    def from_profile(cls: type[C], profile: str, **overrides: Any) -> C:
        """The settings of ``profile`` with ``overrides`` (field names) applied; validated."""
        values = cls.profile_values(profile)
        unknown = set(overrides) - cls.field_names()
        if unknown:
            raise ConfigError(f"unknown {cls.METHOD} setting(s) {sorted(unknown)}; known: "
                              f"{', '.join(sorted(cls.field_names() - {'profile'}))}.")
        values.update(overrides)
        missing = cls.field_names() - set(values) - {"profile"}
        if missing:
            raise ConfigError(f"{cls.PROFILE_TABLE} gives no value for {sorted(missing)} in the paper profile.")
        return cls(profile=profile, **values)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    def replace(self: C, **changes: Any) -> C:
        """A validated copy with some fields changed."""
        unknown = set(changes) - self.field_names()
        if unknown:
            raise ConfigError(f"unknown {self.METHOD} setting(s) {sorted(unknown)}.")
        return dataclasses.replace(self, **changes)

    # ---- records -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (tuples become lists)."""
        from stlm_core.fileio import to_jsonable

        return to_jsonable({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Inverse of :meth:`to_dict`; unknown keys mean the record was written by another version."""
        unknown = set(data) - cls.field_names()
        if unknown:
            raise ConfigError(f"unknown {cls.METHOD} config keys {sorted(unknown)}; the run was made by another "
                              "version of stlm_core.")
        return cls(**data)

    # ---- provenance --------------------------------------------------------------------------------------
    @classmethod
    def deviations(cls, profile: str) -> list[dict[str, Any]]:
        """Rows ``{field, paper, value, source, why}`` for every field ``profile`` changes from ``paper``."""
        table = load_profile_table(str(cls.PROFILE_TABLE))
        rows = []
        for name, entry in table[profile].items():
            paper = table["paper"].get(name, {})
            rows.append({"field": name, "paper": paper.get("value"), "value": entry["value"],
                         "source": entry["source"], "why": entry.get("why", "")})
        return rows

    @classmethod
    def field_provenance(cls) -> list[dict[str, Any]]:
        """Rows ``{field, paper, source, why}``: the ``paper`` profile's value of every field and where it comes
        from."""
        table = load_profile_table(str(cls.PROFILE_TABLE))
        return [{"field": name, "paper": entry["value"], "source": entry["source"], "why": entry.get("why", "")}
                for name, entry in table["paper"].items()]
