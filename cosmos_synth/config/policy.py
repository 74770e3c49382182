"""The demo world's policy experiment: behaviour cloning, closed-loop rollouts, and the experiment that compares
training sets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cosmos_synth.config.checks import _check_size, _require


@dataclass(frozen=True, kw_only=True)
class PolicyTrainConfig:
    """Train a behaviour-cloning policy (cosmos_synth.policy) on robomimic exports: image + state + task -> actions."""

    datasets: tuple[Path, ...]  # robomimic .hdf5 files written by the export stage; their demos are pooled
    out_dir: Path  # policy.safetensors, policy_config.json, policy_metrics.json, this config
    camera: str = "front"  # reads obs/<camera>_image
    # the state dimensions the policy sees, by the export's state_names (e.g. the robot's own: gripper_x, gripper_y,
    # gripper_opening); None: every dimension
    state_keys: tuple[str, ...] | None = None
    chunk: int = 4  # actions predicted per observation: the action at t and the next chunk - 1
    num_steps: int = 2000  # optimizer steps (the same for any dataset size, so policies compare at equal compute)
    batch_size: int = 32  # (frame, chunk) samples per step
    learning_rate: float = 1e-3  # AdamW peak (linear warm-up over 5% of the steps, cosine decay to 0)
    shift_pixels: int = 4  # random-shift augmentation: pad by this many pixels, crop back at a random offset
    seed: int = 0  # weights and batch order
    device: str = "cpu"  # "cpu", "cuda", "cuda:1"

    def __post_init__(self) -> None:
        object.__setattr__(self, "datasets", tuple(Path(p) for p in self.datasets))
        _require(
            bool(self.datasets), "datasets=(): give at least one robomimic .hdf5 file written by the export stage."
        )
        _require(self.camera.isidentifier(), f"camera={self.camera!r}: use a plain name such as 'front'.")
        _require(1 <= self.chunk <= 16, f"chunk={self.chunk}: use 1 to 16 actions.")
        if self.state_keys is not None:
            object.__setattr__(self, "state_keys", tuple(str(k) for k in self.state_keys))
            _require(bool(self.state_keys), "state_keys=(): name at least one state dimension, or null for all.")
        _require(self.num_steps >= 1, f"num_steps={self.num_steps} must be >= 1.")
        _require(self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1.")
        _require(self.learning_rate > 0, f"learning_rate={self.learning_rate} must be > 0.")
        _require(0 <= self.shift_pixels <= 16, f"shift_pixels={self.shift_pixels}: use 0 (off) to 16.")


@dataclass(frozen=True, kw_only=True)
class ClosedLoopEvalConfig:
    """Roll a trained policy out in the demo world's simulator on held-out initial scenes and count successes."""

    policy: Path  # a folder written by train_policy
    out_dir: Path  # closed_loop.json (success rate, interval, per-episode rows) and videos/ of a few rollouts
    task_family: str = "push"  # a cosmos_synth.demo_world family
    num_episodes: int = 100  # rollouts, one per held-out scene
    # scene seeds first_seed .. first_seed + num_episodes - 1; the default is apart from the demo recorder's training
    # (seed + i) and held-out (heldout_seed + k) ranges, so no rollout starts from a demonstrated scene
    first_seed: int = 2_000_000
    max_steps: int = 24  # steps per rollout (the demonstrations take 16; the rest is slack for a slower policy)
    execute_steps: int = 1  # actions of each predicted chunk executed before the policy looks again
    height: int = 64  # the simulator's image size: the policy's training frames' size
    width: int = 96
    num_videos: int = 4  # rollouts written as mp4 (the first ones)
    fps: int = 16
    device: str = "cpu"

    def __post_init__(self) -> None:
        from cosmos_synth.demo_world import FAMILIES  # the demo world imports nothing from config

        _require(self.task_family in FAMILIES, f"task_family={self.task_family!r}: use one of {list(FAMILIES)}.")
        _require(self.num_episodes >= 1, f"num_episodes={self.num_episodes} must be >= 1.")
        _require(self.first_seed >= 0, f"first_seed={self.first_seed} must be >= 0.")
        _require(self.max_steps >= 1, f"max_steps={self.max_steps} must be >= 1.")
        _require(self.execute_steps >= 1, f"execute_steps={self.execute_steps} must be >= 1.")
        _check_size(self.height, self.width)
        _require(0 <= self.num_videos <= self.num_episodes, f"num_videos={self.num_videos}: use 0 to num_episodes.")


@dataclass(frozen=True, kw_only=True)
class ClosedLoopConfig:
    """The closed-loop experiment's own settings (recipe table [closed_loop]); the demonstrations, the fine-tune and
    the generated videos are the run's (its [demo], [train] and [generate] tables)."""

    policy_seeds: tuple[int, ...] = (0, 1, 2)  # one policy per seed and training set
    num_rollouts: int = 100  # closed-loop episodes per policy, one per held-out scene
    rollout_seed: int = 2_000_000  # scene seeds of the rollouts: rollout_seed .. rollout_seed + num_rollouts - 1
    max_steps: int = 24  # steps per rollout (the demonstrations take num_frames - 1)
    execute_steps: int = 1  # actions of each predicted chunk executed before the policy looks again
    chunk: int = 4  # actions the policy predicts per observation
    # the state the policies see, by the exports' state_names, e.g. ["gripper_x", "gripper_y", "gripper_opening"]
    # for the robot's own only; None: every state dimension (for generated episodes, the IDM's labels)
    policy_state: tuple[str, ...] | None = None
    policy_steps: int = 2000  # optimizer steps per policy, whatever its training set's size
    policy_batch_size: int = 32
    num_videos: int = 4  # rollout videos written per policy
    results: Path | None = None  # a copy of the results (e.g. benchmarks/results/closed_loop.json); None: run_dir only

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy_seeds", tuple(int(s) for s in self.policy_seeds))
        _require(
            bool(self.policy_seeds) and len(set(self.policy_seeds)) == len(self.policy_seeds),
            f"policy_seeds={self.policy_seeds}: give one or more distinct seeds, e.g. [0, 1, 2].",
        )
        _require(self.num_rollouts >= 1, f"num_rollouts={self.num_rollouts} must be >= 1.")
        _require(self.rollout_seed >= 0, f"rollout_seed={self.rollout_seed} must be >= 0.")
        _require(self.max_steps >= 1, f"max_steps={self.max_steps} must be >= 1.")
        _require(self.execute_steps >= 1, f"execute_steps={self.execute_steps} must be >= 1.")
        _require(1 <= self.chunk <= 16, f"chunk={self.chunk}: use 1 to 16 actions.")
        _require(self.policy_steps >= 1, f"policy_steps={self.policy_steps} must be >= 1.")
        _require(self.policy_batch_size >= 1, f"policy_batch_size={self.policy_batch_size} must be >= 1.")
        _require(0 <= self.num_videos <= self.num_rollouts, f"num_videos={self.num_videos}: use 0 to num_rollouts.")
        if self.results is not None:
            object.__setattr__(self, "results", Path(self.results))
