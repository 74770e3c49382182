"""Small file helpers shared by every stage: content hashes, atomic writes and JSON-lines manifests."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

logger = logging.getLogger(__name__)


def file_sha256(*paths: Path) -> str:
    """sha256 over the contents of `paths`, in order, read in 1 MiB blocks (identifies a file by content)."""
    digest = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def write_text_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary name in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete what interrupted earlier writers of `path` left beside it: `.<name>.tmp<pid>` (a half-written new
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
