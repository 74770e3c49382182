"""LeRobotDataset v3.0 (lerobot >= 0.4.0), built in a temporary folder and renamed into place.

Layout (paths are the constants below; every episode goes into file 000 of chunk 000):
    meta/info.json                 codebase_version, fps, features, totals, path templates, robot_type, splits
                                   (features.action.names / features["observation.state"].names: the episodes'
                                   action_names / state_names when given)
    meta/stats.json                per feature: min, max, mean, std, count, q01, q10, q50, q90, q99
    meta/tasks.parquet             pandas frame indexed by the task string, column task_index
    meta/episodes/chunk-000/file-000.parquet   one row per episode: indices, video offsets, stats/<feature>/<stat>,
                                               plus `source` ("generated"/"real") and `sample_id`
    data/chunk-000/file-000.parquet            one row per frame: index, episode_index, frame_index, timestamp,
                                               task_index (+ action, observation.state when present)
    videos/observation.images.<camera>/chunk-000/file-000.mp4
                                   every episode's frames in ONE stream (H.264 by default, AV1 with codec="av1");
                                   frame k of the file has pts k/fps exactly, so frame `frame_index` of an episode
                                   sits at from_timestamp + timestamp
One encoder runs over all episodes and frames are appended episode by episode; only the per-frame index columns
(a few integers a frame) and the statistics are kept until the end.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cosmos_synth.export.episodes import Episode, frame_size
from cosmos_synth.export.features import (
    DEFAULT_VIDEO_CODEC,
    VideoCodec,
    frame_table,
    video_encoder,
    video_info,
    video_key,
)
from cosmos_synth.export.stats import FeatureStats, to_json
from cosmos_synth.files import remove_stale_temporaries, replace_dir, temporary_path, write_text_atomic
from cosmos_synth.video import VideoEncoder

logger = logging.getLogger(__name__)

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # lerobot's limit of files per chunk folder
DATA_FILES_SIZE_IN_MB = 100  # lerobot's size limits for when it appends episodes; this writer writes one file
VIDEO_FILES_SIZE_IN_MB = 200
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
ARRAYS = {"actions": "action", "states": "observation.state"}  # Episode field -> LeRobot feature
NAMES = {"actions": "action_names", "states": "state_names"}  # Episode field -> the Episode field naming its columns
INDEX_FEATURES = {  # lerobot's DEFAULT_FEATURES, in its order
    "timestamp": "float32",
    "frame_index": "int64",
    "episode_index": "int64",
    "index": "int64",
    "task_index": "int64",
}


class LeRobotWriter:
    """Streams episodes into a LeRobot v3.0 dataset at `root`: `add` each, `finish` (verify), `commit` (rename).

    Used as a context manager, leaving the block without `commit` deletes the temporary folder, so `root` is
    either the previous complete dataset or the new complete one.
    """

    def __init__(
        self,
        root: Path,
        *,
        repo_id: str,
        fps: int,
        camera: str,
        robot_type: str,
        codec: VideoCodec = DEFAULT_VIDEO_CODEC,
    ) -> None:
        self.encoder, self.encoder_options = video_encoder(codec)
        self.root = Path(root)
        self.repo_id, self.fps, self.robot_type = repo_id, fps, robot_type
        self.key = video_key(camera)
        self.tmp = temporary_path(self.root)
        remove_stale_temporaries(self.root)  # a killed earlier export's half-written folder
        self.tmp.mkdir(parents=True)
        self.video: VideoEncoder | None = None  # the one video file, opened by the first episode
        self.frame_columns: list[dict[str, np.ndarray]] = []
        self.episode_rows: list[dict[str, Any]] = []
        self.tasks: dict[str, int] = {}  # task string -> task_index, in order of first appearance
        self.stats: dict[str, FeatureStats] = {}
        self.shape: tuple[int, int] | None = None  # (height, width) of every frame
        self.dims: dict[str, int | None] = {}  # feature -> width of action/observation.state (None: absent)
        self.names: dict[str, tuple[str, ...] | None] = {}  # feature -> the first episode's names for its columns
        self.num_frames = 0
        self.finished = False

    @property
    def video_file(self) -> Path:
        return self.tmp / VIDEO_PATH.format(video_key=self.key, chunk_index=0, file_index=0)

    def add(self, episode: Episode) -> None:
        self._check(episode)
        start, n = self.num_frames, episode.num_frames
        self._encode(episode.frames)
        task_index = self.tasks.setdefault(episode.task, len(self.tasks))
        columns = {
            "timestamp": (np.arange(n) / self.fps).astype(np.float32),
            "frame_index": np.arange(n, dtype=np.int64),
            "episode_index": np.full(n, len(self.episode_rows), dtype=np.int64),
            "index": np.arange(start, start + n, dtype=np.int64),
            "task_index": np.full(n, task_index, dtype=np.int64),
        }
        columns.update(
            {
                feature: getattr(episode, field)
                for field, feature in ARRAYS.items()
                if getattr(episode, field) is not None
            }
        )
        self.frame_columns.append(columns)
        episode_stats = {feature: self._stats(feature).add(values) for feature, values in columns.items()}
        episode_stats[self.key] = self._stats(self.key).add(episode.frames, episode.image_description)
        self.episode_rows.append(self._episode_row(episode, start, episode_stats))
        self.num_frames += n

    def _check(self, episode: Episode) -> None:
        """Every episode must match the first: frame size, and whether it carries actions/states."""
        first = self.shape is None
        self.shape = frame_size(episode, self.shape, what="LeRobot video feature")
        if first:
            self.dims = {
                feature: None if getattr(episode, field) is None else getattr(episode, field).shape[1]
                for field, feature in ARRAYS.items()
            }
            self.names = {feature: getattr(episode, NAMES[field]) for field, feature in ARRAYS.items()}
        for field, feature in ARRAYS.items():
            values = getattr(episode, field)
            dim = None if values is None else values.shape[1]
            if dim != self.dims[feature]:
                raise ValueError(
                    f"Episode {episode.sample_id}: {field} width {dim}, earlier episodes "
                    f"{self.dims[feature]} (None: absent); label all episodes or none, with one "
                    f"{field} size."
                )

    def _encode(self, frames: np.ndarray) -> None:
        """Append an episode's frames to the one video: frame k of the file at k/fps."""
        if self.video is None:
            self.video_file.parent.mkdir(parents=True)
            # faststart: the index goes first, so a reader (or the Hub viewer) can seek before the file is fetched
            self.video = VideoEncoder(
                self.video_file, fps=self.fps, encoder=self.encoder, options=self.encoder_options, faststart=True
            )
        self.video.add(frames)

    def _stats(self, feature: str) -> FeatureStats:
        return self.stats.setdefault(feature, FeatureStats(is_image=feature == self.key))

    def _episode_row(self, episode: Episode, start: int, episode_stats: dict) -> dict[str, Any]:
        n, episode_index = episode.num_frames, len(self.episode_rows)
        row = {
            "episode_index": episode_index,
            "tasks": [episode.task],
            "length": n,
            "data/chunk_index": 0,
            "data/file_index": 0,
            "dataset_from_index": start,
            "dataset_to_index": start + n,
            f"videos/{self.key}/chunk_index": 0,
            f"videos/{self.key}/file_index": 0,
            f"videos/{self.key}/from_timestamp": start / self.fps,
            f"videos/{self.key}/to_timestamp": (start + n) / self.fps,
            "meta/episodes/chunk_index": 0,
            "meta/episodes/file_index": 0,
            "source": episode.source,
            "sample_id": episode.sample_id,
        }
        for feature, values in to_json(episode_stats).items():
            row.update({f"stats/{feature}/{stat}": value for stat, value in values.items()})
        return row

    def finish(self) -> None:
        """Close the video, write the tables and metadata into the temporary folder, and read them back."""
        if not self.episode_rows:
            raise ValueError(f"No episodes to write to {self.root}; the manifest must name at least one video.")
        self.video.close()
        self.video = None
        self._write_tables()
        self._write_meta()
        self.finished = True
        verify_lerobot_dataset(self.tmp, num_episodes=len(self.episode_rows), num_frames=self.num_frames)

    def _write_tables(self) -> None:
        data_file = self.tmp / DATA_PATH.format(chunk_index=0, file_index=0)
        episodes_file = self.tmp / EPISODES_PATH.format(chunk_index=0, file_index=0)
        for path in (data_file, episodes_file):
            path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(frame_table(self.frame_columns), data_file)
        pq.write_table(pa.Table.from_pylist(self.episode_rows), episodes_file)
        # The string index is the point: lerobot looks tasks up by text (without it a task reads back as "1").
        tasks = pd.DataFrame({"task_index": list(self.tasks.values())}, index=list(self.tasks))
        tasks.to_parquet(self.tmp / TASKS_PATH)

    def _write_meta(self) -> None:
        features = {  # the episodes' names (e.g. delta_x, gripper_x) when they have them, else action_0, ...
            feature: {
                "dtype": "float32",
                "shape": [dim],
                "names": list(self.names[feature] or (f"{feature}_{i}" for i in range(dim))),
            }
            for feature, dim in self.dims.items()
            if dim is not None
        }
        features[self.key] = {
            "dtype": "video",
            "shape": [*self.shape, 3],
            "names": ["height", "width", "channels"],
            "info": video_info(self.video_file),
        }
        features.update({name: {"dtype": dtype, "shape": [1], "names": None} for name, dtype in INDEX_FEATURES.items()})
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": len(self.episode_rows),
            "total_frames": self.num_frames,
            "total_tasks": len(self.tasks),
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
            "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB,
            "fps": self.fps,
            "splits": {"train": f"0:{len(self.episode_rows)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "features": features,
        }
        stats = {feature: running.result() for feature, running in self.stats.items()}
        write_text_atomic(self.tmp / INFO_PATH, json.dumps(info, indent=4))
        write_text_atomic(self.tmp / STATS_PATH, json.dumps(to_json(stats), indent=4))
        write_text_atomic(self.tmp / "README.md", dataset_card(self.repo_id, info))

    def commit(self) -> Path:
        if not self.finished:
            self.finish()
        replace_dir(self.tmp, self.root)
        logger.info("lerobot: %d episodes, %d frames -> %s", len(self.episode_rows), self.num_frames, self.root)
        return self.root

    def __enter__(self) -> LeRobotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.video is not None:
                self.video.abandon()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def write_lerobot_dataset(
    episodes: Iterable[Episode],
    root: Path,
    *,
    repo_id: str,
    fps: int,
    camera: str,
    robot_type: str,
    codec: VideoCodec = DEFAULT_VIDEO_CODEC,
) -> Path:
    """Write `episodes` as a LeRobot v3.0 dataset at `root` (replacing it atomically); return `root`.

    codec: "h264" (default; what every loader reads) or "av1" (smaller files; lerobot >= 0.4 and torchcodec read it).
    """
    with LeRobotWriter(root, repo_id=repo_id, fps=fps, camera=camera, robot_type=robot_type, codec=codec) as writer:
        for episode in episodes:
            writer.add(episode)
        return writer.commit()


