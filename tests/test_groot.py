"""GR00T-flavour export: build it in tmp_path and read it back the way Isaac-GR00T's loaders do.

Isaac-GR00T is not installable here (not on PyPI), so `read_like_gr00t` follows its loaders' lookups step by step
(gr00t/data/dataset.py LeRobotSingleDataset and gr00t/data/dataset/lerobot_episode_loader.py): modality.json
slices of the `observation.state` / `action` columns, the video through `original_key` in info.json and the
path templates, the annotation column as an index into tasks.jsonl, stats.json entries with max/min/mean/std/q01/q99.
tests/test_consumers.py also converts this export with lerobot 0.4.4's own v2.1 -> v3.0 converter and reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import cosmos_synth.export.groot as groot
from cosmos_synth.config import ExportConfig
from cosmos_synth.export import Episode, export_episodes, write_groot_dataset, write_lerobot_dataset
from cosmos_synth.video import write_video

LENGTHS = (9, 13, 17)
PICK, OPEN = "The robot arm picks up the red cube.", "The robot arm opens the drawer."
TASKS = (PICK, OPEN, PICK)
HEIGHT, WIDTH, FPS = 64, 96, 16
KEY = "observation.images.front"
GROUPS = {"arm": 6, "gripper": 1}
STATE_GROUPS = {"left": 2, "right": 3}
ANNOTATION = "annotation.human.action.task_description"


def moving_square(num_frames: int, episode: int) -> np.ndarray:
    frames = np.full((num_frames, HEIGHT, WIDTH, 3), 40, dtype=np.uint8)
    for k in range(num_frames):
        frames[k, 16 + 2 * episode : 40 + 2 * episode, 4 * k : 4 * k + 24] = (230, 60 + 80 * episode, 30)
    return frames


def episodes(*, states: bool = True, lengths=LENGTHS) -> list[Episode]:
    rng = np.random.default_rng(3)
    return [
        Episode(
            sample_id=f"pair_{i:04d}",
            frames=moving_square(n, i),
            task=TASKS[i % 3],
            actions=rng.uniform(-2, 2, (n, 7)),
            states=rng.normal(size=(n, 5)) if states else None,
        )
        for i, n in enumerate(lengths)
    ]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("groot") / "groot"
    source = episodes()
    write_groot_dataset(
        source, root, fps=FPS, camera="front", robot_type="gr1", action_groups=GROUPS, state_groups=STATE_GROUPS
    )
    return root, source


def read_json(path: Path):
    return json.loads(path.read_text())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def read_like_gr00t(root: Path) -> list[dict[str, object]]:
    """Every episode as GR00T's loaders assemble it: {"state.<group>", "action.<group>", "video.<key>", "language"}."""
    info, modality = read_json(root / "meta/info.json"), read_json(root / "meta/modality.json")
    tasks = {row["task_index"]: row["task"] for row in read_jsonl(root / "meta/tasks.jsonl")}
    loaded = []
    for episode in read_jsonl(root / "meta/episodes.jsonl"):
        index, chunk = episode["episode_index"], episode["episode_index"] // info["chunks_size"]
        frame = pd.read_parquet(root / info["data_path"].format(episode_chunk=chunk, episode_index=index))
        item: dict[str, object] = {}
        for name, default in (("state", "observation.state"), ("action", "action")):
            for group, meta in modality[name].items():
                column = np.stack(frame[meta.get("original_key", default)])
                item[f"{name}.{group}"] = column[:, meta["start"] : meta["end"]]
        for subkey, meta in modality["annotation"].items():
            item["language"] = [tasks[i] for i in frame[meta.get("original_key", f"annotation.{subkey}")]]
        for name, meta in modality["video"].items():
            feature = info["features"][meta["original_key"]]
            assert feature["shape"][feature["names"].index("channels")] == 3 and feature["info"]["video.fps"] == FPS
            path = root / info["video_path"].format(
                episode_chunk=chunk, video_key=meta["original_key"], episode_index=index
            )
            with av.open(str(path)) as container:
                decoded = {round(f.time * FPS): f.to_ndarray(format="rgb24") for f in container.decode(video=0)}
            item[f"video.{name}"] = np.stack([decoded[round(t * FPS)] for t in frame["timestamp"]])  # by timestamp
        loaded.append(item)
    return loaded


