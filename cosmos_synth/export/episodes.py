"""Episodes as the export writers see them, and the generate manifest read one video at a time."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np

from cosmos_synth.files import read_jsonl
from cosmos_synth.video import read_video

logger = logging.getLogger(__name__)

REQUIRED_KEYS = ("sample_id", "prompt", "video")


@dataclass(frozen=True, kw_only=True, eq=False)
class Episode:
    """One trajectory: its frames, its task, where it came from, and (once labelled) its actions and states."""

    sample_id: str                                  # e.g. "pair_0000": the generate manifest's id
    frames: np.ndarray                              # (N, H, W, 3) uint8 RGB
    task: str                                       # natural-language instruction (the generation prompt)
    source: Literal["generated", "real"] = "generated"
    actions: np.ndarray | None = None               # (N, A) float, one action per frame (from the label stage)
    states: np.ndarray | None = None                # (N, D) float, one state per frame

    def __post_init__(self) -> None:
        frames = self.frames
        if not (isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4
                and frames.shape[-1] == 3 and frames.shape[0] >= 1):
            raise ValueError(f"Episode {self.sample_id}: frames must be uint8 (N, H, W, 3) with N >= 1, got "
                             f"{getattr(frames, 'dtype', type(frames))} {getattr(frames, 'shape', '')}.")
        if self.source not in ("generated", "real"):
            raise ValueError(f"Episode {self.sample_id}: source={self.source!r}; use 'generated' or 'real'.")
        for name in ("actions", "states"):
            values = getattr(self, name)
            if values is None:
                continue
            values = np.asarray(values, dtype=np.float32)
            if values.ndim != 2 or values.shape[0] != self.num_frames:
                raise ValueError(f"Episode {self.sample_id}: {name} must be ({self.num_frames}, dim), one row per "
                                 f"frame, got shape {values.shape}.")
            object.__setattr__(self, name, values)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


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
            raise ValueError(f"Manifest {manifest} line {number}: sample_id {row['sample_id']!r} appears twice; "
                             "each generated video needs its own id.")
        seen.add(row["sample_id"])
        video = (manifest.parent / row["video"]).resolve()  # an absolute `video` stays as it is
        if not video.is_file():
            raise ValueError(f"Manifest {manifest} line {number} names video {video}, which does not exist; "
                             "regenerate it or remove the row.")
        resolved.append({**row, "video": video})
    return resolved


def load_episode(row: dict[str, Any]) -> Episode:
    """Decode one manifest row's video into an Episode (no actions: labelling is a later stage)."""
    frames, _ = read_video(row["video"])
    expected = row.get("num_frames")
    if expected is not None and frames.shape[0] != int(expected):
        raise ValueError(f"Video {row['video']} has {frames.shape[0]} frames; the manifest says {expected}. "
                         "Regenerate the video or fix the manifest.")
    return Episode(sample_id=str(row["sample_id"]), frames=frames, task=str(row["prompt"]),
                   source=row.get("source", "generated"))


def iter_episodes(manifest: Path) -> Iterator[Episode]:
    """Episodes of a generate manifest, decoded one video at a time (memory stays flat in the number of episodes).

    The manifest is validated now, when this is called, so a missing video fails before anything is written.
    """
    rows = read_manifest_rows(manifest)
    return (load_episode(row) for row in rows)
