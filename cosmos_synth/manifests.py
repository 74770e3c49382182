"""What the video stages hand each other besides folders: the video manifest (generate's, then label's, one row per
video), read and checked before any work, and the per-video action files the label stage writes and export reads.

An action file is a .npz holding one array, `action` (ACTION_KEY): (T, A) float32, one row per video frame.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from cosmos_synth.files import atomic_write, read_jsonl

REQUIRED_KEYS = ("sample_id", "prompt", "video")
ACTION_KEY = "action"  # the array inside a row's `actions` .npz (the label stage writes it)


def read_manifest_rows(manifest: Path) -> list[dict[str, Any]]:
    """Read and validate the generate manifest before any work: keys, unique ids, every video present.

    Relative video paths are resolved against the manifest's folder; the returned rows hold absolute `video` paths.
    """
    manifest = Path(manifest)
    rows = read_jsonl(manifest)
    if not rows:
        raise ValueError(f"Manifest {manifest} has no rows; run the generate stage first.")
    seen: set[str] = set()
    resolved = []
    for number, row in enumerate(rows, start=1):
        missing = [key for key in REQUIRED_KEYS if row.get(key) in (None, "")]
        if missing:
            raise ValueError(f"Manifest {manifest} line {number} lacks {missing}; rerun the generate stage.")
        if row["sample_id"] in seen:
            raise ValueError(
                f"Manifest {manifest} line {number}: sample_id {row['sample_id']!r} appears twice; "
                "each generated video needs its own id."
            )
        seen.add(row["sample_id"])
        video = (manifest.parent / row["video"]).resolve()  # an absolute `video` stays as it is
        if not video.is_file():
            raise ValueError(
                f"Manifest {manifest} line {number} names video {video}, which does not exist; "
                "regenerate it or remove the row."
            )
        resolved.append({**row, "video": video})
        if row.get("actions"):
            actions = (manifest.parent / row["actions"]).resolve()
            if not actions.is_file():
                raise ValueError(
                    f"Manifest {manifest} line {number} names actions {actions}, which does not exist; "
                    "rerun the label stage."
                )
            resolved[-1]["actions"] = actions
    return resolved


def read_actions(path: Path) -> np.ndarray:
    """The (T, A) `action` array of a label .npz, naming the file when it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return np.asarray(data[ACTION_KEY], dtype=np.float32)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"Actions file {path} cannot be read ({exc}); rerun the label stage.") from exc


def write_actions(path: Path, actions: np.ndarray) -> Path:
    """np.savez `action` to `path` through a temporary name in the same folder, then rename."""
    with atomic_write(path) as tmp, tmp.open("wb") as fh:
        np.savez(fh, **{ACTION_KEY: actions})
    return path
