"""robomimic HDF5: one file, one `data/demo_<i>` group per episode, written to a temporary name and renamed.

Layout (what `robomimic.utils.dataset.SequenceDataset` and `get_dataset_info` read):
    data                      attrs: total (sum of num_samples), env_args (JSON: env_name, env_type, env_kwargs);
                              with actions also action_normalization ("min_max" or "none"), action_names (when
                              the episodes name them) and, for "min_max", action_min / action_max (A,) float32;
                              with states, state_names (when the episodes name them)
    data/demo_<i>             attrs: num_samples, sample_id, task, source
        obs/<camera>_image        (N, H, W, 3) uint8, chunked one frame per chunk, gzip
        obs/state                 (N, D) float32, only when the episode has states: the low-dim observation
                                  robomimic's policies read (config: observation.modalities.obs.low_dim = ["state"]),
                                  in the states' own units (robomimic normalises obs itself with
                                  train.hdf5_normalize_obs)
        next_obs/<key>            obs shifted by one frame; the last frame is repeated
        rewards (N,) float64      all zero: a generated video carries no reward signal
        dones   (N,) int64        1 on the last frame only
        actions (N, A) float32    only when the episode has actions (label stage); robomimic expects [-1, 1]:
                                  "min_max" (what export_episodes writes) maps each column's range over ALL demos
                                  to [-1, 1], a = 2 (raw - action_min) / (action_max - action_min) - 1, and a
                                  constant column to 0; undo with raw = (a + 1) / 2 (max - min) + min.
                                  "none" writes them as given (for actions already in [-1, 1])
        states  (N, D) float32    only when the episode has states: the same values as obs/state (robomimic's
                                  `states` is the simulator state it resets environments to)
    mask/train, mask/valid    demo names as bytes: every 10th demo (demo_9, demo_19, ...) is valid; with fewer
                              than 10 demos the last one is; with a single demo both masks hold it
Consumers that need `actions` (SequenceDataset's default keys, get_dataset_info) need labelled episodes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from cosmos_synth.export.episodes import Episode
from cosmos_synth.files import remove_stale_temporaries, temporary_path

logger = logging.getLogger(__name__)

GYM_TYPE = 2  # robomimic's EnvType.GYM_TYPE: no simulator stands behind a generated video
VALID_EVERY = 10  # demo i is in mask/valid when i % VALID_EVERY == VALID_EVERY - 1
IMAGE_COMPRESSION = {"compression": "gzip", "compression_opts": 4}
STATE_OBS = "state"  # obs/<STATE_OBS>: the episodes' states as a low-dim observation


def obs_key(camera: str) -> str:
    """robomimic's name for an image observation: `<camera>_image` (e.g. `agentview_image`)."""
    return f"{camera}_image"


def split_demos(names: list[str]) -> dict[str, list[str]]:
    """Deterministic ~90/10 train/valid split, spread over the manifest order (see the module docstring)."""
    valid = [name for i, name in enumerate(names) if i % VALID_EVERY == VALID_EVERY - 1] or names[-1:]
    train = [name for name in names if name not in valid] or list(names)
    return {"train": train, "valid": valid}


