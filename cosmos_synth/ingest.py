"""Ingest: read a dataset folder in the GR1 layout, validate every sample, write a manifest.

Every check runs before the manifest is written. In strict mode (the default) the first bad sample stops the stage
with an error that names the file (and the metadata.csv line) and the fix; in lenient mode each bad sample is skipped
and recorded in quarantine.jsonl (see cosmos_synth.validate). Cheap checks (encoding, captions, paths, duplicate ids)
run over the whole CSV before any video is decoded; sizes are compared once every video is decoded. A video in the
dataset's video folders that no metadata.csv row names is not ingested: one warning names them, and so does
IngestResult.unlisted_videos.

manifest.jsonl holds one row per sample:
``{"sample_id", "video", "caption", "num_frames", "height", "width", "fps", "trajectory"}`` where ``video`` and
``trajectory`` are absolute paths (``trajectory`` is null when the dataset has no trajectories/<stem>.npz).
"""

from __future__ import annotations

import codecs
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cosmos_synth.config import IngestConfig, write_config
from cosmos_synth.files import read_jsonl, write_jsonl
from cosmos_synth.layout import MANIFEST
from cosmos_synth.results import StageResult
from cosmos_synth.sources.layout import METADATA_CSV, TRAJECTORIES_DIR, TRAJECTORY_SUFFIX, VIDEO_SUFFIX
from cosmos_synth.validate import (
    QUARANTINE_FILE,
    Quarantine,
    check_aspect_ratio,
    check_not_empty,
    common_size,
    resolve_inside,
    writing,
)
from cosmos_synth.video import read_video

logger = logging.getLogger(__name__)

CAPTION_PREVIEW = 60  # characters of a caption shown in summary_rows()
UNLISTED_PREVIEW = 5  # unlisted videos named in the warning (IngestResult.unlisted_videos has them all)


@dataclass(frozen=True, kw_only=True)
class MetadataRow:
    """One line of metadata.csv."""

    line: int  # 1-based line number in metadata.csv, for error messages
    video: str  # video path relative to the dataset root, as written
    caption: str  # quotes and surrounding whitespace stripped


@dataclass(frozen=True, kw_only=True)
class IngestResult(StageResult):  # manifest: out_dir / manifest.jsonl
    num_samples: int  # rows in the manifest
    num_quarantined: int = 0  # bad samples skipped in lenient mode (always 0 in strict mode)
    quarantine: Path | None = None  # out_dir / quarantine.jsonl: one {"file", "line", "reason"} row per skipped sample
    # .mp4 files in the video folders that no metadata.csv row names, relative to dataset_dir (e.g. "videos/extra.mp4");
    # not ingested
    unlisted_videos: tuple[str, ...] = ()

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per sample for a table artifact: sample_id, frames, size, caption (shortened)."""
        rows = []
        for r in read_jsonl(self.manifest):
            caption = r["caption"]
            if len(caption) > CAPTION_PREVIEW:
                caption = caption[: CAPTION_PREVIEW - 3] + "..."
            rows.append(
                {
                    "sample_id": r["sample_id"],
                    "frames": r["num_frames"],
                    "size": f"{r['height']}x{r['width']}",
                    "caption": caption,
                }
            )
        return rows


def _unquote(text: str) -> str:
    """Strip whitespace, then one pair of surrounding double quotes (and the whitespace inside them)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    return text


def _decode_lines(path: Path, quarantine: Quarantine) -> list[tuple[int, str]]:
    """(line number, text) of each non-blank line; a byte-order mark is fine, non-UTF-8 lines are not. Lines end at LF,
    CRLF or CR, as in Python's text mode, so no line (and no caption) keeps a CR."""
    raw = path.read_bytes()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ValueError(f"{path} is UTF-16 text; save it as UTF-8.")
    lines = []
    for number, data in enumerate(raw.removeprefix(codecs.BOM_UTF8).splitlines(), start=1):
        try:
            line = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            quarantine.reject(
                path,
                ValueError(f"{path} line {number} is not UTF-8 text ({exc}); save {path.name} as UTF-8."),
                line=number,
            )
            continue
        if line.strip():
            lines.append((number, line))
    return lines


def read_metadata(path: Path, quarantine: Quarantine | None = None) -> list[MetadataRow]:
    """Parse metadata.csv: `<video>,<caption>` per line, split on the first comma; a first line whose first field
    does not end in .mp4 is a header. Blank lines are skipped. Bad lines raise, or go to `quarantine` (lenient)."""
    if not path.is_file():
        raise ValueError(
            f"{path} does not exist; a dataset root needs a {METADATA_CSV} with one "
            f"'<video path>,<caption>' line per video."
        )
    quarantine = quarantine or Quarantine("strict")
    rows: list[MetadataRow] = []
    lines = _decode_lines(path, quarantine)
    for index, (number, line) in enumerate(lines):
        video, sep, caption = line.partition(",")
        video = _unquote(video)
        if index == 0 and not video.lower().endswith(VIDEO_SUFFIX):
            continue  # header line, e.g. "file_name,text"
        if not sep:
            quarantine.reject(
                video,
                ValueError(
                    f"{path} line {number}: expected '<video path>,<caption>', got {line!r}; add a comma and a caption."
                ),
                line=number,
            )
            continue
        rows.append(MetadataRow(line=number, video=video, caption=_unquote(caption)))
    if not rows and not quarantine.entries:
        raise ValueError(f"{path} lists no videos; add one '<video path>,<caption>' line per video.")
    return rows


