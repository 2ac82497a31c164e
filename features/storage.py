"""Files and folders at a URI: a local path, `s3://bucket/key` or `gs://bucket/key`, through pyarrow.fs.

The one place that talks to object storage (no hand-written client): every remote call goes through
`pyarrow.fs.FileSystem.from_uri`, so the standard environment configures it (`AWS_ENDPOINT_URL`,
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` for S3 and S3-compatible stores such as MinIO;
`GOOGLE_APPLICATION_CREDENTIALS` or the VM's service account for GCS), the same variables Ray's own
storage and boto honour. Local paths go through `features.files` (atomic writes).

- `is_remote(uri)`, `join(uri, *parts)`, `exists(uri)`, `read_bytes/read_text`, `write_bytes/write_text`,
  `upload_file/download_file`, `listdir(uri)`.
- `upload_dir(local, uri, last=...)`: every file of a folder (hidden names skipped), the files named in
  `last` after all others, so a reader that waits for them never sees half a folder. Returns bytes sent.
- `download_dir(uri, local)`: the remote folder into `local`, atomically (`features.files.staged_dir`), with
  the remote modification times (so `features.cache.fingerprint` of staged data is the same on every node).
- `stage(uri, fingerprint, root=None)`: a node-local copy of a remote folder, made once per node: under
  `features.files.lock` the first caller downloads it into `<root>/<fingerprint>`, later callers (other
  processes on the node) reuse it. `root` defaults to `$MABE_STAGE_DIR`, else `<tempdir>/mabe-stage`. Each
  download appends one line to `<root>/staged.jsonl` (uri, fingerprint, bytes, host, pid). A local `uri` is
  returned as is.
- `mask_url(url)`: the URL with its password replaced by `***` (for prints and files).

No torch, ray or pandas here.
"""
from __future__ import annotations

import json
import os
import re
import socket
import sys
import tempfile
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

from features.errors import MabeDataError
from features import files

REMOTE_SCHEMES = ("s3", "gs", "gcs")
STAGE_ENV = "MABE_STAGE_DIR"
STAGE_LOG = "staged.jsonl"
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def is_remote(uri) -> bool:
    """True for `s3://`, `gs://` and `gcs://` URIs; False for local paths (and `file://`)."""
    return isinstance(uri, str) and urlsplit(uri).scheme.lower() in REMOTE_SCHEMES


def local_path(uri) -> Path:
    """A local path or `file://` URI as a Path."""
    s = str(uri)
    return Path(urlsplit(s).path) if s.startswith("file://") else Path(s)


def join(uri, *parts: str) -> str:
    """`uri/part/...` for a remote URI, `os.path.join` for a local path (returned as str)."""
    if is_remote(uri):
        return "/".join([str(uri).rstrip("/"), *(p.strip("/") for p in parts)])
    return str(local_path(uri).joinpath(*parts))


def as_uri(path: str, like: str) -> str:
    """`path` as returned by a pyarrow filesystem (`bucket/key`, no scheme) turned back into a URI with the
    scheme of `like` (`s3://bucket/key`); `path` itself when `like` is local or `path` has a scheme."""
    if not path or "://" in path or not is_remote(like):
        return path
    return f"{urlsplit(like).scheme}://{path.lstrip('/')}"


def _fs(uri):
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(str(uri))
    except (OSError, ValueError) as exc:
        raise MabeDataError(f"cannot open storage ({exc})", file=uri) from None


def _info(uri):
    fs, path = _fs(uri)
    return fs, path, fs.get_file_info(path)


def exists(uri) -> bool:
    if not is_remote(uri):
        return local_path(uri).exists()
    import pyarrow.fs as pafs

    return _info(uri)[2].type != pafs.FileType.NotFound


def is_dir(uri) -> bool:
    if not is_remote(uri):
        return local_path(uri).is_dir()
    import pyarrow.fs as pafs

    return _info(uri)[2].type == pafs.FileType.Directory


def read_bytes(uri) -> bytes:
    if not is_remote(uri):
        try:
            return local_path(uri).read_bytes()
        except FileNotFoundError:
            raise MabeDataError("file not found", file=uri) from None
    fs, path = _fs(uri)
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError:
        raise MabeDataError("file not found", file=uri) from None


def read_text(uri) -> str:
    return read_bytes(uri).decode()


def write_bytes(uri, data: bytes) -> str:
    """Write `data` at `uri` (local: atomic and durable; remote: one PUT, which S3/GCS make atomic)."""
    if not is_remote(uri):
        files.write_bytes(local_path(uri), data)
        return str(uri)
    fs, path = _fs(uri)
    with fs.open_output_stream(path) as f:
        f.write(data)
    return str(uri)


def write_text(uri, text: str) -> str:
    return write_bytes(uri, text.encode())


