"""Ingest: read a dataset folder in the GR1 layout, validate every sample, write a manifest.

Every check runs before the manifest is written and the first bad sample stops the stage with an error that names
the file (and the metadata.csv line) and the fix. Cheap checks (captions, paths, duplicates) run over the whole CSV
before any video is decoded.

manifest.jsonl holds one row per sample:
``{"sample_id", "video", "caption", "num_frames", "height", "width", "fps", "trajectory"}`` where ``video`` and
``trajectory`` are absolute paths (``trajectory`` is null when the dataset has no trajectories/<stem>.npz).
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cosmos_synth.config import IngestConfig, write_config
from cosmos_synth.files import inside, read_jsonl, write_jsonl
from cosmos_synth.sources.layout import METADATA_CSV, TRAJECTORIES_DIR, TRAJECTORY_SUFFIX, VIDEO_SUFFIX
from cosmos_synth.video import read_video

logger = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"     # written under cfg.out_dir, one JSON row per sample
CAPTION_PREVIEW = 60            # characters of a caption shown in summary_rows()


@dataclass(frozen=True, kw_only=True)
class MetadataRow:
    """One line of metadata.csv."""

    line: int                   # 1-based line number in metadata.csv, for error messages
    video: str                  # video path relative to the dataset root, as written
    caption: str                # quotes and surrounding whitespace stripped


@dataclass(frozen=True, kw_only=True)
class IngestResult:
    out_dir: Path               # cfg.out_dir
    manifest: Path              # out_dir / manifest.jsonl
    num_samples: int            # rows in the manifest

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per sample for a table artifact: sample_id, frames, size, caption (shortened)."""
        rows = []
        for r in read_jsonl(self.manifest):
            caption = r["caption"]
            if len(caption) > CAPTION_PREVIEW:
                caption = caption[:CAPTION_PREVIEW - 3] + "..."
            rows.append({"sample_id": r["sample_id"], "frames": r["num_frames"], "size": f"{r['height']}x{r['width']}",
                         "caption": caption})
        return rows


def _unquote(text: str) -> str:
    """Strip whitespace, then one pair of surrounding double quotes (and the whitespace inside them)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    return text


def read_metadata(path: Path) -> list[MetadataRow]:
    """Parse metadata.csv: `<video>,<caption>` per line, split on the first comma; a first line whose first field
    does not end in .mp4 is a header. Blank lines are skipped."""
    if not path.is_file():
        raise ValueError(f"{path} does not exist; a dataset root needs a {METADATA_CSV} with one "
                         f"'<video path>,<caption>' line per video.")
    rows: list[MetadataRow] = []
    seen_first = False
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        video, sep, caption = line.partition(",")
        video = _unquote(video)
        if not seen_first and not video.lower().endswith(VIDEO_SUFFIX):
            seen_first = True
            continue  # header line, e.g. "file_name,text"
        seen_first = True
        if not sep:
            raise ValueError(f"{path} line {number}: expected '<video path>,<caption>', got {line!r}; "
                             f"add a comma and a caption.")
        rows.append(MetadataRow(line=number, video=video, caption=_unquote(caption)))
    if not rows:
        raise ValueError(f"{path} lists no videos; add one '<video path>,<caption>' line per video.")
    return rows


def _check_rows(csv: Path, root: Path, rows: list[MetadataRow], videos_dir: str | None) -> list[Path]:
    """Cheap checks over every row before any decoding: captions, paths, existence, unique sample ids."""
    videos, first_line = [], {}
    for row in rows:
        if not row.caption:
            raise ValueError(f"{csv} line {row.line}: the caption of {row.video} is empty; "
                             f"write a caption after the first comma.")
        relative = f"{videos_dir}/{Path(row.video).name}" if videos_dir else row.video
        video = inside(root, relative, what=f"{csv} line {row.line}")
        if not video.is_file():
            raise ValueError(f"{csv} line {row.line}: video {relative} does not exist under {root}; "
                             f"fix the path or drop the line.")
        stem = video.stem
        if stem in first_line:
            other = first_line[stem]
            raise ValueError(f"{csv} lines {other.line} and {row.line} both give sample id {stem!r} "
                             f"({other.video}, {row.video}); sample ids are video file stems: rename one video.")
        first_line[stem] = row
        videos.append(video)
    return videos


def check_trajectory(path: Path, num_frames: int) -> None:
    """A trajectory file must hold 2-D `state` and `action` arrays with one row per video frame."""
    try:
        with np.load(path, allow_pickle=False) as data:
            shapes = {key: data[key].shape for key in ("state", "action") if key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:  # np.load's errors do not name the file
        raise ValueError(f"Trajectory {path} cannot be read ({exc}); rewrite it with np.savez(state=..., "
                         f"action=...).") from exc
    for key in ("state", "action"):
        if key not in shapes or len(shapes[key]) != 2:
            raise ValueError(f"Trajectory {path}: needs a 2-D array {key!r} (frames, dims), found "
                             f"{shapes.get(key, 'none')}; rewrite it with np.savez(state=..., action=...).")
        if shapes[key][0] != num_frames:
            raise ValueError(f"Trajectory {path}: {key!r} has {shapes[key][0]} rows but the video has {num_frames} "
                             f"frames; write one row per frame.")


def _ingest_sample(cfg: IngestConfig, csv: Path, row: MetadataRow, video: Path) -> dict[str, Any]:
    """Decode one video (once), check its length and trajectory, return its manifest row."""
    try:
        frames, fps = read_video(video)
    except ValueError as exc:
        raise ValueError(f"{csv} line {row.line}: {exc}") from exc
    num_frames, height, width = frames.shape[:3]
    del frames  # only the counts are kept; free the pixels before the next video
    if num_frames < cfg.min_frames:
        raise ValueError(f"Video {row.video} has {num_frames} frames; min_frames={cfg.min_frames} needs at least "
                         f"{cfg.min_frames}. Lower num_frames or drop the clip.")
    trajectory = cfg.dataset_dir.resolve() / TRAJECTORIES_DIR / f"{video.stem}{TRAJECTORY_SUFFIX}"
    if trajectory.is_file():
        check_trajectory(trajectory, num_frames)
    return {"sample_id": video.stem, "video": str(video), "caption": cfg.caption_prefix + row.caption,
            "num_frames": int(num_frames), "height": int(height), "width": int(width), "fps": float(fps),
            "trajectory": str(trajectory) if trajectory.is_file() else None}


def ingest_dataset(cfg: IngestConfig) -> IngestResult:
    """Validate every sample listed in cfg.dataset_dir/metadata.csv and write cfg.out_dir/manifest.jsonl."""
    csv = cfg.dataset_dir / METADATA_CSV
    rows = read_metadata(csv)
    videos = _check_rows(csv, cfg.dataset_dir, rows, cfg.videos_dir)
    samples = []
    for index, (row, video) in enumerate(zip(rows, videos), start=1):
        sample = _ingest_sample(cfg, csv, row, video)
        samples.append(sample)
        logger.info("sample %d/%d %s: %d frames %dx%d%s", index, len(rows), sample["sample_id"],
                    sample["num_frames"], sample["height"], sample["width"],
                    " + trajectory" if sample["trajectory"] else "")
    manifest = write_jsonl(cfg.out_dir / MANIFEST, samples)
    write_config(cfg, cfg.out_dir, "ingest")
    return IngestResult(out_dir=cfg.out_dir, manifest=manifest, num_samples=len(samples))
