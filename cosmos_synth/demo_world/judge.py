"""A rule-based judge of demo-world videos: it tracks the gripper, objects and containers by colour and checks the
prompted task, the distractor and the physics, from the frames alone (generated or real alike).

Every pixel is given the nearest colour of the world's palette (table, arm, gripper, each object colour with its
cube rim, each container colour with its inside), if it lies within MAX_COLOUR_DISTANCE of it. An item's position
is the centroid of its largest connected patch of pixels; the gripper's is the centroid of its palm and fingers,
moved by the offset that centroid has from the gripper's centre. Containers never move: each is read from the frame
that shows most of it. The arm can hide an object for a frame or two; an object's final place is where it was
last seen in the last three frames.

Checks:
- success: the task's object ends where the task wants it (world.sim.task_done), not held;
- distractor: the scene's other object ends in a container (pick_place) or at an edge (push): the video did
  another task, or both;
- physics: no object moves unless the gripper is near it (a partly hidden object seems to move: the arm or
  gripper over its place excuses that too); no object vanishes unless the gripper is near it or covers its place;
  no object is duplicated or grows (no second patch of its colour far away, never more than MAX_AREA_RATIO its
  median area).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from cosmos_synth.demo_world.render import (
    ARM_RGB,
    FINGER_SIZE,
    GRIPPER_RGB,
    TABLE_EDGE_RGB,
    TABLE_RGB,
    finger_half_extent,
    shade,
)
from cosmos_synth.demo_world.scene import ASPECT, CONTAINER_COLOURS, OBJECT_COLOURS, OBJECT_HALF, Task
from cosmos_synth.demo_world.sim import task_done

MAX_COLOUR_DISTANCE = 80.0  # RGB distance beyond which a pixel belongs to no palette colour
MIN_OBJECT_AREA = 0.3  # of an object's nominal area: smaller patches are not the object
MAX_AREA_RATIO = 2.5  # an object larger than this times its first-frame area was duplicated/merged
NEAR = 0.3  # height units: an object this close to the gripper may move or be hidden
STILL = 0.03  # normalised units per frame: an object moving more than this is moving


def _palette() -> tuple[list[str], np.ndarray]:
    names, colours = ["table", "edge", "arm", "gripper"], [TABLE_RGB, TABLE_EDGE_RGB, ARM_RGB, GRIPPER_RGB]
    for name, rgb in OBJECT_COLOURS.items():
        names += [name, f"{name}-rim"]
        colours += [rgb, shade(rgb, 0.7)]
    for kind, rgb in CONTAINER_COLOURS.items():
        inside = {"bowl": shade(rgb, 0.6), "box": shade(rgb, 0.7), "plate": shade(rgb, 1.5)}[kind]
        names += [kind, f"{kind}-inside"]
        colours += [rgb, inside]
    return names, np.asarray(colours, dtype=np.float32)


PALETTE_NAMES, PALETTE = _palette()


def _lookup_table() -> np.ndarray:
    """Labels of every RGB colour quantised to LUT_BITS per channel (computed once: labelling is then a lookup)."""
    levels = (np.arange(1 << LUT_BITS, dtype=np.float32) + 0.5) * (1 << (8 - LUT_BITS))
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    distances = np.linalg.norm(grid[:, None, :] - PALETTE[None], axis=-1)
    labels = distances.argmin(axis=-1)
    labels[distances.min(axis=-1) > MAX_COLOUR_DISTANCE] = -1
    return labels.astype(np.int8)


LUT_BITS = 6  # colour quantisation of the lookup table (64 levels per channel)
_LUT = _lookup_table()


def label_pixels(frame: np.ndarray) -> np.ndarray:
    """(H, W) int: the index into PALETTE_NAMES of each pixel's nearest colour, -1 if none is near enough."""
    q = (np.asarray(frame, dtype=np.uint8) >> (8 - LUT_BITS)).astype(np.int32)
    return _LUT[(q[..., 0] << (2 * LUT_BITS)) | (q[..., 1] << LUT_BITS) | q[..., 2]]


def _patch(mask: np.ndarray) -> tuple[np.ndarray | None, float, int]:
    """(centroid (x, y) in pixels of the largest 8-connected patch, its area, number of patches) of a mask."""
    count, _, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return None, 0.0, 0
    areas = stats[1:, cv2.CC_STAT_AREA]
    best = int(np.argmax(areas)) + 1
    return centroids[best], float(areas[best - 1]), int(count - 1)


def _mask(labels: np.ndarray, *names: str) -> np.ndarray:
    return np.isin(labels, [PALETTE_NAMES.index(n) for n in names])


@cache
def _gripper_offset() -> float:
    """Height units from the palm-and-fingers centroid down to the gripper's centre (at half opening)."""
    half_w, half_h = finger_half_extent(0.5)
    finger_w, finger_l = FINGER_SIZE
    palm, fingers = 2 * half_w * finger_w, 2 * finger_w * finger_l
    return (palm * (finger_l / 2)) / (palm + fingers)


