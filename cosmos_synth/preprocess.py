"""Preprocess: resize every ingested video to the training resolution, once.

Frames are resized exactly as diffusers' `VideoProcessor` does for the pipeline (bilinear, on float frames) and
stored as uint8 so the cache stays small; training normalises them to [-1, 1] and draws a random contiguous
window of `num_frames` per epoch (:func:`sample_window`), the reference's temporal augmentation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from cosmos_synth.config import PreprocessConfig, write_config
from cosmos_synth.files import atomic_write, read_jsonl, write_jsonl
from cosmos_synth.layout import MANIFEST
from cosmos_synth.results import StageResult
from cosmos_synth.video import read_video

logger = logging.getLogger(__name__)

CLIPS_DIR = "clips"
RESIZE_CHUNK = 16  # frames resized at a time: bounds memory for long, large videos


@dataclass(frozen=True, kw_only=True)
class PreprocessResult(StageResult):  # manifest: out_dir / manifest.jsonl, one row per clip
    num_clips: int

    def summary_rows(self) -> list[dict]:
        return [
            {"sample_id": r["sample_id"], "frames": r["num_frames"], "size": f"{r['height']}x{r['width']}"}
            for r in read_jsonl(self.manifest)
        ]


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (T, H, W, 3) → uint8 (T, height, width, 3), resized as the pipeline's VideoProcessor resizes."""
    from diffusers.video_processor import VideoProcessor

    processor = VideoProcessor(vae_scale_factor=8, resample="bilinear")
    out = []
    for start in range(0, len(frames), RESIZE_CHUNK):
        chunk = frames[start : start + RESIZE_CHUNK].astype(np.float32) / 255.0
        video = processor.preprocess_video(chunk[None], height, width)  # (1, C, T, h, w) in [-1, 1]
        out.append(((video[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy())
    return np.concatenate(out)


def _clip_key(source: Path, cfg: PreprocessConfig) -> dict[str, str]:
    """What determines a clip: the source file (size, mtime) and the target size."""
    stat = source.stat()
    return {
        "source": str(source),
        "size": str(stat.st_size),
        "mtime_ns": str(stat.st_mtime_ns),
        "height": str(cfg.height),
        "width": str(cfg.width),
    }


def _clip_is_current(path: Path, key: dict[str, str]) -> bool:
    if not path.is_file():
        return False
    with safe_open(str(path), framework="pt") as fh:
        return fh.metadata() == key


def preprocess_dataset(cfg: PreprocessConfig) -> PreprocessResult:
    """Resize each video in the ingest manifest to cfg.height x cfg.width; reuse clips already written."""
    rows = read_jsonl(cfg.manifest)
    clips_dir = cfg.out_dir / CLIPS_DIR
    clips_dir.mkdir(parents=True, exist_ok=True)
    out_rows = []
    for index, row in enumerate(rows, start=1):
        clip = clips_dir / f"{row['sample_id']}.safetensors"
        source = Path(row["video"])
        key = _clip_key(source, cfg)
        if not _clip_is_current(clip, key):
            frames, _ = read_video(source)
            resized = resize_frames(frames, cfg.height, cfg.width)
            with atomic_write(clip) as tmp:
                save_file({"frames": torch.from_numpy(resized)}, str(tmp), metadata=key)
            logger.info(
                "clip %d/%d %s: %d frames -> %dx%d",
                index,
                len(rows),
                row["sample_id"],
                len(frames),
                cfg.height,
                cfg.width,
            )
        out_rows.append(
            {
                "sample_id": row["sample_id"],
                "clip": str(clip.resolve()),
                "caption": row["caption"],
                "num_frames": row["num_frames"],
                "height": cfg.height,
                "width": cfg.width,
                "source_video": str(source),
            }
        )
    manifest = write_jsonl(cfg.out_dir / MANIFEST, out_rows)
    write_config(cfg, cfg.out_dir, "preprocess")
    return PreprocessResult(out_dir=cfg.out_dir, manifest=manifest, num_clips=len(out_rows))


def load_clip(path: Path) -> torch.Tensor:
    """A preprocessed clip as uint8 (T, H, W, 3)."""
    return load_file(str(path))["frames"]


def clip_shape(path: Path) -> tuple[int, int, int, int]:
    """A preprocessed clip's (T, H, W, 3), from the file's header alone (no frame is read)."""
    with safe_open(str(path), framework="pt") as fh:
        return tuple(fh.get_slice("frames").get_shape())


def sample_window(frames: torch.Tensor, num_frames: int, generator: torch.Generator) -> torch.Tensor:
    """A random contiguous window of `num_frames`, as float (3, num_frames, H, W) in [-1, 1]."""
    total = frames.shape[0]
    if total < num_frames:
        raise ValueError(f"clip has {total} frames; num_frames={num_frames} needs at least {num_frames}.")
    start = int(torch.randint(0, total - num_frames + 1, (1,), generator=generator))
    window = frames[start : start + num_frames].permute(3, 0, 1, 2).float()
    return window / 127.5 - 1.0