def _relative_video(row: MetadataRow, videos_dir: str | None) -> str:
    """The row's video path relative to the dataset root: as written, or `<videos_dir>/<file name>`."""
    return f"{videos_dir}/{Path(row.video).name}" if videos_dir else row.video


def find_unlisted_videos(root: Path, rows: list[MetadataRow], videos_dir: str | None) -> list[str]:
    """.mp4 files that no row names, in the dataset's video folders (`videos_dir`, else every folder inside `root`
    that holds a row's video), relative to `root` and sorted. Hidden files (temporaries) are not counted."""
    root = Path(os.path.normpath(root))
    named = {Path(os.path.normpath(root / _relative_video(row, videos_dir))) for row in rows}
    folders = {Path(os.path.normpath(root / videos_dir))} if videos_dir else {path.parent for path in named}
    return sorted(
        path.relative_to(root).as_posix()
        for folder in folders
        if folder.is_relative_to(root) and folder.is_dir()
        for path in folder.iterdir()
        if path.suffix.lower() == VIDEO_SUFFIX
        and not path.name.startswith(".")
        and path.is_file()
        and path not in named
    )


def _check_row(csv: Path, root: Path, row: MetadataRow, relative: str, first_line: dict) -> Path:
    """One row's caption, path and sample id; `first_line` maps casefolded ids seen so far to their row."""
    if not row.caption:
        raise ValueError(
            f"{csv} line {row.line}: the caption of {row.video} is empty; write a caption after the first comma."
        )
    video = resolve_inside(root, relative, what=f"{csv} line {row.line}")
    if not video.is_file():
        raise ValueError(
            f"{csv} line {row.line}: video {relative} does not exist under {root}; fix the path or drop the line."
        )
    other = first_line.get(video.stem.casefold())
    if other is not None and Path(other.video).stem == video.stem:
        raise ValueError(
            f"{csv} lines {other.line} and {row.line} both give sample id {video.stem!r} "
            f"({other.video}, {row.video}); sample ids are video file stems: rename one video."
        )
    if other is not None:
        raise ValueError(
            f"{csv} lines {other.line} and {row.line} give sample ids {Path(other.video).stem!r} and "
            f"{video.stem!r}, which differ only in letter case; outputs named <id>.mp4 would overwrite "
            f"each other on case-insensitive file systems: rename one video."
        )
    return video


def _check_rows(
    csv: Path, root: Path, rows: list[MetadataRow], videos_dir: str | None, quarantine: Quarantine
) -> list[tuple[MetadataRow, Path]]:
    """Cheap checks over every row before any decoding: captions, paths, existence, unique sample ids."""
    checked, first_line = [], {}
    for row in rows:
        relative = _relative_video(row, videos_dir)
        try:
            video = _check_row(csv, root, row, relative, first_line)
        except ValueError as exc:
            quarantine.reject(relative, exc, line=row.line)
            continue
        first_line[video.stem.casefold()] = row
        checked.append((row, video))
    return checked


