"""The exports read, and trained on, by their real consumers: lerobot 0.4.4 (LeRobotDataset, `lerobot-train`) and
robomimic 0.3.0 (SequenceDataset, its BC training script).

The episodes are generated ones as the label stage leaves them (an mp4 per episode, a .npz of its IDM action and
state labels, a manifest row naming both), exported by export_episodes, so the exports carry observation.state.
Those libraries pin versions that cannot share .venv, so they live in .venv-consumers (`make consumers`; `make test`
builds it first) and run as subprocesses: tests/consumers/check_*.py load our files with the libraries' own
classes and hand back what they read (JSON on stdout, arrays in an .npz), and the assertions are made here; the
trainers run for a few steps on CPU with tiny networks.
These tests never skip: without .venv-consumers they fail and say how to build it.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from cosmos_synth.config import ExportConfig
from cosmos_synth.export import Episode, export_episodes
from cosmos_synth.video import read_video, write_video

pytestmark = pytest.mark.consumers  # the readers live in .venv-consumers (make consumers)

ROOT = Path(__file__).resolve().parents[1]
CONSUMERS_PYTHON = ROOT / ".venv-consumers" / "bin" / "python"
CHECKS = Path(__file__).parent / "consumers"
LENGTHS = (9, 13, 17)
PICK, OPEN = "The robot arm picks up the red cube.", "The robot arm opens the drawer."
TASKS = (PICK, OPEN, PICK)
HEIGHT, WIDTH, FPS, CAMERA = 64, 96, 16, "front"
ACTION_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
STATE_NAMES = ("gripper_x", "gripper_y", "gripper_opening", "object_x", "object_y")
STATE_GROUPS = {"gripper": 3, "object": 2}  # the demo recipe's GR00T state groups
H264_TOLERANCE, AV1_TOLERANCE = 3.0, 6.0  # mean absolute pixel error of a decoded frame (crf 18 / crf 30)


def moving_square(num_frames: int, episode: int) -> np.ndarray:
    """A square that moves one step per frame, coloured by episode: every frame differs from its neighbours."""
    frames = np.full((num_frames, HEIGHT, WIDTH, 3), 40, dtype=np.uint8)
    for k in range(num_frames):
        frames[k, 16 + 2 * episode : 40 + 2 * episode, 4 * k : 4 * k + 24] = (230, 60 + 80 * episode, 30)
    return frames


def write_label_manifest(folder: Path) -> tuple[Path, list[Episode]]:
    """Three generated, labelled episodes as the label stage leaves them; returned with the episodes as the export
    reads them (frames decoded from the mp4s)."""
    rng = np.random.default_rng(7)
    rows, episodes = [], []
    for i, n in enumerate(LENGTHS):
        sample_id = f"pair_{i:04d}"
        video = write_video(moving_square(n, i), folder / "videos" / f"{sample_id}.mp4", fps=FPS)
        labels = folder / "actions" / f"{sample_id}.npz"
        labels.parent.mkdir(exist_ok=True)
        actions, states = rng.uniform(-3, 3, (n, len(ACTION_NAMES))), rng.normal(size=(n, len(STATE_NAMES)))
        np.savez(labels, action=actions.astype(np.float32), state=states.astype(np.float32))
        rows.append(
            {
                "sample_id": sample_id,
                "prompt": TASKS[i],
                "video": str(video),
                "num_frames": n,
                "fps": FPS,
                "actions": str(labels),
                "action_names": list(ACTION_NAMES),
                "state_names": list(STATE_NAMES),
            }
        )
        episodes.append(
            Episode(sample_id=sample_id, frames=read_video(video)[0], task=TASKS[i], actions=actions, states=states)
        )
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return manifest, episodes


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
def labelled(tmp_path_factory) -> tuple[Path, list[Episode]]:
    return write_label_manifest(tmp_path_factory.mktemp("label"))


@pytest.fixture(scope="module")
def episodes(labelled) -> list[Episode]:
    return labelled[1]


@pytest.fixture(scope="module")
def exports(labelled, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("consumers")
    common = {
        "manifest": labelled[0],
        "fps": FPS,
        "camera": CAMERA,
        "robot_type": "gr1",
        "groot_state_groups": STATE_GROUPS,
        "groot_action_groups": {"arm": 6, "gripper": 1},
    }
    h264 = export_episodes(ExportConfig(out_dir=folder / "h264", repo_id="cosmos-synth/h264", **common))
    av1 = export_episodes(
        ExportConfig(out_dir=folder / "av1", repo_id="cosmos-synth/av1", lerobot_codec="av1", **common)
    )
    return {
        "lerobot": h264.lerobot_dir,
        "lerobot_av1": av1.lerobot_dir,
        "groot": h264.groot_dir,
        "robomimic": h264.hdf5_path,
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


def assert_lerobot_items(report: dict, items: dict[str, np.ndarray], episodes: list[Episode], tolerance: float) -> None:
    assert report["lerobot"] == "0.4.4" and report["codebase_version"] == "v3.0"
    assert (report["num_episodes"], report["num_frames"], report["len"], report["fps"]) == (3, sum(LENGTHS), 39, FPS)
    assert report["video_keys"] == [f"observation.images.{CAMERA}"]
    assert report["tasks"] == [TASKS[e] for e, n in enumerate(LENGTHS) for _ in range(n)]
    assert report["meta_tasks"] == [PICK, OPEN]
    assert {"action", "observation.state", f"observation.images.{CAMERA}"} <= set(report["stats_keys"])
    assert report["state_names"] == list(STATE_NAMES) and report["action_names"] == list(ACTION_NAMES)
    np.testing.assert_array_equal(items["episode_index"], np.repeat(np.arange(3), LENGTHS))
    np.testing.assert_array_equal(items["frame_index"], np.concatenate([np.arange(n) for n in LENGTHS]))
    np.testing.assert_array_equal(items["index"], np.arange(sum(LENGTHS)))
    np.testing.assert_allclose(items["timestamp"], items["frame_index"] / FPS, atol=1e-6)
    np.testing.assert_array_equal(items["action"], np.concatenate([e.actions for e in episodes]))  # float32, exact
    np.testing.assert_array_equal(items["observation.state"], np.concatenate([e.states for e in episodes]))  # exact
    assert_frames_match(items["frames"], np.concatenate([e.frames for e in episodes]), tolerance)


# ------------------------------------------------------------------------------------------------- LeRobot v3.0


@pytest.mark.parametrize("backend", ["torchcodec", "pyav"])
def test_lerobot_dataset_reads_the_h264_export(consumers_python, exports, episodes, tmp_path, backend):
    report, arrays = run_check(
        consumers_python, "check_lerobot.py", ["v3", str(exports["lerobot"]), "cosmos-synth/h264", backend], tmp_path
    )
    assert report["backend"] == backend and report["codec"] == "h264"
    assert_lerobot_items(report, arrays["items"], episodes, H264_TOLERANCE)


def test_lerobot_dataset_reads_the_av1_export(consumers_python, exports, episodes, tmp_path):
    report, arrays = run_check(
        consumers_python,
        "check_lerobot.py",
        ["v3", str(exports["lerobot_av1"]), "cosmos-synth/av1", "torchcodec"],
        tmp_path,
    )
    assert report["codec"] == "av1"
    assert_lerobot_items(report, arrays["items"], episodes, AV1_TOLERANCE)


def test_groot_export_is_a_lerobot_v21_dataset(consumers_python, exports, episodes, tmp_path):
    """lerobot 0.4.4 refuses v2.1 as it is (it only reads v3.0) but its own v2.1 -> v3.0 converter takes the GR00T
    export, and the converted dataset reads back frame for frame, observation.state included. (tests/test_groot.py
    reads the same kind of export step by step as GR00T's loaders do, state groups included.)"""
    report, arrays = run_check(
        consumers_python, "check_lerobot.py", ["v21", str(exports["groot"]), "local/groot", "torchcodec"], tmp_path
    )
    assert report["v21_direct_load"].startswith(
        "BackwardCompatibilityError: The dataset you requested (local/groot) is in 2.1 format"
    )
    assert "annotation.human.action.task_description" in report["features"]
    assert_lerobot_items(report, arrays["items"], episodes, H264_TOLERANCE)
    modality = json.loads((exports["groot"] / "meta" / "modality.json").read_text())
    assert modality["state"] == {"gripper": {"start": 0, "end": 3}, "object": {"start": 3, "end": 5}}


# ------------------------------------------------------------------------------------------------- robomimic


def test_sequence_dataset_reads_the_filter_keys(consumers_python, exports, episodes, tmp_path):
    report, arrays = run_check(
        consumers_python, "check_robomimic.py", [str(exports["robomimic"]), f"{CAMERA}_image"], tmp_path
    )
    assert report["robomimic"] == "0.3.0" and report["low_dim"] == ["state"]
    splits = report["splits"]
    assert splits["train"]["demos"] == ["demo_0", "demo_1"] and splits["valid"]["demos"] == ["demo_2"]
    assert [splits[s]["num_items"] for s in ("train", "valid", "all")] == [9 + 13, 17, 39]
    assert splits["all"]["processed_shape"] == [3, HEIGHT, WIDTH] and splits["all"]["processed_dtype"] == "float32"
    assert 0.0 <= splits["all"]["processed_range"][0] < splits["all"]["processed_range"][1] <= 1.0
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
        states = [episodes[i].states for i in demos]  # the low-dim obs, in the labels' units: exact
        np.testing.assert_array_equal(read["state"], np.concatenate(states))
        np.testing.assert_array_equal(read["next_state"], np.concatenate([np.r_[s[1:], s[-1:]] for s in states]))
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
        "observation key front_image with shape (9, 64, 96, 3)",
        "observation key state with shape (9, 5)",
    ):
        assert expected in lines, (expected, result.stdout)


