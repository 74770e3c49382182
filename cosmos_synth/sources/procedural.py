"""Procedural pick-and-place episodes: a deterministic, seeded demo source written in the GR1 layout.

Each episode is a top-down view of a table: a two-finger gripper on an arm moves from a start position to a coloured
object, closes, carries the object to a container of another colour, opens and moves away. Episode i is drawn with
``np.random.default_rng(cfg.seed + i)`` and nothing else is random, so a config always gives the same dataset.

Coordinates are normalised: x in [0, 1] from left to right (pixels / width), y in [0, 1] from top to bottom
(pixels / height). The per-frame ground truth is saved next to each video (see STATE_NAMES and ACTION_NAMES).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cosmos_synth.config import DemoDataConfig, config_to_dict
from cosmos_synth.files import write_text_atomic
from cosmos_synth.sources.layout import METADATA_CSV, TEST_DIR, TRAJECTORIES_DIR, VIDEOS_DIR
from cosmos_synth.video import write_video

logger = logging.getLogger(__name__)

# Columns of trajectories/<stem>.npz, for exporters (LeRobot `names`, GR00T modality.json slices).
STATE_NAMES = (
    "gripper_x",        # gripper centre, normalised [0, 1], left -> right
    "gripper_y",        # gripper centre, normalised [0, 1], top -> bottom
    "gripper_opening",  # 1 = fully open, 0 = closed on the object
    "object_x",         # object centre, normalised [0, 1]
    "object_y",         # object centre, normalised [0, 1]
)
ACTION_NAMES = (
    "delta_x",          # state[t + 1, gripper_x] - state[t, gripper_x], normalised units per frame; 0 on the last frame
    "delta_y",          # state[t + 1, gripper_y] - state[t, gripper_y]; 0 on the last frame
    "gripper_command",  # robosuite's convention: +1 close, -1 open; the command that leads to frame t + 1
)

GENERATOR_VERSION = 1               # bump whenever rendering or trajectories change: older datasets are then refused
MARKER = "demo_source.json"         # written last: its presence means the folder is a complete demo dataset

COLOURS = {                         # colour name (used in prompts) -> RGB
    "red": (215, 40, 40), "green": (40, 165, 60), "blue": (40, 85, 220),
    "yellow": (235, 205, 40), "purple": (145, 60, 185), "orange": (240, 130, 30),
}
OBJECTS = ("cube", "ball")                                   # drawn as a filled square / a filled circle
CONTAINERS = {"bowl": "in", "box": "in", "plate": "on"}      # container -> preposition used in the prompt
PROMPT = "The robot arm picks up the {colour} {object} and places it {prep} the {container_colour} {container}."

TABLE_RGB = (186, 150, 110)         # table top (light wood)
TABLE_EDGE_RGB = (140, 105, 70)     # darker band around the image border
GRIPPER_RGB = (55, 58, 66)          # arm and fingers
ARM_BASE = (0.5, -0.1)              # where the arm enters the image (normalised, above the top edge)

# Key times (fractions of the episode) and the phase that ends at each: approach the object, close, carry it to
# the container, open, retreat. Motion between key times is eased (smoothstep), so it starts and stops gently.
KEY_TIMES = (0.0, 0.30, 0.40, 0.75, 0.85, 1.0)
GRASP_START, GRASP_END = KEY_TIMES[1], KEY_TIMES[3]   # the gripper is commanded closed in (GRASP_START, GRASP_END]
CARRY_START = KEY_TIMES[2]                            # the object follows the gripper in [CARRY_START, GRASP_END]

OBJECT_HALF = 0.075                 # object half-size, fraction of min(height, width)
CONTAINER_RADIUS = 0.17             # container radius / half-size, fraction of min(height, width)
FINGER_SIZE = (0.05, 0.16)          # finger (width, length), fraction of min(height, width)
FINGER_EXTRA_GAP = 0.14             # extra gap between the fingers when fully open, fraction of min(height, width)
VIDEO_CRF = 0                       # lossless H.264: lossy x264 output at these sizes varies from run to run (its
                                    # macroblock tree), lossless decodes to the same frames every time (~18 kB/episode;
                                    # High 4:4:4 Predictive profile, which PyAV/FFmpeg read but some browsers do not)
SHIFT = 4                           # cv2 fixed-point bits: sub-pixel drawing keeps motion smooth at 64x96
ONE = 1 << SHIFT


@dataclass(frozen=True, kw_only=True)
class Episode:
    """One pick-and-place episode: what is on the table, the prompt, and the per-frame ground truth."""

    object: str                     # "cube" or "ball"
    colour: str                     # the object's colour name
    container: str                  # "bowl", "box" or "plate"
    container_colour: str           # the container's colour name (never the object's)
    target: tuple[float, float]     # container centre, normalised (x, y)
    state: np.ndarray               # (T, len(STATE_NAMES)) float32
    action: np.ndarray              # (T, len(ACTION_NAMES)) float32

    @property
    def prompt(self) -> str:
        return PROMPT.format(colour=self.colour, object=self.object, prep=CONTAINERS[self.container],
                             container_colour=self.container_colour, container=self.container)


# ------------------------------------------------------------------------------------------------------ trajectories

def _eased(times: np.ndarray, values: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Interpolate key `values` (K, D) at key `times` (K,) to times `u` (T,), smoothstep-eased in each segment."""
    segment = np.clip(np.searchsorted(times, u, side="right") - 1, 0, len(times) - 2)
    s = (u - times[segment]) / (times[segment + 1] - times[segment])
    s = s * s * (3.0 - 2.0 * s)
    return values[segment] + (values[segment + 1] - values[segment]) * s[:, None]


