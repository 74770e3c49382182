"""The inverse-dynamics model (IDM): a few consecutive video frames in, the actions between them (and, with a state
head, the state at each of them) out.

A clip is k = `clip_frames` consecutive frames, resized to `image_size` (height, width). The network sees the k
frames and their k - 1 differences stacked as channels (3 (2k - 1) channels) and runs four 3x3 convolutions (three
of stride 2). Two heads read the features:
- the action head pools every channel globally (mean and max: motion does not depend on where the robot is in the
  image, which is what lets a few episodes generalise), and an MLP maps them to an action chunk: the actions of the
  clip's k - 1 transitions, i.e. the actions of its first k - 1 frames (action[t] is the command that leads from
  frame t to frame t + 1);
- the state head (when the training episodes carry states) needs WHERE things are, which global pooling throws
  away: a 1x1 convolution makes `keypoints` heat maps, a spatial soft-argmax turns each into the image position
  (x, y) it points at, and an MLP maps the positions and the pooled features to a state chunk: the states of all k
  frames of the clip. It reads the shared features without training them (a stop-gradient), so adding it leaves
  the action head, and every action label, exactly as they are without it.
Actions and states are standardised with the training set's per-dimension mean and std, which are stored with the
model; predictions come back in the original units.

Labelling a video (`predict_labels`) slides the clip over every start frame, so a frame's action or state is
predicted by up to k - 1 (action) or k (state) clips; those predictions are averaged. The last frame has no next
frame to infer its action from: it repeats the action of the frame before it (a hold, which suits both absolute and
delta action spaces).

On disk (written once, read by `load_idm`; never pickle):
    idm.safetensors      the network's tensors
    idm_config.json      CONFIG_FORMAT, clip_frames, image_size, channels, hidden, keypoints, action_names,
                         action_mean, action_std, state_names, state_mean, state_std (empty: no state head):
                         everything needed to rebuild the network and undo the normalisation
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
CONFIG_FORMAT = "cosmos-synth-idm-v2"  # bump when the architecture or the config's meaning changes
OLD_FORMATS = ("cosmos-synth-idm-v1",)  # v1: actions only, no state head
CHANNELS = (16, 32, 64)  # convolution widths of the default network
HIDDEN = 256  # MLP width of the default network
KEYPOINTS = 32  # heat maps the state head locates (x, y) in
DIFF_SCALE = 4.0  # frame differences are small; scale them to the frames' range


@dataclass(frozen=True, kw_only=True)
class IDMSpec:
    """Everything that defines a trained IDM besides its weights (the contents of idm_config.json)."""

    clip_frames: int  # k frames per clip
    image_size: tuple[int, int]  # (height, width) the frames are resized to, pixels
    action_names: tuple[str, ...]  # one per action dimension
    action_mean: tuple[float, ...]  # training-set mean per dimension, original units
    action_std: tuple[float, ...]  # training-set std per dimension (1.0 where a dimension is constant)
    state_names: tuple[str, ...] = ()  # one per state dimension; empty: no state head
    state_mean: tuple[float, ...] = ()  # as action_mean, for the state
    state_std: tuple[float, ...] = ()
    channels: tuple[int, ...] = CHANNELS
    hidden: int = HIDDEN
    keypoints: int = KEYPOINTS

    @property
    def num_actions(self) -> int:
        return len(self.action_names)

    @property
    def num_states(self) -> int:
        return len(self.state_names)

    def to_json(self) -> str:
        return json.dumps({"format": CONFIG_FORMAT, **asdict(self)}, indent=2) + "\n"

    @classmethod
    def from_json(cls, path: Path) -> IDMSpec:
        fix = f"point at a folder written by train_idm, or write {CONFIG_FILE} as train_idm does"
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"IDM config {path} cannot be read ({exc}); {fix}.") from exc
        found = values.pop("format", None) if isinstance(values, dict) else None
        if found in OLD_FORMATS:
            raise ValueError(
                f"IDM config {path} is a {found} config, written by an earlier cosmos-synth (actions only, no "
                f"state head); this version reads {CONFIG_FORMAT}. Retrain the IDM (`cosmos-synth train-idm`)."
            )
        if found != CONFIG_FORMAT:
            raise ValueError(f"IDM config {path} is not a {CONFIG_FORMAT} config; {fix}.")
        try:
            spec = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        except TypeError as exc:
            raise ValueError(f"IDM config {path} has missing or unknown fields ({exc}); {fix}.") from exc
        actions = {len(spec.action_names), len(spec.action_mean), len(spec.action_std)}
        states = {len(spec.state_names), len(spec.state_mean), len(spec.state_std)}
        if len(actions) != 1 or len(states) != 1 or spec.clip_frames < 2 or len(spec.image_size) != 2:
            raise ValueError(
                f"IDM config {path}: action_names, action_mean and action_std must have one entry per "
                f"action (state_names, state_mean and state_std one per state dimension, or none), "
                f"clip_frames >= 2 and image_size (height, width); {fix}."
            )
        return spec


def spatial_keypoints(heat: torch.Tensor) -> torch.Tensor:
    """Heat maps (B, K, h, w) -> (B, 2K): each map's softmax-weighted mean position (x, y), in [-1, 1]."""
    batch, num, height, width = heat.shape
    weights = heat.flatten(2).softmax(dim=-1).view(batch, num, height, width)
    xs = torch.linspace(-1.0, 1.0, width, device=heat.device)
    ys = torch.linspace(-1.0, 1.0, height, device=heat.device)
    x = (weights.sum(dim=2) * xs).sum(dim=-1)  # (B, K): the column marginal against the column positions
    y = (weights.sum(dim=3) * ys).sum(dim=-1)
    return torch.cat([x, y], dim=1)


