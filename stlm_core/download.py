"""Explicit downloads: HTTP(S) with resume, sha256 verification and safe unpacking.

Nothing in the project downloads implicitly; only ``stlm data download`` and ``stlm weights download`` (and the
``data_scripts/``) call this module.

- :func:`download_file` writes to ``<dest>.part`` and resumes an interrupted transfer with an HTTP ``Range``
  request; the finished file is verified (sha256) before it is renamed to ``dest``. A checksum mismatch deletes
  the ``.part`` file and raises :class:`~stlm_core.errors.DownloadError` naming the URL, both hashes and the fix.
- :func:`unpack_archive` extracts ``.tar``/``.tar.gz``/``.tar.xz``/``.tar.bz2``/``.zip`` into a temporary folder
  next to the target and renames it into place, so an interrupted or refused extraction leaves nothing
  half-unpacked. Members that would land outside the target (absolute paths, ``..``, links) are refused.

Written on the standard library (``urllib.request``, ``tarfile``, ``zipfile``): no extra dependency, and the
Range/resume logic is small enough to test against a local HTTP server.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from stlm_core import __version__
from stlm_core.fileio import file_sha256
from stlm_core.errors import DownloadError

CHUNK = 1 << 20
USER_AGENT = f"stlm_core/{__version__} (+reproducibility study; python urllib)"
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".zip")


def part_path(dest: Path) -> Path:
    """Where :func:`download_file` keeps the bytes of an unfinished download of ``dest``."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def download_file(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    *,
    progress: bool = True,
    timeout: float = 60.0,
    fix_hint: str = "",
    log: Callable[[str], None] = print,
) -> str:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify it and return its sha256 (hex).

    If ``dest`` already exists with the expected ``sha256`` nothing is downloaded. With ``sha256=None`` the file
    cannot be verified: the computed hash is logged and returned so the caller can record it.
    ``fix_hint`` is appended to error messages (e.g. the official download page).
    """
    dest = Path(dest)
    expected = sha256.lower() if sha256 else None
    if dest.is_file():
        actual = file_sha256(dest)
        if expected is None or actual == expected:
            log(f"{dest.name}: already downloaded ({dest})")
            return actual
        log(f"{dest.name}: existing file has sha256 {actual}, expected {expected}; downloading again")
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    hint = f" {fix_hint}" if fix_hint else ""

    digest = hashlib.sha256()
    offset = part.stat().st_size if part.is_file() else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the .part file already holds every byte
            response = None
        else:
            raise DownloadError(
                f"download of {url} failed: HTTP {exc.code} {exc.reason}. Check the URL (or the mirror set with "
                f"--url / $STLM_DATA_MIRROR) and your network, then rerun.{hint}"
            ) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        raise DownloadError(
            f"cannot reach {url} ({getattr(exc, 'reason', exc)}). Check the URL and your network connection, "
            f"then rerun the same command{' (the partial download is kept and will resume)' if offset else ''}.{hint}"
        ) from exc

    if response is not None:
        with response:
            status = getattr(response, "status", 200)
            length = response.headers.get("Content-Length")
            if offset and status == 206:
                content_range = response.headers.get("Content-Range", "")
                if not content_range.startswith(f"bytes {offset}-"):
                    raise DownloadError(
                        f"{url} answered the resume request for bytes {offset}- with Content-Range "
                        f"{content_range!r}. Delete {part} and rerun to download from the start."
                    )
                mode = "ab"
                with open(part, "rb") as handle:  # hash the bytes we already have
                    while block := handle.read(CHUNK):
                        digest.update(block)
                log(f"{dest.name}: resuming at byte {offset}")
            else:
                if offset:
                    log(f"{dest.name}: the server does not support resuming; downloading from the start")
                offset, mode = 0, "wb"
            total = offset + int(length) if length is not None else None
            written = offset
            try:
                with open(part, mode) as out, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=dest.name, disable=not progress, leave=False,
                ) as bar:
                    while block := response.read(CHUNK):
                        out.write(block)
                        digest.update(block)
                        written += len(block)
                        bar.update(len(block))
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadError(
                    f"download of {url} was interrupted after {written} bytes ({exc}). The partial file {part} is "
                    f"kept: rerun the same command to resume.{hint}"
                ) from exc
            if total is not None and written < total:
                raise DownloadError(
                    f"download of {url} stopped at {written} of {total} bytes. The partial file {part} is kept: "
                    f"rerun the same command to resume.{hint}"
                )
        actual = digest.hexdigest()
    else:
        actual = file_sha256(part)

    if expected is not None and actual != expected:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"checksum mismatch for {url}: expected sha256 {expected}, got {actual}. The file was corrupted in "
            f"transit or differs from the one this project knows, so it was deleted and nothing was unpacked. "
            f"Rerun the command to download it again; if the mismatch persists, check the official page and the "
            f"mirror (--url / $STLM_DATA_MIRROR).{hint}"
        )
    os.replace(part, dest)
    if expected is None:
        log(f"{dest.name}: sha256 {actual} (NOT verified: the project knows no official checksum for this file)")
    else:
        log(f"{dest.name}: sha256 verified ({actual})")
    return actual


def _is_within(base: Path, target: Path) -> bool:
    base, target = os.path.realpath(base), os.path.realpath(target)
    return os.path.commonpath([base, target]) == base


def _extract_tar(archive: Path, into: Path) -> None:
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for member in members:  # explicit check (also covers Pythons without extraction filters)
            if member.name.startswith(("/", "\\")) or not _is_within(into, into / member.name):
                raise DownloadError(f"archive {archive} contains the unsafe path {member.name!r}; refusing to unpack.")
            if member.issym() or member.islnk():
                link = into / Path(member.name).parent / member.linkname if member.issym() else into / member.linkname
                if Path(member.linkname).is_absolute() or not _is_within(into, link):
                    raise DownloadError(
                        f"archive {archive} contains a link {member.name!r} -> {member.linkname!r} pointing outside "
                        "the dataset folder; refusing to unpack."
                    )
            elif not (member.isfile() or member.isdir()):
                raise DownloadError(f"archive {archive} contains a special file {member.name!r}; refusing to unpack.")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, members=members, filter="data")
        else:  # pragma: no cover - Python < 3.10.12 / 3.11.4
            tar.extractall(into, members=members)


def _extract_zip(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            if name.startswith(("/", "\\")) or ":" in name.split("/")[0] or not _is_within(into, into / name):
                raise DownloadError(f"archive {archive} contains the unsafe path {name!r}; refusing to unpack.")
        zf.extractall(into)


def unpack_archive(archive: str | Path, target: str | Path, progress_log: Callable[[str], None] = print) -> Path:
    """Extract ``archive`` into the new folder ``target`` atomically and return ``target``.

    Extraction goes to a temporary folder next to ``target`` which is renamed to ``target`` only when every
    member was extracted; on any error the temporary folder is removed. ``target`` must not exist yet.
    """
    archive, target = Path(archive), Path(target)
    if target.exists():
        raise DownloadError(f"cannot unpack {archive} into {target}: it already exists. Remove it and rerun.")
    name = archive.name.lower()
    if not name.endswith(ARCHIVE_SUFFIXES):
        raise DownloadError(f"{archive} is not a supported archive ({', '.join(ARCHIVE_SUFFIXES)}).")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.unpack-", dir=target.parent))
    try:
        progress_log(f"unpacking {archive.name} ...")
        if name.endswith(".zip"):
            _extract_zip(archive, tmp)
        else:
            _extract_tar(archive, tmp)
        os.replace(tmp, target)
    except DownloadError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DownloadError(
            f"cannot unpack {archive}: it is corrupt or truncated ({exc}). Delete it and rerun the download; "
            "nothing was unpacked."
        ) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def weights_dir_default() -> Path:
    """Where ``stlm weights download`` puts checkpoints: ``$STLM_WEIGHTS`` or ``~/.cache/stlm_core/weights``."""
    if os.environ.get("STLM_WEIGHTS"):
        return Path(os.environ["STLM_WEIGHTS"]).expanduser()
    return Path.home() / ".cache" / "stlm_core" / "weights"


def download_weights(name: str, directory: str | Path | None = None, url: str | None = None, *,
                     progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Download the official checkpoint ``name`` of :data:`stlm_core.weights.REGISTRY` and verify it.

    ``url`` overrides the registry URL: a full file URL, or a base URL (mirror folder) to which the checkpoint's
    file name is appended. Returns the checkpoint path.
    """
    from stlm_core.weights import entry

    item = entry(name)
    folder = Path(directory).expanduser() if directory else weights_dir_default()
    source = item.url
    if url:
        source = url if url.rstrip("/").endswith(item.filename) else url.rstrip("/") + "/" + item.filename
    dest = folder / item.filename
    log(f"{name}: {source} -> {dest} (licence: {item.licence})")
    download_file(source, dest, item.sha256, progress=progress, log=log,
                  fix_hint=f"Official source: {item.url}.")
    return dest