@dataclass(frozen=True)
class Tracks:
    """Per-frame positions (normalised x, y; NaN where not found) and areas (pixels) of what the judge follows."""

    gripper: np.ndarray  # (T, 2)
    objects: dict[str, np.ndarray]  # object colour -> (T, 2)
    areas: dict[str, np.ndarray]  # object colour -> (T,)
    split: dict[str, np.ndarray]  # object colour -> (T,) bool: two big patches far apart
    occluded: dict[str, np.ndarray]  # object colour -> (T,) bool: arm or gripper over its last place
    containers: dict[str, tuple[float, float]]  # container kind -> centre (from its least hidden frame)


def _object_patches(mask: np.ndarray, min_area: float, height: int) -> tuple[np.ndarray | None, float, bool]:
    """(centroid px, area, split) of an object's colour mask: its largest patch, and whether another big patch lies
    more than 3 object sizes away (a duplicated object; an occluder cutting one object leaves nearby pieces)."""
    count, _, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    big = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area]
    if not big:
        return None, 0.0, False
    best = max(big, key=lambda i: stats[i, cv2.CC_STAT_AREA])
    far = 3 * 2 * OBJECT_HALF * height
    split = any(np.hypot(*(centroids[i] - centroids[best])) > far for i in big if i != best)
    return centroids[best], float(stats[best, cv2.CC_STAT_AREA]), split


