"""fetch/require against a loopback HTTP server: download, resume, checksums, safe extraction."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import threading
import warnings
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from landmark_study.data.fetch import (CHECKSUMS, MARKER, ChecksumError, ChecksumWarning, DatasetNotFoundError,
                                       FetchError, UnsafeArchiveError, cli_fetch, download, extract_archive, fetch,
                                       require)

# ----------------------------------------------------------------------------- loopback server


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server API
        srv = self.server
        data = srv.files.get(self.path)
        rng = self.headers.get("Range")
        srv.log.append((self.path, rng))
        if data is None:
            self.send_error(404)
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and srv.honor_range:
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.log, srv.honor_range = {}, [], True
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


# ----------------------------------------------------------------------------- fixtures


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _manifest(tmp: Path, files: list[dict], layout=("toy/a.txt",), name="toy") -> Path:
    d = tmp / "manifests"
    d.mkdir(exist_ok=True)
    data = {
        "name": name, "title": "Toy", "homepage": "https://example.org/toy",
        "citation": {"key": "toy", "ref": "Toy data."}, "licence": "none", "access": "public",
        "files": files, "layout": list(layout), "format": "cat",
        "keypoints": {"names": ["a", "b"], "flip_pairs": [["a", "b"]], "skeleton": []},
        "normaliser": {"kind": "bbox"}, "default_protocol": "p",
        "protocols": {"p": {"description": "all", "source": "test", "splits": {"all": {"description": "all"}}}},
        "used_by": [{"paper": "none", "role": "test"}],
    }
    (d / f"{name}.yaml").write_text(yaml.safe_dump(data))
    return d


def _entry(url, data: bytes | None, name="toy.tar.gz", sha="known"):
    digest = hashlib.sha256(data).hexdigest() if (data is not None and sha == "known") else sha
    return {"name": name, "url": url, "size": "unknown", "sha256": digest}


PAYLOAD = _tar_bytes({"toy/a.txt": b"hello", "toy/sub/b.txt": b"x" * 5000})


# ----------------------------------------------------------------------------- download, resume, checksums


def test_full_download_extract_and_require(tmp_path, server):
    server.files["/toy.tar.gz"] = PAYLOAD
    mdir = _manifest(tmp_path, [_entry(server.url + "/toy.tar.gz", PAYLOAD)])
    root = tmp_path / "data"
    cmd = r"\n  python -m landmark_study data fetch toy$"
    with pytest.raises(DatasetNotFoundError, match=r"manifests/toy\.yaml.*" + cmd):
        require("toy", data_root=root, manifest_dir=mdir)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a known checksum: no warning
        out = fetch("toy", data_root=root, manifest_dir=mdir, progress=False)
    assert out == root / "toy" and (out / "toy" / "a.txt").read_bytes() == b"hello"
    assert (out / "toy" / "sub" / "b.txt").stat().st_size == 5000
    assert json.loads((out / MARKER).read_text())["name"] == "toy"
    assert require("toy", data_root=root, manifest_dir=mdir) == out
    assert not list(root.glob(".toy.*"))  # no temporary directory left
    n = len(server.log)
    assert fetch("toy", data_root=root, manifest_dir=mdir) == out and len(server.log) == n  # already complete


def test_resume_from_partial_part_file(tmp_path, server):
    server.files["/toy.tar.gz"] = PAYLOAD
    mdir = _manifest(tmp_path, [_entry(server.url + "/toy.tar.gz", PAYLOAD)])
    root = tmp_path / "data"
    part = root / "downloads" / "toy" / "toy.tar.gz.part"
    part.parent.mkdir(parents=True)
    half = len(PAYLOAD) // 2
    part.write_bytes(PAYLOAD[:half])
    out = fetch("toy", data_root=root, manifest_dir=mdir, progress=False)
    assert server.log == [("/toy.tar.gz", f"bytes={half}-")]
    assert (root / "downloads" / "toy" / "toy.tar.gz").read_bytes() == PAYLOAD and not part.exists()
    assert (out / "toy" / "a.txt").read_bytes() == b"hello"


def test_server_ignoring_range_restarts(tmp_path, server):
    server.files["/f.bin"] = b"abcdefgh" * 100
    server.honor_range = False
    dest = tmp_path / "f.bin"
    dest.with_name("f.bin.part").write_bytes(b"garbage")
    download(server.url + "/f.bin", dest, progress=False)
    assert dest.read_bytes() == b"abcdefgh" * 100
    with pytest.raises(FetchError, match=r"/missing\.bin: HTTP 404"):
        download(server.url + "/missing.bin", tmp_path / "m.bin", progress=False)


def test_checksum_mismatch_moves_file_aside_and_raises(tmp_path, server):
    server.files["/toy.tar.gz"] = PAYLOAD
    wrong = hashlib.sha256(b"something else").hexdigest()
    mdir = _manifest(tmp_path, [_entry(server.url + "/toy.tar.gz", PAYLOAD, sha=wrong)])
    root = tmp_path / "data"
    seen = hashlib.sha256(PAYLOAD).hexdigest()
    with pytest.raises(ChecksumError) as e:
        fetch("toy", data_root=root, manifest_dir=mdir, progress=False)
    msg = str(e.value)
    assert "toy.tar.gz" in msg and f"expected {wrong}" in msg and f"saw {seen}" in msg
    bad = root / "downloads" / "toy" / f"toy.tar.gz.bad-{seen}"
    assert bad.read_bytes() == PAYLOAD and not (root / "downloads" / "toy" / "toy.tar.gz").exists()
    assert not (root / "toy").exists()


def test_unknown_checksum_is_recorded_with_a_warning_then_enforced(tmp_path, server):
    server.files["/toy.tar.gz"] = PAYLOAD
    mdir = _manifest(tmp_path, [_entry(server.url + "/toy.tar.gz", PAYLOAD, sha="unknown")])
    root = tmp_path / "data"
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    with pytest.warns(ChecksumWarning, match=rf"no sha256 known for toy\.tar\.gz.*{digest}"):
        fetch("toy", data_root=root, manifest_dir=mdir, progress=False)
    record = json.loads((root / "downloads" / "toy" / CHECKSUMS).read_text())
    assert record == {"toy.tar.gz": digest}
    # the server now serves different bytes: the recorded digest catches it
    server.files["/toy.tar.gz"] = _tar_bytes({"toy/a.txt": b"changed"})
    (root / "downloads" / "toy" / "toy.tar.gz").unlink()
    with pytest.raises(ChecksumError, match=rf"expected {digest} \(digest recorded in .*checksums\.json\)"):
        fetch("toy", data_root=root, manifest_dir=mdir, progress=False, force=True)
    assert (root / "toy" / "toy" / "a.txt").read_bytes() == b"hello"  # the good copy is untouched


def test_file_without_url_asks_for_from(tmp_path):
    mdir = _manifest(tmp_path, [_entry(None, None, sha="unknown")])
    with pytest.raises(FetchError, match=r"(?s)toy\.yaml: no public URL for toy\.tar\.gz\..*--from PATH"):
        fetch("toy", data_root=tmp_path / "data", manifest_dir=mdir)
    with pytest.raises(DatasetNotFoundError, match=r"(?s)no public URL for toy\.tar\.gz.*--from PATH"):
        require("toy", data_root=tmp_path / "data", manifest_dir=mdir)


def test_from_local_file_and_extracted_folder(tmp_path):
    archive = tmp_path / "dl" / "toy.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(PAYLOAD)
    mdir = _manifest(tmp_path, [_entry(None, PAYLOAD)])
    out = fetch("toy", source=archive, data_root=tmp_path / "d1", manifest_dir=mdir)
    assert (out / "toy" / "a.txt").read_bytes() == b"hello" and archive.exists()
    folder = tmp_path / "mine"
    (folder / "toy").mkdir(parents=True)
    (folder / "toy" / "a.txt").write_text("local")
    out = fetch("toy", source=folder, data_root=tmp_path / "d2", manifest_dir=mdir)
    assert (out / "toy").is_symlink() and (out / "toy" / "a.txt").read_text() == "local"
    assert not (folder / MARKER).exists()  # nothing written into the user's folder


def test_cli_fetch(tmp_path, server, monkeypatch, capsys):
    server.files["/toy.tar.gz"] = PAYLOAD
    mdir = _manifest(tmp_path, [_entry(server.url + "/elsewhere.tar.gz", PAYLOAD)])
    monkeypatch.setenv("LANDMARK_STUDY_MANIFESTS", str(mdir))
    assert cli_fetch(["nope"]) == 2 and "unknown dataset 'nope'; known: toy" in capsys.readouterr().err
    rc = cli_fetch(["toy", "--from", server.url + "/toy.tar.gz", "--data-root", str(tmp_path / "d")])
    assert rc == 0 and capsys.readouterr().out.strip() == str(tmp_path / "d" / "toy")
    assert server.log[-1][0] == "/toy.tar.gz"


# ----------------------------------------------------------------------------- safe extraction


def _tar_with(tmp_path: Path, make) -> Path:
    p = tmp_path / "evil.tar"
    with tarfile.open(p, "w") as tf:
        ok = tarfile.TarInfo("good.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        make(tf)
    return p


def _file(name):
    def make(tf):
        info = tarfile.TarInfo(name)
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))
    return make


def _link(name, target, kind=tarfile.SYMTYPE):
    def make(tf):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, target
        tf.addfile(info)
    return make


@pytest.mark.parametrize("make, message", [
    (_file("../evil"), r"member '\.\./evil' has a '\.\.' component"),
    (_file("a/../../evil"), r"has a '\.\.' component"),
    (_file("/abs/evil"), r"member '/abs/evil' has an absolute path"),
    (_link("lnk", "../../outside"), r"member 'lnk' links to '\.\./\.\./outside', outside"),
    (_link("sub/lnk", "../../outside"), r"outside the target directory"),
    (_link("lnk", "/etc/passwd"), r"links to the absolute path '/etc/passwd'"),
    (_link("hard", "../outside", tarfile.LNKTYPE), r"member 'hard' links to '\.\./outside', outside"),
    (_link("hard", "/etc/passwd", tarfile.LNKTYPE), r"member 'hard' links to the absolute path"),
])
def test_tar_extraction_rejects_escapes(tmp_path, make, message):
    archive = _tar_with(tmp_path, make)
    dest = tmp_path / "out" / "deep"
    with pytest.raises(UnsafeArchiveError, match=message):
        extract_archive(archive, dest)
    assert not list(dest.iterdir())  # checked before anything was written
    assert not (tmp_path / "evil").exists() and not (tmp_path / "out" / "evil").exists()


def test_tar_symlink_inside_is_fine(tmp_path):
    archive = _tar_with(tmp_path, _link("sub/alias.txt", "../good.txt"))
    extract_archive(archive, tmp_path / "out")
    assert (tmp_path / "out" / "sub" / "alias.txt").read_text() == "ok"


@pytest.mark.parametrize("name, message", [("../evil", "'..' component"), ("/abs", "absolute path")])
def test_zip_extraction_rejects_escapes(tmp_path, name, message):
    p = tmp_path / "evil.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("good.txt", "ok")
        zf.writestr(zipfile.ZipInfo(name), "evil")
    with pytest.raises(UnsafeArchiveError, match=re.escape(message)):
        extract_archive(p, tmp_path / "out")
    assert not list((tmp_path / "out").iterdir()) and not (tmp_path / "evil").exists()


def test_zip_symlink_outside_rejected(tmp_path):
    p = tmp_path / "evil.zip"
    with zipfile.ZipFile(p, "w") as zf:
        info = zipfile.ZipInfo("lnk")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "../../outside")
    with pytest.raises(UnsafeArchiveError, match="outside the target directory"):
        extract_archive(p, tmp_path / "out")


def test_failing_extraction_leaves_nothing_in_target(tmp_path, server):
    evil = _tar_bytes({"toy/a.txt": b"hello", "../escape.txt": b"evil"})
    server.files["/toy.tar.gz"] = evil
    mdir = _manifest(tmp_path, [_entry(server.url + "/toy.tar.gz", evil)])
    root = tmp_path / "data"
    with pytest.raises(UnsafeArchiveError, match=r"toy\.tar\.gz: member '\.\./escape\.txt'"):
        fetch("toy", data_root=root, manifest_dir=mdir, progress=False)
    assert not (root / "toy").exists()
    assert sorted(p.name for p in root.iterdir()) == ["downloads"]  # no temporary directory left behind
    assert not (root / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()


def test_missing_files_reported_before_any_download(tmp_path, server):
    server.files["/toy.tar.gz"] = PAYLOAD
    mdir = _manifest(tmp_path, [_entry(server.url + "/toy.tar.gz", PAYLOAD),
                                {**_entry(None, None, name="extra.json", sha="unknown"), "note": "from the authors"}])
    with pytest.raises(FetchError, match=r"(?s)no public URL for extra\.json\.\n  extra\.json: from the authors"):
        fetch("toy", data_root=tmp_path / "data", manifest_dir=mdir, progress=False)
    assert server.log == []  # nothing was downloaded
    # with the missing file supplied from a folder, the rest comes from its URL
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "extra.json").write_text("{}")
    with pytest.warns(ChecksumWarning, match="extra.json"):
        out = fetch("toy", source=tmp_path / "mine", data_root=tmp_path / "data", manifest_dir=mdir, progress=False,
                    keep_downloads=False)
    assert (out / "extra.json").read_text() == "{}" and (out / "toy" / "a.txt").read_bytes() == b"hello"
    assert not (tmp_path / "data" / "downloads" / "toy" / "toy.tar.gz").exists()  # deleted after extraction


def test_complete_part_file_answered_416(tmp_path, server):
    server.files["/f.bin"] = b"0123456789"
    dest = tmp_path / "f.bin"
    dest.with_name("f.bin.part").write_bytes(b"0123456789")
    download(server.url + "/f.bin", dest, progress=False)
    assert dest.read_bytes() == b"0123456789" and server.log == [("/f.bin", "bytes=10-")]