class InverseDynamicsModel(nn.Module):
    """uint8 clips (B, k, 3, H, W) at spec.image_size -> standardised action chunks (B, k - 1, A) and, with a state
    head, standardised state chunks (B, k, S) (None without)."""

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
        if spec.num_states:
            self.keypoints = nn.Conv2d(width, spec.keypoints, 1)
            self.state_head = nn.Sequential(
                nn.Linear(2 * width + 2 * spec.keypoints, spec.hidden),
                nn.ReLU(),
                nn.Linear(spec.hidden, spec.clip_frames * spec.num_states),
            )
        for name in ("action_mean", "action_std", "state_mean", "state_std"):
            self.register_buffer(name, torch.tensor(getattr(spec, name), dtype=torch.float32), persistent=False)

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = clips.float() / 255.0
        diffs = (x[:, 1:] - x[:, :-1]) * DIFF_SCALE
        x = torch.cat([(x - 0.5) / 0.25, diffs], dim=1).flatten(1, 2)  # (B, 3 (2k - 1), H, W)
        features = self.encoder(x)
        pooled = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)
        k = self.spec.clip_frames
        actions = self.head(pooled).view(len(clips), k - 1, self.spec.num_actions)
        if not self.spec.num_states:
            return actions, None
        # The state head reads the encoder's features but does not train them: the action labels stay exactly those
        # of an IDM without a state head (sharing the encoder cost the actions 0.06-0.15 of R2 on the demo data).
        features, pooled = features.detach(), pooled.detach()
        points = spatial_keypoints(self.keypoints(features))
        states = self.state_head(torch.cat([pooled, points], dim=1)).view(len(clips), k, self.spec.num_states)
        return actions, states

    def unnormalise(
        self, actions: torch.Tensor, states: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Standardised predictions -> original units."""
        return (
            actions * self.action_std + self.action_mean,
            None if states is None else states * self.state_std + self.state_mean,
        )


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


def overlap_mean(chunks: np.ndarray) -> np.ndarray:
    """Per-frame values (W + c - 1, D) from W overlapping chunks (W, c, D), chunk s covering frames s .. s + c - 1:
    each frame gets the mean of every chunk that covers it."""
    num_windows, chunk, dims = chunks.shape
    sums = np.zeros((num_windows + chunk - 1, dims), dtype=np.float64)
    counts = np.zeros((num_windows + chunk - 1, 1), dtype=np.float64)
    for offset in range(chunk):  # chunk position `offset` of window s predicts frame s + offset
        sums[offset : offset + num_windows] += chunks[:, offset]
        counts[offset : offset + num_windows] += 1
    return (sums / counts).astype(np.float32)


def average_chunks(chunks: np.ndarray) -> np.ndarray:
    """Per-frame actions (W + c, A) from W overlapping action chunks (W, c, A) (see overlap_mean); the last frame
    (W + c - 1), which no chunk covers, repeats the frame before it."""
    actions = overlap_mean(chunks)
    return np.concatenate([actions, actions[-1:]])


@dataclass(frozen=True, kw_only=True)
class Labels:
    """One video's labels, one row per frame, in the original units."""

    actions: np.ndarray  # float32 (T, A)
    states: np.ndarray | None  # float32 (T, S); None when the IDM has no state head


@torch.no_grad()
def predict_labels(
    model: InverseDynamicsModel, frames: np.ndarray, *, batch_size: int = 64, name: str = "video"
) -> Labels:
    """Per-frame actions (and states) for uint8 frames (T, H, W, 3): every clip position, overlapping chunks
    averaged."""
    k = model.spec.clip_frames
    if len(frames) < k:
        raise ValueError(
            f"{name} has {len(frames)} frames; this IDM reads clips of clip_frames={k}. Label longer "
            f"videos or train an IDM with clip_frames <= {len(frames)}."
        )
    return predict_resized(model, resize_for_idm(frames, model.spec.image_size), batch_size=batch_size)


def predict_actions(
    model: InverseDynamicsModel, frames: np.ndarray, *, batch_size: int = 64, name: str = "video"
) -> np.ndarray:
    """(T, A) float32 actions for uint8 frames (T, H, W, 3) (predict_labels without the states)."""
    return predict_labels(model, frames, batch_size=batch_size, name=name).actions


@torch.no_grad()
def predict_resized(model: InverseDynamicsModel, video: torch.Tensor, *, batch_size: int = 64) -> Labels:
    """Per-frame labels for uint8 frames already at spec.image_size, (T, 3, height, width)."""
    model.eval()
    device = next(model.parameters()).device
    video = video.to(device)
    starts = torch.arange(len(video) - model.spec.clip_frames + 1)
    actions, states = [], []
    for batch in starts.split(batch_size):
        chunk_actions, chunk_states = model.unnormalise(
            *model(video[clip_index(batch, model.spec.clip_frames).to(device)])
        )
        actions.append(chunk_actions.cpu())
        states.append(None if chunk_states is None else chunk_states.cpu())
    return Labels(
        actions=average_chunks(torch.cat(actions).numpy()),
        states=None if model.spec.num_states == 0 else overlap_mean(torch.cat(states).numpy()),
    )


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