def dataset_card(repo_id: str, info: dict[str, Any]) -> str:
    """A short Hub dataset card naming the repo id, in the shape lerobot's card uses."""
    return (
        f"---\nlicense: other\ntask_categories:\n- robotics\ntags:\n- LeRobot\n- cosmos-synth\nconfigs:\n"
        f"- config_name: default\n  data_files: data/*/*.parquet\n---\n\n# {repo_id}\n\n"
        f"Synthetic robot episodes generated with Cosmos Predict 2.5 and exported by cosmos-synth.\n\n"
        f"```json\n{json.dumps(info, indent=4)}\n```\n"
    )


def verify_lerobot_dataset(root: Path, *, num_episodes: int, num_frames: int) -> None:
    """Read a written dataset back: totals, contiguous indices, episode ranges, video frame count and size."""

    def fail(what: str) -> ValueError:
        return ValueError(f"LeRobot dataset {root} failed verification: {what}. Rerun the export.")

    info = json.loads((root / INFO_PATH).read_text())
    if (info["total_episodes"], info["total_frames"]) != (num_episodes, num_frames):
        raise fail(
            f"info.json totals {info['total_episodes']}/{info['total_frames']}, expected {num_episodes}/{num_frames}"
        )
    data = pq.read_table(root / DATA_PATH.format(chunk_index=0, file_index=0))
    if not np.array_equal(data.column("index").to_numpy(), np.arange(num_frames)):
        raise fail(f"data index is not 0..{num_frames - 1}")
    episodes = pq.read_table(root / EPISODES_PATH.format(chunk_index=0, file_index=0)).to_pandas()
    starts, ends = episodes["dataset_from_index"].to_numpy(), episodes["dataset_to_index"].to_numpy()
    if len(episodes) != num_episodes or not np.array_equal(np.r_[starts, num_frames], np.r_[0, ends]):
        raise fail(f"episode rows {list(zip(starts, ends, strict=True))} do not tile frames 0..{num_frames}")
    if len(pd.read_parquet(root / TASKS_PATH)) != info["total_tasks"]:
        raise fail("tasks.parquet does not hold total_tasks rows")
    missing = set(info["features"]) - set(json.loads((root / STATS_PATH).read_text()))
    if missing:
        raise fail(f"stats.json lacks {sorted(missing)}")
    for key, feature in info["features"].items():
        if feature["dtype"] == "video":
            path = root / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                num_packets = sum(1 for packet in container.demux(stream) if packet.size)
                size = [stream.height, stream.width]
            if num_packets != num_frames or size != feature["shape"][:2]:
                raise fail(
                    f"{path.name} holds {num_packets} frames of {size}, expected {num_frames} of {feature['shape'][:2]}"
                )