# ------------------------------------------------------------------------------------------------- training


def test_lerobot_train_act_trains_on_the_lerobot_export(consumers_python, exports, tmp_path):
    """lerobot's own trainer, `lerobot-train --policy.type=act`, on the export: a tiny ACT (no pretrained backbone,
    no VAE) for 3 steps on CPU; the checkpoint it saves says what it trained on: observation.state and the camera in,
    the action out."""
    tiny_act = [
        "--policy.type=act",
        "--policy.device=cpu",
        "--policy.push_to_hub=false",
        "--policy.pretrained_backbone_weights=null",  # offline: no ImageNet download
        "--policy.dim_model=32",
        "--policy.n_heads=2",
        "--policy.dim_feedforward=64",
        "--policy.n_encoder_layers=1",
        "--policy.n_decoder_layers=1",
        "--policy.use_vae=false",
        "--policy.chunk_size=4",
        "--policy.n_action_steps=4",
    ]
    out = tmp_path / "act"
    result = run_consumer(
        consumers_python.parent / "lerobot-train",
        [
            "--dataset.repo_id=cosmos-synth/h264",
            f"--dataset.root={exports['lerobot']}",
            *tiny_act,
            "--steps=3",
            "--batch_size=2",
            "--num_workers=0",
            "--log_freq=1",
            "--save_freq=3",
            "--eval_freq=0",
            "--wandb.enable=false",
            f"--output_dir={out}",
        ],
        tmp_path,
    )
    output = result.stdout + result.stderr
    assert "dataset.num_frames=39" in output and "dataset.num_episodes=3" in output
    losses = [float(loss) for loss in re.findall(r"step:\d+ .*?loss:([0-9.e+-]+)", output)]
    assert len(losses) == 3 and all(math.isfinite(loss) and loss > 0 for loss in losses), output[-2000:]
    policy = json.loads((out / "checkpoints/000003/pretrained_model/config.json").read_text())
    assert policy["input_features"] == {
        "observation.state": {"type": "STATE", "shape": [len(STATE_NAMES)]},
        f"observation.images.{CAMERA}": {"type": "VISUAL", "shape": [3, HEIGHT, WIDTH]},
    }
    assert policy["output_features"] == {"action": {"type": "ACTION", "shape": [len(ACTION_NAMES)]}}


