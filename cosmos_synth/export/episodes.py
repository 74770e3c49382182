"""Episodes as the export writers see them, and the generate manifest read one video at a time.

A manifest row with `actions` (the label stage's manifest) names a .npz whose `action` array, (T, A) with one row
per video frame, becomes `Episode.actions`; its `action_names`, when present, become `Episode.action_names`
(cosmos_synth.manifests reads both files).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cosmos_synth.export.stats import describe_values
from cosmos_synth.manifests import read_actions, read_manifest_rows
from cosmos_synth.video import read_video

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, eq=False)
class Episode:
    """One trajectory: its frames, its task, where it came from, and (once labelled) its actions and states."""

    sample_id: str  # e.g. "pair_0000": the generate manifest's id
    frames: np.ndarray  # (N, H, W, 3) uint8 RGB
    task: str  # natural-language instruction (the generation prompt)
    source: Literal["generated", "real"] = "generated"
    actions: np.ndarray | None = None  # (N, A) float, one action per frame (from the label stage)
    states: np.ndarray | None = None  # (N, D) float, one state per frame
    action_names: tuple[str, ...] | None = None  # one per action column, e.g. ("delta_x", "delta_y", ...)

    def __post_init__(self) -> None:
        frames = self.frames
        if not (
            isinstance(frames, np.ndarray)
            and frames.dtype == np.uint8
            and frames.ndim == 4
            and frames.shape[-1] == 3
            and frames.shape[0] >= 1
        ):
            raise ValueError(
                f"Episode {self.sample_id}: frames must be uint8 (N, H, W, 3) with N >= 1, got "
                f"{getattr(frames, 'dtype', type(frames))} {getattr(frames, 'shape', '')}."
            )
        if self.source not in ("generated", "real"):
            raise ValueError(f"Episode {self.sample_id}: source={self.source!r}; use 'generated' or 'real'.")
        for name in ("actions", "states"):
            values = getattr(self, name)
            if values is None:
                continue
            values = np.asarray(values, dtype=np.float32)
            if values.ndim != 2 or values.shape[0] != self.num_frames:
                raise ValueError(
                    f"Episode {self.sample_id}: {name} must be ({self.num_frames}, dim), one row per "
                    f"frame, got shape {values.shape}."
                )
            object.__setattr__(self, name, values)
        if self.action_names is not None:
            names = tuple(str(name) for name in self.action_names)
            if self.actions is None or len(names) != self.actions.shape[1]:
                raise ValueError(
                    f"Episode {self.sample_id}: {len(names)} action_names for "
                    f"{None if self.actions is None else self.actions.shape[1]} action columns; give "
                    "one name per column (or none)."
                )
            object.__setattr__(self, "action_names", names)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @cached_property
    def image_description(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The frames' sampled pixel rows and statistics, computed once and shared by every writer that needs them."""
        return describe_values(self.frames, is_image=True)


def frame_size(episode: Episode, expected: tuple[int, int] | None, *, what: str) -> tuple[int, int]:
    """The episode's (height, width): even for the first episode (H.264 yuv420p), then equal to `expected`.

    `what` names the one-size unit in the error, e.g. "LeRobot video feature".
    """
    height, width = episode.frames.shape[1:3]
    if expected is None:
        if height % 2 or width % 2:
            raise ValueError(
                f"Episode {episode.sample_id} is {height}x{width}; H.264 (yuv420p) needs even "
                "sizes. Generate at a multiple of 16 (e.g. 432x768)."
            )
        return height, width
    if (height, width) != expected:
        raise ValueError(
            f"Episode {episode.sample_id} is {height}x{width} but earlier episodes are "
            f"{expected[0]}x{expected[1]}; one {what} has one size. "
            "Export the sizes separately or regenerate at one size."
        )
    return expected


def load_episode(row: dict[str, Any]) -> Episode:
    """Decode one manifest row's video into an Episode, with the row's `actions` (a .npz) when it has them."""
    frames, _ = read_video(row["video"])
    expected = row.get("num_frames")
    if expected is not None and frames.shape[0] != int(expected):
        raise ValueError(
            f"Video {row['video']} has {frames.shape[0]} frames; the manifest says {expected}. "
            "Regenerate the video or fix the manifest."
        )
    actions = read_actions(row["actions"]) if row.get("actions") else None
    if actions is not None and (actions.ndim != 2 or len(actions) != len(frames)):
        raise ValueError(
            f"Actions file {row['actions']} has shape {actions.shape}; video {row['video']} has "
            f"{len(frames)} frames and needs one action row per frame. Rerun the label stage."
        )
    names = row.get("action_names") if actions is not None else None
    return Episode(
        sample_id=str(row["sample_id"]),
        frames=frames,
        task=str(row["prompt"]),
        source=row.get("source", "generated"),
        actions=actions,
        action_names=tuple(names) if names else None,
    )


def iter_episodes(manifest: Path) -> Iterator[Episode]:
    """Episodes of a generate manifest, decoded one video at a time (memory stays flat in the number of episodes).

    The manifest is validated now, when this is called, so a missing video fails before anything is written.
    """
    rows = read_manifest_rows(manifest)
    return (load_episode(row) for row in rows)