def check_trajectory(path: Path, num_frames: int) -> None:
    """A trajectory file must hold 2-D `state` and `action` arrays with one row per video frame."""
    try:
        with np.load(path, allow_pickle=False) as data:
            shapes = {key: data[key].shape for key in ("state", "action") if key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:  # np.load's errors do not name the file
        raise ValueError(
            f"Trajectory {path} cannot be read ({exc}); rewrite it with np.savez(state=..., action=...)."
        ) from exc
    for key in ("state", "action"):
        if key not in shapes or len(shapes[key]) != 2:
            raise ValueError(
                f"Trajectory {path}: needs a 2-D array {key!r} (frames, dims), found "
                f"{shapes.get(key, 'none')}; rewrite it with np.savez(state=..., action=...)."
            )
        if shapes[key][0] != num_frames:
            raise ValueError(
                f"Trajectory {path}: {key!r} has {shapes[key][0]} rows but the video has {num_frames} "
                f"frames; write one row per frame."
            )


def _ingest_sample(cfg: IngestConfig, csv: Path, row: MetadataRow, video: Path) -> dict[str, Any]:
    """Decode one video (once), check its length and trajectory, return its manifest row."""
    try:
        check_not_empty(video, "Video")
        frames, fps = read_video(video)
    except ValueError as exc:
        raise ValueError(f"{csv} line {row.line}: {exc}") from exc
    num_frames, height, width = frames.shape[:3]
    del frames  # only the counts are kept; free the pixels before the next video
    if num_frames < cfg.min_frames:
        raise ValueError(
            f"Video {row.video} has {num_frames} frames; min_frames={cfg.min_frames} needs at least "
            f"{cfg.min_frames}. Lower num_frames or drop the clip."
        )
    trajectory = cfg.dataset_dir.resolve() / TRAJECTORIES_DIR / f"{video.stem}{TRAJECTORY_SUFFIX}"
    if trajectory.is_file():
        check_trajectory(trajectory, num_frames)
    return {
        "sample_id": video.stem,
        "video": str(video),
        "caption": cfg.caption_prefix + row.caption,
        "num_frames": int(num_frames),
        "height": int(height),
        "width": int(width),
        "fps": float(fps),
        "trajectory": str(trajectory) if trajectory.is_file() else None,
    }


def _check_sizes(samples: list[tuple[MetadataRow, dict]], quarantine: Quarantine) -> list[tuple[MetadataRow, dict]]:
    """Sizes may differ (preprocess resizes every clip); aspect ratios far from the most common size may not."""
    sizes = [(s["height"], s["width"]) for _, s in samples]
    if len(set(sizes)) > 1:
        logger.warning(
            "videos come in %d sizes (%s); preprocess resizes each to the training size",
            len(set(sizes)),
            ", ".join(f"{w}x{h}" for h, w in sorted(set(sizes))),
        )
    reference, kept = common_size(sizes), []
    for row, sample in samples:
        try:
            check_aspect_ratio(f"Video {row.video}", (sample["height"], sample["width"]), reference)
        except ValueError as exc:
            quarantine.reject(sample["video"], exc, line=row.line)
            continue
        kept.append((row, sample))
    return kept


def _write_outputs(cfg: IngestConfig, samples: list[dict], quarantine: Quarantine) -> tuple[Path, Path]:
    """quarantine.jsonl, manifest.jsonl, ingest_config.json, each atomically; a failed write names its file."""
    with writing(cfg.out_dir / QUARANTINE_FILE):
        quarantined = quarantine.write(cfg.out_dir)
    with writing(cfg.out_dir / MANIFEST):
        manifest = write_jsonl(cfg.out_dir / MANIFEST, samples)
    with writing(cfg.out_dir / "ingest_config.json"):
        write_config(cfg, cfg.out_dir, "ingest")
    return manifest, quarantined


def ingest_dataset(cfg: IngestConfig) -> IngestResult:
    """Validate every sample listed in cfg.dataset_dir/metadata.csv and write cfg.out_dir/manifest.jsonl.

    cfg.mode="lenient" skips bad samples and records them in cfg.out_dir/quarantine.jsonl instead of stopping.
    """
    csv = cfg.dataset_dir / METADATA_CSV
    quarantine = Quarantine(cfg.mode)
    rows = read_metadata(csv, quarantine)
    unlisted = find_unlisted_videos(cfg.dataset_dir, rows, cfg.videos_dir)
    if unlisted:
        logger.warning(
            "%d videos of %s are named by no row of %s and are not ingested: %s%s; add a row for each "
            "to train on it, or move it out of the dataset",
            len(unlisted),
            cfg.dataset_dir,
            csv.name,
            ", ".join(unlisted[:UNLISTED_PREVIEW]),
            ", ..." if len(unlisted) > UNLISTED_PREVIEW else "",
        )
    checked = _check_rows(csv, cfg.dataset_dir, rows, cfg.videos_dir, quarantine)
    samples = []
    for index, (row, video) in enumerate(checked, start=1):
        try:
            sample = _ingest_sample(cfg, csv, row, video)
        except ValueError as exc:
            quarantine.reject(video, exc, line=row.line)
            continue
        samples.append((row, sample))
        logger.info(
            "sample %d/%d %s: %d frames %dx%d%s",
            index,
            len(checked),
            sample["sample_id"],
            sample["num_frames"],
            sample["height"],
            sample["width"],
            " + trajectory" if sample["trajectory"] else "",
        )
    samples = _check_sizes(samples, quarantine) if samples else []
    if not samples:
        path = quarantine.write(cfg.out_dir)
        raise ValueError(
            f"{csv}: no good sample is left; all {len(quarantine.entries)} were quarantined (reasons "
            f"in {path}). Fix them and rerun ingest."
        )
    manifest, quarantined = _write_outputs(cfg, [s for _, s in samples], quarantine)
    logger.info("%d samples ingested, %d quarantined -> %s", len(samples), len(quarantine.entries), manifest)
    return IngestResult(
        out_dir=cfg.out_dir,
        manifest=manifest,
        num_samples=len(samples),
        num_quarantined=len(quarantine.entries),
        quarantine=quarantined,
        unlisted_videos=tuple(unlisted),
    )
