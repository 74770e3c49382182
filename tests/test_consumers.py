"""The exports read by their real consumers: lerobot 0.4.4's LeRobotDataset and robomimic 0.3.0's SequenceDataset.

Those libraries pin versions that cannot share .venv, so they live in .venv-consumers (`make consumers`; `make test`
builds it first) and run as subprocesses: tests/consumers/check_*.py load our files with the libraries' own
classes and hand back what they read (JSON on stdout, arrays in an .npz), and the assertions are made here.
These tests never skip: without .venv-consumers they fail and say how to build it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from cosmos_synth.export import Episode, write_groot_dataset, write_lerobot_dataset, write_robomimic_hdf5

pytestmark = pytest.mark.consumers  # the readers live in .venv-consumers (make consumers)

ROOT = Path(__file__).resolve().parents[1]
CONSUMERS_PYTHON = ROOT / ".venv-consumers" / "bin" / "python"
CHECKS = Path(__file__).parent / "consumers"
LENGTHS = (9, 13, 17)
PICK, OPEN = "The robot arm picks up the red cube.", "The robot arm opens the drawer."
TASKS = (PICK, OPEN, PICK)
HEIGHT, WIDTH, FPS, CAMERA = 64, 96, 16, "front"
ACTION_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
H264_TOLERANCE, AV1_TOLERANCE = 3.0, 6.0  # mean absolute pixel error of a decoded frame (crf 18 / crf 30)


def moving_square(num_frames: int, episode: int) -> np.ndarray:
    """A square that moves one step per frame, coloured by episode: every frame differs from its neighbours."""
    frames = np.full((num_frames, HEIGHT, WIDTH, 3), 40, dtype=np.uint8)
    for k in range(num_frames):
        frames[k, 16 + 2 * episode : 40 + 2 * episode, 4 * k : 4 * k + 24] = (230, 60 + 80 * episode, 30)
    return frames


def labelled_episodes() -> list[Episode]:
    rng = np.random.default_rng(7)
    return [
        Episode(
            sample_id=f"pair_{i:04d}",
            frames=moving_square(n, i),
            task=TASKS[i],
            actions=rng.uniform(-3, 3, (n, len(ACTION_NAMES))),
            states=rng.normal(size=(n, 5)),
            action_names=ACTION_NAMES,
        )
        for i, n in enumerate(LENGTHS)
    ]


@pytest.fixture(scope="module")
def consumers_python() -> Path:
    if not CONSUMERS_PYTHON.is_file():
        pytest.fail(
            f"{CONSUMERS_PYTHON} does not exist: the consumer checks need lerobot 0.4.4 and robomimic 0.3.0 "
            "in their own virtualenv. Run `make consumers` (make test does it first).",
            pytrace=False,
        )
    return CONSUMERS_PYTHON


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("consumers")
    episodes = labelled_episodes()
    common = {"fps": FPS, "camera": CAMERA, "robot_type": "gr1"}
    return {
        "lerobot": write_lerobot_dataset(episodes, folder / "lerobot", repo_id="cosmos-synth/h264", **common),
        "lerobot_av1": write_lerobot_dataset(
            episodes, folder / "lerobot_av1", repo_id="cosmos-synth/av1", codec="av1", **common
        ),
        "groot": write_groot_dataset(episodes, folder / "groot", action_groups={"arm": 6, "gripper": 1}, **common),
        "robomimic": write_robomimic_hdf5(
            episodes, folder / "demo.hdf5", camera=CAMERA, env_name="gr1", action_normalization="min_max"
        ),
    }


def run_consumer(python: Path, args: list[str], workdir: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(workdir / "hf"),
        "HF_LEROBOT_HOME": str(workdir / "hf" / "lerobot"),
        "HF_DATASETS_CACHE": str(workdir / "hf" / "datasets"),
        "WANDB_MODE": "disabled",
    }
    result = subprocess.run([str(python), *args], capture_output=True, text=True, env=env, cwd=workdir, timeout=900)
    assert result.returncode == 0, f"{' '.join(args[:2])} failed:\n{result.stderr[-4000:]}"
    return result


def run_check(python: Path, script: str, args: list[str], workdir: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Run tests/consumers/<script>; return its JSON report (its last stdout line) and the arrays it saved."""
    workdir.mkdir(parents=True, exist_ok=True)
    result = run_consumer(python, [str(CHECKS / script), *args, str(workdir)], workdir)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    arrays = {path.stem: dict(np.load(path)) for path in workdir.glob("*.npz")}
    return report, arrays


def assert_frames_match(decoded: np.ndarray, source: np.ndarray, tolerance: float) -> None:
    """Each decoded frame is within codec tolerance of its source frame, and nearer to it than to any other."""
    assert decoded.shape == source.shape and decoded.dtype == np.uint8
    distance = np.abs(decoded.astype(np.int16)[:, None] - source.astype(np.int16)[None]).mean(axis=(2, 3, 4))
    assert distance.diagonal().max() < tolerance, distance.diagonal().max()
    np.testing.assert_array_equal(distance.argmin(axis=1), np.arange(len(source)))


