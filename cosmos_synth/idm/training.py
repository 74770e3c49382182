"""Training the IDM (cosmos_synth.idm.model) on ingested episodes with trajectories, and scoring it on held-out ones.

train_idm splits the manifest's episodes (whole episodes, seeded) into training and held-out sets, fits the network,
scores its labels on the held-out episodes against the mean-label baseline, and writes, next to the model:
    idm_metrics.json     the training and held-out episodes, the final loss, and per dimension the held-out MSE and R2
                         of the IDM and of the baseline
"""

from __future__ import annotations

import json
import logging
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cosmos_synth.config import IDMTrainConfig, config_to_dict, write_config
from cosmos_synth.files import read_jsonl, write_text_atomic
from cosmos_synth.idm.model import (
    METRICS_FILE,
    IDMSpec,
    InverseDynamicsModel,
    clip_index,
    predict_resized,
    resize_for_idm,
    save_idm,
)
from cosmos_synth.progress import Progress, ProgressReporter
from cosmos_synth.results import StageResult
from cosmos_synth.tracking import tracker_run
from cosmos_synth.video import read_video

logger = logging.getLogger(__name__)

WEIGHT_DECAY = 1e-4  # AdamW
WARMUP_FRACTION = 0.05  # of all optimizer steps: linear warm-up, then cosine decay to 0


@dataclass(frozen=True, kw_only=True)
class IDMResult(StageResult):  # no manifest: the stage's output is one model
    model_path: Path  # out_dir / idm.safetensors (idm_config.json next to it)
    metrics: dict[str, Any]  # the contents of idm_metrics.json

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per action dimension: held-out MSE and R2 of the IDM and of the mean-action baseline (3 digits)."""
        return [
            {"name": name, **{k: v if v is None else float(f"{v:.3g}") for k, v in values.items()}}
            for name, values in self.metrics["per_action"].items()
        ]


@dataclass(frozen=True, kw_only=True)
class TrainingEpisode:
    """One ingested episode with its ground-truth actions, as the IDM trains and is evaluated on it."""

    sample_id: str
    video: torch.Tensor  # uint8 (T, 3, height, width), resized
    actions: np.ndarray  # float32 (T, A), the trajectory's `action`


def load_training_episodes(cfg: IDMTrainConfig) -> list[TrainingEpisode]:
    """Every manifest row with a trajectory, decoded and resized; errors name the manifest or the file.

    All of them stay in memory as uint8 at cfg.image_size: T x 3 x height x width bytes per episode.
    """
    rows = [row for row in read_jsonl(cfg.manifest) if row.get("trajectory")]
    if len(rows) < 2:
        raise ValueError(
            f"Manifest {cfg.manifest} has {len(rows)} episode(s) with a trajectory; training the IDM "
            f"needs at least 2 (one held out). Add trajectories/<stem>.npz files and re-run ingest."
        )
    episodes = []
    for row in rows:
        frames, _ = read_video(Path(row["video"]))
        actions = read_trajectory_actions(Path(row["trajectory"]))
        if len(actions) != len(frames):
            raise ValueError(
                f"Trajectory {row['trajectory']} has {len(actions)} action rows but video {row['video']} "
                f"has {len(frames)} frames; write one action row per frame and re-run ingest."
            )
        if episodes and actions.shape[1] != episodes[0].actions.shape[1]:
            raise ValueError(
                f"Trajectory {row['trajectory']} has {actions.shape[1]} action dimensions, episode "
                f"{episodes[0].sample_id} has {episodes[0].actions.shape[1]}; use one action space."
            )
        if len(frames) < cfg.clip_frames:
            raise ValueError(
                f"Video {row['video']} has {len(frames)} frames; clip_frames={cfg.clip_frames} needs at "
                f"least that many. Lower clip_frames or drop the episode."
            )
        episodes.append(
            TrainingEpisode(
                sample_id=str(row["sample_id"]), actions=actions, video=resize_for_idm(frames, cfg.image_size)
            )
        )
    return episodes


def read_trajectory_actions(path: Path) -> np.ndarray:
    """The (T, A) float32 `action` array of a trajectory .npz."""
    try:
        with np.load(path, allow_pickle=False) as data:
            actions = data["action"] if "action" in data.files else None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:  # np.load's errors do not name the file
        raise ValueError(
            f"Trajectory {path} cannot be read ({exc}); rewrite it with np.savez(state=..., action=...)."
        ) from exc
    if actions is None or actions.ndim != 2:
        raise ValueError(
            f"Trajectory {path} holds no 2-D 'action' array; write it with np.savez(state=..., action=...)."
        )
    return np.asarray(actions, dtype=np.float32)


def split_episodes(episodes: list, holdout_fraction: float, seed: int) -> tuple[list, list]:
    """(train, held-out): a seeded permutation of whole episodes; at least one of each."""
    order = np.random.default_rng(seed).permutation(len(episodes))
    num_heldout = min(len(episodes) - 1, max(1, round(holdout_fraction * len(episodes))))
    heldout = sorted(order[:num_heldout].tolist())
    return [e for i, e in enumerate(episodes) if i not in heldout], [episodes[i] for i in heldout]


def make_spec(cfg: IDMTrainConfig, train: list[TrainingEpisode]) -> IDMSpec:
    """Architecture sizes and the training set's action normalisation."""
    actions = np.concatenate([e.actions for e in train]).astype(np.float64)
    names = cfg.action_names or tuple(f"action_{i}" for i in range(actions.shape[1]))
    if len(names) != actions.shape[1]:
        raise ValueError(
            f"action_names={names} has {len(names)} names but {cfg.manifest}'s trajectories have "
            f"{actions.shape[1]} action dimensions; give one name per dimension."
        )
    std = actions.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)  # a constant dimension is left unscaled
    return IDMSpec(
        clip_frames=cfg.clip_frames,
        image_size=cfg.image_size,
        action_names=tuple(names),
        action_mean=tuple(actions.mean(axis=0).tolist()),
        action_std=tuple(std.tolist()),
    )


