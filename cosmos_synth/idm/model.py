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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from cosmos_synth.files import atomic_write, write_text_atomic

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "idm.safetensors"
CONFIG_FILE = "idm_config.json"
METRICS_FILE = "idm_metrics.json"
CONFIG_FORMAT = "cosmos-synth-idm-v1"  # bump when the architecture or the config's meaning changes
CHANNELS = (16, 32, 64)  # convolution widths of the default network
HIDDEN = 256  # MLP width of the default network
DIFF_SCALE = 4.0  # frame differences are small; scale them to the frames' range


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