def make_trajectory(start, grasp, target, end, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """State (T, 5) and action (T, 3), float32, for a pick at `grasp` and a place at `target` (normalised x, y)."""
    times = np.asarray(KEY_TIMES)
    u = np.linspace(0.0, 1.0, num_frames)
    gripper = _eased(times, np.asarray([start, grasp, grasp, target, target, end], dtype=np.float64), u)
    opening = _eased(times, np.asarray([[1.0], [1.0], [0.0], [0.0], [1.0], [1.0]]), u)
    carried = (u >= CARRY_START) & (u <= GRASP_END)
    placed = u > GRASP_END
    obj = np.where(carried[:, None], gripper, np.where(placed[:, None], np.asarray(target), np.asarray(grasp)))
    state = np.concatenate([gripper, opening, obj], axis=1).astype(np.float32)

    action = np.zeros((num_frames, len(ACTION_NAMES)), dtype=np.float32)
    action[:-1, :2] = state[1:, :2] - state[:-1, :2]          # float32 differences: state[t] + action[t] == state[t+1]
    closing = (u[1:] > GRASP_START) & (u[1:] <= GRASP_END)    # the phase of the frame the command leads to
    action[:-1, 2] = np.where(closing, 1.0, -1.0)
    action[-1, 2] = -1.0                                      # the episode ends open
    return state, action


def sample_episode(rng: np.random.Generator, num_frames: int) -> Episode:
    """Draw the scene (names, positions) from `rng` and compute its trajectory."""
    colour, container_colour = (str(c) for c in rng.choice(list(COLOURS), size=2, replace=False))
    obj = str(rng.choice(OBJECTS))
    container = str(rng.choice(list(CONTAINERS)))
    # Object on one side, container on the other, so the carry is always a visible move.
    grasp_x, target_x = rng.uniform(0.18, 0.38), rng.uniform(0.62, 0.82)
    if rng.random() < 0.5:
        grasp_x, target_x = 1.0 - grasp_x, 1.0 - target_x
    grasp = (grasp_x, rng.uniform(0.3, 0.75))
    target = (target_x, rng.uniform(0.3, 0.75))
    start, end = tuple(rng.uniform(0.15, 0.85, size=2)), tuple(rng.uniform(0.15, 0.85, size=2))
    state, action = make_trajectory(start, grasp, target, end, num_frames)
    return Episode(object=obj, colour=colour, container=container, container_colour=container_colour,
                   target=(float(target[0]), float(target[1])), state=state, action=action)


# ------------------------------------------------------------------------------------------------------- rendering

def _fixed(x: float, y: float, height: int, width: int) -> tuple[int, int]:
    """Normalised (x, y) -> cv2 fixed-point pixel coordinates (SHIFT fractional bits)."""
    return int(round(x * width * ONE)), int(round(y * height * ONE))


def _box(img: np.ndarray, centre: tuple[int, int], half_w: float, half_h: float, rgb) -> None:
    cx, cy = centre
    hw, hh = int(round(half_w * ONE)), int(round(half_h * ONE))
    cv2.rectangle(img, (cx - hw, cy - hh), (cx + hw, cy + hh), rgb, -1, cv2.LINE_AA, SHIFT)


def _disc(img: np.ndarray, centre: tuple[int, int], radius: float, rgb) -> None:
    cv2.circle(img, centre, int(round(radius * ONE)), rgb, -1, cv2.LINE_AA, SHIFT)


def _shade(rgb, factor: float) -> tuple[int, int, int]:
    """Mix a colour towards black (factor < 1) or white (factor > 1)."""
    target = 0.0 if factor < 1 else 255.0
    weight = abs(1.0 - factor)
    return tuple(int(round(c + (target - c) * weight)) for c in rgb)


def _draw_container(img: np.ndarray, ep: Episode, scale: float) -> None:
    h, w = img.shape[:2]
    centre = _fixed(*ep.target, h, w)
    rgb, radius = COLOURS[ep.container_colour], CONTAINER_RADIUS * scale
    if ep.container == "bowl":      # a rim around a darker inside
        _disc(img, centre, radius, rgb)
        _disc(img, centre, radius * 0.72, _shade(rgb, 0.6))
    elif ep.container == "box":     # walls around a darker floor
        _box(img, centre, radius, radius, rgb)
        _box(img, centre, radius * 0.78, radius * 0.78, _shade(rgb, 0.6))
    else:                           # plate: a light disc with a coloured rim
        _disc(img, centre, radius * 1.05, rgb)
        _disc(img, centre, radius * 0.85, _shade(rgb, 1.6))


def _draw_object(img: np.ndarray, ep: Episode, t: int, scale: float) -> None:
    h, w = img.shape[:2]
    centre = _fixed(float(ep.state[t, 3]), float(ep.state[t, 4]), h, w)
    rgb, half = COLOURS[ep.colour], OBJECT_HALF * scale
    if ep.object == "cube":
        _box(img, centre, half, half, _shade(rgb, 0.7))
        _box(img, centre, half * 0.7, half * 0.7, rgb)
    else:
        _disc(img, centre, half, rgb)


def _draw_gripper(img: np.ndarray, ep: Episode, t: int, scale: float) -> None:
    h, w = img.shape[:2]
    x, y, opening = (float(v) for v in ep.state[t, :3])
    centre = _fixed(x, y, h, w)
    finger_w, finger_l = FINGER_SIZE[0] * scale, FINGER_SIZE[1] * scale
    gap = 2 * OBJECT_HALF * scale + opening * FINGER_EXTRA_GAP * scale   # closed: the fingers touch the object
    offset = int(round((gap + finger_w) / 2 * ONE))
    palm_y = centre[1] - int(round(finger_l / 2 * ONE))
    thickness = max(1, int(round(finger_w)))
    cv2.line(img, _fixed(*ARM_BASE, h, w), (centre[0], palm_y), _shade(GRIPPER_RGB, 1.3), thickness * 2,
             cv2.LINE_AA, SHIFT)
    _box(img, (centre[0], palm_y), (gap + 2 * finger_w) / 2, finger_w / 2, GRIPPER_RGB)
    for side in (-1, 1):
        _box(img, (centre[0] + side * offset, centre[1]), finger_w / 2, finger_l / 2, GRIPPER_RGB)


def render_frame(ep: Episode, t: int, height: int, width: int) -> np.ndarray:
    """Frame `t` of an episode as uint8 RGB (height, width, 3)."""
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = TABLE_EDGE_RGB
    border = max(1, min(height, width) // 24)
    img[border:-border, border:-border] = TABLE_RGB
    scale = float(min(height, width))
    _draw_container(img, ep, scale)
    _draw_object(img, ep, t, scale)
    _draw_gripper(img, ep, t, scale)
    return img


def render_episode(ep: Episode, height: int, width: int) -> np.ndarray:
    """All frames of an episode as uint8 RGB (T, height, width, 3)."""
    return np.stack([render_frame(ep, t, height, width) for t in range(len(ep.state))])


# --------------------------------------------------------------------------------------------------------- dataset

def _marker_record(cfg: DemoDataConfig) -> dict:
    """What the marker records; a folder is reused only when this matches exactly (out_dir itself excluded)."""
    config = {k: v for k, v in config_to_dict(cfg).items() if k != "out_dir"}
    return {"generator": __name__, "generator_version": GENERATOR_VERSION, "config": config}


def _existing_is_current(cfg: DemoDataConfig) -> bool:
    """True if cfg.out_dir already holds this dataset; False if it is absent or empty; ValueError otherwise."""
    out = cfg.out_dir
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return False
    marker = out / MARKER
    if not marker.is_file():
        raise ValueError(f"{out} already exists but is not a complete demo dataset (no {MARKER}); "
                         f"delete it or choose another out_dir.")
    found, wanted = json.loads(marker.read_text(encoding="utf-8")), _marker_record(cfg)
    if found != wanted:
        raise ValueError(f"{out} holds a demo dataset made with different settings ({marker}: {found}; wanted "
                         f"{wanted}); delete the folder to regenerate it, or choose another out_dir.")
    return True


def _write_episode(root: Path, name: str, ep: Episode, cfg: DemoDataConfig) -> str:
    """Write videos/<name>.mp4 and trajectories/<name>.npz; return the metadata.csv line."""
    video = f"{VIDEOS_DIR}/{name}.mp4"
    write_video(render_episode(ep, cfg.height, cfg.width), root / video, fps=cfg.fps, crf=VIDEO_CRF)
    np.savez(root / TRAJECTORIES_DIR / f"{name}.npz", state=ep.state, action=ep.action)
    return f"{video},{ep.prompt}\n"


def _write_test_pair(root: Path, name: str, ep: Episode, cfg: DemoDataConfig) -> None:
    """Write test/<name>.png (the episode's first frame) and test/<name>.txt (its prompt)."""
    png = root / TEST_DIR / f"{name}.png"
    if not cv2.imwrite(str(png), render_frame(ep, 0, cfg.height, cfg.width)[:, :, ::-1]):  # cv2 writes BGR
        raise OSError(f"could not write {png}")
    write_text_atomic(root / TEST_DIR / f"{name}.txt", ep.prompt + "\n")


def _build(cfg: DemoDataConfig, root: Path) -> None:
    """Write the whole dataset under `root`, the marker last."""
    for sub in (VIDEOS_DIR, TRAJECTORIES_DIR, TEST_DIR):
        (root / sub).mkdir(parents=True)
    lines = []
    for i in range(cfg.num_episodes):
        ep = sample_episode(np.random.default_rng(cfg.seed + i), cfg.num_frames)
        lines.append(_write_episode(root, f"episode_{i:04d}", ep, cfg))
        logger.info("episode %d/%d: %s", i + 1, cfg.num_episodes, ep.prompt)
    write_text_atomic(root / METADATA_CSV, "".join(lines))
    for k in range(cfg.num_test_pairs):  # new scenes: seeds past the training episodes'
        ep = sample_episode(np.random.default_rng(cfg.seed + cfg.num_episodes + k), cfg.num_frames)
        _write_test_pair(root, f"pair_{k:04d}", ep, cfg)
    write_text_atomic(root / MARKER, json.dumps(_marker_record(cfg), indent=2, sort_keys=True) + "\n")


def write_demo_dataset(cfg: DemoDataConfig) -> Path:
    """Write cfg.num_episodes procedural episodes and cfg.num_test_pairs test pairs to cfg.out_dir (GR1 layout).

    Reuses cfg.out_dir when it already holds this exact dataset. The dataset is built in a temporary sibling
    folder and renamed into place, so an interrupted run never leaves a half-written dataset at cfg.out_dir.
    """
    out = Path(cfg.out_dir)
    if _existing_is_current(cfg):
        logger.info("demo dataset %s is already complete; reusing it", out)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # left by an earlier crash of a process with the same id
    try:
        _build(cfg, tmp)
        if out.exists():  # an empty folder (checked above)
            out.rmdir()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("demo dataset: %d episodes, %d test pairs -> %s", cfg.num_episodes, cfg.num_test_pairs, out)
    return out
