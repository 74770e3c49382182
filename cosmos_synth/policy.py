"""A small visuomotor behaviour-cloning (BC) policy: an image, the robot state and the task's words in, a chunk of
actions out. It learns from the project's own robomimic HDF5 exports, read back through their format, so what it
trains on is exactly what a user's policy trainer would load.

Inputs per frame t of a demo (`data/demo_<i>` of an export):
    obs/<camera>_image   the frame, uint8 (H, W, 3); random-shift augmented while training
    obs/state            the state (the label stage's IDM state for generated episodes, the recorded one for real)
    attrs["task"]        the instruction; its words become a bag-of-words vector over the training set's vocabulary
Target: actions t .. t + chunk - 1 (the episode's last action repeated past its end), in original units (the
export's min-max normalisation is undone with the range stored in the file).

The network: a 2x2 average pool, three convolutions (the last two of stride 2) and a spatial softmax (one expected
(x, y) image position per channel: where things are, which is what a reaching policy needs), concatenated with the
standardised state and the task vector, then an MLP to the standardised chunk. States and actions are
standardised with the training set's mean and std, stored with the weights.

On disk (safetensors only, never pickle):
    policy.safetensors     the network's tensors
    policy_config.json     FORMAT, image_size, camera, chunk, vocabulary, state/action names, means and stds
    policy_metrics.json    demos, frames, final loss, seconds
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from cosmos_synth.config import PolicyTrainConfig, write_config
from cosmos_synth.files import atomic_write, write_text_atomic
from cosmos_synth.progress import Progress, ProgressReporter
from cosmos_synth.results import StageResult

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "policy.safetensors"
CONFIG_FILE = "policy_config.json"
METRICS_FILE = "policy_metrics.json"
FORMAT = "cosmos-synth-bc-policy-v1"  # bump when the network or the config's meaning changes
CHANNELS = (16, 32, 32)  # convolution widths: the first at the pooled resolution, then two of stride 2
HIDDEN = 256  # MLP width
POOL = 2  # frames are average-pooled by this factor first: 64x96 -> 32x48, objects still several pixels wide
WEIGHT_DECAY = 1e-4
WARMUP_FRACTION = 0.05
_WORD = re.compile(r"[a-z0-9]+")


def task_words(task: str) -> list[str]:
    return _WORD.findall(task.lower())


# ------------------------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class Demo:
    """One demonstration as read from an export: frames, states, actions (original units) and its task."""

    name: str  # "<file>:demo_<i>"
    frames: np.ndarray  # uint8 (N, H, W, 3)
    states: np.ndarray  # float32 (N, D)
    actions: np.ndarray  # float32 (N, A)
    task: str


def read_robomimic_demos(path: Path, camera: str, state_keys: tuple[str, ...] | None = None) -> list[Demo]:
    """Every demo of one robomimic export, with actions in original units and the state columns `state_keys`
    (by the file's state_names; None: all)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Policy dataset {path} does not exist; give a robomimic .hdf5 written by the export stage.")
    key = f"{camera}_image"
    demos = []
    with h5py.File(path, "r") as f:
        data = f["data"]
        low, high = _normalisation(path, data.attrs)
        columns = _state_columns(path, data.attrs, state_keys)
        for name in sorted(data.keys(), key=lambda n: int(n.removeprefix("demo_"))):
            demo = data[name]
            missing = [k for k in (f"obs/{key}", "obs/state", "actions") if k not in demo]
            if missing:
                raise ValueError(
                    f"Policy dataset {path}: {name} has no {', '.join(missing)}. A policy needs frames, state and "
                    f"actions: export labelled episodes with states (export.state='required'), camera={camera!r}."
                )
            actions = demo["actions"][()].astype(np.float32)
            if low is not None:
                actions = (actions + 1.0) / 2.0 * (high - low) + low
            demos.append(
                Demo(
                    name=f"{path.name}:{name}",
                    frames=demo[f"obs/{key}"][()],
                    states=demo["obs/state"][()].astype(np.float32)[:, columns],
                    actions=actions,
                    task=str(demo.attrs.get("task", "")),
                )
            )
    return demos


def _state_columns(path: Path, attrs, state_keys: tuple[str, ...] | None) -> slice | list[int]:
    if state_keys is None:
        return slice(None)
    names = [str(n) for n in attrs.get("state_names", [])]
    missing = [k for k in state_keys if k not in names]
    if missing:
        raise ValueError(
            f"Policy dataset {path}: state_keys {missing} are not among its state_names {names}; name columns the "
            "export has (set export.state_names, or idm_train.state_names before labelling)."
        )
    return [names.index(k) for k in state_keys]


def _normalisation(path: Path, attrs) -> tuple[np.ndarray | None, np.ndarray | None]:
    kind = attrs.get("action_normalization", "none")
    if kind == "none":
        return None, None
    if kind != "min_max":
        raise ValueError(f"Policy dataset {path}: action_normalization={kind!r} is unknown; re-export it.")
    return np.asarray(attrs["action_min"], np.float32), np.asarray(attrs["action_max"], np.float32)


def read_demos(paths: tuple[Path, ...], camera: str, state_keys: tuple[str, ...] | None = None) -> list[Demo]:
    """The demos of every file, checked to agree in frame size and state/action widths."""
    demos = [demo for path in paths for demo in read_robomimic_demos(path, camera, state_keys)]
    if not demos:
        raise ValueError(f"Policy datasets {[str(p) for p in paths]} hold no demos; export some episodes first.")
    first = demos[0]
    for demo in demos[1:]:
        if (demo.frames.shape[1:], demo.states.shape[1], demo.actions.shape[1]) != (
            first.frames.shape[1:],
            first.states.shape[1],
            first.actions.shape[1],
        ):
            raise ValueError(
                f"Policy datasets disagree: {demo.name} has frames {demo.frames.shape[1:]}, state width "
                f"{demo.states.shape[1]}, action width {demo.actions.shape[1]}; {first.name} has "
                f"{first.frames.shape[1:]}, {first.states.shape[1]}, {first.actions.shape[1]}. Pool exports of one "
                "robot, camera and image size."
            )
    return demos


# --------------------------------------------------------------------------------------------------- network


@dataclass(frozen=True, kw_only=True)
class PolicySpec:
    """Everything that defines a trained policy besides its weights (policy_config.json)."""

    image_size: tuple[int, int]  # (height, width)
    camera: str
    chunk: int
    state_keys: tuple[str, ...] | None  # the state columns it reads, by name (None: all)
    vocabulary: tuple[str, ...]  # the task words the policy knows, in vector order
    state_mean: tuple[float, ...]
    state_std: tuple[float, ...]
    action_mean: tuple[float, ...]
    action_std: tuple[float, ...]
    channels: tuple[int, ...] = CHANNELS
    hidden: int = HIDDEN

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=2) + "\n"

    @classmethod
    def from_json(cls, path: Path) -> PolicySpec:
        fix = "point at a folder written by train_policy"
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"Policy config {path} cannot be read ({exc}); {fix}.") from exc
        if not isinstance(values, dict) or values.pop("format", None) != FORMAT:
            raise ValueError(f"Policy config {path} is not a {FORMAT} config; {fix}.")
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        except TypeError as exc:
            raise ValueError(f"Policy config {path} has missing or unknown fields ({exc}); {fix}.") from exc


