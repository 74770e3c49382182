"""Closed-loop evaluation: roll a trained policy out in the demo world's simulator and count successes.

Each rollout starts from a held-out scene (seed first_seed + k, a range no recorder uses by default) with a task of
the family drawn from the same seed, as the recorder draws them. Every step the policy sees the rendered frame, the
state and the instruction, predicts a chunk of actions, and the first `execute_steps` of them are executed. After
`max_steps` steps the environment's own success test decides (the named object in/on the named container, or at
the named edge). All rollouts advance together, so the policy runs one batched forward pass per step.

Outputs under cfg.out_dir:
    closed_loop.json       success_rate, ci95 (Wilson), episodes, successes, the config, one row per rollout
                           (seed, prompt, success)
    videos/rollout_<k>.mp4 the first num_videos rollouts, with a green (success) or red (failure) last frame border
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cosmos_synth.config import ClosedLoopEvalConfig, config_to_dict
from cosmos_synth.demo_world import STATE_NAMES, DemoWorld
from cosmos_synth.files import write_text_atomic
from cosmos_synth.policy import BCPolicy, load_policy
from cosmos_synth.progress import Progress, ProgressReporter
from cosmos_synth.results import StageResult
from cosmos_synth.stats import wilson_interval
from cosmos_synth.video import write_video

logger = logging.getLogger(__name__)

RESULT_FILE = "closed_loop.json"
VIDEOS_DIR = "videos"
_BORDER = 2  # pixels of the success/failure border drawn on a rollout video's last frame


@dataclass(frozen=True, kw_only=True)
class ClosedLoopResult(StageResult):  # no manifest: closed_loop.json
    success_rate: float
    ci95: list[float]
    num_episodes: int
    videos: list[Path]

    def outputs(self) -> dict[str, Path]:
        return {"closed_loop": self.out_dir / RESULT_FILE}


def run_rollouts(
    policy: BCPolicy,
    cfg: ClosedLoopEvalConfig,
    progress: Progress | None = None,
    state_columns: slice | list[int] = slice(None),
) -> tuple[list[bool], list[str], list[np.ndarray]]:
    """Roll the policy out on every held-out scene; (successes, prompts, frames of the first num_videos).
    `state_columns`: the simulator's state columns the policy reads (STATE_NAMES order)."""
    worlds = [DemoWorld(height=cfg.height, width=cfg.width, max_steps=cfg.max_steps) for _ in range(cfg.num_episodes)]
    observations = [w.reset(cfg.task_family, cfg.first_seed + k) for k, w in enumerate(worlds)]
    prompts = [w.task.prompt for w in worlds]
    frames = [[o.image] for o in observations[: cfg.num_videos]]
    report = ProgressReporter(progress, "closed-loop", total=cfg.max_steps, unit="step").start()
    plan: np.ndarray | None = None
    for step in range(cfg.max_steps):
        if step % cfg.execute_steps == 0:
            plan = policy.act(
                np.stack([o.image for o in observations]),
                np.stack([o.state[state_columns] for o in observations]),
                prompts,
            )
        action = plan[:, min(step % cfg.execute_steps, plan.shape[1] - 1)]
        observations = [w.step(a)[0] for w, a in zip(worlds, action, strict=True)]
        for video, observation in zip(frames, observations, strict=False):
            video.append(observation.image)
        report.advance(1)
    successes = [bool(w.success()) for w in worlds]
    return successes, prompts, [np.stack(v) for v in frames]


def _mark(frames: np.ndarray, success: bool) -> np.ndarray:
    frames = frames.copy()
    colour = (40, 200, 60) if success else (220, 40, 40)
    last = frames[-1]
    last[:_BORDER], last[-_BORDER:], last[:, :_BORDER], last[:, -_BORDER:] = colour, colour, colour, colour
    return frames


def evaluate_policy(cfg: ClosedLoopEvalConfig, progress: Progress | None = None) -> ClosedLoopResult:
    """Roll the policy of cfg.policy out on cfg.num_episodes held-out scenes; write closed_loop.json and videos."""
    policy = load_policy(cfg.policy, device=cfg.device)
    if tuple(policy.spec.image_size) != (cfg.height, cfg.width):
        raise ValueError(
            f"Policy {cfg.policy} was trained on {policy.spec.image_size[0]}x{policy.spec.image_size[1]} frames; "
            f"set height={policy.spec.image_size[0]} and width={policy.spec.image_size[1]}."
        )
    keys = policy.spec.state_keys
    unknown = sorted(set(keys or ()) - set(STATE_NAMES))
    if unknown:
        raise ValueError(
            f"Policy {cfg.policy} reads state {unknown}, which the demo world does not have ({list(STATE_NAMES)}); "
            "train it on exports whose state_names are the simulator's."
        )
    columns = slice(None) if keys is None else [STATE_NAMES.index(k) for k in keys]
    successes, prompts, videos = run_rollouts(policy, cfg, progress, columns)
    out_dir = Path(cfg.out_dir)
    paths = []
    for k, (frames, success) in enumerate(zip(videos, successes, strict=False)):
        paths.append(write_video(_mark(frames, success), out_dir / VIDEOS_DIR / f"rollout_{k:03d}.mp4", fps=cfg.fps))
    num_successes = sum(successes)
    ci95 = wilson_interval(num_successes, len(successes))
    record: dict[str, Any] = {
        "success_rate": num_successes / len(successes),
        "ci95": ci95,
        "episodes": len(successes),
        "successes": num_successes,
        "config": config_to_dict(cfg),
        "rollouts": [
            {"seed": cfg.first_seed + k, "prompt": p, "success": s}
            for k, (p, s) in enumerate(zip(prompts, successes, strict=True))
        ],
    }
    write_text_atomic(out_dir / RESULT_FILE, json.dumps(record, indent=2) + "\n")
    logger.info(
        "closed loop %s on %s: %d/%d successes (%.1f%%, 95%% interval [%.1f%%, %.1f%%])",
        cfg.policy,
        cfg.task_family,
        num_successes,
        len(successes),
        100 * record["success_rate"],
        100 * ci95[0],
        100 * ci95[1],
    )
    return ClosedLoopResult(
        out_dir=out_dir, success_rate=record["success_rate"], ci95=ci95, num_episodes=len(successes), videos=paths
    )
