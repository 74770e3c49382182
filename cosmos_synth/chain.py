"""Sampling one video from the pipeline, in one call or, past the model's window, as a chain of chunks.

The model generates `chunk_frames` frames per call (its window: 93 for Cosmos Predict 2.5). A video of
`num_frames > chunk_frames` is generated chunk by chunk: chunk 0 from the pair's image, chunk k + 1 from the last
`chunk_overlap_frames` frames generated so far, given to the pipeline as `video=` with
`num_latent_conditional_frames` 1 (the last frame) or 2 (the last 5 frames: the Wan VAE encodes the first frame
alone and each 4 more into one latent frame). The pipeline returns the chunk with its conditioning frames first,
re-decoded; they are dropped, so no frame repeats and the frames before a seam are the previous chunk's own.

Noise: chunk k is NumPy-drawn from `chunk_seed(seed, k)`; chunk 0 uses the pair's seed itself, so a video of one
chunk is what a plain pipeline call gives, and the first chunk of a long video is the short video of that seed.
The new frames of chunk k start at `chunk_starts(...)[k]`. The last chunk is generated in full and cut at
`num_frames`, so a cut video is the start of the uncut one of the same seed and chunk settings.

Resuming: the new frames of each finished chunk are saved losslessly (`chunk_<k>.npy`, atomically) in the video's
chunk folder, `videos/.<sample_id>.chunks/`, next to the manifest row they belong to (`row.json`). A killed run
continues after the last saved chunk, giving the same frames as an uninterrupted one; the folder is removed once
the video and its manifest row are written.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cosmos_synth.config import GenerateConfig
from cosmos_synth.files import atomic_write, remove_stale_temporaries, write_text_atomic

logger = logging.getLogger(__name__)

LATENT_CHANNELS = 16
TEMPORAL_COMPRESSION = 4  # the Wan VAE: latent frame 0 from pixel frame 0, each later one from 4 more
ROW_FILE = "row.json"  # in a chunk folder: the manifest row the chunks belong to


def latent_shape(cfg: GenerateConfig, num_frames: int | None = None) -> tuple[int, int, int, int, int]:
    """(B, C, T, H, W) of the initial latents of `num_frames` frames (default cfg.num_frames) at cfg's size."""
    frames = cfg.num_frames if num_frames is None else num_frames
    return (1, LATENT_CHANNELS, (frames - 1) // TEMPORAL_COMPRESSION + 1, cfg.height // 8, cfg.width // 8)


def numpy_latents(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Standard-normal latents from NumPy's RandomState: identical on every device, whatever torch's RNG state."""
    return torch.from_numpy(np.random.RandomState(seed).standard_normal(shape).astype(np.float32))


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(T, C, H, W) float frames in [0, 1] (the pipeline's "pt" output) to (T, H, W, 3) uint8, converted where they
    are: on a GPU a quarter of float32's bytes come back and no CPU pass touches every pixel. The same values as
    rounding the pipeline's "np" output."""
    return (frames.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def is_chained(cfg: GenerateConfig) -> bool:
    """True when cfg's videos are longer than one model call."""
    return cfg.num_frames > cfg.chunk_frames


def chunk_starts(num_frames: int, chunk_frames: int, overlap: int) -> list[int]:
    """The index of the first new frame of each chunk: 0, then every chunk_frames - overlap from chunk_frames on,
    while below num_frames. [0] when one chunk holds the video."""
    return [0, *range(chunk_frames, num_frames, chunk_frames - overlap)]


def chunk_seed(seed: int, index: int) -> int:
    """The NumPy seed of chunk `index` of the video with seed `seed`: the seed itself for chunk 0; for later chunks
    a hash of (seed, index), so chunk 1 of one pair never shares noise with chunk 0 of the next (seed + 1)."""
    return seed if index == 0 else int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def sample_chunk(
    pipe, cfg: GenerateConfig, *, seed: int, text: dict, image: Image.Image | None = None, context=None
) -> np.ndarray:
    """uint8 (T, H, W, 3) frames of one pipeline call: from `image`, or continuing `context` (uint8 (1 or 5, H, W,
    3) frames, returned again as the first frames). T is chunk_frames for a chained video, else num_frames."""
    num_frames = cfg.chunk_frames if is_chained(cfg) else cfg.num_frames
    if context is None:
        condition = {"image": image}
    else:  # (1, 3, T, H, W) in [-1, 1], as the pipeline's own preprocessing makes it
        video = torch.from_numpy(np.ascontiguousarray(context)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0
        latent_frames = (len(context) - 1) // TEMPORAL_COMPRESSION + 1
        condition = {"video": video, "num_latent_conditional_frames": latent_frames}
    output = pipe(
        height=cfg.height,
        width=cfg.width,
        num_frames=num_frames,
        num_inference_steps=cfg.num_steps,
        guidance_scale=cfg.guidance_scale,
        latents=numpy_latents(latent_shape(cfg, num_frames), seed),
        output_type="pt",
        **condition,
        **text,
    )
    return to_uint8(output.frames[0])


def sample_video(
    pipe, cfg: GenerateConfig, *, seed: int, image: Image.Image, text: dict, store: ChunkStore | None = None
) -> np.ndarray:
    """uint8 (num_frames, H, W, 3): one pipeline call, or chained chunks (resumed from `store` when given)."""
    starts = chunk_starts(cfg.num_frames, cfg.chunk_frames, cfg.chunk_overlap_frames)
    chunks = store.resume(cfg, len(starts)) if store is not None else []
    if chunks:
        logger.info(
            "%s: resuming at chunk %d/%d (chunks kept from an interrupted run)",
            store.name,
            len(chunks) + 1,
            len(starts),
        )
    overlap = cfg.chunk_overlap_frames
    for index in range(len(chunks), len(starts)):
        started = time.perf_counter()
        if index == 0:
            frames = sample_chunk(pipe, cfg, seed=seed, text=text, image=image)
        else:  # the last two chunks hold at least `overlap` frames (chunk 0 alone holds chunk_frames > overlap)
            context = np.concatenate(chunks[-2:])[-overlap:]
            frames = sample_chunk(pipe, cfg, seed=chunk_seed(seed, index), text=text, context=context)[overlap:]
        chunks.append(frames)
        if store is not None:
            store.save(index, frames)
        if len(starts) > 1:  # the frames are on the host by now: the time is the chunk's whole cost
            seconds = time.perf_counter() - started
            logger.info(
                "chunk %d/%d from frame %d (seed %d): %.2f s",
                index + 1,
                len(starts),
                starts[index],
                chunk_seed(seed, index),
                seconds,
            )
    return np.concatenate(chunks)[: cfg.num_frames]


def chunk_fields(cfg: GenerateConfig) -> dict:
    """A long video's chaining, for its manifest row (left out for a single call, so older manifests still match):
    chunk_starts[k] is the index of chunk k's first new frame; a seam lies before each start after the first."""
    if not is_chained(cfg):
        return {}
    return {
        "chunk_frames": cfg.chunk_frames,
        "chunk_overlap_frames": cfg.chunk_overlap_frames,
        "chunk_starts": chunk_starts(cfg.num_frames, cfg.chunk_frames, cfg.chunk_overlap_frames),
    }


def log_chunking(cfg: GenerateConfig) -> None:
    """Say how a long video is chained, and warn when the last chunk is cut (frames generated, then dropped)."""
    if not is_chained(cfg):
        return
    starts = chunk_starts(cfg.num_frames, cfg.chunk_frames, cfg.chunk_overlap_frames)
    logger.info(
        "%d frames per video: %d chunks of %d frames, each after the first continuing from the last %d; "
        "new frames from %s",
        cfg.num_frames,
        len(starts),
        cfg.chunk_frames,
        cfg.chunk_overlap_frames,
        starts,
    )
    generated = starts[-1] + cfg.chunk_frames - cfg.chunk_overlap_frames  # what the chunks give before the cut
    if generated > cfg.num_frames:
        logger.warning(
            "num_frames=%d is not whole chunks: the last chunk is generated in full and its last %d frames "
            "dropped; num_frames=%d or %d wastes nothing.",
            cfg.num_frames,
            generated - cfg.num_frames,
            starts[-1],
            generated,
        )


def chunk_folder(videos_dir: Path, sample_id: str) -> Path:
    """Where the finished chunks of a long video wait until the video is written (hidden, beside the video)."""
    return Path(videos_dir) / f".{sample_id}.chunks"


@dataclass(frozen=True)
class ChunkStore:
    """The finished chunks of one long video: `chunk_<k>.npy` (the chunk's new frames, uint8) and `row.json` (the
    manifest row they were generated for; chunks of any other settings are discarded)."""

    folder: Path
    row: dict

    @property
    def name(self) -> str:
        return self.row.get("sample_id", self.folder.name)

    def path(self, index: int) -> Path:
        return self.folder / f"chunk_{index:03d}.npy"

    def resume(self, cfg: GenerateConfig, num_chunks: int) -> list[np.ndarray]:
        """The chunks an earlier run finished for this row, in order, each checked against the frames it must hold;
        everything else in the folder is removed."""
        record = self.folder / ROW_FILE
        if not record.is_file() or json.loads(record.read_text(encoding="utf-8")) != self.row:
            self.remove()
            write_text_atomic(record, json.dumps(self.row, sort_keys=True))
            return []
        for index in range(num_chunks):  # what a writer killed mid-chunk left
            remove_stale_temporaries(self.path(index))
        chunks = []
        for index in range(num_chunks):
            expected = (cfg.chunk_frames - (cfg.chunk_overlap_frames if index else 0), cfg.height, cfg.width, 3)
            if not self.path(index).is_file():
                break
            frames = np.load(self.path(index), allow_pickle=False)
            if frames.shape != expected or frames.dtype != np.uint8:
                break
            chunks.append(frames)
        for stale in range(len(chunks), num_chunks):
            self.path(stale).unlink(missing_ok=True)
        return chunks

    def save(self, index: int, frames: np.ndarray) -> Path:
        """Write chunk `index` atomically: a crash leaves it whole or absent."""
        with atomic_write(self.path(index)) as tmp, tmp.open("wb") as fh:
            np.save(fh, frames, allow_pickle=False)
        return self.path(index)

    def remove(self) -> None:
        remove_chunks(self.folder)


def remove_chunks(folder: Path) -> None:
    """Delete a chunk folder (its video is written, or its chunks belong to other settings)."""
    if folder.is_dir():
        shutil.rmtree(folder)
