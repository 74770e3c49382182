"""Pictures of a run, for people: a contact sheet and an animated preview of the generated videos, and the loss curve.

    generate/previews/contact_sheet.png   a row per video (the first MAX_SHEET_VIDEOS): its id, seed and prompt
                                          above FRAMES_PER_VIDEO evenly spaced frames, first and last included
    generate/previews/preview.gif         the first MAX_ANIMATED_VIDEOS videos side by side, looping
    generate/previews/<shard>/...         the same for one shard of a fanned-out generation
    train/loss_curve.png                  the loss of every step and its moving average

Generation writes its previews after its last video, training its curve after its last step, and
`cosmos-synth preview RUN_DIR` writes them again for an existing run (:func:`write_run_previews`). Pillow only,
small thumbnails: cheap next to the stages that make what they show.
"""

from __future__ import annotations

import logging
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cosmos_synth.files import atomic_write, read_jsonl
from cosmos_synth.layout import (
    ANIMATION,
    CONTACT_SHEET,
    LOSS_CURVE,
    LOSS_LOG,
    MANIFEST,
    PREVIEWS_DIR,
    SHARDS_DIR,
)
from cosmos_synth.video import read_video

logger = logging.getLogger(__name__)

FRAMES_PER_VIDEO = 5  # contact sheet frames per video
MAX_SHEET_VIDEOS = 32  # contact sheet rows: the first videos of the manifest
MAX_ANIMATED_VIDEOS = 4  # videos side by side in the animated preview
MAX_ANIMATED_FRAMES = 48  # longer videos are shown at every k-th frame (the same duration, fewer frames)
THUMB_HEIGHT = 128  # pixels; frames are scaled to this height (tiny demo frames are enlarged)
MARGIN, GAP = 12, 6  # pixels
INK, FAINT, PAPER = (25, 25, 25), (110, 110, 110), (255, 255, 255)


@dataclass(frozen=True, kw_only=True)
class VideoPreviews:
    contact_sheet: Path  # PNG
    animation: Path  # animated GIF
    num_videos: int  # videos in the contact sheet


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)  # Pillow's bundled font: no font files needed on the machine


def _save(image: Image.Image, path: Path, **kwargs) -> Path:
    """Save through a temporary name in the same folder, then rename (a reader never sees half a picture)."""
    with atomic_write(path) as tmp:
        image.save(tmp, **kwargs)
    return path


def _thumbnail(frame: np.ndarray) -> Image.Image:
    height, width = frame.shape[:2]
    size = (max(1, round(width * THUMB_HEIGHT / height)), THUMB_HEIGHT)
    # Enlarged frames keep their pixels (nearest); shrunk ones are filtered (no aliasing).
    resample = Image.Resampling.NEAREST if height <= THUMB_HEIGHT else Image.Resampling.LANCZOS
    return Image.fromarray(frame).resize(size, resample)


def frame_indices(num_frames: int, count: int = FRAMES_PER_VIDEO) -> list[int]:
    """`count` evenly spaced frame indices of a video, first and last included (fewer for shorter videos)."""
    return sorted({round(i) for i in np.linspace(0, num_frames - 1, min(count, num_frames))})


def write_video_previews(rows: list[dict], out_dir: Path) -> VideoPreviews | None:
    """contact_sheet.png and preview.gif in `out_dir` for generate manifest rows (sample_id, seed, prompt, video,
    fps); None when there are no rows. Each video is decoded once and only its thumbnails are kept."""
    if not rows:
        return None
    shown = rows[:MAX_SHEET_VIDEOS]
    if len(rows) > len(shown):
        logger.info("contact sheet: the first %d of %d videos", len(shown), len(rows))
    sheet_rows, clips, stride = [], [], None
    for number, row in enumerate(shown):
        frames, _ = read_video(Path(row["video"]))
        picks = frame_indices(len(frames))
        sheet_rows.append((row, picks, [_thumbnail(frames[i]) for i in picks]))
        if number < MAX_ANIMATED_VIDEOS:
            stride = stride or math.ceil(len(frames) / MAX_ANIMATED_FRAMES)  # a generation's videos share a length
            clips.append([_thumbnail(frame) for frame in frames[::stride]])
    sheet = _save(draw_contact_sheet(sheet_rows, total=len(rows)), out_dir / CONTACT_SHEET, optimize=True)
    fps = float(shown[0].get("fps") or 16)
    animation = write_animation(clips, out_dir / ANIMATION, frame_ms=1000 * stride / fps)
    logger.info("previews of %d videos: %s, %s", len(shown), sheet, animation)
    return VideoPreviews(contact_sheet=sheet, animation=animation, num_videos=len(shown))


