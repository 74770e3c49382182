"""Checks every stage config shares: values named, with the fix, before any work starts."""

from __future__ import annotations


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_frames(num_frames: int, name: str = "num_frames") -> None:
    _require(
        num_frames >= 1 and (num_frames - 1) % 4 == 0,
        f"{name}={num_frames}: the Wan VAE needs 4k+1 frames (e.g. 9, 29, 93); pick the nearest such value.",
    )


def _check_chunks(num_frames: int, chunk_frames: int, overlap: int) -> None:
    """Chained generation's settings (cosmos_synth.chain). A num_frames that is not whole chunks is allowed: the last
    chunk is generated in full and cut, and the generate stage logs how many frames that drops."""
    _check_frames(chunk_frames, "chunk_frames")
    _require(
        overlap in (1, 5),
        f"chunk_overlap_frames={overlap}: use 1 (the last frame: one latent frame) or 5 (the last 5 frames: two "
        "latent frames, as the Wan VAE encodes the first frame alone and each 4 more into one latent frame).",
    )
    _require(
        num_frames <= chunk_frames or chunk_frames > overlap,
        f"chunk_frames={chunk_frames} with chunk_overlap_frames={overlap}: a chunk would add no new frame; "
        f"use chunk_frames >= {overlap + 4} (the model's window, e.g. 93).",
    )


def _check_size(height: int, width: int) -> None:
    _require(
        height % 16 == 0 and width % 16 == 0 and height > 0 and width > 0,
        f"height={height}, width={width}: both must be positive multiples of 16 (e.g. 432x768).",
    )
