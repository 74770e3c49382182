"""Export stage contract tests: build a real export in tmp_path and read it back with h5py, pyarrow and PyAV."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import av
import h5py
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import cosmos_synth.export
from cosmos_synth.config import ExportConfig
from cosmos_synth.export import Episode, export_episodes, iter_episodes, write_lerobot_dataset, write_robomimic_hdf5
from cosmos_synth.export.robomimic import split_demos
from cosmos_synth.export.stats import FeatureStats
from cosmos_synth.video import write_video

LENGTHS = (9, 13, 17)
PICK, OPEN = "The robot arm picks up the red cube.", "The robot arm opens the drawer."
TASKS = (PICK, OPEN, PICK)
HEIGHT, WIDTH, FPS = 64, 96, 16
KEY = "observation.images.front"


def moving_square(num_frames: int, episode: int) -> np.ndarray:
    """A square that moves one step per frame, coloured by episode: every frame differs from its neighbours."""
    frames = np.full((num_frames, HEIGHT, WIDTH, 3), 40, dtype=np.uint8)
    for k in range(num_frames):
        x = 4 * k
        frames[k, 16 + 2 * episode : 40 + 2 * episode, x : x + 24] = (230, 60 + 80 * episode, 30)
    return frames


def make_manifest(folder: Path, lengths=LENGTHS, *, missing: str | None = None) -> Path:
    """A generate-style manifest: the first video by absolute path, the others relative to the manifest."""
    rows = []
    for i, num_frames in enumerate(lengths):
        name = f"videos/pair_{i:04d}.mp4"
        write_video(moving_square(num_frames, i), folder / name, fps=FPS)
        rows.append(
            {
                "sample_id": f"pair_{i:04d}",
                "seed": i,
                "prompt": TASKS[i % len(TASKS)],
                "image": str(folder / f"pair_{i:04d}.png"),
                "video": str(folder / name) if i == 0 else name,
                "adapter": None,
                "model": "tiny",
                "num_frames": num_frames,
                "height": HEIGHT,
                "width": WIDTH,
                "fps": FPS,
            }
        )
    if missing:
        rows.append({**rows[-1], "sample_id": "pair_missing", "video": missing})
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return manifest


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    cfg = ExportConfig(manifest=make_manifest(folder / "generate"), out_dir=folder / "out", fps=FPS)
    return cfg, export_episodes(cfg)


def decode_with_times(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with av.open(str(path)) as container:
        frames = [(frame.time, frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]
    return np.array([t for t, _ in frames]), np.stack([f for _, f in frames])


def hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


# ------------------------------------------------------------------------------------------------- the stage result


def test_result_paths_and_config(exported):
    cfg, result = exported
    assert result.hdf5_path == cfg.out_dir / "robomimic" / "demo.hdf5" and result.hdf5_path.is_file()
    assert result.lerobot_dir == cfg.out_dir / "lerobot" and result.lerobot_dir.is_dir()
    assert (result.num_episodes, result.num_frames) == (3, sum(LENGTHS))
    assert [row["format"] for row in result.summary_rows()] == ["robomimic", "lerobot"]
    assert all(row["episodes"] == 3 and row["frames"] == sum(LENGTHS) for row in result.summary_rows())
    assert json.loads((cfg.out_dir / "export_config.json").read_text())["repo_id"] == cfg.repo_id
    assert hidden_leftovers(cfg.out_dir) == []


def test_iter_episodes_resolves_relative_and_absolute_paths(exported):
    cfg, _ = exported
    episodes = list(iter_episodes(cfg.manifest))
    assert [e.num_frames for e in episodes] == list(LENGTHS)
    assert [e.task for e in episodes] == list(TASKS) and {e.source for e in episodes} == {"generated"}


# ------------------------------------------------------------------------------------------------- robomimic


def test_robomimic_structure(exported):
    _, result = exported
    with h5py.File(result.hdf5_path, "r") as f:
        data = f["data"]
        assert int(data.attrs["total"]) == sum(LENGTHS)
        env_args = json.loads(data.attrs["env_args"])
        assert {"env_name", "env_type", "env_kwargs"} <= set(env_args) and env_args["env_name"] == "demo"
        assert sorted(data.keys()) == ["demo_0", "demo_1", "demo_2"]
        for i, n in enumerate(LENGTHS):
            demo = data[f"demo_{i}"]
            assert int(demo.attrs["num_samples"]) == n
            assert (demo.attrs["sample_id"], demo.attrs["task"], demo.attrs["source"]) == (
                f"pair_{i:04d}",
                TASKS[i],
                "generated",
            )
            obs, next_obs = demo["obs/front_image"], demo["next_obs/front_image"]
            assert obs.dtype == np.uint8 and obs.shape == (n, HEIGHT, WIDTH, 3) and next_obs.shape == obs.shape
            np.testing.assert_array_equal(next_obs[: n - 1], obs[1:])
            np.testing.assert_array_equal(next_obs[n - 1], obs[n - 1])
            assert demo["rewards"].shape == (n,) and demo["rewards"].dtype.kind == "f" and not demo["rewards"][()].any()
            assert demo["dones"].dtype.kind == "i" and demo["dones"][()].tolist() == [0] * (n - 1) + [1]
            assert "actions" not in demo and "states" not in demo  # nothing invented before the label stage
        assert [n.decode() for n in f["mask/train"][()]] == ["demo_0", "demo_1"]
        assert [n.decode() for n in f["mask/valid"][()]] == ["demo_2"]


def test_robomimic_obs_are_the_decoded_videos(exported):
    cfg, result = exported
    with h5py.File(result.hdf5_path, "r") as f:
        for i, episode in enumerate(iter_episodes(cfg.manifest)):
            np.testing.assert_array_equal(f[f"data/demo_{i}/obs/front_image"][()], episode.frames)


def test_split_demos():
    names = [f"demo_{i}" for i in range(25)]
    assert split_demos(names)["valid"] == ["demo_9", "demo_19"]
    assert len(split_demos(names)["train"]) == 23
    assert split_demos(names[:3]) == {"train": names[:2], "valid": ["demo_2"]}
    assert split_demos(names[:1]) == {"train": ["demo_0"], "valid": ["demo_0"]}


# ------------------------------------------------------------------------------------------------- LeRobot v3.0


def test_lerobot_info(exported):
    cfg, result = exported
    info = json.loads((result.lerobot_dir / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS and info["robot_type"] == cfg.robot_type
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, sum(LENGTHS), 2)
    assert info["chunks_size"] == 1000 and info["splits"] == {"train": "0:3"}
    assert info["data_files_size_in_mb"] > 0 and info["video_files_size_in_mb"] > 0
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    features = info["features"]
    assert set(features) == {KEY, "timestamp", "frame_index", "episode_index", "index", "task_index"}
    video = features[KEY]
    assert video["dtype"] == "video" and video["shape"] == [HEIGHT, WIDTH, 3]
    assert video["names"] == ["height", "width", "channels"]
    assert video["info"]["video.codec"] == "h264" and video["info"]["video.pix_fmt"] == "yuv420p"
    assert video["info"]["video.fps"] == FPS
    assert features["timestamp"] == {"dtype": "float32", "shape": [1], "names": None}
    assert all(features[k]["dtype"] == "int64" for k in ("frame_index", "episode_index", "index", "task_index"))


def test_lerobot_frames_parquet(exported):
    _, result = exported
    table = pq.read_table(result.lerobot_dir / "data/chunk-000/file-000.parquet")
    assert table.num_rows == sum(LENGTHS)
    assert str(table.schema.field("timestamp").type) == "float"
    frames = table.to_pandas()
    np.testing.assert_array_equal(frames["index"], np.arange(sum(LENGTHS)))
    np.testing.assert_array_equal(frames["episode_index"], np.repeat(np.arange(3), LENGTHS))
    np.testing.assert_array_equal(frames["frame_index"], np.concatenate([np.arange(n) for n in LENGTHS]))
    np.testing.assert_allclose(frames["timestamp"], frames["frame_index"] / FPS, atol=1e-6)
    tasks = pd.read_parquet(result.lerobot_dir / "meta/tasks.parquet")
    expected = [tasks.loc[TASKS[e], "task_index"] for e in frames["episode_index"]]
    np.testing.assert_array_equal(frames["task_index"], expected)


def test_lerobot_tasks_indexed_by_task_string(exported):
    _, result = exported
    tasks = pd.read_parquet(result.lerobot_dir / "meta/tasks.parquet")
    assert list(tasks.columns) == ["task_index"]
    assert list(tasks.index) == [TASKS[0], TASKS[1]] and tasks["task_index"].tolist() == [0, 1]
    assert int(tasks.loc[TASKS[1]].task_index) == 1


def test_lerobot_episodes_parquet(exported):
    _, result = exported
    episodes = pd.read_parquet(result.lerobot_dir / "meta/episodes/chunk-000/file-000.parquet")
    ends = np.cumsum(LENGTHS)
    starts = ends - np.array(LENGTHS)
    assert episodes["episode_index"].tolist() == [0, 1, 2] and episodes["length"].tolist() == list(LENGTHS)
    assert [list(t) for t in episodes["tasks"]] == [[t] for t in TASKS]
    np.testing.assert_array_equal(episodes["dataset_from_index"], starts)
    np.testing.assert_array_equal(episodes["dataset_to_index"], ends)
    np.testing.assert_allclose(episodes[f"videos/{KEY}/from_timestamp"], starts / FPS)
    np.testing.assert_allclose(episodes[f"videos/{KEY}/to_timestamp"], ends / FPS)
    for column in ("data/chunk_index", "data/file_index", f"videos/{KEY}/chunk_index", f"videos/{KEY}/file_index"):
        assert episodes[column].tolist() == [0, 0, 0]
    assert episodes["source"].tolist() == ["generated"] * 3
    assert episodes["sample_id"].tolist() == ["pair_0000", "pair_0001", "pair_0002"]
    assert episodes["stats/frame_index/max"].map(lambda v: v[0]).tolist() == [n - 1 for n in LENGTHS]
    table = pq.read_table(result.lerobot_dir / "meta/episodes/chunk-000/file-000.parquet")
    assert np.asarray(table.column(f"stats/{KEY}/mean").to_pylist()[0]).shape == (3, 1, 1)


def test_lerobot_video_frames_match_robomimic_obs(exported):
    """Both formats hold the same episodes frame for frame: the mp4 read at from_timestamp + timestamp."""
    _, result = exported
    times, video = decode_with_times(result.lerobot_dir / f"videos/{KEY}/chunk-000/file-000.mp4")
    assert len(video) == sum(LENGTHS)
    frames = pd.read_parquet(result.lerobot_dir / "data/chunk-000/file-000.parquet")
    episodes = pd.read_parquet(result.lerobot_dir / "meta/episodes/chunk-000/file-000.parquet")
    with h5py.File(result.hdf5_path, "r") as f:
        for row in frames.itertuples():
            query = episodes[f"videos/{KEY}/from_timestamp"][row.episode_index] + row.timestamp
            nearest = int(np.abs(times - query).argmin())
            assert abs(times[nearest] - query) < 1e-4  # lerobot's tolerance is 1/fps - 1e-4; we are exact
            expected = f[f"data/demo_{row.episode_index}/obs/front_image"][row.frame_index]
            assert np.abs(video[nearest].astype(int) - expected).mean() < 3, (row.episode_index, row.frame_index)


def test_lerobot_stats(exported):
    _, result = exported
    stats = json.loads((result.lerobot_dir / "meta/stats.json").read_text())
    keys = {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
    assert set(stats) == {KEY, "timestamp", "frame_index", "episode_index", "index", "task_index"}
    assert all(set(values) == keys for values in stats.values())
    image = {k: np.asarray(v) for k, v in stats[KEY].items()}
    assert all(image[k].shape == (3, 1, 1) for k in keys - {"count"}) and image["count"].tolist() == [sum(LENGTHS)]
    assert 0 <= image["min"].min() <= image["mean"].min() and image["max"].max() <= 1
    index = np.arange(sum(LENGTHS))
    assert stats["index"]["min"] == [0] and stats["index"]["max"] == [index[-1]] and stats["index"]["count"] == [39]
    np.testing.assert_allclose(stats["index"]["mean"], [index.mean()])
    np.testing.assert_allclose(stats["index"]["std"], [index.std()])
    np.testing.assert_allclose(stats["index"]["q50"], [np.quantile(index, 0.5)])


# ------------------------------------------------------------------------------------------------- atomicity, errors


def test_rerun_replaces_the_export(tmp_path):
    cfg = ExportConfig(manifest=make_manifest(tmp_path / "a"), out_dir=tmp_path / "out")
    export_episodes(cfg)
    smaller = ExportConfig(manifest=make_manifest(tmp_path / "b", lengths=(5, 9)), out_dir=tmp_path / "out")
    result = export_episodes(smaller)
    assert (result.num_episodes, result.num_frames) == (2, 14)
    with h5py.File(result.hdf5_path, "r") as f:
        assert sorted(f["data"].keys()) == ["demo_0", "demo_1"] and int(f["data"].attrs["total"]) == 14
    assert json.loads((result.lerobot_dir / "meta/info.json").read_text())["total_frames"] == 14
    assert pq.read_table(result.lerobot_dir / "data/chunk-000/file-000.parquet").num_rows == 14
    assert hidden_leftovers(tmp_path / "out") == [] and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "export_config.json",
        "lerobot",
        "robomimic",
    ]


def test_missing_video_names_the_file_and_writes_nothing(tmp_path):
    manifest = make_manifest(tmp_path / "gen", missing="videos/pair_9999.mp4")
    with pytest.raises(ValueError, match=r"pair_9999\.mp4.*does not exist"):
        export_episodes(ExportConfig(manifest=manifest, out_dir=tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # validated before any work started


def test_frame_count_mismatch_is_an_error(tmp_path):
    manifest = make_manifest(tmp_path / "gen")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[1]["num_frames"] = 99
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(ValueError, match=r"pair_0001\.mp4 has 13 frames; the manifest says 99"):
        export_episodes(ExportConfig(manifest=manifest, out_dir=tmp_path / "out"))
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []  # temporary files are gone too


# ------------------------------------------------------------------------------------------------- actions and states


def labelled_episodes(num_actions: int = 7, num_states: int = 5) -> list[Episode]:
    rng = np.random.default_rng(0)
    return [
        Episode(
            sample_id=f"real_{i}",
            frames=moving_square(n, i),
            task=TASKS[i],
            source="real",
            actions=rng.uniform(-1, 1, (n, num_actions)),
            states=rng.normal(size=(n, num_states)),
        )
        for i, n in enumerate((5, 9))
    ]


def test_writers_write_actions_and_states(tmp_path):
    episodes = labelled_episodes()
    path = write_robomimic_hdf5(episodes, tmp_path / "labelled.hdf5", camera="wrist", env_name="gr1")
    with h5py.File(path, "r") as f:
        for i, episode in enumerate(episodes):
            demo = f[f"data/demo_{i}"]
            assert demo["actions"].dtype == np.float32 and demo["states"].shape == (episode.num_frames, 5)
            np.testing.assert_allclose(demo["actions"][()], episode.actions)
            np.testing.assert_allclose(demo["states"][()], episode.states)
            assert demo["obs/wrist_image"].shape == episode.frames.shape and demo.attrs["source"] == "real"
            # the low-dim observation robomimic's policies read, and its next_obs one frame on (the last repeated)
            assert demo["obs/state"].dtype == np.float32
            np.testing.assert_allclose(demo["obs/state"][()], episode.states, rtol=1e-6)
            np.testing.assert_array_equal(demo["next_obs/state"][:-1], demo["obs/state"][1:])
            np.testing.assert_array_equal(demo["next_obs/state"][-1], demo["obs/state"][-1])
    root = write_lerobot_dataset(
        episodes, tmp_path / "lerobot", repo_id="me/labelled", fps=10, camera="wrist", robot_type="gr1"
    )
    features = json.loads((root / "meta/info.json").read_text())["features"]
    assert features["action"]["dtype"] == "float32" and features["action"]["shape"] == [7]
    assert features["observation.state"]["shape"] == [5] and len(features["action"]["names"]) == 7
    frames = pq.read_table(root / "data/chunk-000/file-000.parquet").to_pandas()
    np.testing.assert_allclose(np.stack(frames["action"]), np.concatenate([e.actions for e in episodes]), rtol=1e-6)
    np.testing.assert_allclose(
        np.stack(frames["observation.state"]), np.concatenate([e.states for e in episodes]), rtol=1e-6
    )
    stats = json.loads((root / "meta/stats.json").read_text())
    all_actions = np.concatenate([e.actions for e in episodes])
    np.testing.assert_allclose(stats["action"]["mean"], all_actions.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(stats["action"]["min"], all_actions.min(axis=0), rtol=1e-5)
    assert pd.read_parquet(root / "meta/episodes/chunk-000/file-000.parquet")["source"].tolist() == ["real"] * 2


def test_writers_reject_partly_labelled_episodes(tmp_path):
    labelled = labelled_episodes()[0]
    bare = Episode(sample_id="bare", frames=moving_square(5, 1), task="t")
    with pytest.raises(ValueError, match="label all episodes or none"):
        write_robomimic_hdf5([labelled, bare], tmp_path / "x.hdf5", camera="front", env_name="x")
    with pytest.raises(ValueError, match="label all episodes or none"):
        write_lerobot_dataset(
            [labelled, bare], tmp_path / "lerobot", repo_id="a/b", fps=16, camera="front", robot_type="x"
        )
    assert list(tmp_path.iterdir()) == []


def test_episode_validates_its_arrays():
    with pytest.raises(ValueError, match=r"actions must be \(5, dim\)"):
        Episode(sample_id="e", frames=moving_square(5, 0), task="t", actions=np.zeros((4, 7)))
    with pytest.raises(ValueError, match="uint8"):
        Episode(sample_id="e", frames=np.zeros((5, 8, 8, 3)), task="t")
    with pytest.raises(ValueError, match=r"Episode e: 1 state_names for 2 columns; give one name per column"):
        Episode(sample_id="e", frames=moving_square(5, 0), task="t", states=np.zeros((5, 2)), state_names=("x",))
    with pytest.raises(ValueError, match=r"Episode e: 2 state_names for None columns"):
        Episode(sample_id="e", frames=moving_square(5, 0), task="t", state_names=("x", "y"))


# ------------------------------------------------------------------------------------------------- statistics


def test_feature_stats_merge_exactly_and_sample_quantiles():
    rng = np.random.default_rng(1)
    parts = [rng.normal(loc=i, size=(n, 2)) for i, n in enumerate((3000, 50_000, 80_000))]
    running = FeatureStats(is_image=False, capacity=20_000)
    for part in parts:
        running.add(part)
    stats, everything = running.result(), np.concatenate(parts)
    np.testing.assert_allclose(stats["mean"], everything.mean(axis=0))
    np.testing.assert_allclose(stats["std"], everything.std(axis=0))
    np.testing.assert_array_equal(stats["min"], everything.min(axis=0))
    assert stats["count"].tolist() == [len(everything)]
    np.testing.assert_allclose(stats["q50"], np.quantile(everything, 0.5, axis=0), atol=0.05)
    np.testing.assert_allclose(stats["q90"], np.quantile(everything, 0.9, axis=0), atol=0.05)


def test_export_package_hygiene():
    """The library never imports prefect, never prints, never reads os.environ."""
    for path in Path(cosmos_synth.export.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.split(".")[0] == "prefect" for n in names), path
            assert not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"), path
            assert not (isinstance(node, ast.Attribute) and node.attr == "environ"), path
