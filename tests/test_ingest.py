"""Ingest: a good dataset gives the right manifest; each kind of bad input stops it with a message naming the file."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from cosmos_synth.config import IngestConfig
from cosmos_synth.files import read_jsonl
from cosmos_synth.ingest import ingest_dataset, read_metadata
from cosmos_synth.sources.layout import METADATA_CSV, TRAJECTORIES_DIR, VIDEOS_DIR
from cosmos_synth.video import write_video
from tasks import stages  # imports Prefect, which configures logging once, here rather than inside a test

NUM_EPISODES = 4  # the conftest demo_dataset: 4 episodes of 33 frames at 64x96, 16 fps


@pytest.fixture
def dataset(demo_dataset: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the session's demo dataset."""
    return Path(shutil.copytree(demo_dataset, tmp_path / "data"))


def _ingest(root: Path, **overrides):
    return ingest_dataset(
        IngestConfig(dataset_dir=root, out_dir=root.parent / "ingest", **{"min_frames": 33, **overrides})
    )


def _set_metadata(root: Path, *lines: str) -> Path:
    path = root / METADATA_CSV
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_good_dataset_manifest(dataset):
    prompts = [line.partition(",")[2] for line in (dataset / METADATA_CSV).read_text().splitlines()]
    result = _ingest(dataset, min_frames=17)
    assert result.num_samples == NUM_EPISODES and result.unlisted_videos == ()
    assert result.manifest == dataset.parent / "ingest" / "manifest.jsonl"
    rows = read_jsonl(result.manifest)
    assert [r["sample_id"] for r in rows] == [f"episode_{i:04d}" for i in range(NUM_EPISODES)]
    for row, prompt in zip(rows, prompts, strict=True):
        assert row["video"] == str((dataset / VIDEOS_DIR / f"{row['sample_id']}.mp4").resolve())
        assert row["trajectory"] == str((dataset / TRAJECTORIES_DIR / f"{row['sample_id']}.npz").resolve())
        assert row["caption"] == prompt
        assert (row["num_frames"], row["height"], row["width"], row["fps"]) == (33, 64, 96, 16.0)
        assert set(row) == {"sample_id", "video", "caption", "num_frames", "height", "width", "fps", "trajectory"}
    written = json.loads((result.out_dir / "ingest_config.json").read_text())
    assert written["min_frames"] == 17 and written["dataset_dir"] == str(dataset)
    summary = result.summary_rows()
    assert summary[0] == {
        "sample_id": "episode_0000",
        "frames": 33,
        "size": "64x96",
        "caption": prompts[0][:57] + "...",
    }


def test_caption_prefix_header_and_quotes(dataset):
    _set_metadata(
        dataset,
        "file_name,text",
        'videos/episode_0001.mp4,"Pick up the cube, then place it in the bowl."',
        "",
        "videos/episode_0000.mp4,  plain caption  ",
    )
    rows = read_jsonl(_ingest(dataset, caption_prefix="The robot arm is performing a task. ").manifest)
    assert [r["sample_id"] for r in rows] == ["episode_0001", "episode_0000"]
    assert rows[0]["caption"] == "The robot arm is performing a task. Pick up the cube, then place it in the bowl."
    assert rows[1]["caption"] == "The robot arm is performing a task. plain caption"


def test_videos_named_by_no_row_are_reported_not_ingested(dataset, caplog):
    _set_metadata(dataset, "videos/episode_0000.mp4,first", "videos/episode_0002.mp4,third")
    shutil.copy(dataset / VIDEOS_DIR / "episode_0000.mp4", dataset / VIDEOS_DIR / ".episode_0000.mp4.tmp7.mp4")
    (dataset / "other").mkdir()
    shutil.copy(dataset / VIDEOS_DIR / "episode_0000.mp4", dataset / "other" / "stray.mp4")  # not a video folder
    with caplog.at_level(logging.WARNING, logger="cosmos_synth.ingest"):
        result = _ingest(dataset)
    assert result.unlisted_videos == ("videos/episode_0001.mp4", "videos/episode_0003.mp4")
    assert [r["sample_id"] for r in read_jsonl(result.manifest)] == ["episode_0000", "episode_0002"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "cosmos_synth.ingest"]
    assert warnings == [
        f"2 videos of {dataset} are named by no row of metadata.csv and are not ingested: "
        "videos/episode_0001.mp4, videos/episode_0003.mp4; add a row for each to train on it, or move "
        "it out of the dataset"
    ]  # the hidden temporary and other/ (no row's folder) are not counted


def test_unlisted_videos_of_videos_dir_go_into_the_ingest_artifacts(dataset, monkeypatch, caplog):
    _set_metadata(dataset, "episode_0000.mp4,first")  # GR1-100 style: file names under videos_dir
    for i in range(6):
        shutil.copy(dataset / VIDEOS_DIR / "episode_0000.mp4", dataset / VIDEOS_DIR / f"extra_{i}.MP4")
    artifacts = []
    monkeypatch.setattr(stages, "create_table_artifact", lambda **artifact: artifacts.append(artifact))
    with caplog.at_level(logging.WARNING, logger="cosmos_synth.ingest"):
        result = stages.ingest_task.fn(
            IngestConfig(dataset_dir=dataset, out_dir=dataset.parent / "ingest", min_frames=33, videos_dir=VIDEOS_DIR)
        )
    unlisted = [f"videos/episode_000{i}.mp4" for i in (1, 2, 3)] + [f"videos/extra_{i}.MP4" for i in range(6)]
    assert result.unlisted_videos == tuple(unlisted) and result.num_samples == 1
    assert (
        f"9 videos of {dataset} are named by no row of metadata.csv and are not ingested: "
        f"{', '.join(unlisted[:5])}, ...; add a row" in caplog.text
    )
    assert [a["key"] for a in artifacts] == ["unlisted-videos", "ingested-samples"]
    assert artifacts[0]["table"] == [{"video": v} for v in unlisted]
    assert artifacts[0]["description"] == (
        "9 videos in the dataset's video folders are named by no metadata.csv row and were not ingested"
    )
    assert artifacts[1]["description"].endswith("(9 unlisted videos left out; see unlisted-videos)")


