"""Where the public datasets come from, and ``stlm data download``.

Each :class:`DatasetSource` lists its archives (URL, sha256 when the project knows the official value, size),
its licence and what happens after unpacking:

========  ==============================  ===========================================================
name      unpacked into ``--root``        post-processing
========  ==============================  ===========================================================
mvtec     ``<category>/train|test|...``   none (already MVTec AD layout)
visa      ``<category>/train|test|...``   converted from the native layout with the official 1cls split
dagm      ``Class<k>/train|test|...``     converted to MVTec layout (defect-free Train images only)
loco      ``<category>/train|...``        none (MVTec LOCO layout)
dtd       ``images/<texture>/*.jpg``      none (anomaly-source textures for pseudo-anomalies)
========  ==============================  ===========================================================

A ``sha256`` of ``None`` means no checksum is known for certain: the download then prints the hash it computed
and says it could not be verified; it is never guessed. Known checksums come from anomalib's dataset modules
(``hashsum`` fields), which verify the same archives, as recorded in ``sha256_source``.

Base URLs can be overridden, for mirrors and for the tests' local HTTP server: ``--url URL`` or the environment
variable ``$STLM_DATA_MIRROR``. If the override ends with the archive's file name it is used as is, otherwise the
archive's file name is appended to it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from stlm_core.download import download_file, unpack_archive
from stlm_core.errors import DatasetError, DownloadError

MIRROR_ENV = "STLM_DATA_MIRROR"
MARKER = ".stlm_dataset.json"
DOWNLOADS_DIR = "_downloads"


@dataclass(frozen=True)
class Archive:
    """One archive file. ``size_bytes`` is informational (shown before downloading; the sha256 is the check)."""

    filename: str
    url: str
    sha256: str | None = None
    size_bytes: int | None = None
    sha256_source: str = ""


@dataclass(frozen=True)
class DatasetSource:
    name: str
    title: str
    homepage: str
    licence: str
    archives: tuple[Archive, ...]
    postprocess: str  # "none" | "visa" | "dagm"
    note: str = ""
    citation: str = ""
    reader: str | None = field(default=None)  # --dataset name to read the result with (None: not an AD dataset)


_ANOMALIB = "anomalib (open-edge-platform/anomalib) dataset module hashsum"

SOURCES: dict[str, DatasetSource] = {
    "mvtec": DatasetSource(
        name="mvtec",
        title="MVTec AD",
        homepage="https://www.mvtec.com/company/research/datasets/mvtec-ad",
        licence="CC BY-NC-SA 4.0 (non-commercial use only)",
        archives=(Archive(
            "mvtec_anomaly_detection.tar.xz",
            "https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f283/download/420938113-1629960298/"
            "mvtec_anomaly_detection.tar.xz",
            "cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d",
            5_264_982_680,
            _ANOMALIB,
        ),),
        postprocess="none",
        citation="Bergmann et al., MVTec AD, CVPR 2019 / IJCV 2021",
        reader="mvtec",
    ),
    "visa": DatasetSource(
        name="visa",
        title="VisA (Visual Anomaly)",
        homepage="https://github.com/amazon-science/spot-diff",
        licence="CC BY 4.0",
        archives=(Archive(
            "VisA_20220922.tar",
            "https://amazon-visual-anomaly.s3.us-west-2.amazonaws.com/VisA_20220922.tar",
            "2eb8690c803ab37de0324772964100169ec8ba1fa3f7e94291c9ca673f40f362",
            1_929_840_640,
            _ANOMALIB,
        ),),
        postprocess="visa",
        note="converted to the MVTec AD layout with the official 1cls split (split_csv/1cls.csv)",
        citation="Zou et al., SPot-the-Difference, ECCV 2022",
        reader="visa",
    ),
    "dagm": DatasetSource(
        name="dagm",
        title="DAGM 2007 (Weakly Supervised Learning for Industrial Optical Inspection)",
        homepage="https://doi.org/10.5281/zenodo.8086136",
        licence="DAGM 2007 competition terms: free for academic research; see the Zenodo record and "
                "https://hci.iwr.uni-heidelberg.de/content/weakly-supervised-learning-industrial-optical-inspection",
        archives=tuple(
            Archive(f"Class{k}.zip", f"https://zenodo.org/records/8086136/files/Class{k}.zip?download=1")
            for k in range(1, 11)
        ),
        postprocess="dagm",
        note="converted to the MVTec AD layout (train = defect-free Train images, test = Test images, "
             "weak elliptical masks); no official sha256 is known, so the computed hashes are printed",
        citation="Wieler, Hahn, Hamprecht, DAGM 2007 competition data, doi:10.5281/zenodo.8086136",
        reader="mvtec",
    ),
    "loco": DatasetSource(
        name="loco",
        title="MVTec LOCO AD",
        homepage="https://www.mvtec.com/company/research/datasets/mvtec-loco",
        licence="CC BY-NC-SA 4.0 (non-commercial use only)",
        archives=(Archive(
            "mvtec_loco_anomaly_detection.tar.xz",
            "https://www.mydrive.ch/shares/48237/1b9106ccdfbb09a0c414bd49fe44a14a/download/430647091-1646842701/"
            "mvtec_loco_anomaly_detection.tar.xz",
            "9e7c84dba550fd2e59d8e9e231c929c45ba737b6b6a6d3814100f54d63aae687",
            6_126_996_224,
            _ANOMALIB,
        ),),
        postprocess="none",
        citation="Bergmann et al., Beyond Dents and Scratches, IJCV 2022",
        reader="loco",
    ),
    "dtd": DatasetSource(
        name="dtd",
        title="DTD (Describable Textures Dataset)",
        homepage="https://www.robots.ox.ac.uk/~vgg/data/dtd/",
        licence="research use only (see the DTD page)",
        archives=(Archive(
            "dtd-r1.0.1.tar.gz",
            "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
            "e42855a52a4950a3b59612834602aa253914755c95b0cff9ead6d07395f8e205",
            None,
            "anomalib (DRAEM model) DTD_DOWNLOAD_INFO hashsum",
        ),),
        postprocess="none",
        note="anomaly-source textures (DRAEM-style pseudo-anomalies); unpacked as images/<texture>/*.jpg",
        citation="Cimpoi et al., Describing Textures in the Wild, CVPR 2014",
        reader=None,
    ),
}


def source(name: str) -> DatasetSource:
    key = name.lower()
    if key not in SOURCES:
        raise DatasetError(f"unknown downloadable dataset {name!r}; use one of: {', '.join(SOURCES)}.")
    return SOURCES[key]


def resolve_url(archive: Archive, override: str | None = None) -> str:
    """The URL to fetch ``archive`` from: ``override`` (or ``$STLM_DATA_MIRROR``) if set, else the official one."""
    base = override or os.environ.get(MIRROR_ENV)
    if not base:
        return archive.url
    base = base.strip()
    if base.split("?")[0].rstrip("/").endswith(archive.filename):
        return base
    return base.rstrip("/") + "/" + archive.filename


def _log_default(message: str) -> None:
    print(message, flush=True)


def _find_dir(top: Path, predicate: Callable[[Path], bool], depth: int = 2) -> Path | None:
    """``top`` or the first sub-folder (breadth first, up to ``depth`` levels) for which ``predicate`` holds."""
    level = [top]
    for _ in range(depth + 1):
        for folder in level:
            if predicate(folder):
                return folder
        level = sorted(c for f in level for c in f.iterdir() if c.is_dir())
    return None


def _move_contents(src: Path, dst: Path, log: Callable[[str], None]) -> None:
    """Move every entry of ``src`` into ``dst``; entries already in ``dst`` are kept (and reported)."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if target.exists():
            log(f"  kept existing {target}")
            continue
        os.replace(entry, target)


