"""Training the IDM (cosmos_synth.idm.model) on ingested episodes with trajectories, and scoring it on held-out ones.

train_idm splits the manifest's episodes (whole episodes, seeded) into training and held-out sets, fits the network
(the action head always; the state head when the trajectories carry `state`), scores its labels on the held-out
episodes against the mean-label baseline (predicting the training set's mean for every frame), and writes, next to
the model:
    idm_metrics.json     the training and held-out episodes, the final loss, and per action and per state dimension
                         the held-out MSE and R2 of the IDM and of the baseline (`per_action`, `per_state`)
"""

from __future__ import annotations

import json
import logging
import math
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
from cosmos_synth.manifests import read_trajectory
from cosmos_synth.progress import Progress, ProgressReporter
from cosmos_synth.results import StageResult
from cosmos_synth.tracking import tracker_run
from cosmos_synth.video import read_video

logger = logging.getLogger(__name__)

WEIGHT_DECAY = 1e-4  # AdamW
WARMUP_FRACTION = 0.05  # of all optimizer steps: linear warm-up, then cosine decay to 0
TRAJECTORY_FIX = "rewrite it with np.savez(state=..., action=...) and re-run ingest"
METRIC_KEYS = ("mse", "r2", "baseline_mse", "baseline_r2")


@dataclass(frozen=True, kw_only=True)
class IDMResult(StageResult):  # no manifest: the stage's output is one model
    model_path: Path  # out_dir / idm.safetensors (idm_config.json next to it)
    metrics: dict[str, Any]  # the contents of idm_metrics.json

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per action, then per state dimension: held-out MSE and R2 of the IDM and of the mean-label
        baseline (3 digits)."""
        return [
            {"label": label, "name": name, **{k: v if v is None else float(f"{v:.3g}") for k, v in values.items()}}
            for label in ("action", "state")
            for name, values in self.metrics.get(f"per_{label}", {}).items()
        ]


@dataclass(frozen=True, kw_only=True)
class TrainingEpisode:
    """One ingested episode with its ground truth, as the IDM trains and is evaluated on it."""

    sample_id: str
    video: torch.Tensor  # uint8 (T, 3, height, width), resized
    actions: np.ndarray  # float32 (T, A), the trajectory's `action`
    states: np.ndarray | None = None  # float32 (T, S), the trajectory's `state` (None: the trajectory has none)


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
        actions, states = read_trajectory(Path(row["trajectory"]), what="Trajectory", fix=TRAJECTORY_FIX)
        if len(actions) != len(frames):
            raise ValueError(
                f"Trajectory {row['trajectory']} has {len(actions)} action rows but video {row['video']} "
                f"has {len(frames)} frames; write one action row per frame and re-run ingest."
            )
        if episodes:
            check_like_first(episodes[0], row["trajectory"], actions, states)
        if len(frames) < cfg.clip_frames:
            raise ValueError(
                f"Video {row['video']} has {len(frames)} frames; clip_frames={cfg.clip_frames} needs at "
                f"least that many. Lower clip_frames or drop the episode."
            )
        episodes.append(
            TrainingEpisode(
                sample_id=str(row["sample_id"]),
                actions=actions,
                states=states,
                video=resize_for_idm(frames, cfg.image_size),
            )
        )
    return episodes


def check_like_first(first: TrainingEpisode, path: str, actions: np.ndarray, states: np.ndarray | None) -> None:
    """Every trajectory has the first one's action width, and a state of its width or, like it, none."""
    if actions.shape[1] != first.actions.shape[1]:
        raise ValueError(
            f"Trajectory {path} has {actions.shape[1]} action dimensions, episode {first.sample_id} has "
            f"{first.actions.shape[1]}; use one action space."
        )
    width, first_width = (None if s is None else s.shape[1] for s in (states, first.states))
    if width != first_width:
        raise ValueError(
            f"Trajectory {path} has state width {width}, episode {first.sample_id} {first_width} (None: no "
            f"'state' array); give every trajectory the same state, or none."
        )


def split_episodes(episodes: list, holdout_fraction: float, seed: int) -> tuple[list, list]:
    """(train, held-out): a seeded permutation of whole episodes; at least one of each."""
    order = np.random.default_rng(seed).permutation(len(episodes))
    num_heldout = min(len(episodes) - 1, max(1, round(holdout_fraction * len(episodes))))
    heldout = sorted(order[:num_heldout].tolist())
    return [e for i, e in enumerate(episodes) if i not in heldout], [episodes[i] for i in heldout]


def normalisation(
    values: np.ndarray, names: tuple[str, ...] | None, kind: str, cfg: IDMTrainConfig
) -> tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...]]:
    """(names, mean, std) of one label kind ("action" or "state") over the training frames (T, D)."""
    names = names or tuple(f"{kind}_{i}" for i in range(values.shape[1]))
    if len(names) != values.shape[1]:
        raise ValueError(
            f"{kind}_names={names} has {len(names)} names but {cfg.manifest}'s trajectories have "
            f"{values.shape[1]} {kind} dimensions; give one name per dimension."
        )
    std = values.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)  # a constant dimension is left unscaled
    return tuple(names), tuple(values.mean(axis=0).tolist()), tuple(std.tolist())