class SpatialSoftmax(nn.Module):
    """(B, C, H, W) features -> (B, 2C): each channel's expected (x, y) position in [-1, 1]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        weights = torch.softmax(x.flatten(2), dim=-1).view(b, c, h, w)
        ys = torch.linspace(-1.0, 1.0, h, device=x.device)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device)
        return torch.cat([(weights.sum(2) * xs).sum(-1), (weights.sum(3) * ys).sum(-1)], dim=1)


class BCPolicy(nn.Module):
    """uint8 images (B, 3, H, W), states (B, D), task vectors (B, V) -> standardised action chunks (B, chunk, A)."""

    def __init__(self, spec: PolicySpec) -> None:
        super().__init__()
        self.spec = spec
        layers, width = [nn.AvgPool2d(POOL)], 3
        for i, out in enumerate(spec.channels):
            layers += [nn.Conv2d(width, out, 3, stride=1 if i == 0 else 2, padding=1), nn.ReLU()]
            width = out
        self.encoder = nn.Sequential(*layers, SpatialSoftmax())
        num_actions = len(spec.action_mean)
        self.head = nn.Sequential(
            nn.Linear(2 * width + len(spec.state_mean) + len(spec.vocabulary), spec.hidden),
            nn.ReLU(),
            nn.Linear(spec.hidden, spec.hidden),
            nn.ReLU(),
            nn.Linear(spec.hidden, spec.chunk * num_actions),
        )
        for name in ("state_mean", "state_std", "action_mean", "action_std"):
            self.register_buffer(name, torch.tensor(getattr(spec, name), dtype=torch.float32), persistent=False)

    def forward(self, images: torch.Tensor, states: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
        x = (images.float() / 255.0 - 0.5) / 0.25
        features = torch.cat([self.encoder(x), (states - self.state_mean) / self.state_std, tasks], dim=1)
        return self.head(features).view(len(images), self.spec.chunk, -1)

    def task_vector(self, task: str) -> torch.Tensor:
        words = set(task_words(task))
        return torch.tensor([float(word in words) for word in self.spec.vocabulary])

    @torch.no_grad()
    def act(self, images: np.ndarray, states: np.ndarray, tasks: list[str]) -> np.ndarray:
        """uint8 (B, H, W, 3) frames, (B, D) states, B instructions -> (B, chunk, A) actions in original units."""
        device = self.action_mean.device
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(device)
        s = torch.from_numpy(np.asarray(states, np.float32)).to(device)
        t = torch.stack([self.task_vector(task) for task in tasks]).to(device)
        return (self(x, s, t) * self.action_std + self.action_mean).cpu().numpy()


def _stats(values: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    std = values.std(axis=0)
    return tuple(float(v) for v in values.mean(axis=0)), tuple(float(v) if v > 1e-6 else 1.0 for v in std)


def make_spec(cfg: PolicyTrainConfig, demos: list[Demo]) -> PolicySpec:
    states = np.concatenate([d.states for d in demos])
    actions = np.concatenate([d.actions for d in demos])
    (state_mean, state_std), (action_mean, action_std) = _stats(states), _stats(actions)
    return PolicySpec(
        image_size=tuple(demos[0].frames.shape[1:3]),
        camera=cfg.camera,
        chunk=cfg.chunk,
        state_keys=cfg.state_keys,
        vocabulary=tuple(sorted({w for d in demos for w in task_words(d.task)})),
        state_mean=state_mean,
        state_std=state_std,
        action_mean=action_mean,
        action_std=action_std,
    )


# -------------------------------------------------------------------------------------------------- training


@dataclass(frozen=True, kw_only=True)
class PolicyResult(StageResult):  # no manifest: the policy folder
    policy_dir: Path
    num_demos: int
    num_frames: int
    final_loss: float


class _Samples:
    """Every (demo, frame) of the training demos as tensors: frames, states, task vectors and target chunks."""

    def __init__(self, demos: list[Demo], model: BCPolicy) -> None:
        chunk = model.spec.chunk
        self.frames = torch.from_numpy(np.concatenate([d.frames for d in demos])).permute(0, 3, 1, 2).contiguous()
        self.states = torch.from_numpy(np.concatenate([d.states for d in demos]))
        self.tasks = torch.cat([model.task_vector(d.task).expand(len(d.frames), -1) for d in demos])
        targets = []
        for d in demos:
            index = np.minimum(np.arange(len(d.actions))[:, None] + np.arange(chunk), len(d.actions) - 1)
            targets.append(d.actions[index])  # (N, chunk, A): the episode's last action held past its end
        mean, std = model.action_mean.cpu().numpy(), model.action_std.cpu().numpy()
        self.targets = torch.from_numpy(((np.concatenate(targets) - mean) / std).astype(np.float32))

    def __len__(self) -> int:
        return len(self.frames)


def random_shift(images: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Pad by `pixels` (edge pixels repeated) and crop back at one random offset per image."""
    if pixels == 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images.float(), (pixels,) * 4, mode="replicate")
    dy, dx = (torch.randint(0, 2 * pixels + 1, (2, b), generator=generator)).tolist()
    return torch.stack([padded[i, :, y : y + h, x : x + w] for i, (y, x) in enumerate(zip(dy, dx, strict=True))])


