"""The inverse-dynamics model (IDM): a few consecutive video frames in, the actions between them out.

A clip is k = `clip_frames` consecutive frames, resized to `image_size` (height, width). The network sees the k
frames and their k - 1 differences stacked as channels (3 (2k - 1) channels), runs four 3x3 convolutions (three of
stride 2), pools every channel globally (mean and max: the features do not depend on where the robot is in the
image, which is what lets a few episodes generalise), and an MLP maps them to an action chunk: the actions of the
clip's k - 1 transitions, i.e. the actions of its first k - 1 frames (action[t] is the command that leads from
frame t to frame t + 1). Actions are standardised with the training set's per-dimension mean and std, which are
stored with the model; predictions come back in the original units.

Labelling a video (`predict_actions`) slides the clip over every start frame, so frame t's action is predicted by
up to k - 1 clips; those predictions are averaged. The last frame has no next frame to infer its action from: it
repeats the action of the frame before it (a hold, which suits both absolute and delta action spaces).

On disk (written once, read by `load_idm`; never pickle):
    idm.safetensors      the network's tensors
    idm_config.json      CONFIG_FORMAT, clip_frames, image_size, channels, hidden, action_names, action_mean,
                         action_std: everything needed to rebuild the network and undo the normalisation
"""

from __future__ import annotations

import json
import logging
import math
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from cosmos_synth.config import IDMTrainConfig, config_to_dict, write_config
from cosmos_synth.files import atomic_write, read_jsonl, write_text_atomic
from cosmos_synth.progress import Progress, ProgressReporter
from cosmos_synth.results import StageResult
from cosmos_synth.tracking import tracker_run
from cosmos_synth.video import read_video

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "idm.safetensors"
CONFIG_FILE = "idm_config.json"
METRICS_FILE = "idm_metrics.json"
CONFIG_FORMAT = "cosmos-synth-idm-v1"  # bump when the architecture or the config's meaning changes
CHANNELS = (16, 32, 64)  # convolution widths of the default network
HIDDEN = 256  # MLP width of the default network
DIFF_SCALE = 4.0  # frame differences are small; scale them to the frames' range
WEIGHT_DECAY = 1e-4  # AdamW
WARMUP_FRACTION = 0.05  # of all optimizer steps: linear warm-up, then cosine decay to 0


@dataclass(frozen=True, kw_only=True)
class IDMSpec:
    """Everything that defines a trained IDM besides its weights (the contents of idm_config.json)."""

    clip_frames: int  # k frames per clip
    image_size: tuple[int, int]  # (height, width) the frames are resized to, pixels
    action_names: tuple[str, ...]  # one per action dimension
    action_mean: tuple[float, ...]  # training-set mean per dimension, original units
    action_std: tuple[float, ...]  # training-set std per dimension (1.0 where a dimension is constant)
    channels: tuple[int, ...] = CHANNELS
    hidden: int = HIDDEN

    @property
    def num_actions(self) -> int:
        return len(self.action_names)

    def to_json(self) -> str:
        return json.dumps({"format": CONFIG_FORMAT, **asdict(self)}, indent=2) + "\n"

    @classmethod
    def from_json(cls, path: Path) -> IDMSpec:
        fix = f"point at a folder written by train_idm, or write {CONFIG_FILE} as train_idm does"
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"IDM config {path} cannot be read ({exc}); {fix}.") from exc
        if not isinstance(values, dict) or values.pop("format", None) != CONFIG_FORMAT:
            raise ValueError(f"IDM config {path} is not a {CONFIG_FORMAT} config; {fix}.")
        try:
            spec = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        except TypeError as exc:
            raise ValueError(f"IDM config {path} has missing or unknown fields ({exc}); {fix}.") from exc
        sizes = {len(spec.action_names), len(spec.action_mean), len(spec.action_std)}
        if len(sizes) != 1 or spec.clip_frames < 2 or len(spec.image_size) != 2:
            raise ValueError(
                f"IDM config {path}: action_names, action_mean and action_std must have one entry per "
                f"action, clip_frames >= 2 and image_size (height, width); {fix}."
            )
        return spec


class InverseDynamicsModel(nn.Module):
    """uint8 clips (B, k, 3, H, W) at spec.image_size -> standardised action chunks (B, k - 1, A)."""

    def __init__(self, spec: IDMSpec) -> None:
        super().__init__()
        self.spec = spec
        layers, width = [], 3 * (2 * spec.clip_frames - 1)
        for out in spec.channels:  # stride 2: each halves the image
            layers += [nn.Conv2d(width, out, 3, stride=2, padding=1), nn.ReLU()]
            width = out
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        self.encoder = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Linear(2 * width, spec.hidden),
            nn.ReLU(),
            nn.Linear(spec.hidden, (spec.clip_frames - 1) * spec.num_actions),
        )
        self.register_buffer("action_mean", torch.tensor(spec.action_mean, dtype=torch.float32), persistent=False)
        self.register_buffer("action_std", torch.tensor(spec.action_std, dtype=torch.float32), persistent=False)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = clips.float() / 255.0
        diffs = (x[:, 1:] - x[:, :-1]) * DIFF_SCALE
        x = torch.cat([(x - 0.5) / 0.25, diffs], dim=1).flatten(1, 2)  # (B, 3 (2k - 1), H, W)
        features = self.encoder(x)
        pooled = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)
        return self.head(pooled).view(len(clips), self.spec.clip_frames - 1, self.spec.num_actions)

    def unnormalise(self, chunks: torch.Tensor) -> torch.Tensor:
        """Standardised predictions -> original action units."""
        return chunks * self.action_std + self.action_mean