def _has_categories(folder: Path, reader: str) -> bool:
    from stlm_core.data import get_reader

    try:
        return bool(get_reader(reader).categories(folder))
    except DatasetError:
        return False


def _install(src: DatasetSource, unpacked: list[Path], root: Path, log: Callable[[str], None]) -> None:
    """Move or convert the unpacked archives into ``root``."""
    if src.postprocess == "visa":
        from stlm_core.data.convert import convert_visa
        from stlm_core.data.visa import is_native

        native = _find_dir(unpacked[0], is_native)
        if native is None:
            raise DownloadError("the VisA archive has no split_csv/1cls.csv; it is not the expected VisA release.")
        convert_visa(native, root, log=log)
        return
    if src.postprocess == "dagm":
        from stlm_core.data.convert import convert_dagm

        staging = unpacked[0].parent / "dagm_native"
        staging.mkdir(exist_ok=True)
        for folder, archive in zip(unpacked, src.archives):
            class_name = Path(archive.filename).stem  # Class<k>
            found = _find_dir(folder, lambda p: (p / "Train").is_dir() and (p / "Test").is_dir())
            if found is None:
                raise DownloadError(f"{archive.filename} has no Train/ and Test/ folders; it is not a DAGM 2007 class.")
            os.replace(found, staging / class_name)
        convert_dagm(staging, root, log=log)
        return
    for folder in unpacked:
        if src.reader:
            content = _find_dir(folder, lambda p: _has_categories(p, src.reader))
            if content is None:
                raise DownloadError(
                    f"the {src.title} archive does not contain the expected layout; it is not the expected release."
                )
        else:  # DTD: the folder that holds images/
            content = _find_dir(folder, lambda p: (p / "images").is_dir()) or folder
        _move_contents(content, root, log)


