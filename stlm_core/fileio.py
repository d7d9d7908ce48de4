"""Atomic file writes and file hashes: the one place the package writes run files and checksums.

Every writer goes through :func:`atomic_path`: the content is written to a temporary file in the target's folder,
flushed and fsynced, given the usual ``0644`` permissions, then renamed over the target with ``os.replace``. A
reader therefore sees the old file or the new one, never half of one, even if the writer is killed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

FILE_MODE = 0o644


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically, on error it is removed.

    The writer must close the temporary file before the ``with`` block ends (``torch.save``, ``np.savez`` and
    ``open(...)`` used as a context manager all do).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as handle:  # fsync what the writer produced before it becomes visible
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` (made JSON-able by :func:`to_jsonable`) as indented JSON to ``path`` atomically."""
    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (a killed save leaves the previous checkpoint intact)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def atomic_savez(path: str | os.PathLike, **arrays: Any) -> Path:
    """``numpy.savez_compressed(path, **arrays)`` atomically (``path`` should end in ``.npz``)."""
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:  # a file object: numpy would otherwise append ".npz" to the name
            np.savez_compressed(handle, **arrays)
    return Path(path)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def to_jsonable(obj: Any) -> Any:
    """``obj`` with numpy / torch scalars and arrays, paths, tuples and sets turned into plain JSON types.

    Non-finite floats (NaN, +-inf) become ``None``: JSON has no NaN and a NaN metric means "not available".
    """
    import math
    from collections.abc import Mapping

    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [to_jsonable(v) for v in items]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    # numpy / torch without importing them: both expose .tolist() (scalars give Python numbers).
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return to_jsonable(obj.tolist())
    if hasattr(obj, "item") and callable(obj.item):
        return to_jsonable(obj.item())
    raise TypeError(f"cannot store a value of type {type(obj).__name__} in a JSON record: {obj!r}")


def read_json(path: str | os.PathLike) -> Any:
    """Load a JSON file; a missing or corrupt file raises :class:`~stlm_core.errors.StlmError` naming it."""
    from stlm_core.errors import StlmError

    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise StlmError(f"{path} does not exist; run the experiment first (or check the path).") from None
    except json.JSONDecodeError as exc:
        raise StlmError(f"{path} is not valid JSON ({exc}); delete it and rerun the experiment.") from None


def ensure_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and check a file can be written in it; otherwise raise
    :class:`~stlm_core.errors.StlmError` naming the folder and the fix (before any work is done)."""
    from stlm_core.errors import StlmError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        blocker = _file_in_path(folder)
        why = f"{blocker} is a file, not a folder" if blocker is not None else exc.strerror or str(exc)
        raise StlmError(f"cannot write to {folder} ({why}); choose a writable output folder "
                        "(--out / --runs-dir) or fix its permissions.") from None
    return folder


def _file_in_path(folder: Path) -> Path | None:
    """The existing non-folder (a regular file) that stands where ``folder`` or one of its parents should be."""
    for candidate in (folder, *folder.parents):
        if candidate.exists() or candidate.is_symlink():
            return None if candidate.is_dir() else candidate
    return None