def upload_file(local, uri) -> int:
    """Copy one local file to `uri`; returns its size."""
    local = Path(local)
    if not is_remote(uri):
        with files.atomic_file(local_path(uri)) as tmp:
            tmp.write_bytes(local.read_bytes())
        return local.stat().st_size
    import pyarrow.fs as pafs

    fs, path = _fs(uri)
    pafs.copy_files(str(local.resolve()), path, source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=fs)
    return local.stat().st_size


def download_file(uri, local) -> int:
    """Copy the file at `uri` to the local path `local` (atomic); returns its size."""
    data = read_bytes(uri)
    files.write_bytes(local, data)
    return len(data)


def _remote_files(uri) -> list[tuple[str, int, int | None]]:
    """(relative path, size, mtime_ns) of every file under the folder `uri` (sorted); [] when none."""
    if not is_remote(uri):
        root = local_path(uri)
        if not root.is_dir():
            return []
        return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                      for p in root.rglob("*") if p.is_file())
    import pyarrow.fs as pafs

    fs, path = _fs(uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except FileNotFoundError:
        return []
    base = path.rstrip("/") + "/"
    return sorted((i.path[len(base):], i.size, i.mtime_ns) for i in infos if i.type == pafs.FileType.File)


def listdir(uri) -> list[str]:
    """Relative paths of every file under the folder `uri` (recursive, sorted); [] when there is none."""
    return [r for r, _, _ in _remote_files(uri)]


def listing_key(uri) -> str:
    """A short hash of the folder `uri`'s file list (path, size, mtime): changes when any file does."""
    import hashlib

    h = hashlib.sha256(str(uri).encode())
    for entry in _remote_files(uri):
        h.update(json.dumps(entry).encode())
    return h.hexdigest()[:20]


def _local_files(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, names in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [os.path.relpath(os.path.join(dirpath, n), root) for n in sorted(names)
                if not n.startswith(".")]
    return out


def upload_dir(local, uri, last: tuple[str, ...] = ()) -> int:
    """Copy every file of the local folder `local` to the folder `uri` (hidden names skipped; the relative
    paths in `last` go after all others); returns the bytes sent."""
    local = Path(local)
    if not local.is_dir():
        raise MabeDataError("not a folder", file=local)
    rels = _local_files(local)
    rels = [r for r in rels if r not in last] + [r for r in last if r in rels]
    return sum(upload_file(local / r, join(uri, r)) for r in rels)


def download_dir(uri, local, *, locked: bool = False, include: Callable[[str], bool] | None = None) -> int:
    """Replace the local folder `local` with a copy of the folder `uri` (atomic: a staged folder swapped in;
    each file keeps its remote modification time, so a fingerprint of sizes + mtimes is the same on every
    node); `locked=True` when the caller holds `features.files.lock(local)`; `include(relative path)`: only
    the files it accepts. Returns the bytes received."""
    entries = [e for e in _remote_files(uri) if include is None or include(e[0])]
    if not entries:
        raise MabeDataError("no files at this location", file=uri)
    total = 0
    with files.staged_dir(local, locked=locked) as tmp:
        for rel, _, mtime_ns in entries:
            total += download_file(join(uri, rel), tmp / rel)
            if mtime_ns is not None:
                os.utime(tmp / rel, ns=(mtime_ns, mtime_ns))
    return total


def stage_root(root=None) -> Path:
    """Where `stage` keeps node-local copies: `root`, else `$MABE_STAGE_DIR`, else `<tempdir>/mabe-stage`."""
    return Path(root or os.environ.get(STAGE_ENV) or Path(tempfile.gettempdir()) / "mabe-stage")


def stage(uri, fingerprint: str, root=None, include: Callable[[str], bool] | None = None) -> Path:
    """A node-local copy of the remote folder `uri`, downloaded once per node (see the module docstring)."""
    if not is_remote(uri):
        return local_path(uri)
    if not _SAFE_KEY.match(fingerprint or ""):
        raise ValueError(f"stage: fingerprint {fingerprint!r} is not a safe folder name")
    base = stage_root(root)
    dst = base / fingerprint
    with files.lock(dst):
        if dst.is_dir():
            return dst
        n = download_dir(uri, dst, locked=True, include=include)
        line = json.dumps({"uri": uri, "fingerprint": fingerprint, "bytes": n, "host": socket.gethostname(),
                           "pid": os.getpid()})
        log = base / STAGE_LOG
        with files.lock(log), open(log, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
    print(f"staged {uri} -> {dst} ({n} bytes)", file=sys.stderr, flush=True)
    return dst


def staged(root=None) -> list[dict]:
    """The lines of `<root>/staged.jsonl`: one per download `stage` made on this node."""
    log = stage_root(root) / STAGE_LOG
    return [json.loads(s) for s in log.read_text().splitlines() if s.strip()] if log.is_file() else []


def mask_url(url) -> str:
    """`scheme://user:***@host/...` for a URL with a password; anything else unchanged."""
    s = str(url)
    try:
        parts = urlsplit(s)
        password, port = parts.password, parts.port
    except ValueError:
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", s)
    if not password:
        return s
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{port}" if port else "")
    return urlunsplit(parts._replace(netloc=netloc))
