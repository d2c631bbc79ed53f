"""What every command that writes checks first: where it may write, and what it may replace.

- `safe_name`: the one sanitiser for names that come from files (a clip manifest's `name`, say)
  before they become file names: one path component, no `..`, no separators, no control or
  reserved characters, never empty, never a hidden file. Nothing named by a file lands outside
  the chosen output.
- `check_new_file` / `check_run_folder`: the one output guard. An existing output is replaced only
  with `--overwrite`; a training run folder that holds a finished model, a log or checkpoints is
  continued only with `--resume` or replaced only with `--overwrite`. Callers run it before any
  long work, so a refusal costs nothing.
- `exclusive`: the writer's lock on an output while a command makes it, so a second command writing the
  same output gets one line instead of both exiting 0 with one result lost.
- `disk_full`: whether a failed write is explained by a full disk (so it is not blamed on a codec).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import unicodedata
from pathlib import Path
from typing import Iterator

from .errors import ExistingRunError, OutputError

_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')
_RESERVED = re.compile(r"(con|prn|aux|nul|com\d|lpt\d)(\..*)?", re.IGNORECASE)  # Windows device names
MAX_NAME = 100  # characters; file systems allow 255 bytes, and a suffix is still to come
RUN_FILES = ("model.safetensors", "log.jsonl")
LOW_DISK = 64 * 1024 * 1024  # bytes free below which a failed write is put down to a full disk


def safe_name(name: object, fallback: str = "clip") -> str:
    """`name` as one harmless file-name component (same input, same output; distinct inputs that
    would collapse to one name keep apart by a short hash of the original)."""
    text = unicodedata.normalize("NFC", str(name))
    clean = _UNSAFE.sub("_", text).strip(" .")
    if not clean or _RESERVED.fullmatch(clean):
        clean = f"{fallback}_{clean}" if clean else fallback
    if clean != text or len(clean) > MAX_NAME:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        clean = f"{clean[: MAX_NAME - 9]}_{digest}"
    return clean


def inside(folder: str | os.PathLike, name: object, suffix: str = "", fallback: str = "clip") -> Path:
    """`folder/<safe_name(name)><suffix>`, asserted to lie directly inside `folder`."""
    folder = Path(folder)
    path = folder / (safe_name(name, fallback) + suffix)
    if path.parent != folder or path.name in ("", ".", ".."):  # cannot happen with safe_name; kept as the invariant
        raise OutputError(f"refusing to write {path}: the name {name!r} does not stay inside {folder}")
    return path


def check_new_file(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse to replace an existing file without --overwrite, and a folder where a file is to go."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name for the output")
    if os.path.lexists(path) and not overwrite:  # a link, even a dangling one, is something the user has there
        raise OutputError(f"{path} already exists; choose another output name or pass --overwrite")
    if path.parent.exists() and not path.parent.is_dir():
        raise OutputError(f"{path.parent} is a file, not a folder; choose another output path")
    return path


def check_run_folder(folder: str | os.PathLike, resume: bool = False, overwrite: bool = False) -> Path:
    """A training run's --out: new or empty, or continued (--resume), or replaced (--overwrite)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file; give a folder name for the run (--out)")
    if overwrite or not folder.is_dir():
        return folder
    states = any((folder / "checkpoints").glob("state-*.safetensors"))
    if resume:
        if (folder / RUN_FILES[0]).exists() and not states:
            raise ExistingRunError(
                f"{folder} holds a finished {RUN_FILES[0]} and no checkpoint to resume from; pass --overwrite to "
                "train again, or choose a new --out"
            )
        return folder
    held = [name for name in RUN_FILES if (folder / name).exists()] + (["checkpoints"] if states else [])
    if held:
        raise ExistingRunError(
            f"{folder} already holds a run ({', '.join(held)}); pass --resume to continue it, --overwrite to "
            "replace it, or choose a new --out"
        )
    return folder


def disk_full(folder: str | os.PathLike, below: int = LOW_DISK) -> bool:
    """True when the file system holding `folder` has less than `below` bytes free."""
    try:
        return shutil.disk_usage(Path(folder)).free < below
    except OSError:
        return False


@contextlib.contextmanager
def exclusive(path: str | os.PathLike) -> Iterator[Path]:
    """Hold the writer's lock of `path` (a hidden `.<name>.lock` beside it, flock'd, so a killed command
    leaves no stale lock) while the block makes the output; a second holder is refused in one line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.parent / f".{path.name}.lock"
    try:
        import fcntl
    except ImportError:  # no flock (Windows): outputs stay atomic, concurrent writers are not detected
        yield path
        return
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OutputError(f"another command is writing {path} right now; wait for it to finish or choose another output") from None
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)