# ------------------------------------------------------------------------------------------------- layout


def test_layout_info_and_jsonl(written):
    root, _ = written
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [f"data/chunk-000/episode_00000{i}.parquet" for i in range(3)] + [
        "meta/episodes.jsonl",
        "meta/episodes_stats.jsonl",
        "meta/info.json",
        "meta/modality.json",
        "meta/stats.json",
        "meta/tasks.jsonl",
    ] + [f"videos/chunk-000/{KEY}/episode_00000{i}.mp4" for i in range(3)]
    info = read_json(root / "meta/info.json")
    assert info["codebase_version"] == "v2.1" and info["robot_type"] == "gr1" and info["fps"] == FPS
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, sum(LENGTHS), 2)
    assert (info["total_videos"], info["total_chunks"], info["chunks_size"]) == (3, 1, 1000)
    assert info["splits"] == {"train": "0:3"}
    assert info["data_path"] == "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
    assert info["video_path"] == "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
    features = info["features"]
    assert features["action"] == {
        "dtype": "float32",
        "shape": [7],
        "names": [f"arm_{i}" for i in range(6)] + ["gripper_0"],
    }
    assert features["observation.state"]["names"] == ["left_0", "left_1", "right_0", "right_1", "right_2"]
    assert features[ANNOTATION] == {"dtype": "int64", "shape": [1], "names": None}
    assert features["next.done"]["dtype"] == "bool" and features["next.reward"]["dtype"] == "float32"
    video = features[KEY]
    assert video["shape"] == [HEIGHT, WIDTH, 3] and video["names"] == ["height", "width", "channels"]
    assert (video["info"]["video.codec"], video["info"]["video.pix_fmt"]) == ("h264", "yuv420p")
    assert read_jsonl(root / "meta/episodes.jsonl") == [
        {"episode_index": i, "tasks": [TASKS[i]], "length": n, "sample_id": f"pair_{i:04d}", "source": "generated"}
        for i, n in enumerate(LENGTHS)
    ]
    assert read_jsonl(root / "meta/tasks.jsonl") == [{"task_index": 0, "task": PICK}, {"task_index": 1, "task": OPEN}]
    assert not list(root.parent.glob(".*"))  # built under a temporary name, renamed


def test_modality_json_follows_the_gr00t_schema(written):
    root, _ = written
    modality = read_json(root / "meta/modality.json")
    assert modality == {
        "state": {"left": {"start": 0, "end": 2}, "right": {"start": 2, "end": 5}},
        "action": {"arm": {"start": 0, "end": 6}, "gripper": {"start": 6, "end": 7}},
        "video": {"front": {"original_key": KEY}},
        "annotation": {"human.action.task_description": {}},
    }


def test_parquet_columns_and_dtypes(written):
    root, source = written
    table = pq.read_table(root / "data/chunk-000/episode_000001.parquet")
    assert table.column_names == [
        "observation.state",
        "action",
        "timestamp",
        ANNOTATION,
        "task_index",
        "episode_index",
        "index",
        "frame_index",
        "next.reward",
        "next.done",
    ]
    types = {field.name: str(field.type) for field in table.schema}
    assert types[ANNOTATION] == "int64" and types["timestamp"] == "float" and types["next.done"] == "bool"
    assert types["action"] == "fixed_size_list<element: float>[7]"  # lerobot's Sequence(length=7)
    frame = table.to_pandas()
    np.testing.assert_array_equal(frame["index"], np.arange(9, 9 + 13))
    np.testing.assert_array_equal(frame[ANNOTATION], [1] * 13)
    np.testing.assert_array_equal(frame["next.done"], [False] * 12 + [True])
    np.testing.assert_array_equal(np.stack(frame["action"]), source[1].actions)


def test_gr00t_style_reading_gives_back_the_episodes(written):
    root, source = written
    loaded = read_like_gr00t(root)
    assert len(loaded) == 3
    for item, episode in zip(loaded, source, strict=True):
        np.testing.assert_array_equal(item["action.arm"], episode.actions[:, :6])
        np.testing.assert_array_equal(item["action.gripper"], episode.actions[:, 6:])
        np.testing.assert_array_equal(item["state.right"], episode.states[:, 2:])
        assert item["language"] == [episode.task] * episode.num_frames
        video = item["video.front"].astype(int)
        assert video.shape == episode.frames.shape
        assert np.abs(video - episode.frames).mean(axis=(1, 2, 3)).max() < 3