def fit(
    model: InverseDynamicsModel,
    train: list[TrainingEpisode],
    cfg: IDMTrainConfig,
    *,
    report: ProgressReporter,
    tracker=None,
) -> float:
    """The training loop: AdamW on the MSE of standardised action chunks; returns the last epoch's mean loss.
    Each epoch's mean loss and learning rate go to `report` and `tracker`."""
    k, device = cfg.clip_frames, torch.device(cfg.device)
    video = torch.cat([e.video for e in train]).to(device)  # every episode back to back, on the device
    targets = torch.from_numpy(np.concatenate([e.actions for e in train])).to(device)
    targets = (targets - model.action_mean) / model.action_std
    offsets = np.cumsum([0] + [len(e.actions) for e in train])  # clips never cross an episode boundary
    starts = torch.cat([torch.arange(o, o + len(e.actions) - k + 1) for o, e in zip(offsets[:-1], train, strict=True)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=WEIGHT_DECAY)
    total = cfg.num_epochs * math.ceil(len(starts) / cfg.batch_size)
    warmup = max(1, round(WARMUP_FRACTION * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, 0.5 * (1 + math.cos(math.pi * step / total)))
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    model.train()
    for epoch in range(cfg.num_epochs):
        epoch_loss = torch.zeros((), device=device)
        for batch in starts[torch.randperm(len(starts), generator=generator)].split(cfg.batch_size):
            clips, chunk = video[clip_index(batch, k).to(device)], targets[clip_index(batch, k - 1).to(device)]
            loss = F.mse_loss(model(clips), chunk)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            epoch_loss += loss.detach() * len(batch)
        mean_loss = epoch_loss.item() / len(starts)  # one CPU-GPU sync per epoch
        logger.info("IDM epoch %d/%d: loss %.4f", epoch + 1, cfg.num_epochs, mean_loss)
        report.advance(loss=mean_loss, lr=schedule.get_last_lr()[0])
        if tracker is not None:
            tracker.log({"loss": mean_loss, "lr": schedule.get_last_lr()[0]}, step=epoch + 1)
    return mean_loss


def regression_metrics(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, list[float | None]]:
    """Per-dimension MSE and R2 (1 - MSE / variance of the truth; None where the truth is constant)."""
    mse = ((predicted - truth) ** 2).mean(axis=0)
    variance = truth.var(axis=0)
    return mse, [float(1 - m / v) if v > 0 else None for m, v in zip(mse, variance, strict=True)]


def evaluate(model: InverseDynamicsModel, heldout: list[TrainingEpisode]) -> dict[str, Any]:
    """IDM vs the mean-action baseline on the held-out episodes' frames 0 .. T-2 (the last has no next frame)."""
    truth = np.concatenate([e.actions[:-1] for e in heldout]).astype(np.float64)
    predicted = np.concatenate([predict_resized(model, e.video)[:-1] for e in heldout]).astype(np.float64)
    baseline = np.broadcast_to(np.asarray(model.spec.action_mean), truth.shape)
    mse, r2 = regression_metrics(predicted, truth)
    baseline_mse, baseline_r2 = regression_metrics(baseline, truth)
    per_action = {
        name: {"mse": float(mse[i]), "r2": r2[i], "baseline_mse": float(baseline_mse[i]), "baseline_r2": baseline_r2[i]}
        for i, name in enumerate(model.spec.action_names)
    }
    return {
        "heldout_episodes": [e.sample_id for e in heldout],
        "num_heldout_frames": len(truth),
        "per_action": per_action,
    }


def train_idm(cfg: IDMTrainConfig, progress: Progress | None = None) -> IDMResult:
    """Train an IDM on cfg.manifest's episodes with trajectories; evaluate it on held-out episodes; save it.
    `progress` gets the epochs done; cfg.report_to's tracker the loss and learning rate per epoch.

    Deterministic given cfg.seed: the held-out episodes, the initial weights and the batch order all follow from it
    (bit for bit on one machine on CPU; CUDA convolutions may differ in the last bits from run to run).
    """
    episodes = load_training_episodes(cfg)
    train, heldout = split_episodes(episodes, cfg.holdout_fraction, cfg.seed)
    spec = make_spec(cfg, train)
    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        model = InverseDynamicsModel(spec)
    model.to(cfg.device)
    logger.info(
        "IDM: %d training episodes, %d held out, %d actions %s",
        len(train),
        len(heldout),
        spec.num_actions,
        list(spec.action_names),
    )
    report = ProgressReporter(progress, "train-idm", total=cfg.num_epochs, unit="epoch").start()
    with tracker_run(
        cfg.report_to, cfg.out_dir, f"{Path(cfg.out_dir).resolve().parent.name}-idm", config_to_dict(cfg)
    ) as tracker:
        final_loss = fit(model, train, cfg, report=report, tracker=tracker)
    metrics = {
        "train_episodes": [e.sample_id for e in train],
        "final_train_loss": final_loss,
        **evaluate(model, heldout),
    }
    model_path = save_idm(model, cfg.out_dir)
    write_text_atomic(cfg.out_dir / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    write_config(cfg, cfg.out_dir, "idm_train")
    for name, values in metrics["per_action"].items():
        logger.info(
            "IDM held-out %s: mse %.3g r2 %s (mean baseline: mse %.3g)",
            name,
            values["mse"],
            values["r2"] if values["r2"] is None else round(values["r2"], 3),
            values["baseline_mse"],
        )
    return IDMResult(out_dir=cfg.out_dir, model_path=model_path, metrics=metrics)