def assert_lerobot_items(report: dict, items: dict[str, np.ndarray], tolerance: float) -> None:
    episodes = labelled_episodes()
    assert report["lerobot"] == "0.4.4" and report["codebase_version"] == "v3.0"
    assert (report["num_episodes"], report["num_frames"], report["len"], report["fps"]) == (3, sum(LENGTHS), 39, FPS)
    assert report["video_keys"] == [f"observation.images.{CAMERA}"]
    assert report["tasks"] == [TASKS[e] for e, n in enumerate(LENGTHS) for _ in range(n)]
    assert report["meta_tasks"] == [PICK, OPEN]
    assert {"action", "observation.state", f"observation.images.{CAMERA}"} <= set(report["stats_keys"])
    np.testing.assert_array_equal(items["episode_index"], np.repeat(np.arange(3), LENGTHS))
    np.testing.assert_array_equal(items["frame_index"], np.concatenate([np.arange(n) for n in LENGTHS]))
    np.testing.assert_array_equal(items["index"], np.arange(sum(LENGTHS)))
    np.testing.assert_allclose(items["timestamp"], items["frame_index"] / FPS, atol=1e-6)
    np.testing.assert_array_equal(items["action"], np.concatenate([e.actions for e in episodes]))  # float32, exact
    np.testing.assert_array_equal(items["observation.state"], np.concatenate([e.states for e in episodes]))
    assert_frames_match(items["frames"], np.concatenate([e.frames for e in episodes]), tolerance)


# ------------------------------------------------------------------------------------------------- LeRobot v3.0


@pytest.mark.parametrize("backend", ["torchcodec", "pyav"])
def test_lerobot_dataset_reads_the_h264_export(consumers_python, exports, tmp_path, backend):
    report, arrays = run_check(
        consumers_python, "check_lerobot.py", ["v3", str(exports["lerobot"]), "cosmos-synth/h264", backend], tmp_path
    )
    assert report["backend"] == backend and report["codec"] == "h264"
    assert_lerobot_items(report, arrays["items"], H264_TOLERANCE)


def test_lerobot_dataset_reads_the_av1_export(consumers_python, exports, tmp_path):
    report, arrays = run_check(
        consumers_python,
        "check_lerobot.py",
        ["v3", str(exports["lerobot_av1"]), "cosmos-synth/av1", "torchcodec"],
        tmp_path,
    )
    assert report["codec"] == "av1"
    assert_lerobot_items(report, arrays["items"], AV1_TOLERANCE)


def test_groot_export_is_a_lerobot_v21_dataset(consumers_python, exports, tmp_path):
    """lerobot 0.4.4 refuses v2.1 as it is (it only reads v3.0) but its own v2.1 -> v3.0 converter takes the GR00T
    export, and the converted dataset reads back frame for frame."""
    report, arrays = run_check(
        consumers_python, "check_lerobot.py", ["v21", str(exports["groot"]), "local/groot", "torchcodec"], tmp_path
    )
    assert report["v21_direct_load"].startswith(
        "BackwardCompatibilityError: The dataset you requested (local/groot) is in 2.1 format"
    )
    assert "annotation.human.action.task_description" in report["features"]
    assert_lerobot_items(report, arrays["items"], H264_TOLERANCE)


# ------------------------------------------------------------------------------------------------- robomimic


def test_sequence_dataset_reads_the_filter_keys(consumers_python, exports, tmp_path):
    report, arrays = run_check(
        consumers_python, "check_robomimic.py", [str(exports["robomimic"]), f"{CAMERA}_image"], tmp_path
    )
    assert report["robomimic"] == "0.3.0"
    splits = report["splits"]
    assert splits["train"]["demos"] == ["demo_0", "demo_1"] and splits["valid"]["demos"] == ["demo_2"]
    assert [splits[s]["num_items"] for s in ("train", "valid", "all")] == [9 + 13, 17, 39]
    assert splits["all"]["processed_shape"] == [3, HEIGHT, WIDTH] and splits["all"]["processed_dtype"] == "float32"
    assert 0.0 <= splits["all"]["processed_range"][0] < splits["all"]["processed_range"][1] <= 1.0
    episodes = labelled_episodes()
    raw = np.concatenate([e.actions for e in episodes])
    low, high = raw.min(axis=0), raw.max(axis=0)
    with h5py.File(exports["robomimic"], "r") as f:
        stored = {name: f[f"data/{name}/actions"][()] for name in ("demo_0", "demo_1", "demo_2")}
    for split, demos in (("train", [0, 1]), ("valid", [2]), ("all", [0, 1, 2])):
        read = arrays[split]
        frames = np.concatenate([episodes[i].frames for i in demos])
        next_frames = np.concatenate([np.concatenate([episodes[i].frames[1:], episodes[i].frames[-1:]]) for i in demos])
        np.testing.assert_array_equal(read["obs"], frames)  # HDF5 holds raw frames: exact
        np.testing.assert_array_equal(read["next_obs"], next_frames)
        np.testing.assert_array_equal(read["actions"], np.concatenate([stored[f"demo_{i}"] for i in demos]))
        expected = 2 * (np.concatenate([episodes[i].actions for i in demos]) - low) / (high - low) - 1
        np.testing.assert_allclose(read["actions"], expected, atol=1e-6)  # the documented min-max to [-1, 1]
        np.testing.assert_array_equal(read["rewards"], np.zeros(len(frames)))
        np.testing.assert_array_equal(read["dones"], np.concatenate([[0] * (LENGTHS[i] - 1) + [1] for i in demos]))
    assert arrays["all"]["actions"].min() == -1.0 and arrays["all"]["actions"].max() == 1.0


def test_get_dataset_info_reads_the_file(consumers_python, exports, tmp_path):
    result = run_consumer(
        consumers_python, ["-m", "robomimic.scripts.get_dataset_info", "--dataset", str(exports["robomimic"])], tmp_path
    )
    lines = [line.strip() for line in result.stdout.splitlines()]
    for expected in (
        "total transitions: 39",
        "total trajectories: 3",
        "traj length min: 9",
        "traj length max: 17",
        "action min: -1.0",
        "action max: 1.0",
        "filter key train with 2 demos",
        "filter key valid with 1 demos",
        "key: actions with shape (9, 7)",
        "key: states with shape (9, 5)",
    ):
        assert expected in lines, (expected, result.stdout)
