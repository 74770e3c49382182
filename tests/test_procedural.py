"""The demo world's recorder: determinism, layout, ground truth that replays, held-out episodes, idempotence."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cosmos_synth.config import DemoDataConfig
from cosmos_synth.demo_world import DemoWorld, Task, parse_prompt
from cosmos_synth.files import read_jsonl
from cosmos_synth.sources.layout import (
    EPISODES_JSONL,
    HELDOUT_DIR,
    METADATA_CSV,
    TEST_DIR,
    TRAJECTORIES_DIR,
    VIDEOS_DIR,
)
from cosmos_synth.sources.procedural import ACTION_NAMES, MARKER, STATE_NAMES, write_demo_dataset
from cosmos_synth.video import read_video, write_video

SMALL = dict(num_episodes=3, num_test_pairs=2, num_frames=17, height=64, width=96, fps=16)


def _write(root: Path, **overrides) -> Path:
    return write_demo_dataset(DemoDataConfig(out_dir=root, **{**SMALL, **overrides}))


def _load(root: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    frames, _ = read_video(root / VIDEOS_DIR / f"{name}.mp4")
    with np.load(root / TRAJECTORIES_DIR / f"{name}.npz", allow_pickle=False) as data:
        return frames, data["state"], data["action"]


def test_same_config_gives_identical_data(tmp_path):
    a, b = _write(tmp_path / "a"), _write(tmp_path / "b")
    assert (a / METADATA_CSV).read_text() == (b / METADATA_CSV).read_text()
    for i in range(SMALL["num_episodes"]):
        for x, y in zip(_load(a, f"episode_{i:04d}"), _load(b, f"episode_{i:04d}"), strict=True):
            np.testing.assert_array_equal(x, y)
    for k in range(SMALL["num_test_pairs"]):
        np.testing.assert_array_equal(
            cv2.imread(str(a / TEST_DIR / f"pair_{k:04d}.png")), cv2.imread(str(b / TEST_DIR / f"pair_{k:04d}.png"))
        )


def test_different_seeds_differ(tmp_path):
    a, b = _write(tmp_path / "a", seed=0), _write(tmp_path / "b", seed=100)
    frames_a, state_a, _ = _load(a, "episode_0000")
    frames_b, state_b, _ = _load(b, "episode_0000")
    assert not np.array_equal(state_a, state_b)
    assert np.abs(frames_a.astype(int) - frames_b.astype(int)).mean() > 1.0


@pytest.mark.parametrize(
    "family, start", [("pick_place", "The robot arm picks up the "), ("push", "The robot arm pushes the ")]
)
def test_layout_shapes_and_prompts(tmp_path, family, start):
    root = _write(tmp_path / "data", task_family=family)
    lines = (root / METADATA_CSV).read_text().splitlines()
    records = read_jsonl(root / EPISODES_JSONL)
    assert len(lines) == len(records) == SMALL["num_episodes"]
    for i, (line, record) in enumerate(zip(lines, records, strict=True)):
        video, _, prompt = line.partition(",")
        assert video == f"{VIDEOS_DIR}/episode_{i:04d}.mp4" and prompt.startswith(start) and prompt.endswith(".")
        assert record["name"] == f"episode_{i:04d}" and record["seed"] == i and record["success"] is True
        assert parse_prompt(prompt) == Task(**record["task"]) and record["task"]["family"] == family
        frames, state, action = _load(root, f"episode_{i:04d}")
        assert frames.shape == (SMALL["num_frames"], SMALL["height"], SMALL["width"], 3)
        assert state.shape == (SMALL["num_frames"], len(STATE_NAMES)) and state.dtype == np.float32
        assert action.shape == (SMALL["num_frames"], len(ACTION_NAMES)) and action.dtype == np.float32
        assert state.min() >= 0.0 and state.max() <= 1.0
        assert np.abs(frames[1:].astype(int) - frames[:-1].astype(int)).max() > 50  # the scene moves
    assert json.loads((root / MARKER).read_text())["config"]["task_family"] == family


def test_test_pairs_are_the_first_frames_of_the_heldout_episodes(tmp_path):
    root = _write(tmp_path / "data")
    heldout = root / HELDOUT_DIR
    assert len(list((root / TEST_DIR).iterdir())) == 2 * SMALL["num_test_pairs"]
    lines = (heldout / METADATA_CSV).read_text().splitlines()
    for k, record in enumerate(read_jsonl(heldout / EPISODES_JSONL)):
        assert record["name"] == f"pair_{k:04d}" and record["seed"] == 1_000_000 + k
        image = cv2.imread(str(root / TEST_DIR / f"pair_{k:04d}.png"))[:, :, ::-1]  # BGR -> RGB
        frames, state, _ = _load(heldout, f"pair_{k:04d}")
        assert frames.shape[0] == SMALL["num_frames"] and state.shape[0] == SMALL["num_frames"]
        assert np.abs(frames[0].astype(int) - image.astype(int)).mean() < 3.0  # same frame, up to H.264 chroma
        prompt = (root / TEST_DIR / f"pair_{k:04d}.txt").read_text().strip()
        assert prompt == record["prompt"] == lines[k].partition(",")[2]
    # The held-out scenes have seeds of their own: more training episodes leave them unchanged.
    more = _write(tmp_path / "more", num_episodes=5)
    assert (more / HELDOUT_DIR / EPISODES_JSONL).read_text() == (heldout / EPISODES_JSONL).read_text()


def test_recorded_actions_replay_to_the_recorded_states(tmp_path):
    root = _write(tmp_path / "data", task_family="push")
    world = DemoWorld(height=SMALL["height"], width=SMALL["width"], max_steps=SMALL["num_frames"] - 1)
    for record in read_jsonl(root / EPISODES_JSONL):
        frames, state, action = _load(root, record["name"])
        observation = world.reset(Task(**record["task"]), record["seed"])
        replayed_states, replayed_frames = [observation.state], [observation.image]
        for a in action[:-1]:
            observation, done, info = world.step(a)
            replayed_states.append(observation.state)
            replayed_frames.append(observation.image)
        np.testing.assert_array_equal(np.stack(replayed_states), state)
        assert done and info["success"]
        # the video is lossless H.264 in yuv420p: the frames come back up to chroma subsampling
        assert np.abs(np.stack(replayed_frames).astype(int) - frames.astype(int)).mean() < 3.0


def test_action_matches_state(tmp_path):
    root = _write(tmp_path / "data")
    _, state, action = _load(root, "episode_0001")
    np.testing.assert_array_equal(state[:-1, :2] + action[:-1, :2], state[1:, :2])  # delta_x, delta_y
    np.testing.assert_array_equal(action[-1], [0.0, 0.0, -1.0])
    opening_change = np.diff(state[:, 2])
    command = action[:-1, 2]
    assert set(np.unique(action[:, 2])) == {-1.0, 1.0}
    assert np.all(opening_change[command == 1.0] <= 0)  # +1 close: the gripper never opens
    assert np.all(opening_change[command == -1.0] >= 0)  # -1 open: the gripper never closes
    assert state[0, 2] == 1.0 and state[-1, 2] == 1.0 and state[:, 2].min() == 0.0
    carried = state[:, 2] == 0.0  # closed on the object: it moves with the gripper
    np.testing.assert_allclose(state[carried, 3:5], state[carried, 0:2])


def test_replay_adds_pretraining_episodes_on_scenes_of_their_own(tmp_path):
    """Rehearsal data: push demonstrations first, then pick_place episodes on the next scene seeds; the held-out
    episodes stay push only."""
    root = _write(tmp_path / "demo", task_family="push", num_episodes=2, replay_episodes=2)
    rows = read_jsonl(root / EPISODES_JSONL)
    assert [r["name"] for r in rows] == ["episode_0000", "episode_0001", "episode_0002", "episode_0003"]
    assert [parse_prompt(r["prompt"]).family for r in rows] == ["push", "push", "pick_place", "pick_place"]
    assert [r["seed"] for r in rows] == [0, 1, 2, 3]
    heldout = read_jsonl(root / HELDOUT_DIR / EPISODES_JSONL)
    assert {parse_prompt(r["prompt"]).family for r in heldout} == {"push"}


def test_marker_leaves_replay_out_when_off(tmp_path):
    """A dataset written before replay_episodes existed (its marker has no such key) is still reused."""
    root = _write(tmp_path / "demo")
    marker = json.loads((root / MARKER).read_text())
    assert "replay_episodes" not in marker["config"]
    assert write_demo_dataset(DemoDataConfig(out_dir=root, replay_episodes=0, **SMALL)) == root


def test_replay_needs_a_new_family(tmp_path):
    with pytest.raises(ValueError, match=r"replay_episodes=2 with task_family='pick_place'.*set task_family='push'"):
        DemoDataConfig(out_dir=tmp_path, replay_episodes=2)


def test_seeds_overlapping_the_heldout_range_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"overlap the held-out seeds from heldout_seed=5"):
        DemoDataConfig(out_dir=tmp_path, num_episodes=10, heldout_seed=5)


def test_rerun_reuses_complete_dataset(tmp_path):
    root = _write(tmp_path / "data")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    before = {p: p.stat().st_ino for p in files}  # a rewrite builds a temporary folder and renames it: new inodes
    assert _write(tmp_path / "data") == root
    assert {p: p.stat().st_ino for p in files} == before
    assert sorted(p for p in root.rglob("*") if p.is_file()) == files
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no temporary folder left behind


def test_empty_folder_is_filled(tmp_path):
    (tmp_path / "data").mkdir()
    root = _write(tmp_path / "data")
    assert (root / MARKER).is_file() and (root / METADATA_CSV).is_file()


def test_other_folder_is_refused(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"data already exists but is not a complete demo dataset .*delete it"):
        _write(tmp_path / "data")
    assert (tmp_path / "data" / "notes.txt").read_text() == "mine"


def test_other_config_is_refused(tmp_path):
    _write(tmp_path / "data", seed=0)
    with pytest.raises(ValueError, match=r"data holds a demo dataset made with different settings .*'seed': 1"):
        _write(tmp_path / "data", seed=1)


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    import cosmos_synth.sources.procedural as procedural

    def fail_on_third_episode(frames, path, **kwargs):
        if path.name == "episode_0002.mp4":
            raise OSError("disk full")
        return write_video(frames, path, **kwargs)

    monkeypatch.setattr(procedural, "write_video", fail_on_third_episode)
    with pytest.raises(OSError, match="disk full"):
        _write(tmp_path / "data")
    assert list(tmp_path.iterdir()) == []  # neither a half-written dataset nor the temporary folder
    monkeypatch.undo()
    assert (_write(tmp_path / "data") / MARKER).is_file()