def fetch_dataset(name: str, root: str | Path, url: str | None = None, *, keep_archives: bool = False,
                  force: bool = False, progress: bool = True, log: Callable[[str], None] = _log_default) -> Path:
    """Download, verify, unpack (and for VisA / DAGM convert) dataset ``name`` into ``root``; return ``root``.

    Archives are kept in ``<root>/_downloads`` while in progress (an interrupted download resumes on the next
    call) and deleted after a successful install unless ``keep_archives``. ``<root>/.stlm_dataset.json`` records
    what was installed; a second call returns at once unless ``force``.
    """
    src = source(name)
    root = Path(root).expanduser()
    marker = root / MARKER
    if marker.is_file() and not force:
        info = json.loads(marker.read_text())
        if info.get("dataset") == src.name:
            log(f"{src.title} is already installed in {root} (delete {marker} or pass --force to reinstall).")
            return root
        raise DownloadError(
            f"{root} already holds the dataset {info.get('dataset')!r} ({marker}); download {src.title} into its "
            "own folder, e.g. --root data/" + src.name + "."
        )
    root.mkdir(parents=True, exist_ok=True)
    log(f"{src.title}: licence {src.licence}. Homepage: {src.homepage}")
    known = sum(a.size_bytes or 0 for a in src.archives)
    free = shutil.disk_usage(root).free
    if known and free < 2.5 * known:  # archive + unpacked copy (+ converted copy for VisA)
        log(f"warning: {free / 1e9:.1f} GB free in {root}; {src.title} needs about {2.5 * known / 1e9:.0f} GB while "
            "installing (archive + unpacked files). Free space or choose another --root if it fails.")
    downloads = root / DOWNLOADS_DIR
    hashes: dict[str, dict] = {}
    try:
        for archive in src.archives:
            archive_url = resolve_url(archive, url)
            size = f" ({archive.size_bytes / 1e9:.2f} GB)" if archive.size_bytes else ""
            log(f"downloading {archive.filename}{size} from {archive_url}")
            actual = download_file(archive_url, downloads / archive.filename, archive.sha256, progress=progress,
                                   log=log, fix_hint=f"Official page: {src.homepage}.")
            hashes[archive.filename] = {"sha256": actual, "verified": archive.sha256 is not None, "url": archive_url}
    except BaseException:
        if downloads.is_dir() and not any(downloads.iterdir()):
            downloads.rmdir()  # keep only what can be resumed (.part files) or reused (verified archives)
        raise

    staging = Path(tempfile.mkdtemp(prefix=".stlm-unpack-", dir=root))
    try:
        unpacked = [unpack_archive(downloads / a.filename, staging / f"a{i}", progress_log=log)
                    for i, a in enumerate(src.archives)]
        _install(src, unpacked, root, log)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    marker.write_text(json.dumps({"dataset": src.name, "title": src.title, "licence": src.licence,
                                  "archives": hashes, "read_with": src.reader}, indent=2))
    if not keep_archives:
        for archive in src.archives:
            (downloads / archive.filename).unlink(missing_ok=True)
        if downloads.is_dir() and not any(downloads.iterdir()):
            downloads.rmdir()
    how = f"; read it with --dataset {src.reader} --root {root}" if src.reader else ""
    log(f"{src.title} installed in {root}{how}")
    return root
