"""What the video stages hand each other besides folders: the video manifest (one row per video), read and checked
before any work, and the per-video arrays that travel with it.

Two manifests carry episodes to the export stage:
- the label stage's (generated videos): `prompt`, and `actions`, a label .npz the IDM wrote, with `action_names`
  (and `state_names` when the IDM labels states);
- the ingest stage's (real episodes): `caption`, and `trajectory`, the dataset's trajectories/<stem>.npz, or null.
Label files and trajectories are the same kind of .npz: `action` (ACTION_KEY), (T, A) float32, and `state`
(STATE_KEY), (T, S) float32 (optional in a label file: an IDM without a state head writes none), one row per video
frame.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from cosmos_synth.files import atomic_write, read_jsonl

REQUIRED_KEYS = ("sample_id", "video")  # and a task: `prompt` (generate, label) or `caption` (ingest)
ACTION_KEY = "action"  # the arrays inside a label .npz (the label stage writes them) or a trajectory .npz
STATE_KEY = "state"
ARRAY_FILES = ("actions", "trajectory")  # row keys naming a .npz, resolved against the manifest's folder


def read_manifest_rows(manifest: Path) -> list[dict[str, Any]]:
    """Read and validate a video manifest before any work: keys, unique ids, every video and .npz present.

    Relative video and .npz paths are resolved against the manifest's folder; the returned rows hold absolute paths.
    """
    manifest = Path(manifest)
    rows = read_jsonl(manifest)
    if not rows:
        raise ValueError(f"Manifest {manifest} has no rows; run the generate stage first.")
    seen: set[str] = set()
    resolved = []
    for number, row in enumerate(rows, start=1):
        missing = [key for key in REQUIRED_KEYS if row.get(key) in (None, "")]
        if not (row.get("prompt") or row.get("caption")):
            missing.append("prompt")
        if missing:
            raise ValueError(
                f"Manifest {manifest} line {number} lacks {missing}; rerun the stage that wrote it (generate, "
                "label or ingest)."
            )
        if row["sample_id"] in seen:
            raise ValueError(
                f"Manifest {manifest} line {number}: sample_id {row['sample_id']!r} appears twice; "
                "each video needs its own id."
            )
        seen.add(row["sample_id"])
        video = (manifest.parent / row["video"]).resolve()  # an absolute `video` stays as it is
        if not video.is_file():
            raise ValueError(
                f"Manifest {manifest} line {number} names video {video}, which does not exist; "
                "regenerate it or remove the row."
            )
        resolved.append({**row, "video": video})
        for key in ARRAY_FILES:
            if row.get(key):
                path = (manifest.parent / row[key]).resolve()
                if not path.is_file():
                    fix = "rerun the label stage" if key == "actions" else "restore the dataset and rerun ingest"
                    raise ValueError(
                        f"Manifest {manifest} line {number} names {key} {path}, which does not exist; {fix}."
                    )
                resolved[-1][key] = path
    return resolved


def row_task(row: dict[str, Any]) -> str:
    """A manifest row's instruction: the generation prompt, or an ingested episode's caption."""
    return str(row.get("prompt") or row["caption"])


def read_trajectory(
    path: Path, *, what: str = "Actions file", fix: str = "rerun the label stage"
) -> tuple[np.ndarray, np.ndarray | None]:
    """(actions (T, A), states (T, S) or None) of a label or trajectory .npz, float32; errors name the file.

    `what` names the file in errors ("Trajectory" for a dataset's), `fix` says how to repair it.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {
                key: np.asarray(data[key], dtype=np.float32) for key in (ACTION_KEY, STATE_KEY) if key in data.files
            }
    except (OSError, ValueError, zipfile.BadZipFile) as exc:  # np.load's errors do not name the file
        raise ValueError(f"{what} {path} cannot be read ({exc}); {fix}.") from exc
    actions, states = arrays.get(ACTION_KEY), arrays.get(STATE_KEY)
    if actions is None or actions.ndim != 2:
        raise ValueError(f"{what} {path} holds no 2-D '{ACTION_KEY}' array (frames, dims); {fix}.")
    if states is not None and (states.ndim != 2 or len(states) != len(actions)):
        raise ValueError(
            f"{what} {path}: '{STATE_KEY}' has shape {states.shape} but '{ACTION_KEY}' has {len(actions)} rows; "
            f"write one state row per frame ({fix})."
        )
    return actions, states


def read_actions(path: Path) -> np.ndarray:
    """The (T, A) `action` array of a label .npz, naming the file when it cannot be read."""
    return read_trajectory(path)[0]


def write_labels(path: Path, actions: np.ndarray, states: np.ndarray | None = None) -> Path:
    """np.savez `action` (and `state`) to `path` through a temporary name in the same folder, then rename."""
    arrays = {ACTION_KEY: actions} if states is None else {ACTION_KEY: actions, STATE_KEY: states}
    with atomic_write(path) as tmp, tmp.open("wb") as fh:
        np.savez(fh, **arrays)
    return path
