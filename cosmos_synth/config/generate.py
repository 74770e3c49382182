"""The generate stage's config: one video per (image, prompt) pair, chained past the model's window."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cosmos_synth.config.checks import _check_chunks, _check_frames, _check_size, _require
from cosmos_synth.models import NVIDIA_MODEL, NVIDIA_REVISION


@dataclass(frozen=True, kw_only=True)
class GenerateConfig:
    """One video per (image .png, prompt .txt) pair, with NumPy-drawn initial latents."""

    model: str = NVIDIA_MODEL  # Hub id or local folder
    revision: str | None = NVIDIA_REVISION  # Hub revision (ignored for local folders)
    pairs_dir: Path  # folder of <id>.png + <id>.txt
    out_dir: Path  # videos/<id>.mp4 + manifest.jsonl
    adapter: Path | None = None  # folder holding pytorch_lora_weights.safetensors (None: base model)
    height: int = 432  # pixels, multiple of 16
    width: int = 768  # pixels, multiple of 16
    num_frames: int = 93  # output frames (4k+1); more than chunk_frames: one long video of chained chunks
    # frames per model call (4k+1): the model's window (93 for Cosmos Predict 2.5, 17 for the demo world model).
    # num_frames > chunk_frames chains chunks (cosmos_synth.chain): each continues from the one before
    chunk_frames: int = 93
    # frames of the video so far that the next chunk is conditioned on: 1 (one latent frame) or 5 (two latent frames,
    # which carry motion as well as the scene)
    chunk_overlap_frames: int = 5
    num_steps: int = 36  # denoising steps
    guidance_scale: float = 7.0  # classifier-free guidance
    fps: int = 16  # frames per second of the written mp4
    # the pair with index i uses seed + i, drawn with NumPy (chunk k > 0 of a long video: chain.chunk_seed)
    seed: int = 0
    dtype: Literal["float32", "bfloat16"] = "bfloat16"
    device: str = "cuda"  # "cuda", "cuda:1", "cpu"
    guardrail: bool = True  # NVIDIA's guardrail for NVIDIA weights (the tiny model has none)
    # CUDA: keep the text encoder in host memory, stream its layers while encoding, so it never shares the GPU with the
    # DiT
    stream_text_encoder: bool = True
    compile: bool = False  # torch.compile the DiT blocks once per worker (first video compiles)
    attention_backend: str | None = None  # diffusers attention backend, e.g. "_native_cudnn"; None: SDPA
    # block linears in FP8 (e4m3, per-row scales) after the adapter is fused; needs compute capability 8.9+; changes
    # pixels (RESULTS.md)
    fp8_matmuls: bool = False
    # blocks' self-attention in FP8 through cuDNN (Hopper+, the [fp8] extra); changes pixels (RESULTS.md)
    fp8_attention: bool = False
    # this run is one shard of a fanned-out generation: its manifest is shards/<shard>.jsonl, merged by the parent
    # (generate.merge_shards)
    shard: str | None = None
    sample_ids: tuple[str, ...] | None = None  # with shard: the pair ids this shard generates (None: every pair)
    # bad pairs: "strict" stops at the first; "lenient" skips each and records it in quarantine.jsonl (see
    # cosmos_synth.validate)
    mode: Literal["strict", "lenient"] = "strict"

    def __post_init__(self) -> None:
        if self.sample_ids is not None:
            object.__setattr__(self, "sample_ids", tuple(self.sample_ids))
        _require(
            self.shard is None or (self.shard.replace("-", "").replace("_", "").isalnum()),
            f"shard={self.shard!r}: use letters, digits, '-' and '_' (e.g. 'shard-003').",
        )
        _check_size(self.height, self.width)
        _check_frames(self.num_frames)
        _check_chunks(self.num_frames, self.chunk_frames, self.chunk_overlap_frames)
        _require(self.num_steps >= 1, f"num_steps={self.num_steps} must be >= 1.")
        _require(self.fps >= 1, f"fps={self.fps} must be >= 1.")
        _require(
            self.mode in ("strict", "lenient"),
            f"mode={self.mode!r}: use 'strict' (stop at the first bad "
            f"pair) or 'lenient' (skip bad pairs, recording each in quarantine.jsonl).",
        )
