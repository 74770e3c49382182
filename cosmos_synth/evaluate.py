"""Evaluate: held-out real episodes against the videos each model generates from their first frame and caption.

For every model (the base model, and each training out_dir given: LoRA, DoRA, full), every held-out episode's
first frame and caption go through generation (cosmos_synth.generate, resumable); the generated video is compared
with the real continuation:

- image metrics: PSNR and SSIM (torchmetrics) over the frames after the first (the part that has to be predicted),
  the first frame's PSNR (does the video start from the seed image?), and the same numbers for a baseline that
  copies the first frame;
- the demo world's rule-based judge (cosmos_synth.demo_world.judge), when every caption is a demo-world prompt:
  task success, the distractor done instead, physics checks, and the tracked gripper and object against the real
  episode's ground-truth state;
- an IDM's action labels of the generated video against the real episode's actions (idm_action_mse);
- long videos (num_frames > chunk_frames): the seam score, and per chunk the judge's success so far, the tracking
  error and the seam score, for the real episodes too (cosmos_synth.chunk_metrics; chunks.jsonl, metrics.json
  "chunks", the report's per-chunk table).

Outputs under out_dir: metrics.json ({"rows": one per (model, task family)}), episodes.jsonl (one row per
(model, episode)), report.md, and sheet-<family>.png contact sheets (real frames above each model's).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from cosmos_synth.chain import chunk_starts
from cosmos_synth.chunk_metrics import CHUNK_FIELDS, chunk_section, seam_score, write_chunk_metrics
from cosmos_synth.config import EvaluateConfig, GenerateConfig, write_config
from cosmos_synth.demo_world import parse_prompt
from cosmos_synth.demo_world.judge import judge, track_error
from cosmos_synth.files import atomic_write, read_jsonl, write_jsonl, write_text_atomic
from cosmos_synth.ingest import read_metadata
from cosmos_synth.layout import MANIFEST
from cosmos_synth.results import StageResult
from cosmos_synth.sources.layout import METADATA_CSV, TRAJECTORIES_DIR
from cosmos_synth.stats import wilson_interval
from cosmos_synth.validate import resolve_inside
from cosmos_synth.video import read_video

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
EPISODES_FILE = "episodes.jsonl"
REPORT_FILE = "report.md"
BASELINE = "copy-first-frame"  # the row of the baseline that repeats the first real frame
SHEET_FRAMES = 6  # frames per video in a contact sheet
ROW_FIELDS = (
    "model",
    "task_family",
    "episodes",
    "success_rate",
    "success_ci95",
    "distractor_rate",
    "physics_rate",
    "psnr_db",
    "ssim",
    "frame0_psnr_db",
    "track_error",
    "seam_score",
    "real_seam_score",
    "idm_action_mse",
)


@dataclass(frozen=True)
class HeldOutEpisode:
    name: str  # the video's stem: the pair id its first frame is generated from
    caption: str
    video: Path
    state: np.ndarray | None  # (T, D) ground truth, when the dataset has trajectories
    action: np.ndarray | None  # (T, A)


@dataclass(frozen=True, kw_only=True)
class EvaluateResult(StageResult):  # manifest: out_dir / episodes.jsonl, one row per (model, episode)
    metrics: Path
    report: Path
    rows: tuple[dict, ...]
    chunk_rows: tuple[dict, ...] = ()  # long videos: one per (model or "real", task family, chunk index)

    def summary_rows(self) -> list[dict]:
        return [{k: row.get(k) for k in ROW_FIELDS} for row in self.rows]

    def outputs(self) -> dict[str, Path]:
        return {"evaluation": self.report}


# ------------------------------------------------------------------------------------------------------- episodes


def read_heldout(episodes_dir: Path, max_episodes: int | None = None) -> list[HeldOutEpisode]:
    """The held-out episodes of a dataset folder in the GR1 layout (metadata.csv, videos, optional trajectories)."""
    episodes = []
    for row in read_metadata(episodes_dir / METADATA_CSV):
        video = resolve_inside(episodes_dir, row.video, what=f"{episodes_dir / METADATA_CSV} line {row.line}")
        caption = row.caption
        trajectory = episodes_dir / TRAJECTORIES_DIR / f"{video.stem}.npz"
        state = action = None
        if trajectory.is_file():
            with np.load(trajectory, allow_pickle=False) as data:
                state, action = data["state"], data["action"]
        episodes.append(HeldOutEpisode(name=video.stem, caption=caption, video=video, state=state, action=action))
    if not episodes:
        raise ValueError(f"{episodes_dir / METADATA_CSV} names no episodes; evaluate needs held-out real episodes.")
    return episodes[:max_episodes]


def write_pairs(episodes: list[HeldOutEpisode], pairs_dir: Path) -> Path:
    """<name>.png (the first real frame) + <name>.txt (the caption) per episode, skipping pairs already there."""
    pairs_dir.mkdir(parents=True, exist_ok=True)
    for episode in episodes:
        png, txt = pairs_dir / f"{episode.name}.png", pairs_dir / f"{episode.name}.txt"
        if not png.is_file():
            with atomic_write(png) as tmp:
                cv2.imwrite(str(tmp), read_video(episode.video)[0][0][:, :, ::-1])  # cv2 writes BGR
        write_text_atomic(txt, episode.caption + "\n")
    return pairs_dir


# -------------------------------------------------------------------------------------------------------- metrics


def image_metrics(real: np.ndarray, generated: np.ndarray) -> dict[str, float]:
    """PSNR (dB) and SSIM over frames 1..T-1, and the first frame's PSNR; uint8 (T, H, W, 3) each."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    def tensor(frames: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0

    real_t, gen_t = tensor(real), tensor(generated)
    first = float(peak_signal_noise_ratio(gen_t[:1], real_t[:1], data_range=1.0))
    return {
        "psnr_db": float(peak_signal_noise_ratio(gen_t[1:], real_t[1:], data_range=1.0)),
        "ssim": float(structural_similarity_index_measure(gen_t[1:], real_t[1:], data_range=1.0)),
        "frame0_psnr_db": first if math.isfinite(first) else None,
    }  # None: identical (the copy baseline)