def draw_contact_sheet(sheet_rows: list[tuple[dict, list[int], list[Image.Image]]], *, total: int) -> Image.Image:
    """One block per video: `sample_id  seed N`, the prompt (wrapped), then its thumbnails labelled by frame index."""
    title_font, text_font, small_font = _font(16), _font(13), _font(11)
    thumb_width = max(t.width for _, _, thumbs in sheet_rows for t in thumbs)
    width = 2 * MARGIN + FRAMES_PER_VIDEO * (thumb_width + GAP) - GAP
    sample = "The robot arm picks up the cube."  # the average width of a character of prose
    chars = max(20, int((width - 2 * MARGIN) * len(sample) / text_font.getlength(sample)))
    blocks = [
        (row, picks, thumbs, textwrap.wrap(str(row.get("prompt", "")), chars, max_lines=3, placeholder=" ..."))
        for row, picks, thumbs in sheet_rows
    ]
    line = 17
    height = MARGIN + 26 + sum(line * (1 + len(lines)) + THUMB_HEIGHT + 16 + MARGIN for *_, lines in blocks)
    sheet = Image.new("RGB", (width, height), PAPER)
    draw = ImageDraw.Draw(sheet)
    shown = f"the first {len(sheet_rows)} of {total}" if total > len(sheet_rows) else f"{total}"
    draw.text((MARGIN, MARGIN), f"Generated videos: {shown}, {FRAMES_PER_VIDEO} frames each", fill=INK, font=title_font)
    y = MARGIN + 26
    for row, picks, thumbs, lines in blocks:
        seed = f"   seed {row['seed']}" if "seed" in row else ""
        draw.text((MARGIN, y), f"{row['sample_id']}{seed}", fill=INK, font=text_font)
        for text in lines:
            y += line
            draw.text((MARGIN, y), text, fill=FAINT, font=text_font)
        y += line + 2
        for column, (index, thumb) in enumerate(zip(picks, thumbs, strict=True)):
            x = MARGIN + column * (thumb_width + GAP)
            sheet.paste(thumb, (x, y))
            draw.text((x, y + THUMB_HEIGHT + 1), f"frame {index}", fill=FAINT, font=small_font)
        y += THUMB_HEIGHT + 16 + MARGIN
    return sheet