# --------------------------------------------------------------------------------------------------- frames, clips


def resize_for_idm(frames: np.ndarray, image_size: tuple[int, int]) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> uint8 (T, 3, height, width), bilinear and antialiased (no aliasing when it shrinks)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    if tuple(x.shape[2:]) == tuple(image_size):
        return x.contiguous()
    resized = F.interpolate(x.float(), size=tuple(image_size), mode="bilinear", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)


def clip_index(starts: torch.Tensor, length: int) -> torch.Tensor:
    """(B,) start rows -> (B, length) rows start, start + 1, ..., start + length - 1."""
    return starts[:, None] + torch.arange(length)


def average_chunks(chunks: np.ndarray) -> np.ndarray:
    """Per-frame actions (W + c, A) from W overlapping chunks (W, c, A), chunk s covering frames s .. s + c - 1.

    Each frame gets the mean of every chunk that covers it; the last frame (W + c - 1), which no chunk covers,
    repeats the frame before it.
    """
    num_windows, chunk, num_actions = chunks.shape
    sums = np.zeros((num_windows + chunk, num_actions), dtype=np.float64)
    counts = np.zeros((num_windows + chunk, 1), dtype=np.float64)
    for offset in range(chunk):  # chunk position `offset` of window s predicts frame s + offset
        sums[offset : offset + num_windows] += chunks[:, offset]
        counts[offset : offset + num_windows] += 1
    actions = sums[:-1] / counts[:-1]
    return np.concatenate([actions, actions[-1:]]).astype(np.float32)


@torch.no_grad()
def predict_actions(
    model: InverseDynamicsModel, frames: np.ndarray, *, batch_size: int = 64, name: str = "video"
) -> np.ndarray:
    """(T, A) float32 actions for uint8 frames (T, H, W, 3): every clip position, overlapping chunks averaged."""
    k = model.spec.clip_frames
    if len(frames) < k:
        raise ValueError(
            f"{name} has {len(frames)} frames; this IDM reads clips of clip_frames={k}. Label longer "
            f"videos or train an IDM with clip_frames <= {len(frames)}."
        )
    return predict_resized(model, resize_for_idm(frames, model.spec.image_size), batch_size=batch_size)


@torch.no_grad()
def predict_resized(model: InverseDynamicsModel, video: torch.Tensor, *, batch_size: int = 64) -> np.ndarray:
    """(T, A) float32 actions for uint8 frames already at spec.image_size, (T, 3, height, width)."""
    model.eval()
    device = next(model.parameters()).device
    video = video.to(device)
    starts = torch.arange(len(video) - model.spec.clip_frames + 1)
    chunks = [
        model.unnormalise(model(video[clip_index(batch, model.spec.clip_frames).to(device)])).cpu()
        for batch in starts.split(batch_size)
    ]
    return average_chunks(torch.cat(chunks).numpy())


# ------------------------------------------------------------------------------------------------------ save, load


def save_idm(model: InverseDynamicsModel, out_dir: Path) -> Path:
    """Write idm.safetensors and idm_config.json into out_dir atomically; return the weights' path."""
    weights = Path(out_dir) / WEIGHTS_FILE
    with atomic_write(weights) as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
            str(tmp),
            metadata={"format": CONFIG_FORMAT},
        )
    write_text_atomic(out_dir / CONFIG_FILE, model.spec.to_json())
    return weights


def idm_files(path: Path) -> tuple[Path, Path]:
    """(weights, config) of an IDM given its folder or its .safetensors file (the config sits next to it)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return path, path.parent / CONFIG_FILE
    return path / WEIGHTS_FILE, path / CONFIG_FILE


def load_idm(path: Path, *, device: str = "cpu") -> InverseDynamicsModel:
    """Load an IDM from a folder holding idm.safetensors + idm_config.json (or the path of the .safetensors file).

    Raises ValueError naming the file when either is missing, unreadable, or does not match the other.
    """
    weights, config = idm_files(path)
    for needed in (config, weights):
        if not needed.is_file():
            raise ValueError(
                f"IDM file {needed} does not exist; point idm at a train_idm out_dir (or a folder with "
                f"your own {WEIGHTS_FILE} + {CONFIG_FILE})."
            )
    model = InverseDynamicsModel(IDMSpec.from_json(config))
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise ValueError(
            f"IDM weights {weights} cannot be read as safetensors ({exc}); retrain the IDM or replace the file."
        ) from exc
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:  # missing/unexpected keys or wrong shapes: the weights are not for this config
        raise ValueError(
            f"IDM weights {weights} do not match {config} ({str(exc).splitlines()[0]}...); keep the "
            f"two files of one training run together."
        ) from exc
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------------------- training


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
