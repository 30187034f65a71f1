"""Atomic file writes: a killed process leaves the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; on success it replaces `path` in one rename.

    Write to the yielded path with any library (safetensors, matplotlib, onnx). The data are
    flushed to disk before the rename, so a crash after it cannot leave an empty file.
    A place that cannot be written (a file in the way, no permission, a read-only or
    virtual file system, a directory at `path`) is a ValueError naming `path`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise unwritable(path, e) from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())                             # mkstemp's 0600 is too private
    try:
        yield Path(tmp)
        try:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            raise unwritable(path, e) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def unwritable(path: Path, e: OSError) -> ValueError:
    """The ValueError for a path the file system refused to let us write: it names `path`
    and says why in words (a file where a folder should be, a directory in the way)."""
    # the user chose the path (--out), so the file system's refusal is their mistake to fix
    if path.is_dir():
        why = "it is a directory"
    else:
        nearest = next((p for p in path.parents if p.exists()), None)
        why = (f"{nearest} is a file, not a folder" if nearest is not None and not nearest.is_dir()
               else (e.strerror or str(e)).lower())
    return ValueError(f"cannot write {path}: {why}")


def write_text(path, text: str) -> None:
    """Replace the file at `path` with `text`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def append_line(path, line: str) -> None:
    """Append one line to a log, atomically: the file is rewritten and renamed.

    Logs here are small (one line per evaluation), so rewriting beats a torn last line.
    """
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    write_text(path, old + line.rstrip("\n") + "\n")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
