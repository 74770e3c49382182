"""The scripted expert and recorded episodes: every demo episode is a rollout of the expert in the environment.

The expert plans waypoints for its task and, at every step, commands the move from where the gripper is to where
the plan wants it next (closed loop), eased in each phase so motion starts and stops gently:

- pick_place: approach the object (open), close on it, carry it over the container, open, retreat;
- push: approach the point beside the object away from the edge (open, hovering), close (down on the table),
  push the object to the edge, open, retreat.

Closing and opening each take 2 steps (sim.GRIPPER_RATE); the other phases share the remaining steps 5 : 5 : 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cosmos_synth.demo_world.render import finger_half_extent
from cosmos_synth.demo_world.scene import ASPECT, OBJECT_HALF, Scene, Task, find_item
from cosmos_synth.demo_world.sim import ACTION_NAMES, GRIPPER_RATE, DemoWorld

PUSH_TARGET = 0.10  # where the expert pushes an object to (x; 1 - this for the right edge)
PUSH_CLEARANCE = 0.015  # gap between fingers and object before a push, normalised x
GRIPPER_STEPS = int(round(1 / float(GRIPPER_RATE)))


@dataclass(frozen=True, kw_only=True)
class Episode:
    """One recorded rollout: the task, the scene's seed, and the per-frame record (frame t, then action t)."""

    task: Task
    seed: int
    scene: Scene
    frames: np.ndarray  # uint8 (T, height, width, 3)
    state: np.ndarray  # float32 (T, len(STATE_NAMES))
    action: np.ndarray  # float32 (T, len(ACTION_NAMES)); the last row holds still, open
    success: bool  # the environment's success test after the last step

    @property
    def prompt(self) -> str:
        return self.task.prompt


def phase_lengths(num_steps: int) -> tuple[int, int, int, int, int]:
    """Steps of (approach, close, move, open, retreat) for an episode of `num_steps` steps."""
    free = num_steps - 2 * GRIPPER_STEPS
    if free < 3:
        raise ValueError(
            f"an episode of {num_steps} steps is too short for the expert; use at least "
            f"{2 * GRIPPER_STEPS + 3} steps ({2 * GRIPPER_STEPS + 4} frames)."
        )
    approach = max(1, round(free * 5 / 12))
    move = max(1, round(free * 5 / 12))
    return approach, GRIPPER_STEPS, move, GRIPPER_STEPS, free - approach - move


def plan(task: Task, scene: Scene) -> list[tuple[tuple[float, float], float]]:
    """Waypoints of the five phases' ends and the gripper command held during each phase."""
    target = scene.objects[find_item(scene.objects, colour=task.colour)]
    if task.family == "pick_place":
        container = scene.containers[find_item(scene.containers, kind=task.container)]
        grasp, drop = (target.x, target.y), (container.x, container.y)
        return [(grasp, -1.0), (grasp, 1.0), (drop, 1.0), (drop, -1.0), (scene.gripper_end, -1.0)]
    side = 1.0 if task.edge == "left" else -1.0  # the gripper starts on the side away from the edge
    reach = (finger_half_extent(0.0)[0] + OBJECT_HALF) / ASPECT + PUSH_CLEARANCE
    behind = (target.x + side * reach, target.y)
    end_x = PUSH_TARGET if task.edge == "left" else 1.0 - PUSH_TARGET
    pushed = (end_x + side * (reach - PUSH_CLEARANCE), target.y)
    return [(behind, -1.0), (behind, 1.0), (pushed, 1.0), (pushed, -1.0), (scene.gripper_end, -1.0)]


def expert_targets(task: Task, scene: Scene, num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Planned gripper positions (num_steps + 1, 2) and commands (num_steps,), eased within each phase."""
    positions = [np.asarray(scene.gripper_start, dtype=np.float64)]
    commands: list[float] = []
    start = positions[0]
    for length, (waypoint, command) in zip(phase_lengths(num_steps), plan(task, scene), strict=True):
        end = np.asarray(waypoint, dtype=np.float64)
        for i in range(1, length + 1):
            s = i / length
            positions.append(start + (end - start) * (s * s * (3.0 - 2.0 * s)))
            commands.append(command)
        start = end
    return np.stack(positions), np.asarray(commands)


def rollout_expert(world: DemoWorld, task: Task | str, seed: int) -> Episode:
    """Reset `world` to (task, seed) and run the expert for world.max_steps steps; record every frame."""
    observation = world.reset(task, seed)
    targets, commands = expert_targets(world.task, world.scene, world.max_steps)
    frames, states, actions = [observation.image], [observation.state], []
    for t in range(world.max_steps):
        move = (targets[t + 1] - observation.state[:2]).astype(np.float32)
        action = np.array([move[0], move[1], commands[t]], dtype=np.float32)
        observation, _, info = world.step(action)
        frames.append(observation.image)
        states.append(observation.state)
        actions.append(action)
    actions.append(np.array([0.0, 0.0, -1.0], dtype=np.float32))  # the last frame: hold still, open
    return Episode(
        task=world.task,
        seed=seed,
        scene=world.scene,
        frames=np.stack(frames),
        state=np.stack(states),
        action=np.stack(actions).reshape(-1, len(ACTION_NAMES)),
        success=bool(info["success"]),
    )


def replay(world: DemoWorld, episode: Episode) -> Episode:
    """Run an episode's recorded actions again from its (task, seed): the same frames and states come back."""
    observation = world.reset(episode.task, episode.seed)
    frames, states = [observation.image], [observation.state]
    info = {"success": world.success()}
    for action in episode.action[:-1]:
        observation, _, info = world.step(action)
        frames.append(observation.image)
        states.append(observation.state)
    return Episode(
        task=episode.task,
        seed=episode.seed,
        scene=world.scene,
        frames=np.stack(frames),
        state=np.stack(states),
        action=episode.action,
        success=bool(info["success"]),
    )
