"""What is on the demo world's table, which tasks it poses, and their prompts.

Coordinates are normalised: x in [0, 1] from left to right (pixels / width), y in [0, 1] from top to bottom
(pixels / height). The table has a fixed aspect ratio (ASPECT = width / height); sizes and distances of the physics
are in "height units" (fractions of the image height), so a step of 0.1 in x is 0.1 * ASPECT height units.

A scene holds two objects (a cube or a ball, each of its own colour) and two containers of different kinds (bowl,
box, plate; each kind has its own colour). Containers sit in the far row, objects in two near rows, so a push along
a row never touches the other object. Since every scene holds a second object and a second container, only the
prompt says which task to do.

Task families:
- "pick_place" (the pretraining family): pick up the named object and put it in/on the named container.
- "push" (the new family, never seen in pretraining): push the named object to the named edge of the table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

ASPECT = 1.5  # table width / height; the renderer stretches to any image size
FAMILIES = ("pick_place", "push")  # task families; "pick_place" is the pretraining family
PRETRAINING_FAMILY = "pick_place"

OBJECT_COLOURS = {  # object colour name (used in prompts) -> RGB; one colour per object in a scene
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 85, 220),
    "yellow": (235, 205, 40),
}
OBJECT_KINDS = ("cube", "ball")  # drawn as a square with a darker rim / a filled disc
CONTAINER_COLOURS = {  # container kind -> RGB of its rim (kinds are named by shape, not colour)
    "bowl": (150, 70, 190),
    "box": (240, 240, 240),
    "plate": (60, 190, 205),
}
CONTAINER_PREPOSITION = {"bowl": "in", "box": "in", "plate": "on"}
EDGES = ("left", "right")  # push targets

OBJECT_HALF = 0.075  # object half-size, height units
CONTAINER_RADIUS = 0.14  # container radius / half-size, height units
CONTAINER_ROW = (0.22, 0.30)  # y range of the containers' centres
CONTAINER_X = ((0.14, 0.36), (0.64, 0.86))  # x ranges of the left and right container
OBJECT_ROWS = ((0.52, 0.60), (0.76, 0.84))  # y ranges of the two objects' rows (one object per row)
OBJECT_X = (0.30, 0.70)  # x range of the objects' centres: room to push either way
GRIPPER_AREA = ((0.2, 0.8), (0.35, 0.65))  # (x range, y range) where the gripper starts and ends

PICK_PROMPT = "The robot arm picks up the {colour} {kind} and places it {prep} the {container}."
PUSH_PROMPT = "The robot arm pushes the {colour} {kind} to the {edge} edge of the table."
_PICK_RE = re.compile(r"picks up the (\w+) (\w+) and places it (?:in|on) the (\w+)\.")
_PUSH_RE = re.compile(r"pushes the (\w+) (\w+) to the (\w+) edge of the table\.")


@dataclass(frozen=True)
class Item:
    """An object or a container: its kind, colour name (containers: their kind's colour) and centre."""

    kind: str
    colour: str
    x: float
    y: float


@dataclass(frozen=True)
class Scene:
    """The initial table: two objects (near rows), two containers (far row), the gripper's start and end points."""

    objects: tuple[Item, Item]
    containers: tuple[Item, Item]
    gripper_start: tuple[float, float]
    gripper_end: tuple[float, float]  # where the expert retreats to once done


@dataclass(frozen=True)
class Task:
    """One instruction: a family and its arguments (a container for pick_place, an edge for push)."""

    family: str
    colour: str  # the object's colour: unique in the scene, so it names the object
    kind: str  # the object's kind (cube, ball)
    container: str | None = None  # pick_place: the container's kind
    edge: str | None = None  # push: "left" or "right"

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"task family {self.family!r}: use one of {list(FAMILIES)}.")
        if self.family == "pick_place" and self.container not in CONTAINER_COLOURS:
            raise ValueError(f"pick_place needs a container in {list(CONTAINER_COLOURS)}, got {self.container!r}.")
        if self.family == "push" and self.edge not in EDGES:
            raise ValueError(f"push needs an edge in {list(EDGES)}, got {self.edge!r}.")

    @property
    def prompt(self) -> str:
        if self.family == "pick_place":
            return PICK_PROMPT.format(
                colour=self.colour, kind=self.kind, container=self.container, prep=CONTAINER_PREPOSITION[self.container]
            )
        return PUSH_PROMPT.format(colour=self.colour, kind=self.kind, edge=self.edge)


def parse_prompt(prompt: str) -> Task | None:
    """The demo-world task a prompt states, or None when it is not one of the demo world's prompts."""
    if (match := _PICK_RE.search(prompt)) and match[1] in OBJECT_COLOURS and match[3] in CONTAINER_COLOURS:
        return Task(family="pick_place", colour=match[1], kind=match[2], container=match[3])
    if (match := _PUSH_RE.search(prompt)) and match[1] in OBJECT_COLOURS and match[3] in EDGES:
        return Task(family="push", colour=match[1], kind=match[2], edge=match[3])
    return None


def sample_scene(rng: np.random.Generator) -> Scene:
    """Two objects of distinct colours in the two near rows, two containers of distinct kinds in the far row."""
    colours = rng.choice(list(OBJECT_COLOURS), size=2, replace=False)
    rows = rng.permutation(2)
    objects = tuple(
        Item(
            kind=str(rng.choice(OBJECT_KINDS)),
            colour=str(colours[i]),
            x=float(rng.uniform(*OBJECT_X)),
            y=float(rng.uniform(*OBJECT_ROWS[rows[i]])),
        )
        for i in range(2)
    )
    kinds = rng.choice(list(CONTAINER_COLOURS), size=2, replace=False)
    containers = tuple(
        Item(
            kind=str(kinds[i]),
            colour=str(kinds[i]),
            x=float(rng.uniform(*CONTAINER_X[i])),
            y=float(rng.uniform(*CONTAINER_ROW)),
        )
        for i in range(2)
    )
    start = (float(rng.uniform(*GRIPPER_AREA[0])), float(rng.uniform(*GRIPPER_AREA[1])))
    end = (float(rng.uniform(*GRIPPER_AREA[0])), float(rng.uniform(*GRIPPER_AREA[1])))
    return Scene(objects=objects, containers=containers, gripper_start=start, gripper_end=end)


def sample_task(rng: np.random.Generator, scene: Scene, family: str) -> Task:
    """A task of `family` about this scene: which object, and which container or edge."""
    target = scene.objects[int(rng.integers(2))]
    if family == "pick_place":
        return Task(
            family=family, colour=target.colour, kind=target.kind, container=scene.containers[int(rng.integers(2))].kind
        )
    if family == "push":
        return Task(family=family, colour=target.colour, kind=target.kind, edge=str(rng.choice(EDGES)))
    raise ValueError(f"task family {family!r}: use one of {list(FAMILIES)}.")


def find_item(items: tuple[Item, ...], *, colour: str | None = None, kind: str | None = None) -> int:
    """Index of the item with this colour (objects) or kind (containers); ValueError when the scene has none."""
    for index, item in enumerate(items):
        if (colour is None or item.colour == colour) and (kind is None or item.kind == kind):
            return index
    raise ValueError(
        f"the scene has no item with colour={colour!r}, kind={kind!r}: it holds {[(i.colour, i.kind) for i in items]}."
    )
