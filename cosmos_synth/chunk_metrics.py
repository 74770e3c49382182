"""Per-chunk measurements of long videos (chained chunks, cosmos_synth.chain): seams and drift.

- seam score: the mean frame-to-frame change at the seams (from the last frame of a chunk to the first new frame of
  the next) divided by the mean change between the other consecutive frames. About 1 when seams are invisible; it
  is measured on the real episodes at the same frame indices too, as the reference.
- per chunk k: the judge's verdict on the video up to the end of chunk k (is the task done after k chunks?), the
  tracked gripper and object against the ground truth over chunk k's own frames (drift shows as a growing error),
  and the seam score of the seam that opens chunk k.

Frame change is the mean absolute difference of two consecutive frames, in [0, 1] units of pixel value.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from cosmos_synth.demo_world import parse_prompt
from cosmos_synth.demo_world.judge import judge, track_error
from cosmos_synth.files import write_jsonl
from cosmos_synth.stats import wilson_interval

REAL = "real"  # the model name of the real episodes' rows
CHUNKS_FILE = "chunks.jsonl"  # in evaluate's out_dir: one row per (model or REAL, episode, chunk)
CHUNK_FIELDS = (
    "model",
    "task_family",
    "chunk",
    "end_frame",
    "episodes",
    "success_rate",
    "success_ci95",
    "track_error",
    "seam_score",
)


def frame_changes(frames: np.ndarray) -> np.ndarray:
    """(T - 1,) mean absolute difference between consecutive uint8 frames (T, H, W, 3), in [0, 1]. One pair at a
    time: a long full-size video in float would take gigabytes."""
    pairs = zip(frames[:-1], frames[1:], strict=True)
    return np.array([np.abs(b.astype(np.int16) - a).mean() / 255.0 for a, b in pairs], dtype=np.float64)


def _inside_change(changes: np.ndarray, seams: list[int]) -> float | None:
    """The mean change of the transitions that are not seams (None when there is none, or nothing moves)."""
    inside = np.delete(changes, [s - 1 for s in seams])
    value = float(inside.mean()) if len(inside) else 0.0
    return value if value > 0 else None


def seam_score(frames: np.ndarray, starts: list[int]) -> float | None:
    """Mean change at the seams (into each start after the first) over the mean change inside chunks; None for one
    chunk or a still video."""
    seams = [s for s in starts[1:] if s < len(frames)]
    changes = frame_changes(frames)
    inside = _inside_change(changes, seams)
    if not seams or inside is None:
        return None
    return float(changes[[s - 1 for s in seams]].mean()) / inside


def chunk_rows(frames: np.ndarray, starts: list[int], *, task=None, state: np.ndarray | None = None) -> list[dict]:
    """One row per chunk of a video: its index (from 1), its frames, and the seam score of the seam that opens it;
    with a demo-world `task`, the judge's success on the video up to the chunk's end and (with the ground-truth
    `state`) the tracking error over the chunk's frames."""
    ends = [*starts[1:], len(frames)]
    changes = frame_changes(frames)
    inside = _inside_change(changes, [s for s in starts[1:] if s < len(frames)])
    verdict = judge(frames, task) if task is not None and state is not None else None
    rows = []
    for index, (start, end) in enumerate(zip(starts, ends, strict=True)):
        if start >= len(frames):
            break
        row = {"chunk": index + 1, "start_frame": start, "end_frame": min(end, len(frames))}
        row["seam_score"] = float(changes[start - 1]) / inside if index and inside else None
        if task is not None:
            row["success"] = judge(frames[: row["end_frame"]], task).success
        if verdict is not None and start < len(state):  # a real episode shorter than the video has no truth here
            part = dataclasses.replace(verdict, state=verdict.state[start : row["end_frame"]])
            row["track_error"] = track_error(part, state[start : row["end_frame"]])
        rows.append(row)
    return rows


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return round(float(np.mean(values)), 5) if values else None


def summarise_chunks(rows: list[dict], models: list[str]) -> list[dict]:
    """One row per (model, task family, chunk): episodes, success rate after that chunk (with its 95% Wilson
    interval), mean tracking error over its frames, mean seam score of the seam that opens it."""
    out = []
    for model in models:
        for family in sorted({r["task_family"] for r in rows}):
            for chunk in sorted({r["chunk"] for r in rows}):
                group = [r for r in rows if (r["model"], r["task_family"], r["chunk"]) == (model, family, chunk)]
                if not group:
                    continue
                judged = [r["success"] for r in group if "success" in r]
                out.append(
                    {
                        "model": model,
                        "task_family": family,
                        "chunk": chunk,
                        "end_frame": group[0]["end_frame"],
                        "episodes": len(group),
                        "success_rate": round(sum(judged) / len(judged), 4) if judged else None,
                        "success_ci95": wilson_interval(sum(judged), len(judged)) if judged else None,
                        "track_error": _mean([r.get("track_error") for r in group]),
                        "seam_score": _mean([r["seam_score"] for r in group]),
                    }
                )
    return out


def measure_chunks(episodes, real: dict, videos: dict[str, dict], starts: list[int], *, use_judge: bool) -> list[dict]:
    """chunk_rows of every real episode (model REAL, cut to the generated length) and of every model's video of it,
    one row per (model, episode, chunk). `episodes`: evaluate.HeldOutEpisode; `real` and each of `videos` map an
    episode's name to its uint8 frames."""
    rows = []
    for episode in episodes:
        task = parse_prompt(episode.caption) if use_judge else None
        length = min(len(v[episode.name]) for v in videos.values())
        for model, frames in [(REAL, real[episode.name][:length]), *((m, v[episode.name]) for m, v in videos.items())]:
            for row in chunk_rows(frames, starts, task=task, state=episode.state):
                family = task.family if task is not None else "all"
                rows.append({"model": model, "episode": episode.name, "task_family": family, **row})
    return rows


def write_chunk_metrics(
    out_dir: Path, episodes, real: dict, videos: dict[str, dict], starts: list[int], *, use_judge: bool
) -> list[dict]:
    """measure_chunks, written to out_dir/CHUNKS_FILE; returns their summary (summarise_chunks), REAL first."""
    rows = measure_chunks(episodes, real, videos, starts, use_judge=use_judge)
    write_jsonl(Path(out_dir) / CHUNKS_FILE, rows)
    return summarise_chunks(rows, [REAL, *videos])


def chunk_section(table: str, cfg) -> list[str]:
    """The report's per-chunk section (markdown lines) around `table`, the chunk rows' table; `cfg`: the
    EvaluateConfig."""
    return [
        "## Per chunk",
        "",
        f"Chunks of {cfg.chunk_frames} frames, each continuing from the last {cfg.chunk_overlap_frames} of the one "
        "before. success_rate: the judge on the video up to the chunk's end_frame; track_error: over the chunk's own "
        "frames; seam_score: the change into the chunk's first frame over the mean change inside chunks (1: no "
        f"visible seam). `{REAL}`: the real episodes at the same frames.",
        "",
        table,
        "",
    ]