def _match(real: np.ndarray, generated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The common length of both videos, the real one resized to the generated size when they differ."""
    n = min(len(real), len(generated))
    real, generated = real[:n], generated[:n]
    if real.shape[1:3] != generated.shape[1:3]:
        size = (generated.shape[2], generated.shape[1])
        real = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in real])
    return real, generated


def episode_metrics(
    episode: HeldOutEpisode, real: np.ndarray, generated: np.ndarray, *, use_judge: bool, idm=None, starts=(0,)
) -> dict:
    """Everything evaluate measures of one generated video against its real episode (`starts`: its chunks' first
    new frames, for a long video's seam score and the real episode's at the same frames)."""
    seams = {}
    if len(starts) > 1:  # of the whole video, whatever length the real episode has
        seams = {"seam_score": seam_score(generated, list(starts))}
        seams["real_seam_score"] = seam_score(real[: len(generated)], list(starts))
    real, generated = _match(real, generated)
    row = {"episode": episode.name, "prompt": episode.caption, **image_metrics(real, generated), **seams}
    task = parse_prompt(episode.caption) if use_judge else None
    row["task_family"] = task.family if task is not None else "all"
    if task is not None:
        verdict = judge(generated, task)
        row.update(
            success=verdict.success,
            distractor=verdict.distractor,
            physics_ok=verdict.physics_ok,
            reasons=list(verdict.reasons),
        )
        if episode.state is not None:
            row["track_error"] = track_error(verdict, episode.state[: len(generated)])
    if idm is not None and episode.action is not None:
        from cosmos_synth.idm import predict_actions

        predicted = predict_actions(idm, generated, name=episode.name)
        truth = episode.action[: len(predicted)]
        row["idm_action_mse"] = float(np.mean((predicted[:-1] - truth[: len(predicted) - 1]) ** 2))
    return row


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None and not (isinstance(r[key], float) and math.isnan(r[key]))]
    return round(float(np.mean(values)), 5) if values else None


def aggregate(model: str, family: str, rows: list[dict]) -> dict:
    """One metrics row: counts, rates with 95% intervals, and means over the episodes."""
    out = {"model": model, "task_family": family, "episodes": len(rows)}
    if rows and "success" in rows[0]:
        wins = sum(bool(r["success"]) for r in rows)
        out.update(
            successes=wins,
            success_rate=round(wins / len(rows), 4),
            success_ci95=wilson_interval(wins, len(rows)),
            distractor_rate=round(sum(bool(r["distractor"]) for r in rows) / len(rows), 4),
            physics_rate=round(sum(bool(r["physics_ok"]) for r in rows) / len(rows), 4),
        )
    for key in ("psnr_db", "ssim", "frame0_psnr_db", "track_error", "seam_score", "real_seam_score", "idm_action_mse"):
        out[key] = _mean(rows, key)
    return {k: out.get(k) for k in (*ROW_FIELDS, "successes")}


# ---------------------------------------------------------------------------------------------------- generation


def generate_config(cfg: EvaluateConfig, name: str, pairs_dir: Path) -> GenerateConfig:
    """The generation settings of one evaluated model: its videos go to out_dir/<name>."""
    return GenerateConfig(
        model=cfg.model,
        revision=cfg.revision,
        pairs_dir=pairs_dir,
        out_dir=cfg.out_dir / name,
        adapter=cfg.models[name],
        height=cfg.height,
        width=cfg.width,
        num_frames=cfg.num_frames,
        chunk_frames=cfg.chunk_frames,
        chunk_overlap_frames=cfg.chunk_overlap_frames,
        num_steps=cfg.num_steps,
        guidance_scale=cfg.guidance_scale,
        fps=cfg.fps,
        seed=cfg.seed,
        dtype=cfg.dtype,
        device=cfg.device,
        guardrail=cfg.guardrail,
    )


def generated_videos(cfg: EvaluateConfig, name: str, pairs_dir: Path, wanted: set[str]) -> dict[str, Path]:
    """sample_id -> video of model `name`: reused from cfg.generated, else generated now (resumable)."""
    from cosmos_synth.generate import generate_videos

    if name in cfg.generated:
        manifest = Path(cfg.generated[name]) / MANIFEST
        videos = {r["sample_id"]: Path(r["video"]) for r in read_jsonl(manifest)}
        missing = sorted(wanted - set(videos))
        if missing:
            raise ValueError(
                f"evaluate: {manifest} has no video for episodes {missing[:5]}; generate them, or leave "
                f"{name!r} out of generated so evaluate generates them itself."
            )
        return videos
    gen = generate_config(cfg, name, pairs_dir)
    if wanted != {p.stem for p in pairs_dir.glob("*.png")}:
        gen = GenerateConfig(**{**vars(gen), "shard": "evaluate", "sample_ids": tuple(sorted(wanted))})
    result = generate_videos(gen)
    return {r["sample_id"]: Path(r["video"]) for r in read_jsonl(result.manifest)}


# ---------------------------------------------------------------------------------------------------------- stage


def evaluate_models(cfg: EvaluateConfig) -> EvaluateResult:
    """Generate from every held-out episode with every model, measure, and write metrics.json and the report."""
    episodes = read_heldout(cfg.episodes_dir, cfg.max_episodes)
    use_judge = cfg.judge == "demo" or (cfg.judge == "auto" and all(parse_prompt(e.caption) for e in episodes))
    if cfg.judge == "demo" and not all(parse_prompt(e.caption) for e in episodes):
        raise ValueError(
            f"judge='demo' but some captions in {cfg.episodes_dir / METADATA_CSV} are not demo-world "
            f"prompts; use judge='auto' or 'none' for other data."
        )
    write_config(cfg, cfg.out_dir, "evaluate")
    pairs_dir = cfg.pairs_dir or write_pairs(episodes, cfg.out_dir / "pairs")
    wanted = {e.name for e in episodes}
    idm = None
    if cfg.idm is not None:
        from cosmos_synth.idm import load_idm

        idm = load_idm(Path(cfg.idm))
    real = {e.name: read_video(e.video)[0] for e in episodes}
    starts = chunk_starts(cfg.num_frames, cfg.chunk_frames, cfg.chunk_overlap_frames)
    per_episode, videos = [], {}
    for name in [BASELINE, *cfg.models]:
        if name == BASELINE:
            videos[name] = {e.name: np.repeat(real[e.name][:1], cfg.num_frames, axis=0) for e in episodes}
        else:
            paths = generated_videos(cfg, name, pairs_dir, wanted)
            videos[name] = {e.name: read_video(paths[e.name])[0] for e in episodes}
        for episode in episodes:
            row = episode_metrics(
                episode,
                real[episode.name],
                videos[name][episode.name],
                use_judge=use_judge,
                idm=idm if name != BASELINE else None,
                starts=starts,
            )
            per_episode.append({"model": name, **row})
        logger.info("evaluated %s on %d held-out episodes", name, len(episodes))
    rows = summarise(per_episode, [BASELINE, *cfg.models])
    episodes_file = write_jsonl(cfg.out_dir / EPISODES_FILE, per_episode)
    chunks = []
    if len(starts) > 1:  # long videos: per chunk, the real episodes' rows first (the reference)
        generated = {m: v for m, v in videos.items() if m != BASELINE}
        chunks = write_chunk_metrics(cfg.out_dir, episodes, real, generated, starts, use_judge=use_judge)
    record = {"rows": rows, **({"chunks": chunks} if chunks else {})}
    metrics = write_text_atomic(cfg.out_dir / METRICS_FILE, json.dumps(record, indent=2) + "\n")
    sheets = write_contact_sheets(cfg, episodes, real, videos)
    report = write_text_atomic(cfg.out_dir / REPORT_FILE, report_markdown(cfg, rows, sheets, chunks))
    for row in rows:
        logger.info("%s", {k: row[k] for k in ROW_FIELDS if row.get(k) is not None})
    result = dict(metrics=metrics, report=report, rows=tuple(rows), chunk_rows=tuple(chunks))
    return EvaluateResult(out_dir=cfg.out_dir, manifest=episodes_file, **result)


def summarise(per_episode: list[dict], models: list[str]) -> list[dict]:
    """metrics.json's rows: one per (model, task family), in model order, families sorted."""
    families = sorted({r["task_family"] for r in per_episode})
    return [
        aggregate(model, family, [r for r in per_episode if r["model"] == model and r["task_family"] == family])
        for model in models
        for family in families
    ]


# --------------------------------------------------------------------------------------------------------- report


def _label(image: np.ndarray, text: str) -> np.ndarray:
    band = np.full((14, image.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(band, text, (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, image])


def write_contact_sheets(
    cfg: EvaluateConfig, episodes: list[HeldOutEpisode], real: dict, videos: dict[str, dict]
) -> list[Path]:
    """sheet-<family>.png: for the first few episodes of each family, real frames above each model's frames."""
    by_family: dict[str, list[HeldOutEpisode]] = {}
    for episode in episodes:
        task = parse_prompt(episode.caption)
        by_family.setdefault(task.family if task else "all", []).append(episode)
    sheets = []
    for family, chosen in sorted(by_family.items()):
        blocks = []
        for episode in chosen[: cfg.sheet_episodes]:
            sources = [("real", real[episode.name])] + [(m, videos[m][episode.name]) for m in cfg.models]
            strips = []
            for label, frames in sources:
                frames, _ = _match(frames, videos[next(iter(cfg.models))][episode.name])
                picks = np.linspace(0, len(frames) - 1, SHEET_FRAMES).round().astype(int)
                strips.append(_label(np.concatenate([frames[i] for i in picks], axis=1), f"{label}: {episode.name}"))
            blocks.append(np.concatenate(strips))
            blocks.append(np.full((6, blocks[-1].shape[1], 3), 255, dtype=np.uint8))
        path = cfg.out_dir / f"sheet-{family}.png"
        with atomic_write(path) as tmp:
            cv2.imwrite(str(tmp), np.concatenate(blocks)[:, :, ::-1])
        sheets.append(path)
    return sheets


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, list):
        return f"[{value[0]:.2f}, {value[1]:.2f}]"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def metrics_table(rows: list[dict], fields: tuple[str, ...] = ROW_FIELDS) -> str:
    """The metrics rows as a markdown table (the `fields` that any row has)."""
    columns = [c for c in fields if any(r.get(c) is not None for r in rows)]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def report_markdown(cfg: EvaluateConfig, rows: list[dict], sheets: list[Path], chunks: list[dict] = ()) -> str:
    return "\n".join(
        [
            f"# Evaluation on {rows[0]['episodes'] if rows else 0}+ held-out episodes of {cfg.episodes_dir}",
            "",
            f"Generation: {cfg.num_steps} steps, guidance {cfg.guidance_scale}, seed {cfg.seed}, "
            f"{cfg.num_frames} frames at {cfg.height}x{cfg.width}. success_ci95: 95% Wilson interval. "
            f"PSNR and SSIM over the frames after the first; "
            f"frame0_psnr_db: the first frame against the seed image's episode frame.",
            "",
            metrics_table(rows),
            "",
            *(chunk_section(metrics_table(chunks, CHUNK_FIELDS), cfg) if chunks else []),
            *[f"![{p.stem}]({p.name})" for p in sheets],
            "",
        ]
    )