class RobomimicWriter:
    """Streams episodes into `path` through a temporary file: `add` each, `finish` (verify), `commit` (rename).

    Used as a context manager, leaving the block without `commit` (an exception) deletes the temporary file,
    so `path` is either the previous complete file or the new complete one.
    """

    def __init__(
        self, path: Path, *, camera: str, env_name: str, action_normalization: Literal["min_max", "none"] = "none"
    ) -> None:
        if action_normalization not in ("min_max", "none"):
            raise ValueError(f"action_normalization={action_normalization!r}: use 'min_max' or 'none'.")
        self.action_normalization = action_normalization
        self.action_range: tuple[np.ndarray, np.ndarray] | None = None  # per-column (min, max) over all demos
        self.action_names: tuple[str, ...] | None = None  # the first episode's
        self.state_names: tuple[str, ...] | None = None  # the first episode's
        self.path = Path(path)
        self.key = obs_key(camera)
        self.env_name = env_name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temporary_path(self.path)
        remove_stale_temporaries(self.path)  # a killed earlier export's half-written file
        self.file: h5py.File | None = h5py.File(self.tmp, "w")
        self.data = self.file.create_group("data")
        self.names: list[str] = []
        self.num_frames = 0
        self.has = {"actions": None, "states": None}  # fixed by the first episode: all or none carry each array

    def add(self, episode: Episode) -> None:
        name = f"demo_{len(self.names)}"
        demo = self.data.create_group(name)
        n, frames = episode.num_frames, episode.frames
        demo.attrs.update(num_samples=n, sample_id=episode.sample_id, task=episode.task, source=episode.source)
        write_obs(demo, self.key, frames, chunks=(1, *frames.shape[1:]), **IMAGE_COMPRESSION)
        if episode.states is not None:
            write_obs(demo, STATE_OBS, episode.states.astype(np.float32))
            self.state_names = self.state_names or episode.state_names
        dones = np.zeros(n, dtype=np.int64)
        dones[-1] = 1
        demo.create_dataset("rewards", data=np.zeros(n, dtype=np.float64))
        demo.create_dataset("dones", data=dones)
        for array in ("actions", "states"):
            values = getattr(episode, array)
            self._check_presence(episode, array, values is not None)
            if values is not None:
                demo.create_dataset(array, data=values.astype(np.float32))
        if episode.actions is not None:
            self._track_actions(episode)
        if self.action_normalization == "none" and episode.actions is not None and np.abs(episode.actions).max() > 1:
            logger.warning(
                "episode %s: actions span [%.3g, %.3g]; robomimic expects them normalised to [-1, 1].",
                episode.sample_id,
                episode.actions.min(),
                episode.actions.max(),
            )
        self.names.append(name)
        self.num_frames += n

    def finish(self) -> None:
        """Write the totals and masks, close the temporary file and read it back."""
        if not self.names:
            raise ValueError(f"No episodes to write to {self.path}; the manifest must name at least one video.")
        self.data.attrs["total"] = self.num_frames
        self.data.attrs["env_args"] = json.dumps(
            {
                "env_name": self.env_name,
                "env_type": GYM_TYPE,  # robomimic's docs name the key env_type ...
                "type": GYM_TYPE,  # ... while its env_utils reads env_meta["type"]: write both
                "env_kwargs": {},
            }
        )
        for split, names in split_demos(self.names).items():
            self.file.create_dataset(f"mask/{split}", data=np.array(names, dtype="S"))
        if self.action_range is not None:
            self._normalise_actions()
        if self.state_names is not None:
            self.data.attrs["state_names"] = list(self.state_names)
        self.file.close()
        self.file = None
        verify_robomimic_hdf5(self.tmp, num_episodes=len(self.names), num_frames=self.num_frames)

    def commit(self) -> Path:
        if self.file is not None:
            self.finish()
        self.tmp.replace(self.path)
        logger.info("robomimic: %d demos, %d frames -> %s", len(self.names), self.num_frames, self.path)
        return self.path

    def _track_actions(self, episode: Episode) -> None:
        low, high = episode.actions.min(axis=0), episode.actions.max(axis=0)
        if self.action_range is None:
            self.action_range, self.action_names = (low, high), episode.action_names
        else:
            self.action_range = (np.minimum(self.action_range[0], low), np.maximum(self.action_range[1], high))

    def _normalise_actions(self) -> None:
        """Record how `actions` are scaled; for "min_max", rescale every demo's actions in place to [-1, 1]."""
        self.data.attrs["action_normalization"] = self.action_normalization
        if self.action_names is not None:
            self.data.attrs["action_names"] = list(self.action_names)
        if self.action_normalization == "none":
            return
        low, high = (np.asarray(v, dtype=np.float32) for v in self.action_range)
        self.data.attrs["action_min"], self.data.attrs["action_max"] = low, high
        span = np.where(high > low, high - low, 1.0)
        for name in self.names:
            actions = self.data[name]["actions"]
            scaled = np.where(high > low, 2.0 * (actions[()] - low) / span - 1.0, 0.0)
            actions[...] = np.clip(scaled, -1.0, 1.0).astype(np.float32)  # clip: float rounding at the ends only

    def _check_presence(self, episode: Episode, array: str, present: bool) -> None:
        if self.has[array] is None:
            self.has[array] = present
        elif self.has[array] != present:
            raise ValueError(
                f"Episode {episode.sample_id} {'has' if present else 'lacks'} {array} but earlier "
                f"episodes {'lack' if present else 'have'} them; label all episodes or none."
            )

    def __enter__(self) -> RobomimicWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.file is not None:
                self.file.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def write_obs(demo: h5py.Group, key: str, values: np.ndarray, **options) -> None:
    """obs/<key> = values and next_obs/<key> = values one frame on (the last frame repeated)."""
    demo.require_group("obs").create_dataset(key, data=values, **options)
    demo.require_group("next_obs").create_dataset(key, data=np.concatenate([values[1:], values[-1:]]), **options)


def write_robomimic_hdf5(
    episodes: Iterable[Episode],
    path: Path,
    *,
    camera: str,
    env_name: str,
    action_normalization: Literal["min_max", "none"] = "none",
) -> Path:
    """Write `episodes` as one robomimic HDF5 file at `path`, atomically; return `path`.

    action_normalization: "min_max" rescales actions to [-1, 1] and records the range; "none" writes them as given.
    """
    with RobomimicWriter(path, camera=camera, env_name=env_name, action_normalization=action_normalization) as writer:
        for episode in episodes:
            writer.add(episode)
        return writer.commit()


def verify_robomimic_hdf5(path: Path, *, num_episodes: int, num_frames: int) -> None:
    """Read a written file back and check its structure against what was written."""

    def fail(what: str) -> ValueError:
        return ValueError(f"robomimic file {path} failed verification: {what}. Rerun the export.")

    with h5py.File(path, "r") as f:
        data = f["data"]
        names = sorted(data.keys(), key=lambda name: int(name.removeprefix("demo_")))
        if len(names) != num_episodes:
            raise fail(f"{len(names)} demos, expected {num_episodes}")
        lengths = [int(data[name].attrs["num_samples"]) for name in names]
        if int(data.attrs["total"]) != num_frames or sum(lengths) != num_frames:
            raise fail(f"total={data.attrs['total']}, demos sum to {sum(lengths)}, expected {num_frames}")
        json.loads(data.attrs["env_args"])
        for name, length in zip(names, lengths, strict=True):
            demo = data[name]
            for group in ("obs", "next_obs"):
                for key, dataset in demo[group].items():
                    dtype = np.float32 if key == STATE_OBS else np.uint8
                    if dataset.shape[0] != length or dataset.dtype != dtype:
                        raise fail(f"{name}/{group}/{key} is {dataset.dtype} {dataset.shape}, expected {length} frames")
            for key in ("rewards", "dones", "actions", "states"):
                if key in demo and demo[key].shape[0] != length:
                    raise fail(f"{name}/{key} has {demo[key].shape[0]} rows, expected {length}")
        masked = {name.decode() for split in f["mask"].values() for name in split[()]}
        if not masked <= set(names):
            raise fail(f"masks name unknown demos {sorted(masked - set(names))}")
