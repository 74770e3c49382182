"""Drawing the demo world: a top-down view of a wooden table, containers, objects and a two-finger gripper.

Shapes are drawn with cv2 in fixed point (SHIFT fractional bits) and anti-aliased, so motion stays smooth at 64x96.
Sizes are fractions of the image height (the table's aspect ratio is fixed, see scene.ASPECT).
"""

from __future__ import annotations

import cv2
import numpy as np

from cosmos_synth.demo_world.scene import CONTAINER_COLOURS, CONTAINER_RADIUS, OBJECT_COLOURS, OBJECT_HALF, Scene

TABLE_RGB = (186, 150, 110)  # table top (light wood)
TABLE_EDGE_RGB = (140, 105, 70)  # darker band around the image border
GRIPPER_RGB = (55, 58, 66)  # palm and fingers
ARM_RGB = (95, 98, 106)  # the arm from the top edge to the palm
ARM_BASE = (0.5, -0.1)  # where the arm enters the image (normalised, above the top edge)
ARM_WIDTH = 0.7  # the arm's width, as a fraction of a finger's
FINGER_SIZE = (0.05, 0.16)  # finger (width, length), height units
FINGER_EXTRA_GAP = 0.14  # extra gap between the fingers when fully open, height units
SHIFT = 4  # cv2 fixed-point bits
ONE = 1 << SHIFT


def finger_half_extent(opening: float) -> tuple[float, float]:
    """(half width, half height) in height units of the box around both fingers at this opening."""
    gap = 2 * OBJECT_HALF + opening * FINGER_EXTRA_GAP
    return gap / 2 + FINGER_SIZE[0], FINGER_SIZE[1] / 2


def _fixed(x: float, y: float, height: int, width: int) -> tuple[int, int]:
    """Normalised (x, y) -> cv2 fixed-point pixel coordinates."""
    return int(round(x * width * ONE)), int(round(y * height * ONE))


def _box(img: np.ndarray, centre: tuple[int, int], half_w: float, half_h: float, rgb) -> None:
    cx, cy = centre
    hw, hh = int(round(half_w * ONE)), int(round(half_h * ONE))
    cv2.rectangle(img, (cx - hw, cy - hh), (cx + hw, cy + hh), rgb, -1, cv2.LINE_AA, SHIFT)


def _disc(img: np.ndarray, centre: tuple[int, int], radius: float, rgb) -> None:
    cv2.circle(img, centre, int(round(radius * ONE)), rgb, -1, cv2.LINE_AA, SHIFT)


def shade(rgb, factor: float) -> tuple[int, int, int]:
    """Mix a colour towards black (factor < 1) or white (factor > 1)."""
    target = 0.0 if factor < 1 else 255.0
    weight = abs(1.0 - factor)
    return tuple(int(round(c + (target - c) * weight)) for c in rgb)


def draw_container(img: np.ndarray, kind: str, x: float, y: float, scale: float) -> None:
    h, w = img.shape[:2]
    centre, rgb, radius = _fixed(x, y, h, w), CONTAINER_COLOURS[kind], CONTAINER_RADIUS * scale
    if kind == "bowl":  # a rim around a darker inside
        _disc(img, centre, radius, rgb)
        _disc(img, centre, radius * 0.72, shade(rgb, 0.6))
    elif kind == "box":  # walls around a darker floor
        _box(img, centre, radius, radius, rgb)
        _box(img, centre, radius * 0.78, radius * 0.78, shade(rgb, 0.7))
    else:  # plate: a disc with a lighter centre
        _disc(img, centre, radius, rgb)
        _disc(img, centre, radius * 0.8, shade(rgb, 1.5))


def draw_object(img: np.ndarray, kind: str, colour: str, x: float, y: float, scale: float) -> None:
    h, w = img.shape[:2]
    centre, rgb, half = _fixed(x, y, h, w), OBJECT_COLOURS[colour], OBJECT_HALF * scale
    if kind == "cube":
        _box(img, centre, half, half, shade(rgb, 0.7))
        _box(img, centre, half * 0.7, half * 0.7, rgb)
    else:
        _disc(img, centre, half, rgb)


def draw_gripper(img: np.ndarray, x: float, y: float, opening: float, scale: float) -> None:
    h, w = img.shape[:2]
    centre = _fixed(x, y, h, w)
    finger_w, finger_l = FINGER_SIZE[0] * scale, FINGER_SIZE[1] * scale
    gap = (2 * OBJECT_HALF + opening * FINGER_EXTRA_GAP) * scale
    offset = int(round((gap + finger_w) / 2 * ONE))
    palm_y = centre[1] - int(round(finger_l / 2 * ONE))
    thickness = max(1, int(round(finger_w * ARM_WIDTH)))
    cv2.line(img, _fixed(*ARM_BASE, h, w), (centre[0], palm_y), ARM_RGB, thickness, cv2.LINE_AA, SHIFT)
    _box(img, (centre[0], palm_y), (gap + 2 * finger_w) / 2, finger_w / 2, GRIPPER_RGB)
    for side in (-1, 1):
        _box(img, (centre[0] + side * offset, centre[1]), finger_w / 2, finger_l / 2, GRIPPER_RGB)


def render(scene: Scene, gripper, opening: float, objects, held: int, height: int, width: int) -> np.ndarray:
    """One frame as uint8 RGB (height, width, 3): table, containers, resting objects, the held object, gripper."""
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = TABLE_EDGE_RGB
    border = max(1, height // 24)
    img[border:-border, border:-border] = TABLE_RGB
    scale = float(height)
    for container in scene.containers:
        draw_container(img, container.kind, container.x, container.y, scale)
    order = [i for i in range(len(scene.objects)) if i != held] + ([held] if held >= 0 else [])
    for i in order:
        draw_object(
            img, scene.objects[i].kind, scene.objects[i].colour, float(objects[i][0]), float(objects[i][1]), scale
        )
    draw_gripper(img, float(gripper[0]), float(gripper[1]), opening, scale)
    return img