def train_policy(cfg: PolicyTrainConfig, progress: Progress | None = None) -> PolicyResult:
    """Train a BC policy on every demo of cfg.datasets for cfg.num_steps steps; save it; return where it went.

    Deterministic given cfg.seed on one machine on CPU (weights, batches and augmentation all follow from it).
    """
    start = time.perf_counter()
    demos = read_demos(cfg.datasets, cfg.camera, cfg.state_keys)
    spec = make_spec(cfg, demos)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = BCPolicy(spec)
    samples = _Samples(demos, model)
    model.to(cfg.device).train()
    logger.info(
        "BC policy: %d demos, %d frames, %d task words, %d steps",
        len(demos),
        len(samples),
        len(spec.vocabulary),
        cfg.num_steps,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=WEIGHT_DECAY)
    warmup = max(1, int(WARMUP_FRACTION * cfg.num_steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, cfg.num_steps) / cfg.num_steps))
        ),
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    report = ProgressReporter(progress, "train-policy", total=cfg.num_steps, unit="step").start()
    loss_sum, loss_count, final_loss = 0.0, 0, float("nan")
    for step in range(cfg.num_steps):
        index = torch.randint(0, len(samples), (cfg.batch_size,), generator=generator)
        images = random_shift(samples.frames[index], cfg.shift_pixels, generator)
        predicted = model(
            images.to(cfg.device), samples.states[index].to(cfg.device), samples.tasks[index].to(cfg.device)
        )
        loss = F.mse_loss(predicted, samples.targets[index].to(cfg.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        loss_sum, loss_count = loss_sum + loss.item(), loss_count + 1  # .item(): a sync point, fine at this size
        if (step + 1) % max(1, cfg.num_steps // 10) == 0 or step + 1 == cfg.num_steps:
            final_loss, loss_sum, loss_count = loss_sum / loss_count, 0.0, 0
            logger.info("policy step %d/%d: loss %.4f", step + 1, cfg.num_steps, final_loss)
        report.advance(1)
    policy_dir = save_policy(model, cfg.out_dir)
    metrics = {
        "demos": len(demos),
        "frames": len(samples),
        "final_loss": final_loss,
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_text_atomic(cfg.out_dir / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    write_config(cfg, cfg.out_dir, "policy_train")
    return PolicyResult(
        out_dir=cfg.out_dir, policy_dir=policy_dir, num_demos=len(demos), num_frames=len(samples), final_loss=final_loss
    )


def save_policy(model: BCPolicy, out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_write(out_dir / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp))
    write_text_atomic(out_dir / CONFIG_FILE, model.spec.to_json())
    return out_dir


def load_policy(policy_dir: Path, device: str = "cpu") -> BCPolicy:
    """A policy saved by train_policy (safetensors only), in eval mode on `device`."""
    policy_dir = Path(policy_dir)
    weights = policy_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise ValueError(
            f"Policy folder {policy_dir} has no {WEIGHTS_FILE}; point at a folder written by train_policy."
        )
    model = BCPolicy(PolicySpec.from_json(policy_dir / CONFIG_FILE))
    model.load_state_dict(load_file(str(weights)))
    return model.to(device).eval()
