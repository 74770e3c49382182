"""The data stages' configs: the demo world's recorder, ingest, preprocess and the latent cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cosmos_synth.config.checks import _check_frames, _check_size, _require
from cosmos_synth.models import NVIDIA_MODEL, NVIDIA_REVISION


@dataclass(frozen=True, kw_only=True)
class DemoDataConfig:
    """The demo world's recorder (cosmos_synth.sources.procedural): expert rollouts, deterministic for a seed."""

    # dataset root to write (GR1 layout: metadata.csv, videos/, trajectories/, test/ pairs, heldout/ episodes)
    out_dir: Path
    # pick_place: the pretraining family; push: the new family the demo world model never saw
    task_family: Literal["pick_place", "push"] = "pick_place"
    num_episodes: int = 8  # training episodes
    # pretraining-family (pick_place) episodes added to the training episodes of a new family: rehearsal, so that a
    # fine-tune on them does not forget what the model knew; scene seeds follow the demonstrations' (0: none)
    replay_episodes: int = 0
    # held-out episodes per held-out family: recorded under heldout/, their first frame + prompt as (image .png, prompt
    # .txt) pairs under test/
    num_test_pairs: int = 4
    # families of the held-out episodes (each on the same held-out scenes); empty: task_family only. E.g. ("push",
    # "pick_place") to see forgetting
    heldout_families: tuple[str, ...] = ()
    num_frames: int = 17  # frames per episode (at least 8: the expert's phases)
    height: int = 64  # pixels
    width: int = 96  # pixels
    fps: int = 16  # frames per second of the written videos
    seed: int = 0  # training episode i uses scene seed + i
    heldout_seed: int = 1_000_000  # held-out episode k uses scene heldout_seed + k (a range of its own)

    def __post_init__(self) -> None:
        object.__setattr__(self, "heldout_families", tuple(self.heldout_families))
        _require(
            set(self.heldout_families) <= {"pick_place", "push"}
            and len(set(self.heldout_families)) == len(self.heldout_families),
            f"heldout_families={list(self.heldout_families)}: use distinct families out of 'pick_place' and 'push'.",
        )
        _require(self.num_episodes >= 1, f"num_episodes={self.num_episodes}: need at least 1 episode.")
        _require(self.replay_episodes >= 0, f"replay_episodes={self.replay_episodes} must be >= 0.")
        _require(
            self.replay_episodes == 0 or self.task_family != "pick_place",
            f"replay_episodes={self.replay_episodes} with task_family='pick_place': replay adds pick_place episodes "
            "to a new family's; set task_family='push' or replay_episodes=0.",
        )
        _require(self.num_test_pairs >= 0, f"num_test_pairs={self.num_test_pairs} must be >= 0.")
        _require(self.num_frames >= 8, f"num_frames={self.num_frames}: an expert episode needs at least 8 frames.")
        _require(self.height >= 16 and self.width >= 16, "height and width must be at least 16 pixels.")
        _require(
            self.seed + self.num_training <= self.heldout_seed or self.seed >= self.heldout_seed + self.num_test_pairs,
            f"seeds {self.seed}..{self.seed + self.num_training - 1} overlap the held-out "
            f"seeds from heldout_seed={self.heldout_seed}; move seed or heldout_seed apart.",
        )

    @property
    def num_training(self) -> int:
        """Training episodes written: the demonstrations, then the replayed pretraining-family episodes."""
        return self.num_episodes + self.replay_episodes


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    """Read a dataset folder in the GR1 layout, validate every sample, write a manifest."""

    dataset_dir: Path  # root holding metadata.csv and the videos it names
    out_dir: Path  # where manifest.jsonl and ingest_config.json go
    min_frames: int = 93  # every video must have at least this many frames (the training window)
    caption_prefix: str = ""  # prepended to every caption, e.g. "The robot arm is performing a task. "
    # folder under dataset_dir holding the videos when metadata.csv names them by file name only (GR1-100: "gr1"); None:
    # paths are relative to dataset_dir
    videos_dir: str | None = None
    # bad samples: "strict" stops at the first; "lenient" skips each and records it in out_dir/quarantine.jsonl (see
    # cosmos_synth.validate)
    mode: Literal["strict", "lenient"] = "strict"

    def __post_init__(self) -> None:
        _require(self.min_frames >= 1, f"min_frames={self.min_frames} must be >= 1.")
        _require(
            self.mode in ("strict", "lenient"),
            f"mode={self.mode!r}: use 'strict' (stop at the first bad "
            f"sample) or 'lenient' (skip bad samples, recording each in quarantine.jsonl).",
        )


@dataclass(frozen=True, kw_only=True)
class PreprocessConfig:
    """Resize every ingested video to the training resolution and store it as uint8 frames."""

    manifest: Path  # ingest's manifest.jsonl
    out_dir: Path  # where clips/ and manifest.jsonl go
    height: int = 432  # pixels, multiple of 16
    width: int = 768  # pixels, multiple of 16

    def __post_init__(self) -> None:
        _check_size(self.height, self.width)


@dataclass(frozen=True, kw_only=True)
class CacheConfig:
    """Encode prompts and video windows once (see cosmos_synth.cache) so training holds only the DiT."""

    model: str = NVIDIA_MODEL  # Hub id or local folder
    revision: str | None = NVIDIA_REVISION  # Hub revision (ignored for local folders)
    data_dir: Path  # preprocess output (clips/ + manifest.jsonl)
    out_dir: Path  # prompts/, latents/, manifest.jsonl
    num_frames: int = 93  # frames per window (4k+1)
    num_windows: int = 4  # cached windows per video; training picks one per epoch
    seed: int = 0  # window starts are drawn from (seed, sample id)
    dtype: Literal["float32", "bfloat16"] = "bfloat16"
    device: str = "cuda"

    def __post_init__(self) -> None:
        _check_frames(self.num_frames)
        _require(self.num_windows >= 1, f"num_windows={self.num_windows} must be >= 1.")
