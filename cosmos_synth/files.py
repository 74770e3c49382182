"""Small file helpers shared by every stage: content hashes, atomic writes and JSON-lines manifests.

Every file and folder a stage writes goes through one scheme: it is written at :func:`temporary_path` beside its
final place (`.<name>.tmp<pid><suffix>`: hidden, this process's own) and renamed over it when complete, so a reader
sees the previous version or the new one, never half of one. :func:`atomic_write` does it for a file,
:func:`atomic_dir` for a folder, and :func:`remove_stale_temporaries` clears what an interrupted writer left.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def file_sha256(*paths: Path) -> str:
    """sha256 over the contents of `paths`, in order, read in 1 MiB blocks (identifies a file by content)."""
    digest = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def temporary_path(path: Path) -> Path:
    """Where `path` is written before it is renamed into place: `.<name>.tmp<pid><suffix>` in the same folder. The
    suffix is kept for writers that choose a format by it (PyAV, Pillow, OpenCV)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """Write a file at the path this yields; it replaces `path` when the block ends without an error, and is removed
    when it does not."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Build a folder at the (new, empty) path this yields; it replaces `path` and whatever was there when the block
    ends without an error, and is deleted when it does not."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    shutil.rmtree(tmp, ignore_errors=True)  # left by an earlier crash of a process with the same id
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(new: Path, target: Path) -> None:
    """Move folder `new` to `target`, replacing any previous `target` (moved aside first, then deleted)."""
    old = target.with_name(f".{target.name}.old{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary name in the same folder, then rename."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete what interrupted earlier writers of `path` left beside it: `.<name>.tmp<pid>...` (a half-written new
    version) and `.<name>.old<pid>` (a previous version moved aside), files or folders. Call it before writing `path`
    anew; returns what was removed."""
    path = Path(path)
    stale = sorted(p for pattern in (f".{path.name}.tmp*", f".{path.name}.old*") for p in path.parent.glob(pattern))
    for leftover in stale:
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
        logger.info("removed %s, left by an interrupted earlier write of %s", leftover, path)
    return stale


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write one JSON object per line, atomically."""
    return write_text_atomic(path, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSON-lines manifest, naming the file and line of a bad row."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Manifest {path} does not exist; run the stage that writes it first.")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"Manifest {path} line {number} is not valid JSON ({exc}); rerun the stage.") from exc
    return rows


def inside(root: Path, relative: str, *, what: str) -> Path:
    """Resolve `relative` under `root`, refusing paths that escape it (absolute, `..`, links outside)."""
    root = Path(root).resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        raise ValueError(f"{what}: path {relative!r} escapes the dataset root {root}; use a path inside the dataset.")
    return target
