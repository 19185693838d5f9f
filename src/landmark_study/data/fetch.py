"""Fetch real datasets: resumable download, SHA-256 check, safe extraction.

``fetch(name)`` downloads every file of ``data_manifests/<name>.yaml`` into
``<data root>/downloads/<name>/`` (HTTP ``Range`` resume from a ``.part`` file,
tqdm progress bar, off under ``CI``), checks each file's SHA-256 against the
manifest -- or, where the manifest says ``unknown``, records the digest seen on
first use in ``downloads/<name>/checksums.json`` and warns, so later fetches are
checked against it -- then extracts archives (zip, tar, tar.gz/bz2/xz) into a
temporary directory next to the target and renames it to ``<data root>/<name>``
with a marker file, so a failure leaves nothing half-extracted. Archive members
with absolute paths, ``..`` components, special files, or links pointing
outside the target are rejected before anything is written.

Datasets behind a registration form have no URL in their manifest: download
them by hand and pass the file or folder with ``--from PATH`` (a folder that
already holds the extracted dataset is linked, not copied).

:func:`require` returns the dataset directory or raises an error that names the
manifest and the exact command to run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from pathlib import Path, PurePosixPath
from typing import Sequence

from landmark_study.data.manifests import FileEntry, Manifest, list_manifests, load_manifest
from landmark_study.paths import data_root as default_data_root

MARKER = ".landmark_study_complete.json"
CHECKSUMS = "checksums.json"
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class FetchError(RuntimeError):
    """A dataset could not be fetched; the message says why and what to do."""


class ChecksumError(FetchError):
    """A file's SHA-256 (or size) differs from the expected one."""


class UnsafeArchiveError(FetchError):
    """An archive member would escape the target directory (or is a special file)."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not fetched yet; the message names the manifest and the command."""


class ChecksumWarning(UserWarning):
    """A file had no known checksum; the digest seen was recorded."""


class LayoutWarning(UserWarning):
    """An extracted dataset lacks paths its manifest's ``layout`` lists."""


def _progress_enabled(progress: bool) -> bool:
    return bool(progress) and not os.environ.get("CI")


def _root(data_root: str | Path | None) -> Path:
    if data_root is None:
        return default_data_root()
    p = Path(data_root).expanduser()
    p.mkdir(parents=True, exist_ok=True)
    return p


def dataset_dir(name: str, data_root: str | Path | None = None) -> Path:
    """Where dataset ``name`` lives once fetched: ``<data root>/<name>``."""
    return _root(data_root) / name


def downloads_dir(name: str, data_root: str | Path | None = None) -> Path:
    """Where the downloaded files of ``name`` are kept: ``<data root>/downloads/<name>``."""
    return _root(data_root) / "downloads" / name


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- download


def download(url: str, dest: str | Path, *, expected_size: int | None = None, progress: bool = True,
             timeout: float = 60.0, chunk: int = 1 << 16) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a partial ``.part`` file.

    A partial file is continued with an HTTP ``Range`` request; a server that
    ignores it (status 200) makes the download restart from zero. An
    incomplete transfer leaves the ``.part`` file for the next call.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "landmark_study-fetch/0.1"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the part may already be complete
            m = re.match(r"bytes \*/(\d+)", e.headers.get("Content-Range", ""))
            if m and int(m.group(1)) == have:
                os.replace(part, dest)
                return dest
            part.unlink()
            return download(url, dest, expected_size=expected_size, progress=progress, timeout=timeout)
        raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise FetchError(f"{url}: {getattr(e, 'reason', e)}") from None
    from tqdm import tqdm

    with resp:
        status = getattr(resp, "status", 200)
        if have and status == 206:
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            if m is None or int(m.group(1)) != have:
                raise FetchError(f"{url}: server answered range {resp.headers.get('Content-Range')!r} "
                                 f"to a request from byte {have}")
            mode = "ab"
        else:
            mode, have = "wb", 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else expected_size
        with open(part, mode) as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                         desc=dest.name, disable=not _progress_enabled(progress)) as bar:
            while True:
                try:
                    buf = resp.read(chunk)
                except OSError as e:
                    raise FetchError(f"{url}: connection lost after {f.tell()} bytes ({e}); run again to "
                                     f"resume from {part}") from None
                if not buf:
                    break
                f.write(buf)
                bar.update(len(buf))
    size = part.stat().st_size
    if total is not None and size != total:
        raise FetchError(f"{url}: incomplete download ({size} of {total} bytes); run again to resume from {part}")
    os.replace(part, dest)
    return dest


