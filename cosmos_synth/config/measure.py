"""The labelling and measuring stages' configs: the inverse-dynamics model, labelling, evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cosmos_synth.config.checks import _check_chunks, _check_frames, _check_size, _require
from cosmos_synth.models import NVIDIA_MODEL, NVIDIA_REVISION
from cosmos_synth.tracking import check_report_to


@dataclass(frozen=True, kw_only=True)
class IDMTrainConfig:
    """Train the inverse-dynamics model (cosmos_synth.idm) on the ingested episodes that have trajectories."""

    # ingest's manifest.jsonl; rows whose "trajectory" .npz holds `action` (and `state`: then the IDM gets a state head)
    manifest: Path
    out_dir: Path  # idm.safetensors, idm_config.json, idm_metrics.json, this config
    # one name per action dim, e.g. ("delta_x", "delta_y", "gripper_command"); None: action_0, action_1, ...
    action_names: tuple[str, ...] | None = None
    # one name per state dim, e.g. ("gripper_x", "gripper_y", "gripper_opening", "object_x", "object_y"); None:
    # state_0, state_1, ...
    state_names: tuple[str, ...] | None = None
    clip_frames: int = 3  # k consecutive frames in, the actions of their k - 1 transitions out
    image_size: tuple[int, int] = (64, 96)  # (height, width) in pixels the frames are resized to
    num_epochs: int = 30  # passes over every training window (one window per start frame)
    batch_size: int = 64  # windows per optimizer step
    learning_rate: float = 1e-3  # AdamW peak learning rate (linear warm-up, cosine decay to 0)
    holdout_fraction: float = 0.25  # fraction of EPISODES (not frames) held out for evaluation, >= 1 episode
    seed: int = 0  # weights, shuffling and the held-out episodes
    device: str = "cpu"  # "cpu", "cuda", "cuda:1"
    report_to: Literal["tensorboard", "wandb", "none"] = "tensorboard"  # per epoch: loss, lr

    def __post_init__(self) -> None:
        check_report_to(self.report_to)
        for field_name in ("action_names", "state_names"):
            names = getattr(self, field_name)
            if names is None:
                continue
            names = tuple(str(name) for name in names)
            object.__setattr__(self, field_name, names)
            _require(
                len(set(names)) == len(names) and all(names),
                f"{field_name}={names}: names must be non-empty and distinct.",
            )
        size_message = f"image_size={self.image_size}: give (height, width), each at least 16 pixels (e.g. (64, 96))."
        _require(isinstance(self.image_size, (tuple, list)) and len(self.image_size) == 2, size_message)
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        _require(min(self.image_size) >= 16, size_message)
        _require(2 <= self.clip_frames <= 16, f"clip_frames={self.clip_frames}: use 2 to 16 frames (e.g. 3).")
        _require(self.num_epochs >= 1, f"num_epochs={self.num_epochs} must be >= 1.")
        _require(self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1.")
        _require(self.learning_rate > 0, f"learning_rate={self.learning_rate} must be > 0 (e.g. 1e-3).")
        _require(
            0 < self.holdout_fraction < 1,
            f"holdout_fraction={self.holdout_fraction}: use a fraction in (0, 1), e.g. 0.25.",
        )


@dataclass(frozen=True, kw_only=True)
class LabelConfig:
    """Label every generated video with per-frame actions predicted by a trained IDM."""

    manifest: Path  # generate's manifest.jsonl
    # folder holding idm.safetensors + idm_config.json (train_idm's out_dir, or your own IDM saved the same way)
    idm: Path
    out_dir: Path  # actions/<sample_id>.npz, manifest.jsonl, label_config.json
    batch_size: int = 64  # clips per IDM forward pass
    device: str = "cpu"  # "cpu", "cuda", "cuda:1"

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1.")


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    """Held-out real episodes against what each model generates from their first frame and caption."""

    # held-out real episodes in the GR1 layout (metadata.csv + videos; trajectories/ for tracking error and IDM scores)
    episodes_dir: Path
    out_dir: Path  # metrics.json, episodes.jsonl, report.md, sheet-*.png, <model>/ videos
    # name -> training out_dir (LoRA/DoRA/full) or None for the base model, e.g. {"base": None, "lora":
    # "runs/demo/train"}
    models: dict[str, str | None] = field(default_factory=lambda: {"base": None})
    # name -> a generate out_dir already holding that model's videos of these episodes' pairs (reused, not generated
    # again)
    generated: dict[str, str] = field(default_factory=dict)
    # the episodes' (first frame, caption) pairs, ids = episode names; None: written from the videos into out_dir/pairs
    pairs_dir: Path | None = None
    model: str = NVIDIA_MODEL  # Hub id or local folder, as for generate
    revision: str | None = NVIDIA_REVISION
    height: int = 432  # generation settings, as for generate
    width: int = 768
    # the episodes' length; more than chunk_frames: chained chunks, measured per chunk (cosmos_synth.chunk_metrics)
    num_frames: int = 93
    chunk_frames: int = 93  # as for generate
    chunk_overlap_frames: int = 5  # as for generate
    num_steps: int = 36
    guidance_scale: float = 7.0
    fps: int = 16
    seed: int = 0
    dtype: Literal["float32", "bfloat16"] = "bfloat16"
    device: str = "cuda"
    guardrail: bool = True
    # an IDM folder: its labels of generated videos scored against the real episodes' actions (idm_action_mse)
    idm: Path | None = None
    # auto: the demo world's rule-based judge when every caption is a demo-world prompt; none: image metrics only
    # (GR1-style data)
    judge: Literal["auto", "demo", "none"] = "auto"
    max_episodes: int | None = None  # the first N held-out episodes (None: all)
    sheet_episodes: int = 4  # episodes drawn in each contact sheet (real above each model)

    def __post_init__(self) -> None:
        models = {str(k): (None if v in (None, "") else str(v)) for k, v in dict(self.models).items()}
        object.__setattr__(self, "models", models)
        object.__setattr__(self, "generated", {str(k): str(v) for k, v in dict(self.generated).items()})
        _require(
            bool(models) and all(k.replace("-", "").replace("_", "").isalnum() for k in models),
            f"models={models}: name at least one model, with letters, digits, '-' and '_' (e.g. base, lora).",
        )
        _require(
            set(self.generated) <= set(models),
            f"generated names {sorted(set(self.generated) - set(models))} "
            f"are not in models {sorted(models)}; reuse videos only of models being evaluated.",
        )
        _check_size(self.height, self.width)
        _check_frames(self.num_frames)
        _check_chunks(self.num_frames, self.chunk_frames, self.chunk_overlap_frames)
        _require(self.num_steps >= 1, f"num_steps={self.num_steps} must be >= 1.")
        _require(
            self.max_episodes is None or self.max_episodes >= 1,
            f"max_episodes={self.max_episodes} must be >= 1 (or null for every episode).",
        )