def make_spec(cfg: IDMTrainConfig, train: list[TrainingEpisode]) -> IDMSpec:
    """Architecture sizes and the training set's action (and state) normalisation."""
    actions = np.concatenate([e.actions for e in train]).astype(np.float64)
    action_names, action_mean, action_std = normalisation(actions, cfg.action_names, "action", cfg)
    state = {}
    if train[0].states is not None:
        states = np.concatenate([e.states for e in train]).astype(np.float64)
        names, mean, std = normalisation(states, cfg.state_names, "state", cfg)
        state = {"state_names": names, "state_mean": mean, "state_std": std}
    elif cfg.state_names is not None:
        logger.warning(
            "state_names=%s is ignored: %s's trajectories carry no 'state' array, so the IDM has no state head.",
            cfg.state_names,
            cfg.manifest,
        )
    return IDMSpec(
        clip_frames=cfg.clip_frames,
        image_size=cfg.image_size,
        action_names=action_names,
        action_mean=action_mean,
        action_std=action_std,
        **state,
    )


def fit(
    model: InverseDynamicsModel,
    train: list[TrainingEpisode],
    cfg: IDMTrainConfig,
    *,
    report: ProgressReporter,
    tracker=None,
) -> float:
    """The training loop: AdamW on the MSE of standardised action chunks (plus that of standardised state chunks
    with a state head); returns the last epoch's mean loss. Each epoch's mean loss and learning rate go to `report`
    and `tracker`."""
    k, device = cfg.clip_frames, torch.device(cfg.device)
    video = torch.cat([e.video for e in train]).to(device)  # every episode back to back, on the device
    actions = torch.from_numpy(np.concatenate([e.actions for e in train])).to(device)
    actions = (actions - model.action_mean) / model.action_std
    if model.spec.num_states:
        states = torch.from_numpy(np.concatenate([e.states for e in train])).to(device)
        states = (states - model.state_mean) / model.state_std
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
            predicted_actions, predicted_states = model(video[clip_index(batch, k).to(device)])
            loss = F.mse_loss(predicted_actions, actions[clip_index(batch, k - 1).to(device)])
            if predicted_states is not None:  # the state of every frame of the clip
                loss = loss + F.mse_loss(predicted_states, states[clip_index(batch, k).to(device)])
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


def score(
    predicted: np.ndarray, truth: np.ndarray, mean: tuple[float, ...], names: tuple[str, ...]
) -> dict[str, dict[str, float | None]]:
    """Per dimension: the labels' MSE and R2, and those of the mean-label baseline (the training mean everywhere)."""
    mse, r2 = regression_metrics(predicted, truth)
    baseline_mse, baseline_r2 = regression_metrics(np.broadcast_to(np.asarray(mean), truth.shape), truth)
    return {
        name: {"mse": float(mse[i]), "r2": r2[i], "baseline_mse": float(baseline_mse[i]), "baseline_r2": baseline_r2[i]}
        for i, name in enumerate(names)
    }


def evaluate(model: InverseDynamicsModel, heldout: list[TrainingEpisode]) -> dict[str, Any]:
    """The IDM's labels vs the mean-label baseline on the held-out episodes: actions on frames 0 .. T-2 (the last
    has no next frame), states on every frame."""
    spec = model.spec
    labels = [predict_resized(model, e.video) for e in heldout]
    truth = np.concatenate([e.actions[:-1] for e in heldout]).astype(np.float64)
    predicted = np.concatenate([label.actions[:-1] for label in labels]).astype(np.float64)
    metrics = {
        "heldout_episodes": [e.sample_id for e in heldout],
        "num_heldout_frames": len(truth),
        "per_action": score(predicted, truth, spec.action_mean, spec.action_names),
    }
    if spec.num_states:
        truth = np.concatenate([e.states for e in heldout]).astype(np.float64)
        predicted = np.concatenate([label.states for label in labels]).astype(np.float64)
        metrics["num_heldout_state_frames"] = len(truth)
        metrics["per_state"] = score(predicted, truth, spec.state_mean, spec.state_names)
    return metrics


def metrics_table(metrics: dict[str, Any]) -> str:
    """The held-out scores as a markdown table: one row per action and state dimension."""
    lines = [
        "| label | dimension | IDM MSE | IDM R2 | mean-label MSE | mean-label R2 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label in ("action", "state"):
        for name, values in metrics.get(f"per_{label}", {}).items():
            cells = ["-" if values[k] is None else f"{values[k]:.3g}" for k in METRIC_KEYS]
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
        "IDM: %d training episodes, %d held out, actions %s, states %s",
        len(train),
        len(heldout),
        list(spec.action_names),
        list(spec.state_names) or "none (the trajectories have no 'state')",
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
    logger.info("IDM held-out error per dimension (%d episodes):\n%s", len(heldout), metrics_table(metrics))
    return IDMResult(out_dir=cfg.out_dir, model_path=model_path, metrics=metrics)