def test_dataset_without_trajectories(dataset):
    shutil.rmtree(dataset / TRAJECTORIES_DIR)
    rows = read_jsonl(_ingest(dataset).manifest)
    assert [r["trajectory"] for r in rows] == [None] * NUM_EPISODES


def test_read_metadata_keeps_line_numbers(dataset):
    csv = _set_metadata(dataset, "", "a/b.mp4,one, two", "c.mp4,three")
    rows = read_metadata(csv)
    assert [(r.line, r.video, r.caption) for r in rows] == [(2, "a/b.mp4", "one, two"), (3, "c.mp4", "three")]


def test_missing_metadata(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(ValueError, match=r"data/metadata\.csv does not exist"):
        _ingest(tmp_path / "data")


def test_empty_metadata(dataset):
    _set_metadata(dataset, "file_name,text")
    with pytest.raises(ValueError, match=r"metadata\.csv lists no videos"):
        _ingest(dataset)


def test_line_without_comma(dataset):
    _set_metadata(dataset, "videos/episode_0000.mp4")
    with pytest.raises(ValueError, match=r"metadata\.csv line 1: expected '<video path>,<caption>'"):
        _ingest(dataset)


def test_unreadable_video(dataset):
    (dataset / VIDEOS_DIR / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    _set_metadata(dataset, "videos/episode_0000.mp4,fine", "videos/broken.mp4,broken")
    with pytest.raises(ValueError, match=r"metadata\.csv line 2: Video .*broken\.mp4 cannot be decoded"):
        _ingest(dataset)
    assert not (dataset.parent / "ingest" / "manifest.jsonl").exists()  # nothing written on failure


def test_missing_video(dataset):
    _set_metadata(dataset, "videos/episode_0000.mp4,fine", "videos/nowhere.mp4,gone")
    with pytest.raises(ValueError, match=r"metadata\.csv line 2: video videos/nowhere\.mp4 does not exist"):
        _ingest(dataset)


def test_empty_caption(dataset):
    _set_metadata(dataset, "videos/episode_0000.mp4,fine", 'videos/episode_0001.mp4, "" ')
    with pytest.raises(ValueError, match=r"metadata\.csv line 2: the caption of videos/episode_0001\.mp4 is empty"):
        _ingest(dataset)


def test_too_short_video(dataset):
    write_video(np.zeros((9, 64, 96, 3), np.uint8), dataset / VIDEOS_DIR / "short.mp4", fps=16)
    _set_metadata(dataset, "videos/episode_0000.mp4,fine", "videos/short.mp4,too short")
    with pytest.raises(
        ValueError,
        match=r"Video videos/short\.mp4 has 9 frames; min_frames=33 needs at least 33\. "
        r"Lower num_frames or drop the clip\.",
    ):
        _ingest(dataset)


def test_path_escaping_root(dataset):
    write_video(np.zeros((33, 64, 96, 3), np.uint8), dataset.parent / "x.mp4", fps=16)
    _set_metadata(dataset, "../x.mp4,outside")
    with pytest.raises(ValueError, match=r"metadata\.csv line 1: path '\.\./x\.mp4' escapes the dataset root"):
        _ingest(dataset)


def test_duplicate_sample_ids(dataset):
    (dataset / "other").mkdir()
    shutil.copy(dataset / VIDEOS_DIR / "episode_0000.mp4", dataset / "other" / "episode_0000.mp4")
    _set_metadata(dataset, "videos/episode_0000.mp4,a", "videos/episode_0001.mp4,b", "other/episode_0000.mp4,c")
    with pytest.raises(
        ValueError,
        match=r"lines 1 and 3 both give sample id 'episode_0000' "
        r"\(videos/episode_0000\.mp4, other/episode_0000\.mp4\)",
    ):
        _ingest(dataset)


def test_trajectory_row_mismatch(dataset):
    path = dataset / TRAJECTORIES_DIR / "episode_0002.npz"
    with np.load(path) as data:
        state, action = data["state"], data["action"]
    np.savez(path, state=state, action=action[:-1])
    with pytest.raises(
        ValueError,
        match=r"Trajectory .*episode_0002\.npz: 'action' has 32 rows but the video has "
        r"33 frames",
    ):
        _ingest(dataset)


def test_trajectory_missing_array(dataset):
    path = dataset / TRAJECTORIES_DIR / "episode_0000.npz"
    np.savez(path, state=np.zeros((33, 5), np.float32))
    with pytest.raises(ValueError, match=r"Trajectory .*episode_0000\.npz: needs a 2-D array 'action'"):
        _ingest(dataset)
