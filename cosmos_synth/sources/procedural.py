"""The demo world's recorder: expert rollouts of one task family written as a dataset in the GR1 layout.

Every episode is a rollout of the scripted expert in the demo world's simulator (cosmos_synth.demo_world), so its
recorded actions replay to the same frames and states. Training episode i uses the scene seed `seed + i`; held-out
episode k uses `heldout_seed + k`, a seed range of its own, so the held-out set does not change with the number of
training episodes. The held-out episodes are recorded in full under heldout/ (for evaluation against the real
continuation) and their first frames with their prompts are the (image, prompt) pairs under test/. With several
held-out families, each family gets the same held-out scenes, one after the other (pair_0000 ... of the first family,
then the next).

Coordinates are normalised: x in [0, 1] from left to right, y in [0, 1] from top to bottom. The per-frame ground
truth is saved next to each video (STATE_NAMES and ACTION_NAMES).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import cv2
import numpy as np

from cosmos_synth.config import DemoDataConfig, config_to_dict
from cosmos_synth.demo_world import (
    ACTION_NAMES,
    PRETRAINING_FAMILY,
    STATE_NAMES,
    DemoWorld,
    Episode,
    rollout_expert,
)
from cosmos_synth.files import atomic_dir, write_jsonl, write_text_atomic
from cosmos_synth.sources.layout import (
    EPISODES_JSONL,
    HELDOUT_DIR,
    METADATA_CSV,
    TEST_DIR,
    TRAJECTORIES_DIR,
    VIDEOS_DIR,
)
from cosmos_synth.video import write_video

logger = logging.getLogger(__name__)

__all__ = ["ACTION_NAMES", "MARKER", "STATE_NAMES", "episode_record", "record_episodes", "write_demo_dataset"]

# bump whenever the world, the expert or the rendering change: older datasets are then refused instead of silently mixed
GENERATOR_VERSION = 2
MARKER = "demo_source.json"  # written last: its presence means the folder is a complete demo dataset
# lossless H.264: decodes to the rendered frames exactly (~18 kB/episode; High 4:4:4 Predictive profile, which
# PyAV/FFmpeg read but some browsers do not)
VIDEO_CRF = 0


def record_episodes(family: str, seeds, *, num_frames: int, height: int, width: int) -> list[Episode]:
    """Expert rollouts of `family`, one per scene seed, each `num_frames` frames long."""
    world = DemoWorld(height=height, width=width, max_steps=num_frames - 1)
    return [rollout_expert(world, family, int(seed)) for seed in seeds]


def episode_record(name: str, episode: Episode) -> dict:
    """The episodes.jsonl row of an episode: enough to replay it (task + seed) and to judge it."""
    return {
        "name": name,
        "seed": episode.seed,
        "prompt": episode.prompt,
        "success": episode.success,
        "task": dataclasses.asdict(episode.task),
    }


def _write_episodes(root: Path, episodes: list[Episode], names: list[str], fps: int) -> None:
    """videos/<name>.mp4, trajectories/<name>.npz, metadata.csv and episodes.jsonl under `root`."""
    for sub in (VIDEOS_DIR, TRAJECTORIES_DIR):
        (root / sub).mkdir(parents=True, exist_ok=True)
    lines = []
    for name, episode in zip(names, episodes, strict=True):
        write_video(episode.frames, root / VIDEOS_DIR / f"{name}.mp4", fps=fps, crf=VIDEO_CRF)
        np.savez(root / TRAJECTORIES_DIR / f"{name}.npz", state=episode.state, action=episode.action)
        lines.append(f"{VIDEOS_DIR}/{name}.mp4,{episode.prompt}\n")
    write_text_atomic(root / METADATA_CSV, "".join(lines))
    write_jsonl(root / EPISODES_JSONL, [episode_record(n, e) for n, e in zip(names, episodes, strict=True)])


def _write_test_pairs(root: Path, episodes: list[Episode], names: list[str]) -> None:
    """test/<name>.png (an episode's first frame) and test/<name>.txt (its prompt)."""
    (root / TEST_DIR).mkdir(parents=True, exist_ok=True)
    for name, episode in zip(names, episodes, strict=True):
        png = root / TEST_DIR / f"{name}.png"
        if not cv2.imwrite(str(png), episode.frames[0][:, :, ::-1]):  # cv2 writes BGR
            raise OSError(f"could not write {png}")
        write_text_atomic(root / TEST_DIR / f"{name}.txt", episode.prompt + "\n")


def _marker_record(cfg: DemoDataConfig) -> dict:
    """What the marker records; a folder is reused only when this matches exactly (out_dir itself excluded)."""
    config = {k: v for k, v in config_to_dict(cfg).items() if k != "out_dir"}
    if not cfg.replay_episodes:  # left out when off, so datasets written before the setting existed still match
        del config["replay_episodes"]
    return {"generator": __name__, "generator_version": GENERATOR_VERSION, "config": config}


def _existing_is_current(cfg: DemoDataConfig) -> bool:
    """True if cfg.out_dir already holds this dataset; False if it is absent or empty; ValueError otherwise."""
    out = cfg.out_dir
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return False
    marker = out / MARKER
    if not marker.is_file():
        raise ValueError(
            f"{out} already exists but is not a complete demo dataset (no {MARKER}); "
            f"delete it or choose another out_dir."
        )
    found, wanted = json.loads(marker.read_text(encoding="utf-8")), _marker_record(cfg)
    if found != wanted:
        raise ValueError(
            f"{out} holds a demo dataset made with different settings ({marker}: {found}; wanted "
            f"{wanted}); delete the folder to regenerate it, or choose another out_dir."
        )
    return True


def _build(cfg: DemoDataConfig, root: Path) -> None:
    """Write the whole dataset under `root`, the marker last."""
    size = dict(num_frames=cfg.num_frames, height=cfg.height, width=cfg.width)
    train = record_episodes(cfg.task_family, range(cfg.seed, cfg.seed + cfg.num_episodes), **size)
    replay_seeds = range(cfg.seed + cfg.num_episodes, cfg.seed + cfg.num_training)  # empty without replay
    train += record_episodes(PRETRAINING_FAMILY, replay_seeds, **size)
    _write_episodes(root, train, [f"episode_{i:04d}" for i in range(cfg.num_training)], cfg.fps)
    seeds = range(cfg.heldout_seed, cfg.heldout_seed + cfg.num_test_pairs)
    heldout = [
        e for family in cfg.heldout_families or (cfg.task_family,) for e in record_episodes(family, seeds, **size)
    ]
    names = [f"pair_{k:04d}" for k in range(len(heldout))]
    if heldout:
        _write_episodes(root / HELDOUT_DIR, heldout, names, cfg.fps)
    _write_test_pairs(root, heldout, names)
    failed = [e.seed for e in train + heldout if not e.success]
    if failed:  # the expert solves every scene it draws; anything else is a bug in the world or the expert
        raise RuntimeError(f"the expert failed {cfg.task_family} scenes with seeds {failed[:5]}")
    write_text_atomic(root / MARKER, json.dumps(_marker_record(cfg), indent=2, sort_keys=True) + "\n")


def write_demo_dataset(cfg: DemoDataConfig) -> Path:
    """Write cfg.num_episodes expert episodes of cfg.task_family, and cfg.num_test_pairs held-out episodes with
    their (first frame, prompt) pairs, to cfg.out_dir (GR1 layout).

    Reuses cfg.out_dir when it already holds this exact dataset. The dataset is built in a temporary sibling
    folder and renamed into place, so an interrupted run never leaves a half-written dataset at cfg.out_dir.
    """
    out = Path(cfg.out_dir)
    if _existing_is_current(cfg):
        logger.info("demo dataset %s is already complete; reusing it", out)
        return out
    with atomic_dir(out) as tmp:  # out is absent or an empty folder (checked above)
        _build(cfg, tmp)
    logger.info(
        "demo dataset: %d %s episodes (+%d %s replayed), %d held-out episodes -> %s",
        cfg.num_episodes,
        cfg.task_family,
        cfg.replay_episodes,
        PRETRAINING_FAMILY,
        cfg.num_test_pairs,
        out,
    )
    return out