def write_animation(clips: list[list[Image.Image]], path: Path, *, frame_ms: float) -> Path:
    """An endlessly looping GIF of `clips` side by side; a shorter clip holds its last frame."""
    width = sum(clip[0].width for clip in clips) + GAP * (len(clips) - 1)
    height = max(clip[0].height for clip in clips)
    frames = []
    for t in range(max(len(clip) for clip in clips)):
        canvas, x = Image.new("RGB", (width, height), PAPER), 0
        for clip in clips:
            canvas.paste(clip[min(t, len(clip) - 1)], (x, 0))
            x += clip[0].width + GAP
        frames.append(canvas)
    duration = max(20, 10 * round(frame_ms / 10))  # GIF counts in 10 ms steps; viewers slow down faster ones
    return _save(frames[0], path, save_all=True, append_images=frames[1:], duration=duration, loop=0, optimize=False)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` values at each position (fewer at the start)."""
    cumulative = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (cumulative[ends] - cumulative[starts]) / (ends - starts)


def write_loss_curve(loss_log: Path, path: Path) -> Path | None:
    """A PNG of loss.jsonl's loss per step and its moving average; None when the log has no rows."""
    rows = read_jsonl(loss_log) if loss_log.is_file() else []
    if not rows:
        return None
    steps = np.array([r["step"] for r in rows], dtype=np.float64)
    losses = np.array([r["loss"] for r in rows], dtype=np.float64)
    window = max(1, len(rows) // 10)  # the flow-matching loss is noisy from step to step
    smooth = moving_average(losses, window)
    last = "last loss" if window == 1 else f"last {window}-step mean"
    title = f"Training loss: {len(rows)} steps, {last} {smooth[-1]:.4g}"
    legend = "light: each step, dark: moving mean" if window > 1 else ""
    return _save(
        draw_line_chart(
            steps,
            [(losses, (158, 197, 232), 1), (smooth, (31, 97, 170), 2)],
            title=title,
            x_label="step",
            legend=legend,
        ),
        path,
        optimize=True,
    )


def nice_ticks(low: float, high: float, count: int = 5) -> np.ndarray:
    """About `count` round values (multiples of 1, 2 or 5 x 10^k) between low and high."""
    raw = (high - low) / max(1, count - 1) or abs(high) or 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 5, 10)), key=lambda candidate: abs(math.log(candidate / raw)))
    return np.arange(math.ceil(low / step) * step, high + step * 1e-9, step)


def draw_line_chart(
    x: np.ndarray,
    series: list[tuple[np.ndarray, tuple[int, int, int], int]],
    *,
    title: str,
    x_label: str,
    legend: str = "",
    size: tuple[int, int] = (720, 400),
) -> Image.Image:
    """Lines (values, colour, width) over a shared x, with labelled ticks on both axes."""
    font, title_font = _font(12), _font(15)
    width, height = size
    left, right, top, bottom = 64, 20, 40, 44
    y_all = np.concatenate([values for values, _, _ in series])
    y_min, y_max = float(y_all.min()), float(y_all.max())
    pad = (y_max - y_min) * 0.05 or abs(y_max) * 0.05 or 1.0
    y_min, y_max = y_min - pad, y_max + pad
    x_min, x_max = float(x.min()), float(x.max())
    x_max = max(x_max, x_min + 1)  # a single step still gets an x range

    def to_px(xs, ys):
        px = left + (xs - x_min) / (x_max - x_min) * (width - left - right)
        py = top + (y_max - ys) / (y_max - y_min) * (height - top - bottom)
        return list(zip(px.tolist(), py.tolist(), strict=True))

    chart = Image.new("RGB", size, PAPER)
    draw = ImageDraw.Draw(chart)
    draw.text((left, 12), title, fill=INK, font=title_font)
    draw.text((width - right, 16), legend, fill=FAINT, font=font, anchor="ra")
    for value in nice_ticks(y_min, y_max):
        ((_, py),) = to_px(np.array([x_min]), np.array([value]))
        draw.line([(left, py), (width - right, py)], fill=(230, 230, 230))
        draw.text((left - 6, py), f"{value:.4g}", fill=FAINT, font=font, anchor="rm")
    for value in nice_ticks(x_min, x_max, 6):
        ((px, _),) = to_px(np.array([value]), np.array([y_min]))
        draw.line([(px, height - bottom), (px, height - bottom + 4)], fill=FAINT)
        draw.text((px, height - bottom + 6), f"{int(value)}", fill=FAINT, font=font, anchor="mt")
    draw.rectangle([(left, top), (width - right, height - bottom)], outline=FAINT)
    draw.text(((left + width - right) / 2, height - 6), x_label, fill=FAINT, font=font, anchor="mb")
    for values, colour, line_width in series:
        points = to_px(x, values)
        if len(points) == 1:
            points = points * 2
        draw.line(points, fill=colour, width=line_width)
    return chart


def write_run_previews(run_dir: Path) -> dict[str, Path]:
    """Write every picture of an existing run folder again: the loss curve, and the contact sheet and animated
    preview of the generation and of each of its shards. Returns {name: path} of those written."""
    written: dict[str, Path] = {}
    curve = write_loss_curve(run_dir / "train" / LOSS_LOG, run_dir / "train" / LOSS_CURVE)
    if curve is not None:
        written["loss_curve"] = curve
    generate_dir = run_dir / "generate"
    manifests = [("", generate_dir / MANIFEST)]
    manifests += [(m.stem, m) for m in sorted((generate_dir / SHARDS_DIR).glob("*.jsonl"))]
    for shard, manifest in manifests:
        previews = (
            write_video_previews(read_jsonl(manifest), generate_dir / PREVIEWS_DIR / shard)
            if manifest.is_file()
            else None
        )
        if previews is not None:
            suffix = f" {shard}" if shard else ""
            written[f"contact_sheet{suffix}"] = previews.contact_sheet
            written[f"animation{suffix}"] = previews.animation
    if not written:
        raise ValueError(
            f"{run_dir} holds neither train/{LOSS_LOG} nor generate/manifest.jsonl; give the run_dir of "
            "a run that trained or generated (e.g. runs/demo)."
        )
    return written