# --------------------------------------------------------------------------- checksums


def _read_checksums(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FetchError(f"{path}: corrupt checksum record ({e}); delete it to re-record") from None
    return {k: v for k, v in data.items() if isinstance(v, str)}


def _write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def verify_file(path: Path, entry: FileEntry, record: Path, *, manifest_path: Path | str = "",
                move_aside: bool = True) -> str:
    """Check ``path`` against ``entry.sha256`` (or the digest recorded in ``record``).

    With no known digest, the one seen is recorded in ``record`` and a
    :class:`ChecksumWarning` is issued. On a mismatch the file is renamed to
    ``<name>.bad-<digest>`` (when ``move_aside``) and :class:`ChecksumError`
    names the file, the expected and the seen digest. Returns the digest.
    """
    digest = sha256_file(path)
    recorded = _read_checksums(record)
    expected = entry.sha256 or recorded.get(entry.name)
    size = path.stat().st_size
    problem = None
    if expected is not None and digest != expected:
        src = "manifest" if entry.sha256 else f"digest recorded in {record}"
        problem = f"sha256 mismatch: expected {expected} ({src}), saw {digest}"
    elif entry.size is not None and size != entry.size:
        problem = f"size mismatch: expected {entry.size} bytes, saw {size} (sha256 {digest})"
    if problem:
        if move_aside:
            bad = path.with_name(f"{path.name}.bad-{digest}")
            os.replace(path, bad)
            raise ChecksumError(f"{path}: {problem}; moved aside to {bad}")
        raise ChecksumError(f"{path}: {problem}")
    if recorded.get(entry.name) != digest:
        recorded[entry.name] = digest
        _write_json_atomic(record, recorded)
    if expected is None:
        warnings.warn(f"{manifest_path}: no sha256 known for {entry.name}; recorded the digest seen on first use, "
                      f"{digest}, in {record} (copy it into the manifest to pin it)", ChecksumWarning, stacklevel=3)
    return digest


# --------------------------------------------------------------------------- safe extraction


def _safe_name(name: str, archive: Path) -> PurePosixPath:
    n = name.replace("\\", "/")
    if n.startswith("/") or re.match(r"^[A-Za-z]:", n):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    parts = [p for p in n.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has a '..' component")
    if not parts:
        return PurePosixPath(".")
    return PurePosixPath(*parts)


def _check_link(member: PurePosixPath, target: str, archive: Path, name: str, hard: bool = False) -> None:
    t = target.replace("\\", "/")
    if t.startswith("/") or re.match(r"^[A-Za-z]:", t):
        raise UnsafeArchiveError(f"{archive}: member {name!r} links to the absolute path {target!r}")
    base = "" if hard else str(member.parent)
    resolved = posixpath.normpath(posixpath.join(base, t)) if base not in ("", ".") else posixpath.normpath(t)
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} links to {target!r}, outside the target directory")


def _inside(path: Path, root: Path) -> bool:
    rp, rr = os.path.realpath(path), os.path.realpath(root)
    return rp == rr or rp.startswith(rr + os.sep)


def is_archive(name: str) -> bool:
    """Whether ``name`` ends with a supported archive suffix."""
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def extract_archive(archive: str | Path, dest: str | Path) -> list[str]:
    """Safely extract a zip or tar archive into ``dest``; return the member names.

    Every member is checked before anything is written: absolute paths, ``..``
    components, device/FIFO members and symbolic or hard links resolving outside
    ``dest`` raise :class:`UnsafeArchiveError`.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        return _extract_zip(archive, dest)
    try:
        tf = tarfile.open(archive)
    except tarfile.TarError as e:
        raise FetchError(f"{archive}: not a zip or tar archive ({e})") from None
    with tf:
        members = tf.getmembers()
        for m in members:
            p = _safe_name(m.name, archive)
            if m.issym():
                _check_link(p, m.linkname, archive, m.name)
            elif m.islnk():
                _check_link(p, m.linkname, archive, m.name, hard=True)
            elif not (m.isfile() or m.isdir()):
                raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device, FIFO or other special file")
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        try:
            tf.extractall(dest, members=members, **kwargs)
        except tarfile.FilterError as e:  # second line of defence
            raise UnsafeArchiveError(f"{archive}: {e}") from None
        return [m.name for m in members]


def _extract_zip(archive: Path, dest: Path) -> list[str]:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        plan = []
        for info in infos:
            p = _safe_name(info.filename, archive)
            mode = (info.external_attr >> 16) & 0xFFFF
            link = None
            if stat.S_ISLNK(mode):
                link = zf.read(info).decode("utf-8", errors="replace")
                _check_link(p, link, archive, info.filename)
            plan.append((info, p, link))
        for info, p, link in plan:
            out = dest / p
            if not _inside(out.parent if link else out, dest):
                raise UnsafeArchiveError(f"{archive}: member {info.filename!r} would be written outside {dest}")
            if link is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(link, out)
            elif info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
            else:
                out.parent.mkdir(parents=True, exist_ok=True)
                if not _inside(out.parent, dest):
                    raise UnsafeArchiveError(f"{archive}: member {info.filename!r} would be written outside {dest}")
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        return [i.filename for i in infos]


# --------------------------------------------------------------------------- fetch


def _missing_layout(manifest: Manifest, root: Path) -> list[str]:
    missing = []
    for entry in manifest.layout:
        if any(ch in entry for ch in "*?["):
            if not any(root.glob(entry)):
                missing.append(entry)
        elif not (root / entry).exists():
            missing.append(entry)
    return missing


def _is_url(s: str) -> bool:
    return urllib.parse.urlparse(s).scheme in ("http", "https", "ftp", "file")


def _manual_help(manifest: Manifest, entries: Sequence[FileEntry]) -> str:
    how = {"registration": "after registering on", "request": "after requesting access on"}.get(
        manifest.access, "from")
    lines = [f"{manifest.path}: no public URL for {', '.join(e.name for e in entries)}."]
    lines += [f"  {e.name}: {e.note}" for e in entries if e.note]
    lines.append(f"Download {'them' if len(entries) > 1 else 'it'} {how} {manifest.homepage}, then run")
    lines.append(f"  {manifest.fetch_command()} --from PATH   (the file, or a folder holding the files)")
    return "\n".join(lines)


def _install(manifest: Manifest, local: dict[str, Path], root: Path) -> Path:
    target = root / manifest.name
    tmp = Path(tempfile.mkdtemp(prefix=f".{manifest.name}.extract-", dir=root))
    try:
        for entry in manifest.files:
            sub = tmp / entry.extract_to
            sub.mkdir(parents=True, exist_ok=True)
            if entry.archive:
                extract_archive(local[entry.name], sub)
            else:
                shutil.copy2(local[entry.name], sub / entry.name)
        _finish(manifest, tmp, target, {"files": {k: str(v) for k, v in local.items()}})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _finish(manifest: Manifest, tmp: Path, target: Path, info: dict) -> None:
    missing = _missing_layout(manifest, tmp)
    if missing:
        warnings.warn(f"{manifest.path}: the fetched data lacks layout entries {missing}; the parser may fail",
                      LayoutWarning, stacklevel=3)
    marker = {"name": manifest.name, "manifest": str(manifest.path), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
              **info}
    (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        if old.is_symlink() or old.is_file():
            old.unlink()
        else:
            shutil.rmtree(old, ignore_errors=True)


def _link_folder(manifest: Manifest, folder: Path, root: Path) -> Path:
    """Install an already-extracted folder by linking its top-level entries (nothing is written in it)."""
    target = root / manifest.name
    tmp = Path(tempfile.mkdtemp(prefix=f".{manifest.name}.link-", dir=root))
    try:
        for child in sorted(folder.iterdir()):
            if child.name != MARKER:
                os.symlink(child.resolve(), tmp / child.name)
        _finish(manifest, tmp, target, {"linked_from": str(folder.resolve())})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def fetch(name: str, source: str | Path | None = None, data_root: str | Path | None = None, progress: bool = True,
          *, force: bool = False, manifest_dir: str | Path | None = None, timeout: float = 60.0,
          keep_downloads: bool = True) -> Path:
    """Fetch dataset ``name`` into ``<data root>/<name>`` and return that path.

    ``source``: None (the manifest's URLs), a URL (one file, or a base URL
    ending in ``/`` under which every file is found by name), or a local path
    (a file of the manifest, a folder holding its files, or a folder holding
    the already-extracted dataset, which is linked). A dataset already fetched
    is returned as is unless ``force``. Files without a URL are reported before
    anything is downloaded. ``keep_downloads=False`` deletes the downloaded
    archives once extracted (their digests stay recorded).
    """
    manifest = load_manifest(name, manifest_dir)
    if manifest.kind != "real":
        raise FetchError(f"{manifest.path}: {name!r} is generated by landmark_study.data.synthetic; nothing to fetch")
    assert isinstance(manifest, Manifest)
    root = _root(data_root)
    target = root / manifest.name
    if (target / MARKER).is_file() and not force:
        return target
    if not manifest.files and source is None:
        raise FetchError(f"{manifest.path}: nothing can be downloaded for {name!r} (access: {manifest.access}); "
                         f"prepare it as its notes describe, then run\n  {manifest.fetch_command()} --from FOLDER")
    dl = root / "downloads" / manifest.name
    record = dl / CHECKSUMS
    by_name = {e.name: e for e in manifest.files}
    local: dict[str, Path] = {}
    urls: dict[str, str] = {}
    src = None if source is None else str(source)
    if src is not None and not _is_url(src):
        path = Path(src).expanduser()
        if not path.exists():
            raise FetchError(f"--from {src}: no such file or directory")
        if path.is_dir():
            found = {e.name: path / e.name for e in manifest.files if (path / e.name).is_file()}
            if not found:
                if not manifest.files or _missing_layout(manifest, path) != list(manifest.layout):
                    return _link_folder(manifest, path, root)
                raise FetchError(f"--from {path}: holds neither the files of {manifest.path} "
                                 f"({', '.join(by_name)}) nor its extracted layout ({', '.join(manifest.layout)})")
            local.update(found)
        else:
            if path.name in by_name:
                local[path.name] = path
            elif len(manifest.files) == 1:
                local[manifest.files[0].name] = path
            else:
                raise FetchError(f"--from {path}: the file name matches none of {', '.join(by_name)} "
                                 f"in {manifest.path}")
    elif src is not None:
        if src.endswith("/"):
            urls = {e.name: src + e.name for e in manifest.files}
        else:
            base = posixpath.basename(urllib.parse.urlparse(src).path)
            if base in by_name:
                urls[base] = src
            elif len(manifest.files) == 1:
                urls[manifest.files[0].name] = src
            else:
                raise FetchError(f"--from {src}: the URL's file name matches none of {', '.join(by_name)}")
    unavailable = [e for e in manifest.files
                   if e.name not in local and not urls.get(e.name, e.url) and not (dl / e.name).is_file()]
    if unavailable:  # say so before downloading anything else
        raise FetchError(_manual_help(manifest, unavailable))
    downloaded = []
    for entry in manifest.files:
        if entry.name in local:
            verify_file(local[entry.name], entry, record, manifest_path=manifest.path, move_aside=False)
            continue
        url = urls.get(entry.name, entry.url)
        dest = dl / entry.name
        if dest.is_file():
            try:
                verify_file(dest, entry, record, manifest_path=manifest.path)
                local[entry.name] = dest
                downloaded.append(dest)
                continue
            except ChecksumError:
                if not url:
                    raise
        if not url:
            raise FetchError(_manual_help(manifest, [entry]))
        download(url, dest, expected_size=entry.size, progress=progress, timeout=timeout)
        verify_file(dest, entry, record, manifest_path=manifest.path)
        local[entry.name] = dest
        downloaded.append(dest)
    target = _install(manifest, local, root)
    if not keep_downloads:
        for p in downloaded:
            p.unlink(missing_ok=True)
    return target


def require(name: str, data_root: str | Path | None = None, manifest_dir: str | Path | None = None) -> Path:
    """Path of fetched dataset ``name``; :class:`DatasetNotFoundError` with the fetch command otherwise."""
    manifest = load_manifest(name, manifest_dir)
    if manifest.kind != "real":
        raise FetchError(f"{manifest.path}: {name!r} is generated by landmark_study.data.synthetic; nothing to fetch")
    assert isinstance(manifest, Manifest)
    target = _root(data_root) / manifest.name
    if not (target / MARKER).is_file():
        manual = [e.name for e in manifest.files if not e.url]
        extra = (f"\n(no public URL for {', '.join(manual)}: download from {manifest.homepage} "
                 f"and add --from PATH)") if manual else ""
        raise DatasetNotFoundError(
            f"dataset {name!r} (manifest {manifest.path}) is not in {target}; fetch it with:\n"
            f"  python -m landmark_study data fetch {name}{extra}")
    missing = _missing_layout(manifest, target)
    if missing:
        warnings.warn(f"{target}: missing {missing} listed in {manifest.path} 'layout'", LayoutWarning, stacklevel=2)
    return target


def cli_fetch(argv: Sequence[str] | None = None) -> int:
    """``python -m landmark_study data fetch NAME [--from URL|PATH] [--data-root DIR] [--force]``.

    ``--list`` prints the known datasets with their access kind. Returns the
    exit status (0 ok, 1 fetch failed, 2 bad arguments).
    """
    parser = argparse.ArgumentParser(prog="python -m landmark_study data fetch",
                                     description="Download, verify and extract a real dataset.")
    parser.add_argument("name", nargs="?", help="dataset name (a file in data_manifests/)")
    parser.add_argument("--from", dest="source", metavar="URL|PATH",
                        help="where to take the files from instead of the manifest's URLs")
    parser.add_argument("--data-root", default=None, help="data root (default $LANDMARK_STUDY_DATA or "
                        "~/.cache/landmark_study)")
    parser.add_argument("--force", action="store_true", help="fetch again even if already complete")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--delete-archives", action="store_true",
                        help="delete downloaded archives after a successful extraction")
    parser.add_argument("--list", action="store_true", help="list the datasets and exit")
    args = parser.parse_args(list(argv) if argv is not None else None)
    names = list_manifests()
    if args.list:
        for n in names:
            m = load_manifest(n)
            print(f"{n:14s} {getattr(m, 'access', 'generated'):13s} {m.title}")
        return 0
    if not args.name:
        parser.print_usage(sys.stderr)
        print(f"error: give a dataset name; known: {', '.join(names)}", file=sys.stderr)
        return 2
    if args.name not in names:
        print(f"error: unknown dataset {args.name!r}; known: {', '.join(names)}", file=sys.stderr)
        return 2
    try:
        path = fetch(args.name, source=args.source, data_root=args.data_root, progress=not args.no_progress,
                     force=args.force, keep_downloads=not args.delete_archives)
    except (FetchError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0
