"""Episodes as the export writers see them, and a video manifest read one video at a time.

Generated episodes come from the label stage's manifest: a row's `actions` names a .npz whose `action` array, (T, A)
with one row per video frame, becomes `Episode.actions`, and whose `state` array, (T, S), when the IDM has a state
head, becomes `Episode.states`; the row's `action_names` and `state_names` name their columns. Real episodes come
from the ingest stage's manifest: a row's `trajectory` .npz holds the recorded `action` and `state`, and its
`caption` is the task. (cosmos_synth.manifests reads both manifests and both kinds of .npz.)
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
from cosmos_synth.manifests import read_manifest_rows, read_trajectory, row_task
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
    states: np.ndarray | None = None  # (N, D) float, one state per frame (labelled or recorded)
    action_names: tuple[str, ...] | None = None  # one per action column, e.g. ("delta_x", "delta_y", ...)
    state_names: tuple[str, ...] | None = None  # one per state column, e.g. ("gripper_x", "gripper_y", ...)

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
        for name, values in (("action_names", self.actions), ("state_names", self.states)):
            names = getattr(self, name)
            if names is None:
                continue
            names = tuple(str(n) for n in names)
            if values is None or len(names) != values.shape[1]:
                raise ValueError(
                    f"Episode {self.sample_id}: {len(names)} {name} for "
                    f"{None if values is None else values.shape[1]} columns; give one name per column (or none)."
                )
            object.__setattr__(self, name, names)

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


def read_row_arrays(row: dict[str, Any], num_frames: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(actions, states) of a manifest row: its label .npz (`actions`), its recorded trajectory (`trajectory`),
    or neither (None, None); one row per video frame."""
    if row.get("actions"):
        path, (actions, states) = row["actions"], read_trajectory(row["actions"])
        fix = "Rerun the label stage"
    elif row.get("trajectory"):
        path, fix = row["trajectory"], "Rewrite the trajectory with one row per frame and rerun ingest"
        actions, states = read_trajectory(row["trajectory"], what="Trajectory", fix=fix.lower())
    else:
        return None, None
    if len(actions) != num_frames:
        raise ValueError(
            f"{path} has {len(actions)} action rows; video {row['video']} has {num_frames} frames and needs one "
            f"row per frame. {fix}."
        )
    return actions, states


def load_episode(
    row: dict[str, Any],
    *,
    with_state: bool = True,
    action_names: tuple[str, ...] | None = None,
    state_names: tuple[str, ...] | None = None,
) -> Episode:
    """Decode one manifest row's video into an Episode, with the row's actions and states when it has them.

    with_state=False leaves the states out. action_names / state_names name the columns of a row that names none
    (an ingest row); a label row's own names win.
    """
    frames, _ = read_video(row["video"])
    expected = row.get("num_frames")
    if expected is not None and frames.shape[0] != int(expected):
        raise ValueError(
            f"Video {row['video']} has {frames.shape[0]} frames; the manifest says {expected}. "
            "Regenerate the video or fix the manifest."
        )
    actions, states = read_row_arrays(row, len(frames))
    states = states if with_state else None
    names = {}
    for key, values, default in (("action_names", actions, action_names), ("state_names", states, state_names)):
        given = row.get(key) or default
        if values is not None and given and len(given) != values.shape[1]:
            raise ValueError(
                f"Episode {row['sample_id']} has {values.shape[1]} {key.split('_')[0]} columns but {key}="
                f"{list(given)} names {len(given)}; give export.{key} one name per column."
            )
        names[key] = tuple(given) if values is not None and given else None
    return Episode(
        sample_id=str(row["sample_id"]),
        frames=frames,
        task=row_task(row),
        source=row.get("source", "real" if row.get("trajectory") else "generated"),
        actions=actions,
        states=states,
        **names,
    )


def iter_episodes(manifest: Path, **options: Any) -> Iterator[Episode]:
    """Episodes of a video manifest, decoded one video at a time (memory stays flat in the number of episodes);
    `options` go to load_episode.

    The manifest is validated now, when this is called, so a missing video fails before anything is written.
    """
    rows = read_manifest_rows(manifest)
    return (load_episode(row, **options) for row in rows)
