"""Downloads against a local HTTP server on 127.0.0.1 (never the internet).

The server honours ``Range: bytes=N-`` (206 + Content-Range) and can cut a response short once, to exercise the
real resume path. Archives are built by the tests from tiny dataset trees.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stlm_core.cli import main as stlm_main
from stlm_core.data import list_categories, open_dataset
from stlm_core.data.sources import MARKER, MIRROR_ENV, SOURCES, fetch_dataset, resolve_url
from stlm_core.download import download_file, download_weights, part_path, unpack_archive
from stlm_core.errors import DownloadError
from test_data_dagm import write_dagm_native
from test_data_visa import write_visa_native

from conftest import write_mvtec_tree


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server API)
        server = self.server
        name = self.path.split("?")[0].lstrip("/")
        requested_range = self.headers.get("Range")
        server.requests.append((name, requested_range))
        data = server.files.get(name)
        if data is None:
            self.send_error(404, "not found")
            return
        start = 0
        if requested_range and server.ranges:
            start = int(re.fullmatch(r"bytes=(\d+)-", requested_range).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        cut = server.cut.pop(name, None)
        self.wfile.write(body if cut is None else body[:cut])  # a cut response closes with bytes missing

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.cut, httpd.requests, httpd.ranges = {}, {}, [], True
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tar(folder: Path, mode: str = "w:xz", prefix: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=prefix + str(path.relative_to(folder)), recursive=False)
    return buffer.getvalue()


def _zip(folder: Path, prefix: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + str(path.relative_to(folder)))
    return buffer.getvalue()


def _with_archives(monkeypatch, name: str, **changes) -> None:
    """Point the registry entry ``name`` at test archives (same file names, test checksums)."""
    src = SOURCES[name]
    archives = changes.pop("archives", None) or tuple(
        dataclasses.replace(a, **{k: v for k, v in changes.items()}) for a in src.archives
    )
    monkeypatch.setitem(SOURCES, name, dataclasses.replace(src, archives=archives))


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part") or ".unpack-" in p.name or ".converting" in p.name]


# --- download_file ------------------------------------------------------------------------------------------------

def test_full_download_is_verified(server, tmp_path):
    data = bytes(range(256)) * 4000
    server.files["blob.bin"] = data
    dest = tmp_path / "dl" / "blob.bin"
    assert download_file(f"{server.base}/blob.bin", dest, _sha(data), progress=False, log=lambda m: None) == _sha(data)
    assert dest.read_bytes() == data and not part_path(dest).exists()
    assert server.requests == [("blob.bin", None)]
    # a second call finds the verified file and does not download again
    download_file(f"{server.base}/blob.bin", dest, _sha(data), progress=False, log=lambda m: None)
    assert len(server.requests) == 1


def test_interrupted_download_resumes_with_range(server, tmp_path):
    data = bytes(range(251)) * 5000  # ~1.2 MB: more than one read chunk
    server.files["big.bin"] = data
    server.cut["big.bin"] = 300_000
    dest = tmp_path / "big.bin"
    with pytest.raises(DownloadError, match="rerun the same command to resume"):
        download_file(f"{server.base}/big.bin", dest, _sha(data), progress=False, log=lambda m: None)
    assert not dest.exists() and part_path(dest).stat().st_size == 300_000
    messages = []
    download_file(f"{server.base}/big.bin", dest, _sha(data), progress=False, log=messages.append)
    assert server.requests[-1] == ("big.bin", "bytes=300000-")
    assert dest.read_bytes() == data and not part_path(dest).exists()
    assert any("resuming at byte 300000" in m for m in messages)


def test_resume_when_server_ignores_range(server, tmp_path):
    data = b"x" * 50_000 + b"y" * 50_000
    server.files["f.bin"], server.ranges = data, False
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(b"garbage" * 10)
    download_file(f"{server.base}/f.bin", dest, _sha(data), progress=False, log=lambda m: None)
    assert dest.read_bytes() == data


def test_checksum_mismatch_refuses_and_cleans_up(server, tmp_path):
    server.files["blob.bin"] = b"the server's bytes"
    dest = tmp_path / "blob.bin"
    wrong = "0" * 64
    with pytest.raises(DownloadError) as info:
        download_file(f"{server.base}/blob.bin", dest, wrong, progress=False, log=lambda m: None)
    message = str(info.value)
    assert f"{server.base}/blob.bin" in message and wrong in message and _sha(b"the server's bytes") in message
    assert "Rerun" in message
    assert list(tmp_path.iterdir()) == []  # neither the file nor its .part


def test_unknown_checksum_is_reported_not_invented(server, tmp_path):
    server.files["w.pth"] = b"weights"
    messages = []
    digest = download_file(f"{server.base}/w.pth", tmp_path / "w.pth", None, progress=False, log=messages.append)
    assert digest == _sha(b"weights")
    assert any("NOT verified" in m and digest in m for m in messages)


def test_http_error_is_clear(server, tmp_path):
    with pytest.raises(DownloadError, match=r"download of .*/missing\.tar failed: HTTP 404.*--url"):
        download_file(f"{server.base}/missing.tar", tmp_path / "missing.tar", None, progress=False, log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


# --- unpack_archive -----------------------------------------------------------------------------------------------

def test_unpack_refuses_path_traversal(tmp_path):
    evil_tar = tmp_path / "evil.tar"
    with tarfile.open(evil_tar, "w") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(DownloadError, match=r"unsafe path '\.\./escaped\.txt'"):
        unpack_archive(evil_tar, tmp_path / "out" / "target", progress_log=lambda m: None)
    evil_zip = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil_zip, "w") as zf:
        zf.writestr("ok/../../escaped.txt", b"bad")
    with pytest.raises(DownloadError, match="unsafe path"):
        unpack_archive(evil_zip, tmp_path / "out" / "target", progress_log=lambda m: None)
    link_tar = tmp_path / "link.tar"
    with tarfile.open(link_tar, "w") as tar:
        info = tarfile.TarInfo("data/link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(DownloadError, match="pointing outside"):
        unpack_archive(link_tar, tmp_path / "out" / "target", progress_log=lambda m: None)
    assert not (tmp_path / "escaped.txt").exists() and list((tmp_path / "out").iterdir()) == []


def test_unpack_truncated_archive_leaves_nothing(tmp_path):
    tree = write_mvtec_tree(tmp_path / "tree")
    archive = tmp_path / "broken.tar.xz"
    archive.write_bytes(_tar(tree)[:-400])
    with pytest.raises(DownloadError, match=r"cannot unpack .*broken\.tar\.xz: it is corrupt or truncated"):
        unpack_archive(archive, tmp_path / "out" / "target", progress_log=lambda m: None)
    assert list((tmp_path / "out").iterdir()) == []


# --- fetch_dataset: the real download + verify + unpack (+ convert) path ------------------------------------------

def test_fetch_mvtec_end_to_end_and_idempotent(server, tmp_path, monkeypatch):
    archive = _tar(write_mvtec_tree(tmp_path / "src", category="bottle"))
    filename = SOURCES["mvtec"].archives[0].filename
    server.files[filename] = archive
    _with_archives(monkeypatch, "mvtec", sha256=_sha(archive))
    root = tmp_path / "data" / "mvtec"
    fetch_dataset("mvtec", root, url=server.base, progress=False, log=lambda m: None)
    assert list_categories("mvtec", root) == ["bottle"]
    assert len(open_dataset("mvtec", root, "bottle", "test")) == 4
    assert (root / MARKER).is_file() and not (root / "_downloads").exists() and _leftovers(root) == []
    fetch_dataset("mvtec", root, url=server.base, progress=False, log=lambda m: None)
    assert len(server.requests) == 1  # already installed: nothing fetched again


def test_fetch_checksum_mismatch_leaves_no_dataset(server, tmp_path, capsys):
    # the registry keeps the official MVTec AD checksum; the local server serves a different archive
    server.files[SOURCES["mvtec"].archives[0].filename] = _tar(write_mvtec_tree(tmp_path / "src"))
    root = tmp_path / "data" / "mvtec"
    code = stlm_main(["data", "download", "mvtec", "--root", str(root), "--url", server.base, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: checksum mismatch for http://127.0.0.1")
    assert SOURCES["mvtec"].archives[0].sha256 in err and "Traceback" not in err
    assert list(root.iterdir()) == []  # no archive, no .part, nothing unpacked
    assert not any(p.name in ("widget", "train") for p in root.rglob("*"))


def test_fetch_visa_converts_via_mirror_env(server, tmp_path, monkeypatch):
    archive = _tar(write_visa_native(tmp_path / "native"), mode="w")
    server.files[SOURCES["visa"].archives[0].filename] = archive
    _with_archives(monkeypatch, "visa", sha256=_sha(archive))
    monkeypatch.setenv(MIRROR_ENV, server.base + "/")
    root = tmp_path / "data" / "visa"
    fetch_dataset("visa", root, progress=False, log=lambda m: None)
    assert list_categories("mvtec", root) == ["candle", "pcb1"]
    test = open_dataset("visa", root, "candle", "test")
    assert sorted(test.labels.tolist()) == [0, 0, 1, 1]
    assert (root / "candle" / "ground_truth" / "anomaly" / "000_mask.png").is_file()
    assert not (root / "split_csv").exists() and _leftovers(root) == []


def test_fetch_dagm_zips_unverified_then_converted(server, tmp_path, monkeypatch):
    native = write_dagm_native(tmp_path / "native", classes=("Class1", "Class2"))
    archives = []
    for cls in ("Class1", "Class2"):
        server.files[f"{cls}.zip"] = _zip(native / cls, prefix=f"{cls}/")
        archives.append(dataclasses.replace(SOURCES["dagm"].archives[0], filename=f"{cls}.zip", sha256=None))
    _with_archives(monkeypatch, "dagm", archives=tuple(archives))
    messages = []
    root = tmp_path / "data" / "dagm"
    fetch_dataset("dagm", root, url=server.base, keep_archives=True, progress=False, log=messages.append)
    assert list_categories("mvtec", root) == ["Class1", "Class2"]
    assert len(open_dataset("mvtec", root, "Class2", "train")) == 3
    assert list_categories("dagm", root) == ["Class1", "Class2"]  # the converted layout is detected
    assert sorted(open_dataset("dagm", root, "Class1", "test").labels.tolist()) == [0, 0, 1, 1]
    assert sum("NOT verified" in m for m in messages) == 2
    assert sorted(p.name for p in (root / "_downloads").iterdir()) == ["Class1.zip", "Class2.zip"]


def test_fetch_dtd_layout(server, tmp_path, monkeypatch):
    tree = tmp_path / "dtdsrc" / "dtd"
    (tree / "images" / "banded").mkdir(parents=True)
    (tree / "images" / "banded" / "banded_0001.jpg").write_bytes(b"jpeg bytes")
    (tree / "labels").mkdir()
    (tree / "labels" / "train1.txt").write_text("banded/banded_0001.jpg\n")
    archive = _tar(tree.parent, mode="w:gz")
    server.files["dtd-r1.0.1.tar.gz"] = archive
    _with_archives(monkeypatch, "dtd", sha256=_sha(archive))
    root = tmp_path / "data" / "dtd"
    assert stlm_main(["data", "download", "dtd", "--root", str(root), "--url", server.base, "--quiet"]) == 0
    assert (root / "images" / "banded" / "banded_0001.jpg").read_bytes() == b"jpeg bytes"


def test_resolve_url_mirror_rules(monkeypatch):
    archive = SOURCES["loco"].archives[0]
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    assert resolve_url(archive) == archive.url
    assert resolve_url(archive, "http://m/x/") == f"http://m/x/{archive.filename}"
    assert resolve_url(archive, f"http://m/{archive.filename}") == f"http://m/{archive.filename}"
    monkeypatch.setenv(MIRROR_ENV, "http://env")
    assert resolve_url(archive) == f"http://env/{archive.filename}"


# --- weights ------------------------------------------------------------------------------------------------------

def test_weights_download_cli(server, tmp_path, capsys, monkeypatch):
    from stlm_core import weights

    # an entry without a known checksum: the computed hash is printed as unverified, never invented
    unknown = dataclasses.replace(weights.REGISTRY["sam_vit_b"], name="test_ckpt", filename="test_ckpt.pth",
                                  sha256=None)
    monkeypatch.setitem(weights.REGISTRY, "test_ckpt", unknown)
    server.files["test_ckpt.pth"] = b"not really a checkpoint"
    code = stlm_main(["weights", "download", "test_ckpt", "--dir", str(tmp_path / "w"), "--url", server.base,
                      "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and (tmp_path / "w" / "test_ckpt.pth").read_bytes() == b"not really a checkpoint"
    assert "NOT verified" in out and _sha(b"not really a checkpoint") in out
    # a checkpoint with a known official sha256 refuses a wrong file, via the CLI without a traceback
    known = next(name for name, e in weights.REGISTRY.items() if e.sha256)
    filename = weights.REGISTRY[known].filename
    server.files[filename] = b"tampered"
    code = stlm_main(["weights", "download", known, "--dir", str(tmp_path / "w"), "--url", server.base, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "checksum mismatch" in err and weights.REGISTRY[known].sha256 in err
    assert not (tmp_path / "w" / filename).exists() and not (tmp_path / "w" / (filename + ".part")).exists()
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download_weights(known, tmp_path / "w", url=server.base, progress=False, log=lambda m: None)


def test_complete_part_file_is_verified_without_refetching(server, tmp_path):
    data = b"z" * 10_000
    server.files["z.bin"] = data
    dest = tmp_path / "z.bin"
    part_path(dest).write_bytes(data)  # e.g. killed after the last byte, before the rename
    download_file(f"{server.base}/z.bin", dest, _sha(data), progress=False, log=lambda m: None)
    assert server.requests == [("z.bin", "bytes=10000-")] and dest.read_bytes() == data


def test_data_scripts_have_help():
    import subprocess
    import sys

    scripts = sorted((Path(__file__).resolve().parents[1] / "data_scripts").glob("*.py"))
    assert {s.name for s in scripts} >= {
        "download_mvtec.py", "download_visa.py", "download_dagm.py", "download_loco.py", "download_dtd.py",
        "download_weights.py", "convert_visa.py", "convert_dagm.py",
    }
    for script in scripts:
        result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "usage:" in result.stdout, (script, result.stderr)


def test_fetch_real_mvtec_sample_with_interruption(server, tmp_path, monkeypatch, sample_root):
    """The real MVTec AD sample, tarred, served, cut mid-way, resumed, verified and unpacked: counts unchanged."""
    from stlm_core.data.check import check_dataset

    archive = _tar(sample_root, mode="w")
    filename = SOURCES["mvtec"].archives[0].filename
    server.files[filename], server.cut[filename] = archive, len(archive) // 2
    _with_archives(monkeypatch, "mvtec", sha256=_sha(archive))
    root = tmp_path / "mvtec"
    with pytest.raises(DownloadError, match="resume"):
        fetch_dataset("mvtec", root, url=server.base, progress=False, log=lambda m: None)
    assert [p.name for p in root.iterdir()] == ["_downloads"]  # only the resumable .part, nothing unpacked
    fetch_dataset("mvtec", root, url=server.base, progress=False, log=lambda m: None)
    assert server.requests[-1] == (filename, f"bytes={len(archive) // 2}-")
    expected = check_dataset("mvtec", sample_root, progress=False)["categories"]
    assert check_dataset("mvtec", root, progress=False)["categories"] == expected
