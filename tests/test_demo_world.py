"""The demo world: physics, the expert, exact replay, and a judge that reads real episodes right, wrong ones wrong."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cosmos_synth.demo_world import DemoWorld, Task, parse_prompt, replay, rollout_expert
from cosmos_synth.demo_world.judge import judge, track_error
from cosmos_synth.demo_world.scene import EDGES, find_item
from cosmos_synth.demo_world.sim import EDGE_BAND, GRIPPER_RATE, object_bounds

FAMILIES = ("pick_place", "push")


@pytest.fixture(scope="module")
def world() -> DemoWorld:
    return DemoWorld(height=64, width=96, max_steps=16)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_expert_solves_every_scene_and_replays_exactly(world, family):
    for seed in range(40):
        episode = rollout_expert(world, family, seed)
        assert episode.success, (family, seed)
        again = replay(world, episode)
        np.testing.assert_array_equal(again.frames, episode.frames)
        np.testing.assert_array_equal(again.state, episode.state)
        assert again.success


def test_only_the_prompt_tells_the_task(world):
    """Each scene has a second object and a second container; its first frame fits several tasks."""
    first = world.reset("pick_place", 7)
    scene = world.scene
    assert len({o.colour for o in scene.objects}) == 2 and len({c.kind for c in scene.containers}) == 2
    for family in FAMILIES:
        assert np.array_equal(world.reset(family, 7).image, first.image)  # the family does not change the scene


def test_grasp_carry_release(world):
    observation = world.reset("pick_place", 3)
    target = world.scene.objects[find_item(world.scene.objects, colour=world.task.colour)]
    # fly to the object, open: the hovering gripper moves nothing
    for _ in range(3):
        observation, _, _ = world.step(
            [(target.x - observation.state[0]) / 2, (target.y - observation.state[1]) / 2, -1.0]
        )
    observation, _, _ = world.step([target.x - observation.state[0], target.y - observation.state[1], -1.0])
    np.testing.assert_allclose(observation.state[3:5], [target.x, target.y], atol=1e-6)
    for _ in range(int(1 / GRIPPER_RATE)):  # close
        observation, _, info = world.step([0.0, 0.0, 1.0])
    assert observation.state[2] == 0.0 and info["held"] >= 0
    observation, _, _ = world.step([0.1, -0.05, 1.0])  # carried
    np.testing.assert_allclose(observation.state[3:5], observation.state[0:2])
    observation, _, info = world.step([0.0, 0.0, -1.0])  # opening releases it where it is
    assert info["held"] == -1
    observation, _, _ = world.step([0.1, 0.0, -1.0])
    assert not np.allclose(observation.state[3:5], observation.state[0:2])


def test_a_closed_gripper_pushes_and_objects_stay_on_the_table(world):
    observation = world.reset("push", 11)
    x, y = observation.state[3:5]
    # park to the right of the object (in steps of at most MAX_DELTA), close (down on the table), sweep left
    for _ in range(4):
        observation, _, _ = world.step([(x + 0.2 - observation.state[0]) / 2, (y - observation.state[1]) / 2, -1.0])
    observation, _, _ = world.step([x + 0.2 - observation.state[0], y - observation.state[1], -1.0])
    assert world.state.held == -1
    for _ in range(2):
        observation, _, _ = world.step([0.0, 0.0, 1.0])
    for _ in range(6):
        observation, _, _ = world.step([-0.25, 0.0, 1.0])
    low, _ = object_bounds()
    assert observation.state[3] < EDGE_BAND  # pushed to the left edge
    assert observation.state[3] >= low[0] and observation.state[0] >= low[0]  # but both still on the table


def test_bad_actions_and_tasks_are_refused(world):
    world.reset("push", 0)
    with pytest.raises(ValueError, match="action must be 3 finite numbers"):
        world.step([np.nan, 0.0, 1.0])
    with pytest.raises(ValueError, match="task family 'stack'"):
        world.reset("stack", 0)
    with pytest.raises(ValueError, match="push needs an edge"):
        Task(family="push", colour="red", kind="cube", edge="top")


@pytest.mark.parametrize("family", FAMILIES)
def test_prompts_parse_back_to_their_task(world, family):
    for seed in range(10):
        world.reset(family, seed)
        assert parse_prompt(world.task.prompt) == world.task
    assert parse_prompt("The robot arm waves.") is None


@pytest.mark.parametrize("family", FAMILIES)
def test_the_judge_accepts_real_episodes(world, family):
    for seed in range(100, 160):
        episode = rollout_expert(world, family, seed)
        verdict = judge(episode.frames, episode.task)
        assert verdict.success and not verdict.distractor and verdict.physics_ok, (seed, verdict.reasons)
        assert track_error(verdict, episode.state) < 0.06


def test_the_judge_rejects_a_still_video_and_the_distractor_done(world):
    episode = rollout_expert(world, "pick_place", 5)
    still = judge(np.repeat(episode.frames[:1], len(episode.frames), axis=0), episode.task)
    assert not still.success and "does not end in" in " ".join(still.reasons)
    # the expert doing the other object's task: not a success for the prompted task, and the distractor flag is up
    other = next(o for o in episode.scene.objects if o.colour != episode.task.colour)
    wrong = rollout_expert(world, dataclasses.replace(episode.task, colour=other.colour, kind=other.kind), episode.seed)
    verdict = judge(wrong.frames, episode.task)
    assert not verdict.success and verdict.distractor


def test_the_judge_flags_broken_physics(world):
    episode = rollout_expert(world, "push", 9)
    frames = episode.frames.copy()
    frames[8:] = np.roll(frames[8:], 20, axis=2)  # half the video jumps sideways: things move with nothing near
    assert not judge(frames, episode.task).physics_ok
    frames = episode.frames.copy()
    colour = np.array([215, 40, 40] if episode.task.colour != "red" else [40, 165, 60], dtype=np.uint8)
    frames[10:, 4:12, 4:12] = colour  # an object appears out of nowhere in a corner: duplicated or grown
    verdict = judge(frames, episode.task)
    assert not verdict.physics_ok and any(
        "duplicated" in r or "vanished" in r or "moved" in r for r in verdict.reasons
    ), verdict.reasons


def test_edges_are_left_and_right():
    assert EDGES == ("left", "right")
