"""The demo world as an environment: `reset(task, seed)` and `step(action)`, with the renderer and a success test.

State (what the exports carry, STATE_NAMES) and actions (ACTION_NAMES) keep the convention of the recorded demo
data: action[t] = (delta_x, delta_y, gripper_command) leads from frame t to frame t + 1.

Physics, per step, in this order (all arithmetic in float32, so a replay of recorded actions is exact):
1. the gripper's opening moves by GRIPPER_RATE towards closed (command > 0) or open (command <= 0);
2. a gripper that just closed completely grasps the object centred between its fingers (if any); a gripper that
   opens releases what it holds, where it is;
3. the gripper moves by (delta_x, delta_y), each clipped to MAX_DELTA, within the workspace (where an object's
   centre can be: it stays on the table);
4. a held object moves with the gripper;
5. an open gripper hovers; a closed, empty gripper is down on the table and pushes any object its fingers
   overlap out of the way, along the axis it moves most on (objects stay on the table).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cosmos_synth.demo_world.render import finger_half_extent, render
from cosmos_synth.demo_world.scene import (
    ASPECT,
    CONTAINER_RADIUS,
    FAMILIES,
    OBJECT_HALF,
    Scene,
    Task,
    find_item,
    sample_scene,
    sample_task,
)

STATE_NAMES = (
    "gripper_x",  # gripper centre, normalised [0, 1], left -> right
    "gripper_y",  # gripper centre, normalised [0, 1], top -> bottom
    "gripper_opening",  # 1 = fully open, 0 = closed
    "object_x",  # the task's object centre, normalised [0, 1]
    "object_y",  # the task's object centre, normalised [0, 1]
)
ACTION_NAMES = (
    "delta_x",  # gripper motion to the next frame, normalised x units
    "delta_y",  # gripper motion to the next frame, normalised y units
    "gripper_command",  # robosuite's convention: +1 close, -1 open
)

GRIPPER_RATE = np.float32(0.5)  # opening change per step: closing or opening takes 2 steps
MAX_DELTA = np.float32(0.3)  # largest gripper move per step, normalised units
GRASP_TOLERANCE = 0.6 * OBJECT_HALF  # an object this close (height units) to the closing fingers' centre is grasped
BORDER = 1.0 / 24.0  # the table's edge band, height units (the renderer draws it)
PLACE_RADIUS = 0.8 * CONTAINER_RADIUS  # pick_place succeeds with the object this close to the container's centre
EDGE_BAND = 0.16  # push succeeds with the object's x within this of the named edge


@dataclass
class Observation:
    image: np.ndarray  # uint8 (height, width, 3) RGB
    state: np.ndarray  # float32 (len(STATE_NAMES),)


@dataclass
class WorldState:
    """Everything that changes during an episode."""

    gripper: np.ndarray  # float32 (2,): x, y
    opening: np.float32
    objects: np.ndarray  # float32 (2, 2): each object's x, y
    held: int = -1  # index of the held object, -1 for none
    num_steps: int = 0


def object_bounds() -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of an object's centre on the table, normalised (x, y)."""
    margin = BORDER + OBJECT_HALF
    return (
        np.array([margin / ASPECT, margin], dtype=np.float32),
        np.array([1 - margin / ASPECT, 1 - margin], dtype=np.float32),
    )


