"""Durable, atomic file and folder writes, and file locks: the one copy every package uses.

- `atomic_file(path)`: a context that yields a temporary path beside `path`; on a clean exit the temp file
  is fsynced, renamed over `path`, and the directory fsynced. A crash leaves the old file or the new one,
  never half.
- `write_bytes/write_text/write_json(path, ...)`: the same for data already in memory.
- `staged_dir(dst)`: a context that yields an empty temporary folder beside `dst`; on a clean exit every file
  in it is fsynced and the folder swapped into place (`dst` -> `.old`, temp -> `dst`, `.old` deleted), under a
  lock on `dst` so two writers of one folder take turns. `recover_dir(dst, is_complete)` puts a `.old` folder
  back when a kill hit between the two renames, and deletes stale temp folders (under the same lock: no pid
  guessing).
- `lock(path)`: a `filelock.FileLock` on `<parent>/.<name>.lock` (filelock comes with torch);
  `waiting_lock(path, what)` takes it, printing one line first when another process holds it.
- Ownership: `claim(folder, kind)` writes the marker `.mabe-tune.json` ({"kind", "version"}) into a folder a
  command made; `check_replaceable(folder, kind)` raises MabeDataError (one line: the folder and what is in
  it) unless the folder carries that marker, is empty, or does not exist (`force=True` skips it);
  `check_not_inside(out, data)` refuses an output folder equal to or containing an input folder.
- `sha256_file(path)`: the hex sha256 of a file, read in chunks (bundle manifests, checkpoint identity).

Names: temp files and folders are `.<name>.tmp-<pid>-<n>`, old folders `.<name>.old-<pid>-<n>`, both hidden.
No torch, ray or pandas here: the offline predictor uses this module.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock, Timeout

from features.errors import MabeDataError

MARKER = ".mabe-tune.json"  # ownership marker: {"kind": ..., "version": MARKER_VERSION}
MARKER_VERSION = 1


def _unique(p: Path, kind: str) -> Path:
    return p.with_name(f".{p.name}.{kind}-{os.getpid()}-{time.time_ns()}")


def fsync_dir(path) -> None:
    """Make a rename or a new entry in `path` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_file(path) -> Iterator[Path]:
    """Yield a temp path beside `path`; write it inside the block; it replaces `path` only on a clean exit."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _unique(path, "tmp")
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)


def write_bytes(path, data: bytes) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path, obj, **kw) -> Path:
    kw = {"indent": 2, "sort_keys": True, "default": float, **kw}
    return write_text(path, json.dumps(obj, **kw) + "\n")


def lock(path, timeout: float = -1) -> FileLock:
    """The lock that guards `path` (a file or a folder): `<parent>/.<name>.lock`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.with_name(f".{path.name}.lock")), timeout=timeout)


@contextlib.contextmanager
def waiting_lock(path, what: str = "another process") -> Iterator[FileLock]:
    """Hold `lock(path)`; when another process holds it, say so on stderr (one line) and wait for it."""
    lk = lock(path)
    try:
        lk.acquire(timeout=0)
    except Timeout:
        print(f"waiting: {what} holds {lk.lock_file} ...", file=sys.stderr, flush=True)
        lk.acquire()
    try:
        yield lk
    finally:
        lk.release()


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            fsync_file(os.path.join(dirpath, name))
        fsync_dir(dirpath)


def swap_dir(tmp, dst) -> Path:
    """Put the finished folder `tmp` at `dst`, replacing any previous `dst` (caller holds `lock(dst)`)."""
    tmp, dst = Path(tmp), Path(dst)
    _fsync_tree(tmp)
    old = _unique(dst, "old")
    if dst.exists():
        os.replace(dst, old)
    os.replace(tmp, dst)
    fsync_dir(dst.parent)
    if old.exists():
        shutil.rmtree(old)
    return dst


