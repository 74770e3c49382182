"""Latent cache: prompt embeddings and VAE latents computed once, so training holds only the DiT on the GPU.

The reference encodes the video window and the prompt on every step, with the 8B text encoder and the VAE resident.
Both are deterministic functions of (model weights, resolution, frames, source file, window start), so this stage
computes them once. Temporal augmentation is kept by caching `num_windows` windows per video at seeded random
starts; training picks one of them per epoch (:func:`pick_window`), so every epoch still sees a different window
while nothing but the DiT runs on the GPU. Each entry is keyed by a hash of everything that determines it: a change
of model, revision, size, frame count, source video bytes or seed misses the cache and is recomputed.

Layout under `out_dir`: `prompts/<caption sha256>.safetensors` (key `prompt_embeds`, bfloat16 [1, 512, D]),
`latents/<sample_id>.safetensors` (key `latents`, [W, C, T, H, W]; metadata: cache key, window starts) and
`manifest.jsonl` (one row per clip: sample_id, latents, prompt, caption, key).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from cosmos_synth.config import CacheConfig, write_config
from cosmos_synth.encoding import embed_prompt, encode_video
from cosmos_synth.files import atomic_write, file_sha256, read_jsonl, write_jsonl
from cosmos_synth.layout import MANIFEST
from cosmos_synth.models import load_pipeline, model_fingerprint
from cosmos_synth.preprocess import clip_shape, load_clip
from cosmos_synth.progress import Progress, ProgressReporter
from cosmos_synth.results import StageResult

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class CacheResult(StageResult):  # manifest: out_dir / manifest.jsonl, one row per clip
    num_clips: int
    num_encoded: int  # clips (re)encoded by this run; the rest were cache hits
    num_prompts: int

    def summary_rows(self) -> list[dict]:
        return [
            {"sample_id": r["sample_id"], "key": r["key"][:12], "windows": len(r["starts"])}
            for r in read_jsonl(self.manifest)
        ]


def cache_key(cfg: CacheConfig, fingerprint: str, source_sha256: str, height: int, width: int) -> str:
    """What determines a clip's cached latents (`fingerprint`: models.model_fingerprint of cfg.model)."""
    parts = {
        "model": fingerprint,
        "height": height,
        "width": width,
        "num_frames": cfg.num_frames,
        "num_windows": cfg.num_windows,
        "seed": cfg.seed,
        "source": source_sha256,
        "dtype": cfg.dtype,
        "version": 1,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def window_starts(total: int, cfg: CacheConfig, sample_id: str) -> list[int]:
    """`num_windows` seeded random starts in [0, total - num_frames] (distinct where the clip allows)."""
    span = total - cfg.num_frames + 1
    if span < 1:
        raise ValueError(f"clip {sample_id} has {total} frames; num_frames={cfg.num_frames} needs at least that many.")
    seed = int(hashlib.sha256(f"{cfg.seed}:{sample_id}".encode()).hexdigest()[:8], 16)
    order = torch.randperm(span, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[: cfg.num_windows]) if span >= cfg.num_windows else sorted(order)


def _is_hit(path: Path, key: str) -> bool:
    if not path.is_file():
        return False
    with safe_open(str(path), framework="pt") as fh:
        return (fh.metadata() or {}).get("key") == key


def _save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    with atomic_write(path) as tmp:
        save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def encode_latent_cache(cfg: CacheConfig, pipe=None, progress: Progress | None = None) -> CacheResult:
    """Encode every preprocessed clip's windows and every caption once; reuse entries whose key still matches.
    `progress` gets the clips done."""
    clips = read_jsonl(cfg.data_dir / MANIFEST)
    report = ProgressReporter(progress, "cache", total=len(clips), unit="clip").start()
    fingerprint = model_fingerprint(cfg.model, cfg.revision)
    rows, encoded, prompts = [], 0, {}
    for index, clip in enumerate(clips, start=1):
        length, height, width, _ = clip_shape(Path(clip["clip"]))  # a cache hit reads no frames
        key = cache_key(cfg, fingerprint, file_sha256(Path(clip["source_video"])), height, width)
        starts = window_starts(length, cfg, clip["sample_id"])
        latents_path = cfg.out_dir / "latents" / f"{clip['sample_id']}.safetensors"
        caption_id = hashlib.sha256(f"{fingerprint}\n{clip['caption']}".encode()).hexdigest()
        prompt_path = cfg.out_dir / "prompts" / f"{caption_id}.safetensors"
        needs_latents, needs_prompt = not _is_hit(latents_path, key), not _is_hit(prompt_path, caption_id)
        if (needs_latents or needs_prompt) and pipe is None:
            pipe = load_pipeline(cfg.model, cfg.revision, dtype=cfg.dtype, device=cfg.device, guardrail=False)
        if needs_latents:
            frames = load_clip(Path(clip["clip"]))
            # the same [-1, 1] normalisation as preprocess.sample_window
            windows = [frames[s : s + cfg.num_frames].permute(3, 0, 1, 2).float() / 127.5 - 1.0 for s in starts]
            latents = torch.cat([encode_video(pipe, w.unsqueeze(0)) for w in windows])
            _save(
                {"latents": latents.to(torch.bfloat16 if cfg.dtype == "bfloat16" else torch.float32)},
                latents_path,
                {"key": key, "starts": json.dumps(starts)},
            )
            encoded += 1
        if needs_prompt:
            _save({"prompt_embeds": embed_prompt(pipe, clip["caption"], cfg.device)}, prompt_path, {"key": caption_id})
        prompts[caption_id] = prompt_path
        rows.append(
            {
                "sample_id": clip["sample_id"],
                "latents": str(latents_path.resolve()),
                "prompt": str(prompt_path.resolve()),
                "caption": clip["caption"],
                "key": key,
                "starts": starts,
            }
        )
        logger.info("cache %d/%d %s: %s", index, len(clips), clip["sample_id"], "encoded" if needs_latents else "hit")
        report.advance()
    manifest = write_jsonl(cfg.out_dir / MANIFEST, rows)
    write_config(cfg, cfg.out_dir, "cache")
    return CacheResult(
        out_dir=cfg.out_dir, manifest=manifest, num_clips=len(rows), num_encoded=encoded, num_prompts=len(prompts)
    )


def load_cached(row: dict, prompt_embeds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(latents [W, C, T, H, W], prompt_embeds [1, L, D]) of one cache manifest row (`prompt_embeds`: the row's
    prompt already loaded, for clips that share a caption)."""
    if prompt_embeds is None:
        prompt_embeds = load_file(row["prompt"])["prompt_embeds"]
    return load_file(row["latents"])["latents"], prompt_embeds


def pick_window(latents: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One cached window, chosen at random per epoch (the cached form of the reference's random window)."""
    index = int(torch.randint(0, latents.shape[0], (1,), generator=generator))
    return latents[index : index + 1]
