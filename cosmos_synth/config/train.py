"""The fine-tuning stage's config (LoRA, DoRA or a full fine-tune of the DiT)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cosmos_synth.config.checks import _check_frames, _require
from cosmos_synth.models import NVIDIA_MODEL, NVIDIA_REVISION
from cosmos_synth.tracking import check_report_to

TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """LoRA/DoRA (or full) fine-tuning of the Cosmos DiT with the reference flow-matching loss."""

    model: str = NVIDIA_MODEL  # Hub id or local folder
    revision: str | None = NVIDIA_REVISION  # Hub revision (ignored for local folders)
    data_dir: Path  # preprocess output (clips/ + manifest.jsonl)
    out_dir: Path  # checkpoints/, pytorch_lora_weights.safetensors, logs
    # full: every DiT parameter trains (rank, alpha and target_modules unused); weights go to out_dir/transformer/
    adapter: Literal["lora", "dora", "full"] = "lora"
    rank: int = 32  # LoRA rank r
    alpha: int = 32  # LoRA alpha (scale = alpha / rank)
    target_modules: tuple[str, ...] = TARGET_MODULES  # DiT linear layers that get adapters
    num_frames: int = 93  # frames per training window (4k+1)
    num_epochs: int = 500  # passes over the dataset; one window per video per epoch
    batch_size: int = 1  # clips per optimizer step and process (the reference: 1)
    learning_rate: float = 2**-14.5  # AdamW peak learning rate
    weight_decay: float = 0.001
    max_grad_norm: float = 1.0
    num_warmup_steps: int = 1000  # linear warm-up, in optimizer steps
    num_training_steps: int = 100_000  # horizon of the linear schedule (not the run length)
    f_min: float = 0.2  # schedule floor, as a fraction of learning_rate
    f_max: float = 0.5  # schedule ceiling after warm-up, fraction of learning_rate
    cfg_dropout_prob: float = 0.2  # probability of zeroing a sample's prompt embedding
    cond_frame_probs: dict[int, float] = field(default_factory=lambda: {1: 0.5, 2: 0.5})  # latent cond frames
    cond_frame_timestep: float = 0.0001  # timestep given to conditioning latent frames
    checkpoint_every_epochs: int = 100  # accelerate checkpoint period
    seed: int = 0
    dtype: Literal["float32", "bfloat16"] = "bfloat16"  # frozen weights' dtype; trained params stay float32
    gradient_checkpointing: bool = True
    num_processes: int = 1  # processes for `accelerate launch` (one per GPU)
    cpu: bool = False  # force CPU (tests, the demo)
    # cache stage output: train on cached latents + prompt embeddings (only the DiT on the GPU); None: encode per step
    latent_cache: Path | None = None
    # with gradient_checkpointing: how many of the DiT blocks to recompute (None: all; fewer is faster, needs more
    # memory)
    checkpoint_layers: int | None = None
    # what a checkpointed block keeps: its inputs only ("full"), or also its self-attention output, recomputing only
    # projections, norms, cross-attention and MLP (≈ 20% faster, ≈ 2 GiB more at full size)
    checkpoint_policy: Literal["full", "save_attention"] = "save_attention"
    compile: bool = False  # torch.compile each DiT block (regional; first step compiles)
    # with compile: fraction (0-1) of activations to keep; the compiler recomputes cheap ops for the rest (None:
    # default)
    activation_memory_budget: float | None = None
    attention_backend: str | None = None  # diffusers attention backend, e.g. "_native_cudnn"; None: SDPA
    # frozen block linears in FP8 (e4m3, per-row scales), forward and input gradient; needs compute capability 8.9+;
    # moves the loss slightly (benchmarks/RESULTS.md)
    fp8_matmuls: bool = False
    report_to: Literal["tensorboard", "wandb", "none"] = "tensorboard"  # per step: loss, lr, grad_norm, memory

    def __post_init__(self) -> None:
        # JSON (Prefect parameters, --param) delivers dict keys as strings: normalise them once, here.
        probs = {int(k): float(v) for k, v in dict(self.cond_frame_probs).items()}
        object.__setattr__(self, "cond_frame_probs", probs)
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        _require(set(probs) <= {1, 2} and probs, f"cond_frame_probs={probs}: keys must be 1 or 2 latent frames.")
        _require(abs(sum(probs.values()) - 1.0) < 1e-6, f"cond_frame_probs={probs}: probabilities must sum to 1.")
        _check_frames(self.num_frames)
        _require(self.num_frames >= 5, f"num_frames={self.num_frames}: training needs at least 2 latent frames (5).")
        _require(self.rank >= 1 and self.alpha >= 1, f"rank={self.rank}, alpha={self.alpha} must be >= 1.")
        _require(self.num_epochs >= 1, f"num_epochs={self.num_epochs} must be >= 1.")
        _require(self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1.")
        _require(0 <= self.cfg_dropout_prob <= 1, f"cfg_dropout_prob={self.cfg_dropout_prob} must be in [0, 1].")
        _require(0 <= self.f_min <= self.f_max <= 1, f"need 0 <= f_min ({self.f_min}) <= f_max ({self.f_max}) <= 1.")
        _require(self.checkpoint_every_epochs >= 1, "checkpoint_every_epochs must be >= 1.")
        _require(self.num_processes >= 1, f"num_processes={self.num_processes} must be >= 1.")
        _require(
            self.activation_memory_budget is None or 0 < self.activation_memory_budget <= 1,
            f"activation_memory_budget={self.activation_memory_budget} must be in (0, 1], e.g. 0.5.",
        )
        _require(
            self.checkpoint_layers is None or self.checkpoint_layers >= 0,
            f"checkpoint_layers={self.checkpoint_layers} must be >= 0 (or None for every block).",
        )
        check_report_to(self.report_to)