def test_robomimic_bc_trains_on_the_hdf5_export(consumers_python, exports, tmp_path):
    """robomimic's own training script, BC on the `train` filter key with the low-dim `state` and the camera image
    as observations: 3 gradient steps on CPU with a small conv encoder, no rollouts, no checkpoints."""
    config = {
        "algo_name": "bc",
        "experiment": {
            "name": "cosmos_synth_bc",
            "validate": False,
            "epoch_every_n_steps": 3,
            "render_video": False,
            "logging": {"terminal_output_to_txt": False, "log_tb": False, "log_wandb": False},
            "save": {"enabled": False},
            "rollout": {"enabled": False},  # no simulator stands behind the export
        },
        "train": {
            "data": str(exports["robomimic"]),
            "output_dir": str(tmp_path / "bc"),
            "hdf5_cache_mode": "low_dim",
            "hdf5_filter_key": "train",
            "batch_size": 4,
            "num_epochs": 1,
            "cuda": False,
        },
        "algo": {"actor_layer_dims": [32, 32]},
        "observation": {
            "modalities": {"obs": {"low_dim": ["state"], "rgb": [f"{CAMERA}_image"]}},
            "encoder": {"rgb": {"core_kwargs": {"backbone_class": "ShallowConv", "feature_dimension": 16}}},
        },
    }
    path = tmp_path / "bc.json"
    path.write_text(json.dumps(config))
    result = run_consumer(consumers_python, ["-m", "robomimic.scripts.train", "--config", str(path)], tmp_path)
    assert "finished run successfully!" in result.stdout, result.stdout[-4000:]  # the script exits 0 either way
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert {"obs key state with shape (5,)", f"obs key {CAMERA}_image with shape (64, 96, 3)"} <= set(lines)
    epoch = result.stdout.split("Train Epoch 1\n", 1)[1]
    log = json.loads(epoch[: epoch.index("}") + 1])
    assert math.isfinite(log["Loss"]) and log["Loss"] > 0 and log["Policy_Grad_Norms"] > 0