def test_stats_have_what_gr00t_normalises_with(written):
    root, source = written
    stats = read_json(root / "meta/stats.json")
    info = read_json(root / "meta/info.json")
    assert set(stats) == set(info["features"])
    assert all({"max", "min", "mean", "std", "q01", "q99"} <= set(values) for values in stats.values())
    actions = np.concatenate([e.actions for e in source]).astype(np.float64)
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats["action"]["max"], actions.max(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats["action"]["q01"], np.quantile(actions, 0.01, axis=0), rtol=1e-6)
    assert np.asarray(stats[KEY]["mean"]).shape == (3, 1, 1)
    per_episode = read_jsonl(root / "meta/episodes_stats.jsonl")
    assert [row["episode_index"] for row in per_episode] == [0, 1, 2]
    assert set(per_episode[2]["stats"]["action"]) == {"min", "max", "mean", "std", "count"}
    np.testing.assert_allclose(per_episode[2]["stats"]["action"]["mean"], source[2].actions.mean(axis=0), rtol=1e-6)
    assert per_episode[2]["stats"]["frame_index"]["count"] == [17]


def test_episodes_past_chunks_size_go_to_the_next_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(groot, "CHUNKS_SIZE", 2)
    root = write_groot_dataset(episodes(), tmp_path / "groot", fps=FPS, camera="front", robot_type="gr1")
    info = read_json(root / "meta/info.json")
    assert (info["chunks_size"], info["total_chunks"]) == (2, 2)
    assert (root / "data/chunk-001/episode_000002.parquet").is_file()
    assert (root / f"videos/chunk-001/{KEY}/episode_000002.mp4").is_file()
    assert [len(item["language"]) for item in read_like_gr00t(root)] == list(LENGTHS)


# ------------------------------------------------------------------------------------------------- choices and errors


def test_default_groups_and_no_states(tmp_path):
    root = write_groot_dataset(episodes(states=False), tmp_path / "groot", fps=FPS, camera="front", robot_type="x")
    modality = read_json(root / "meta/modality.json")
    assert modality["state"] == {} and modality["action"] == {"action": {"start": 0, "end": 7}}
    assert "observation.state" not in pq.read_table(root / "data/chunk-000/episode_000000.parquet").column_names
    assert "observation.state" not in read_json(root / "meta/info.json")["features"]


def test_unlabelled_episodes_are_refused(tmp_path):
    bare = Episode(sample_id="bare", frames=moving_square(5, 0), task="t")
    with pytest.raises(ValueError, match="Episode bare has no actions; GR00T trains on"):
        write_groot_dataset([bare], tmp_path / "groot", fps=FPS, camera="front", robot_type="x")
    assert list(tmp_path.iterdir()) == []


def test_groups_must_cover_the_columns(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"action_groups=\{'arm': 6\} \(export.groot_action_groups in a recipe\) covers 6 columns "
        r"but the episodes have 7",
    ):
        write_groot_dataset(
            episodes(), tmp_path / "groot", fps=FPS, camera="front", robot_type="x", action_groups={"arm": 6}
        )
    assert list(tmp_path.iterdir()) == []


def test_lerobot_codec_option(tmp_path):
    root = write_lerobot_dataset(
        episodes()[:1], tmp_path / "av1", repo_id="a/b", fps=FPS, camera="front", robot_type="x", codec="av1"
    )
    assert read_json(root / "meta/info.json")["features"][KEY]["info"]["video.codec"] == "av1"
    with pytest.raises(ValueError, match=r"codec='vp9': use one of \['av1', 'h264'\]"):
        write_lerobot_dataset(
            episodes()[:1], tmp_path / "x", repo_id="a/b", fps=FPS, camera="front", robot_type="x", codec="vp9"
        )


# ------------------------------------------------------------------------------------------------- export_episodes


STATE_NAMES = ["gripper_x", "gripper_y", "gripper_opening", "object_x", "object_y"]