def track(frames: np.ndarray) -> Tracks:
    """Follow the gripper, every object colour seen in the video, and the containers."""
    frames = np.asarray(frames)
    num_frames, height, width = frames.shape[:3]
    min_area = MIN_OBJECT_AREA * (2 * OBJECT_HALF * height) ** 2
    scale = np.array([width, height], dtype=np.float64)
    labels = [label_pixels(f) for f in frames]

    containers = {}
    for kind in CONTAINER_COLOURS:  # containers never move: read each from the frame that shows most of it
        found = [_patch(_mask(lab, kind, f"{kind}-inside"))[:2] for lab in labels]
        centre, area = max(found, key=lambda pair: pair[1])
        if centre is not None and area >= 4 * min_area:
            containers[kind] = tuple(float(v) for v in (centre + 0.5) / scale)

    gripper = np.full((num_frames, 2), np.nan)
    objects = {c: np.full((num_frames, 2), np.nan) for c in OBJECT_COLOURS}
    areas = {c: np.zeros(num_frames) for c in OBJECT_COLOURS}
    split = {c: np.zeros(num_frames, dtype=bool) for c in OBJECT_COLOURS}
    occluders = []
    for t, lab in enumerate(labels):
        centre, area, _ = _patch(_mask(lab, "gripper"))
        if centre is not None and area >= min_area:
            gripper[t] = (centre + 0.5) / scale + np.array([0.0, _gripper_offset()])
        occluders.append(_mask(lab, "gripper", "arm"))
        for colour in OBJECT_COLOURS:
            centre, area, split[colour][t] = _object_patches(_mask(lab, colour, f"{colour}-rim"), min_area, height)
            if centre is not None:
                objects[colour][t], areas[colour][t] = (centre + 0.5) / scale, area
    seen = [c for c in OBJECT_COLOURS if np.isfinite(objects[c][:, 0]).sum() >= max(2, num_frames // 4)]
    occluded = {c: _occluded(objects[c], occluders, height, width) for c in seen}
    return Tracks(
        gripper=gripper,
        objects={c: objects[c] for c in seen},
        areas={c: areas[c] for c in seen},
        split={c: split[c] for c in seen},
        occluded=occluded,
        containers=containers,
    )


def _occluded(position: np.ndarray, occluders: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """Per frame: does the arm or the gripper cover the object's last known place (its first place, before seen)?"""
    known = position[np.isfinite(position[:, 0])]
    last = known[0] if len(known) else np.array([0.5, 0.5])
    radius = 1.5 * OBJECT_HALF * height
    ys, xs = np.mgrid[0:height, 0:width]
    result = np.zeros(len(position), dtype=bool)
    for t, mask in enumerate(occluders):
        if np.isfinite(position[t, 0]):
            last = position[t]
        near = np.hypot(xs + 0.5 - last[0] * width, ys + 0.5 - last[1] * height) <= radius
        result[t] = bool((mask & near).any())
    return result


@dataclass(frozen=True)
class Verdict:
    """The judge's reading of one video for one task."""

    success: bool  # the task's object ends where the task wants it
    distractor: bool  # the other object ends in a container / at an edge
    physics_ok: bool  # no object moved or vanished away from the gripper, none duplicated or grew
    state: np.ndarray  # (T, 4) tracked gripper_x, gripper_y, object_x, object_y (NaN where lost)
    reasons: tuple[str, ...]  # why a check failed, for the report


def _ends_done(task: Task, position: np.ndarray, containers: dict[str, tuple[float, float]]) -> bool:
    if np.isnan(position).any():
        return False
    if task.family == "pick_place":
        return task.container in containers and task_done(task, position, containers[task.container])
    return task_done(task, position, None)


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame distance in height units between two (T, 2) normalised tracks (NaN where either is lost)."""
    return np.hypot((a[:, 0] - b[:, 0]) * ASPECT, a[:, 1] - b[:, 1])


def _physics(tracks: Tracks) -> list[str]:
    reasons = []
    for colour, position in tracks.objects.items():
        near = _distance(position, tracks.gripper)
        near = np.where(np.isnan(near), np.inf, near) <= NEAR
        found = np.isfinite(position[:, 0])
        step = np.hypot(*np.diff(position, axis=0).T)
        free = ~near & ~tracks.occluded[colour]  # nothing touches or hides it: it must stay where it is
        if np.any((step > STILL) & free[1:] & free[:-1]):
            reasons.append(f"{colour} object moved with the gripper away")
        if np.any(~found & ~near & ~tracks.occluded[colour]):
            reasons.append(f"{colour} object vanished with nothing over it")
        typical = np.median(tracks.areas[colour][found])
        if np.any(tracks.split[colour]) or np.any(tracks.areas[colour] > MAX_AREA_RATIO * typical):
            reasons.append(f"{colour} object duplicated or grew")
    return reasons


def _final(position: np.ndarray, lookback: int = 3) -> np.ndarray:
    """The last place an object was seen within the last `lookback` frames (the arm may hide it at the end)."""
    for t in range(len(position) - 1, max(-1, len(position) - 1 - lookback), -1):
        if np.isfinite(position[t, 0]):
            return position[t]
    return np.array([np.nan, np.nan])


def judge(frames: np.ndarray, task: Task) -> Verdict:
    """Read a video of the demo world (uint8 (T, H, W, 3)) against the task its prompt states."""
    tracks = track(frames)
    reasons = []
    target = tracks.objects.get(task.colour)
    if target is None:
        target = np.full((len(frames), 2), np.nan)
        reasons.append(f"no {task.colour} object in the video")
    if task.family == "pick_place" and task.container not in tracks.containers:
        reasons.append(f"no {task.container} in the video")
    success = _ends_done(task, _final(target), tracks.containers)
    if not success and not reasons:
        reasons.append(
            f"the {task.colour} {task.kind} does not end "
            + (
                f"{'in' if task.container != 'plate' else 'on'} the {task.container}"
                if task.family == "pick_place"
                else f"at the {task.edge} edge"
            )
        )
    others = [c for c in tracks.objects if c != task.colour]
    distractor = False
    for colour in others:
        position = _final(tracks.objects[colour])
        if task.family == "pick_place":
            distractor |= any(
                _ends_done(
                    Task(family="pick_place", colour=colour, kind=task.kind, container=kind),
                    position,
                    tracks.containers,
                )
                for kind in tracks.containers
            )
        else:
            distractor |= any(
                _ends_done(Task(family="push", colour=colour, kind=task.kind, edge=edge), position, {})
                for edge in ("left", "right")
            )
    physics = _physics(tracks) if task.colour in tracks.objects else ["the task's object was never seen"]
    state = np.concatenate([tracks.gripper, target], axis=1)
    return Verdict(
        success=bool(success),
        distractor=bool(distractor),
        physics_ok=not physics,
        state=state,
        reasons=tuple(reasons + physics),
    )


def _fill_gaps(track: np.ndarray) -> np.ndarray:
    """A (T, 2) track with each lost frame given the nearest earlier (else later) position; all-NaN stays NaN."""
    track = track.copy()
    found = np.flatnonzero(np.isfinite(track[:, 0]))
    if len(found):
        nearest = np.maximum.accumulate(np.where(np.isfinite(track[:, 0]), np.arange(len(track)), -1))
        nearest[nearest < 0] = found[0]
        track = track[nearest]
    return track


def track_error(verdict: Verdict, true_state: np.ndarray) -> float:
    """Mean distance (normalised units) between the tracked and the true gripper and object positions. A frame
    where the judge lost an item (hidden by the arm) uses its last known place; an item never found counts as a
    full image diagonal (sqrt 2) in every frame."""
    true = np.asarray(true_state, dtype=np.float64)[:, [0, 1, 3, 4]]
    n = min(len(true), len(verdict.state))
    errors = []
    for columns in ((0, 1), (2, 3)):
        d = np.hypot(*(_fill_gaps(verdict.state[:n, columns]) - true[:n, columns]).T)
        errors.append(np.where(np.isnan(d), np.sqrt(2.0), d))
    return float(np.mean(errors))