class DemoWorld:
    """A seeded tabletop with a two-finger gripper; one task per episode.

    `height`, `width`: the rendered image size (any size; the physics does not depend on it).
    `max_steps`: steps per episode; `step` reports done after that many.
    """

    def __init__(self, *, height: int = 64, width: int = 96, max_steps: int = 16) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps={max_steps} must be >= 1.")
        self.height, self.width, self.max_steps = height, width, max_steps
        self.scene: Scene | None = None
        self.task: Task | None = None
        self.state: WorldState | None = None

    # -- episode ---------------------------------------------------------------------------------------------------
    def reset(self, task: Task | str, seed: int) -> Observation:
        """A new scene drawn from `seed`; `task` is a Task about that scene, or a family name to draw one from."""
        rng = np.random.default_rng(seed)
        self.scene = sample_scene(rng)
        if isinstance(task, str):
            if task not in FAMILIES:
                raise ValueError(f"task family {task!r}: use one of {list(FAMILIES)}.")
            task = sample_task(rng, self.scene, task)
        find_item(self.scene.objects, colour=task.colour)
        if task.container is not None:
            find_item(self.scene.containers, kind=task.container)
        self.task = task
        self.state = WorldState(
            gripper=np.array(self.scene.gripper_start, dtype=np.float32),
            opening=np.float32(1.0),
            objects=np.array([[o.x, o.y] for o in self.scene.objects], dtype=np.float32),
        )
        return self.observe()

    def step(self, action) -> tuple[Observation, bool, dict]:
        """Apply (delta_x, delta_y, gripper_command); return (observation, done, info)."""
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        if action.shape != (len(ACTION_NAMES),) or not np.isfinite(action).all():
            raise ValueError(f"action must be {len(ACTION_NAMES)} finite numbers {ACTION_NAMES}, got {action}.")
        s = self.state
        change = -GRIPPER_RATE if action[2] > 0 else GRIPPER_RATE
        s.opening = np.float32(min(max(s.opening + change, 0.0), 1.0))
        if s.opening > 0:
            s.held = -1
        elif s.held < 0:
            s.held = self._centred_object()
        before = s.gripper.copy()
        move = np.clip(action[:2], -MAX_DELTA, MAX_DELTA)
        s.gripper = np.clip(s.gripper + move, *object_bounds()).astype(np.float32)
        if s.held >= 0:
            s.objects[s.held] = s.gripper
        elif s.opening == 0:
            self._push(s.gripper - before)
        s.num_steps += 1
        done = s.num_steps >= self.max_steps
        return self.observe(), done, {"success": self.success(), "held": s.held, "num_steps": s.num_steps}

    def observe(self) -> Observation:
        return Observation(image=self.render(), state=self.state_vector())

    def state_vector(self) -> np.ndarray:
        s = self.state
        target = s.objects[find_item(self.scene.objects, colour=self.task.colour)]
        return np.array([s.gripper[0], s.gripper[1], s.opening, target[0], target[1]], dtype=np.float32)

    def render(self) -> np.ndarray:
        s = self.state
        return render(self.scene, s.gripper, float(s.opening), s.objects, s.held, self.height, self.width)

    # -- success ---------------------------------------------------------------------------------------------------
    def success(self) -> bool:
        """The task's object rests in/on the named container (pick_place) or at the named edge (push)."""
        s = self.state
        index = find_item(self.scene.objects, colour=self.task.colour)
        container = None
        if self.task.container is not None:
            item = self.scene.containers[find_item(self.scene.containers, kind=self.task.container)]
            container = (item.x, item.y)
        return s.held != index and task_done(self.task, s.objects[index], container)

    # -- physics ---------------------------------------------------------------------------------------------------
    def _centred_object(self) -> int:
        offsets = (self.state.objects - self.state.gripper) * np.array([ASPECT, 1.0], dtype=np.float32)
        distances = np.hypot(offsets[:, 0], offsets[:, 1])
        nearest = int(np.argmin(distances))
        return nearest if distances[nearest] <= GRASP_TOLERANCE else -1

    def _push(self, motion: np.ndarray) -> None:
        """Move objects the closed fingers overlap out of their way, along the axis of larger motion."""
        half_w, half_h = finger_half_extent(0.0)
        reach = np.array([(half_w + OBJECT_HALF) / ASPECT, half_h + OBJECT_HALF], dtype=np.float32)
        axis = 0 if abs(motion[0]) * ASPECT >= abs(motion[1]) else 1
        low, high = object_bounds()
        for i in range(len(self.state.objects)):
            offset = self.state.objects[i] - self.state.gripper
            if np.all(np.abs(offset) < reach):
                direction = np.sign(motion[axis]) if motion[axis] != 0 else np.sign(offset[axis]) or 1.0
                self.state.objects[i, axis] = self.state.gripper[axis] + direction * reach[axis]
                self.state.objects[i] = np.clip(self.state.objects[i], low, high)


def task_done(task: Task, position, container: tuple[float, float] | None) -> bool:
    """Whether the task's object resting at `position` (normalised x, y) satisfies the task; `container` is the
    named container's centre (pick_place)."""
    x, y = float(position[0]), float(position[1])
    if task.family == "pick_place":
        return float(np.hypot((x - container[0]) * ASPECT, y - container[1])) <= PLACE_RADIUS
    return x <= EDGE_BAND if task.edge == "left" else x >= 1.0 - EDGE_BAND