def write_manifest(folder: Path, *, labelled: bool) -> Path:
    """The episodes as the label stage leaves them (a .npz of actions and states per video) or as generate does."""
    rows = []
    for episode in episodes():
        video = write_video(episode.frames, folder / f"videos/{episode.sample_id}.mp4", fps=FPS)
        row = {"sample_id": episode.sample_id, "prompt": episode.task, "video": str(video), "fps": FPS}
        if labelled:
            np.savez(folder / f"{episode.sample_id}.npz", action=episode.actions, state=episode.states)
            row.update(
                actions=str(folder / f"{episode.sample_id}.npz"),
                action_names=[f"a{j}" for j in range(7)],
                state_names=STATE_NAMES,
            )
        rows.append(row)
    manifest = folder / ("labelled.jsonl" if labelled else "generated.jsonl")
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return manifest


def test_export_episodes_adds_groot_for_labelled_episodes_only(tmp_path):
    out = tmp_path / "out"
    result = export_episodes(ExportConfig(manifest=write_manifest(tmp_path, labelled=True), out_dir=out, fps=FPS))
    assert result.groot_dir == out / "groot" and result.groot_skipped is None
    assert [row["format"] for row in result.summary_rows()] == ["robomimic", "lerobot", "groot"]
    loaded = read_like_gr00t(result.groot_dir)
    np.testing.assert_array_equal(loaded[1]["action.action"], episodes()[1].actions)
    np.testing.assert_array_equal(loaded[1]["state.state"], episodes()[1].states)  # one group: every column
    features = read_json(out / "groot/meta/info.json")["features"]
    assert features["action"]["names"] == [f"a{j}" for j in range(7)]
    assert features["observation.state"]["names"] == STATE_NAMES

    result = export_episodes(ExportConfig(manifest=write_manifest(tmp_path, labelled=False), out_dir=out, fps=FPS))
    assert result.groot_dir is None and "no actions" in result.groot_skipped
    assert [row["format"] for row in result.summary_rows()] == ["robomimic", "lerobot"]
    assert sorted(p.name for p in out.iterdir()) == ["export_config.json", "lerobot", "robomimic"]  # stale one gone


def test_export_config_sets_codec_and_groot_groups(tmp_path):
    out = tmp_path / "out"
    cfg = ExportConfig(
        manifest=write_manifest(tmp_path, labelled=True),
        out_dir=out,
        fps=FPS,
        lerobot_codec="av1",
        groot_action_groups={"arm": 4, "hand": 3},
        groot_state_groups={"gripper": 3, "object": 2},  # the demo recipe's
    )
    result = export_episodes(cfg)
    modality = read_json(out / "groot/meta/modality.json")
    assert modality["action"] == {"arm": {"start": 0, "end": 4}, "hand": {"start": 4, "end": 7}}
    assert modality["state"] == {"gripper": {"start": 0, "end": 3}, "object": {"start": 3, "end": 5}}
    for item, episode in zip(read_like_gr00t(result.groot_dir), episodes(), strict=True):  # every step, per episode
        np.testing.assert_array_equal(item["state.gripper"], episode.states[:, :3])  # x, y, opening
        np.testing.assert_array_equal(item["state.object"], episode.states[:, 3:])
        np.testing.assert_array_equal(item["action.hand"], episode.actions[:, 4:])
        assert item["language"] == [episode.task] * episode.num_frames
        assert item["video.front"].shape == episode.frames.shape
    lerobot_videos = sorted((result.lerobot_dir / "videos").rglob("*.mp4"))
    groot_videos = sorted((result.groot_dir / "videos").rglob("*.mp4"))
    assert lerobot_videos and groot_videos
    with av.open(str(lerobot_videos[0])) as container:
        assert container.streams.video[0].codec_context.name in ("av1", "libdav1d", "libaom-av1")
    with av.open(str(groot_videos[0])) as container:
        assert container.streams.video[0].codec_context.name == "h264"  # GR00T's loaders read H.264 only


@pytest.mark.parametrize("groups", [{}, {"arm": 0}, {"arm": 2.5}, {"not a name": 3}])
def test_export_config_rejects_bad_groups(tmp_path, groups):
    with pytest.raises(ValueError, match="groot_state_groups=.*give names and whole column counts"):
        ExportConfig(manifest=tmp_path / "m.jsonl", out_dir=tmp_path, groot_state_groups=groups)