def _clear_stale(dst: Path) -> list[Path]:
    """Delete leftover temp folders of `dst`; return its `.old` folders, newest last (caller holds the
    lock)."""
    for p in dst.parent.glob(f".{dst.name}.tmp-*"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return sorted(dst.parent.glob(f".{dst.name}.old-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))


def recover_dir(dst, is_complete: Callable[[Path], bool] = Path.is_dir, *, locked: bool = False) -> None:
    """After a kill inside `swap_dir`: put the newest `.old` folder back if `dst` is not complete; drop stale
    temps."""
    dst = Path(dst)
    if not dst.parent.is_dir():
        return
    with contextlib.nullcontext() if locked else lock(dst):
        olds = _clear_stale(dst)
        if olds and not is_complete(dst):
            if dst.exists():
                shutil.rmtree(dst)
            os.replace(olds.pop(), dst)
        for p in olds:
            shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(dst, is_complete: Callable[[Path], bool] = Path.is_dir, *, locked: bool = False
               ) -> Iterator[Path]:
    """Yield an empty temp folder beside `dst`; on a clean exit it replaces `dst` atomically and durably.
    `locked=True`: the caller already holds `lock(dst)` (e.g. for a whole build).

    A write that fails (read-only folder, disk full, file-size limit: any OSError in the block or the swap)
    leaves `dst` as it was and is raised as one `MabeDataError` naming `dst` (a CLI prints one line, exit 2).
    """
    from features.errors import MabeDataError

    dst = Path(dst)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.nullcontext() if locked else lock(dst):
            recover_dir(dst, is_complete, locked=True)
            tmp = _unique(dst, "tmp")
            tmp.mkdir()
            try:
                yield tmp
                swap_dir(tmp, dst)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise MabeDataError(f"not written, the previous version is left as it was: {_describe(exc)}",
                            file=dst) from exc


def _describe(exc: OSError) -> str:
    """An OSError in words: numpy's short writes carry no errno ("N requested and M written")."""
    text = str(exc)
    if exc.errno is None and "requested and" in text:
        text += " (short write: disk full or file-size limit)"
    return text


# ------------------------------------------------------------------------------------------------ ownership
def claim(folder, kind: str) -> Path:
    """Mark `folder` (made by a command of this project) as its `kind` of output; returns the marker path."""
    return write_json(Path(folder) / MARKER, {"kind": kind, "version": MARKER_VERSION})


def owner(folder) -> str | None:
    """The kind in `folder`'s marker, or None (no marker or an unreadable one)."""
    try:
        d = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return d.get("kind") if isinstance(d, dict) and isinstance(d.get("kind"), str) else None


def _listing(folder: Path, n: int = 4) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    shown = ", ".join(names[:n]) + (f", ... ({len(names)} entries)" if len(names) > n else "")
    return shown


def _ours(folder: Path) -> bool:
    """Only our own hidden leftovers (lock files, temp/old folders, the marker) in `folder`."""
    return all(p.name.startswith(".") and (p.name == MARKER or ".lock" in p.name or ".tmp-" in p.name
                                           or ".old-" in p.name) for p in folder.iterdir())


def check_replaceable(folder, kind: str, *, force: bool = False, flag: str = "--out",
                      legacy: Callable[[Path], bool] | None = None,
                      force_flag: str | None = "--force") -> None:
    """Raise MabeDataError unless `folder` may be replaced by a `kind` writer: it does not exist, is empty
    (our own lock/temp files aside), or carries a `kind` marker (or `legacy(folder)` recognises an output of
    ours from before markers). `force=True` allows any folder (never a file); `force_flag` is named in the
    message (None: the command has no such flag)."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return
    if not folder.is_dir():
        raise MabeDataError(f"{flag} {folder} is a file, not a folder: choose a folder path")
    if force or _ours(folder):
        return
    found = owner(folder)
    if found == kind or (found is None and legacy is not None and legacy(folder)):
        return
    what = f"a {found} folder ({MARKER})" if found else f"files it did not write: {_listing(folder)}"
    hint = f"; pass {force_flag} to replace it anyway" if force_flag else ""
    article = "an" if kind[:1] in "aeiou" else "a"
    raise MabeDataError(f"{flag} {folder} holds {what}; refusing to write {article} {kind} there: choose a "
                        f"new or empty folder{hint}")


def check_not_inside(out, data, *, out_flag: str = "--out", data_flag: str = "--data") -> None:
    """Refuse an output folder that is an input folder or contains it (replacing it deletes the input)."""
    o, d = Path(out).resolve(), Path(data).resolve()
    if o == d or o in d.parents:
        rel = "is" if o == d else "contains"
        raise MabeDataError(f"{out_flag} {out} {rel} {data_flag} {data}: writing there would delete the "
                            f"input; choose another {out_flag}")


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read `chunk` bytes at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()
