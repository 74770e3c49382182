"""GR00T flavour (Isaac-GR00T, GR00T-Dreams): a LeRobot v2.1 dataset plus meta/modality.json, renamed into place.

Layout (paths are the constants below; episode e lives in chunk e // CHUNKS_SIZE):
    data/chunk-000/episode_000000.parquet      one row per frame: observation.state (when the episodes have states),
                                               action, timestamp, annotation.human.action.task_description (int64,
                                               the row of meta/tasks.jsonl), task_index, episode_index, index,
                                               frame_index, next.reward (0: a generated video has no reward),
                                               next.done (True on the last frame)
    videos/chunk-000/observation.images.<camera>/episode_000000.mp4
                                   one H.264 yuv420p file per episode, frame k at pts k/fps (GR00T cannot read AV1)
    meta/info.json                 codebase_version "v2.1", totals, chunks, fps, splits, path templates, features
    meta/episodes.jsonl            {episode_index, tasks: [task], length} (+ sample_id, source)
    meta/tasks.jsonl               {task_index, task}
    meta/episodes_stats.jsonl      {episode_index, stats: {feature: {min, max, mean, std, count}}} (LeRobot v2.1;
                                   lerobot's v2.1 -> v3.0 converter reads it)
    meta/stats.json                per feature: min, max, mean, std, count, q01 ... q99 (GR00T validates that every
                                   feature has max, min, mean, std, q01, q99 and normalises state/action with them)
    meta/modality.json             {"state": {group: {start, end}}, "action": {group: {start, end}},
                                    "video": {camera: {"original_key": "observation.images.<camera>"}},
                                    "annotation": {"human.action.task_description": {}}}
GR00T's loaders read state/action groups as slices [start, end) of the `observation.state` / `action` columns
(their default original keys), the video through the `original_key` feature of info.json, and the annotation column
`annotation.human.action.task_description` (the default column of that annotation key) as an index into tasks.jsonl.
Episodes stream through: each episode's parquet, mp4 and jsonl lines are written when it is added (inside the
temporary folder); only the running statistics and the task table stay in memory.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow.parquet as pq

from cosmos_synth.export.episodes import Episode, frame_size
from cosmos_synth.export.features import VideoCodec, frame_table, video_encoder, video_info, video_key
from cosmos_synth.export.stats import FeatureStats, to_json
from cosmos_synth.files import remove_stale_temporaries, replace_dir, temporary_path, write_text_atomic
from cosmos_synth.video import VideoEncoder

logger = logging.getLogger(__name__)

CODEBASE_VERSION = "v2.1"
CHUNKS_SIZE = 1000  # episodes per chunk folder (lerobot v2.1's default)
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
INFO_PATH = "meta/info.json"
EPISODES_PATH = "meta/episodes.jsonl"
TASKS_PATH = "meta/tasks.jsonl"
EPISODES_STATS_PATH = "meta/episodes_stats.jsonl"
STATS_PATH = "meta/stats.json"
MODALITY_PATH = "meta/modality.json"
TASK_ANNOTATION = "annotation.human.action.task_description"  # GR00T's language key, an int64 task index
VIDEO_CODEC: VideoCodec = "h264"  # H.264 only: the GR00T loaders (decord, torchcodec builds) cannot read AV1
EPISODE_STATS_KEYS = ("min", "max", "mean", "std", "count")  # what LeRobot v2.1 keeps per episode
ARRAYS = {"states": "observation.state", "actions": "action"}  # Episode field -> column (GR00T's default keys)
SCALARS = {  # per-frame columns after the arrays, in order, with their dtypes
    "timestamp": "float32",
    TASK_ANNOTATION: "int64",
    "task_index": "int64",
    "episode_index": "int64",
    "index": "int64",
    "frame_index": "int64",
    "next.reward": "float32",
    "next.done": "bool",
}


def groups_meta(groups: Mapping[str, int] | None, width: int, default: str, field: str) -> dict[str, dict[str, int]]:
    """modality.json slices for named groups of consecutive columns, e.g. {"arm": 6, "gripper": 1}."""
    groups = dict(groups) if groups else {default: width}
    if any(size < 1 for size in groups.values()) or sum(groups.values()) != width:
        raise ValueError(
            f"{field}={groups} (export.groot_{field} in a recipe) covers {sum(groups.values())} columns "
            f"but the episodes have {width}; give each group its column count, in order, summing to "
            f"{width}."
        )
    meta, start = {}, 0
    for name, size in groups.items():
        meta[name] = {"start": start, "end": start + size}
        start += size
    return meta


class GrootWriter:
    """Streams labelled episodes into a GR00T-flavour dataset at `root`: `add` each, `finish`, `commit`.

    Used as a context manager, leaving the block without `commit` deletes the temporary folder, so `root` is
    either the previous complete dataset or the new complete one.
    """

    def __init__(
        self,
        root: Path,
        *,
        fps: int,
        camera: str,
        robot_type: str,
        state_groups: Mapping[str, int] | None = None,
        action_groups: Mapping[str, int] | None = None,
    ) -> None:
        self.root = Path(root)
        self.fps, self.robot_type = fps, robot_type
        self.camera, self.key = camera, video_key(camera)
        self.groups = {"states": state_groups, "actions": action_groups}
        self.tmp = temporary_path(self.root)
        remove_stale_temporaries(self.root)  # a killed earlier export's half-written folder
        self.tmp.mkdir(parents=True)
        self.num_episodes = 0
        self.tasks: dict[str, int] = {}  # task string -> task_index, in order of first appearance
        self.stats: dict[str, FeatureStats] = {}
        self.shape: tuple[int, int] | None = None  # (height, width) of every frame
        self.dims: dict[str, int | None] = {}  # column -> width (None: the episodes have no states)
        self.names: dict[str, list[str]] = {}  # column -> one name per dimension, for info.json
        self.modality: dict[str, Any] = {}
        self.num_frames = 0
        self.finished = False

    def add(self, episode: Episode) -> None:
        self._check(episode)
        index, start, n = self.num_episodes, self.num_frames, episode.num_frames
        task_index = self.tasks.setdefault(episode.task, len(self.tasks))
        columns = {column: getattr(episode, field) for field, column in ARRAYS.items() if self.dims[column]}
        done = np.zeros(n, dtype=bool)
        done[-1] = True
        columns.update(
            {
                "timestamp": (np.arange(n) / self.fps).astype(np.float32),
                TASK_ANNOTATION: np.full(n, task_index, dtype=np.int64),
                "task_index": np.full(n, task_index, dtype=np.int64),
                "episode_index": np.full(n, index, dtype=np.int64),
                "index": np.arange(start, start + n, dtype=np.int64),
                "frame_index": np.arange(n, dtype=np.int64),
                "next.reward": np.zeros(n, dtype=np.float32),
                "next.done": done,
            }
        )
        chunk = index // CHUNKS_SIZE
        data_file = self.tmp / DATA_PATH.format(episode_chunk=chunk, episode_index=index)
        data_file.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(frame_table([columns]), data_file)
        encode_episode(
            episode.frames,
            self.tmp / VIDEO_PATH.format(episode_chunk=chunk, video_key=self.key, episode_index=index),
            fps=self.fps,
        )
        episode_stats = {column: self._stats(column).add(values) for column, values in columns.items()}
        episode_stats[self.key] = self._stats(self.key).add(episode.frames, episode.image_description)
        append_jsonl(
            self.tmp / EPISODES_PATH,
            {
                "episode_index": index,
                "tasks": [episode.task],
                "length": n,
                "sample_id": episode.sample_id,
                "source": episode.source,
            },
        )
        append_jsonl(
            self.tmp / EPISODES_STATS_PATH,
            {
                "episode_index": index,
                "stats": {
                    column: {key: values[key] for key in EPISODE_STATS_KEYS}
                    for column, values in to_json(episode_stats).items()
                },
            },
        )
        self.num_episodes += 1
        self.num_frames += n

    def _check(self, episode: Episode) -> None:
        """Every episode needs actions and must match the first: frame size, action/state widths."""
        if episode.actions is None:
            raise ValueError(
                f"Episode {episode.sample_id} has no actions; GR00T trains on (video, state, action): "
                "run the label stage first (export_episodes skips the GR00T export when unlabelled)."
            )
        first = self.shape is None
        self.shape = frame_size(episode, self.shape, what="GR00T video key")
        if first:
            self._describe_arrays(episode)
        for field, column in ARRAYS.items():
            values = getattr(episode, field)
            if (None if values is None else values.shape[1]) != self.dims[column]:
                raise ValueError(
                    f"Episode {episode.sample_id}: {field} width "
                    f"{None if values is None else values.shape[1]}, earlier episodes "
                    f"{self.dims[column]} (None: absent); give every episode the same {field} size."
                )

    def _describe_arrays(self, episode: Episode) -> None:
        """Fix the widths, per-dimension names and modality.json slices from the first episode."""
        self.modality = {"state": {}, "action": {}}
        for field, column in ARRAYS.items():
            values = getattr(episode, field)
            self.dims[column] = None if values is None else values.shape[1]
            if values is None:
                logger.warning(
                    "groot: episodes have no states; modality.json lists no state groups, so a GR00T data "
                    "config must not ask for state keys."
                )
                continue
            modality = "state" if field == "states" else "action"
            slices = groups_meta(self.groups[field], values.shape[1], modality, f"{modality}_groups")
            self.modality[modality] = slices
            names = episode.action_names if field == "actions" else episode.state_names
            if names is not None:
                self.names[column] = list(names)
            else:
                self.names[column] = [
                    f"{group}_{i}" for group, s in slices.items() for i in range(s["end"] - s["start"])
                ]
        self.modality["video"] = {self.camera: {"original_key": self.key}}
        self.modality["annotation"] = {TASK_ANNOTATION.removeprefix("annotation."): {}}

    def _stats(self, column: str) -> FeatureStats:
        return self.stats.setdefault(column, FeatureStats(is_image=column == self.key))

    def finish(self) -> None:
        """Write the metadata into the temporary folder and read the whole dataset back."""
        if not self.num_episodes:
            raise ValueError(f"No episodes to write to {self.root}; the manifest must name at least one video.")
        info = self._info()
        write_text_atomic(self.tmp / INFO_PATH, json.dumps(info, indent=4))
        write_text_atomic(
            self.tmp / TASKS_PATH,
            "".join(json.dumps({"task_index": index, "task": task}) + "\n" for task, index in self.tasks.items()),
        )
        stats = {column: running.result() for column, running in self.stats.items()}
        write_text_atomic(self.tmp / STATS_PATH, json.dumps(to_json(stats), indent=4))
        write_text_atomic(self.tmp / MODALITY_PATH, json.dumps(self.modality, indent=4))
        self.finished = True
        verify_groot_dataset(self.tmp, num_episodes=self.num_episodes, num_frames=self.num_frames)

    def _info(self) -> dict[str, Any]:
        num_episodes = self.num_episodes
        features: dict[str, Any] = {
            column: {"dtype": "float32", "shape": [dim], "names": self.names[column]}
            for column, dim in self.dims.items()
            if dim
        }
        first_video = self.tmp / VIDEO_PATH.format(episode_chunk=0, video_key=self.key, episode_index=0)
        features[self.key] = {
            "dtype": "video",
            "shape": [*self.shape, 3],
            "names": ["height", "width", "channels"],
            "info": video_info(first_video),
        }
        features.update({name: {"dtype": dtype, "shape": [1], "names": None} for name, dtype in SCALARS.items()})
        return {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": num_episodes,
            "total_frames": self.num_frames,
            "total_tasks": len(self.tasks),
            "total_videos": num_episodes,
            "total_chunks": math.ceil(num_episodes / CHUNKS_SIZE),
            "chunks_size": CHUNKS_SIZE,
            "fps": self.fps,
            "splits": {"train": f"0:{num_episodes}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "features": features,
        }

    def commit(self) -> Path:
        if not self.finished:
            self.finish()
        replace_dir(self.tmp, self.root)
        logger.info("groot: %d episodes, %d frames -> %s", self.num_episodes, self.num_frames, self.root)
        return self.root

    def __enter__(self) -> GrootWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def write_groot_dataset(
    episodes: Iterable[Episode],
    root: Path,
    *,
    fps: int,
    camera: str,
    robot_type: str,
    state_groups: Mapping[str, int] | None = None,
    action_groups: Mapping[str, int] | None = None,
) -> Path:
    """Write labelled `episodes` as a GR00T-flavour LeRobot v2.1 dataset at `root` (replaced atomically).

    state_groups / action_groups: named groups of consecutive columns in order, e.g. {"arm": 6, "gripper": 1},
    written as modality.json slices; None makes one group named "state" / "action" spanning every column.
    """
    with GrootWriter(
        root, fps=fps, camera=camera, robot_type=robot_type, state_groups=state_groups, action_groups=action_groups
    ) as writer:
        for episode in episodes:
            writer.add(episode)
        return writer.commit()


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    """One line onto a jsonl file of the temporary folder (the folder's rename makes the whole dataset atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def encode_episode(frames: np.ndarray, path: Path, *, fps: int) -> None:
    """One episode as H.264 yuv420p, frame k at pts k/fps exactly (GR00T looks frames up by timestamp or index)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    encoder, options = video_encoder(VIDEO_CODEC)
    with VideoEncoder(path, fps=fps, encoder=encoder, options=options, faststart=True) as video:
        video.add(frames)


def verify_groot_dataset(root: Path, *, num_episodes: int, num_frames: int) -> None:
    """Read a written dataset back: totals, every episode's rows and video, task indices, slices, statistics."""

    def fail(what: str) -> ValueError:
        return ValueError(f"GR00T dataset {root} failed verification: {what}. Rerun the export.")

    info = json.loads((root / INFO_PATH).read_text())
    modality = json.loads((root / MODALITY_PATH).read_text())
    episodes = [json.loads(line) for line in (root / EPISODES_PATH).read_text().splitlines()]
    num_tasks = len((root / TASKS_PATH).read_text().splitlines())
    if (info["total_episodes"], info["total_frames"], len(episodes)) != (num_episodes, num_frames, num_episodes):
        raise fail(
            f"info.json totals {info['total_episodes']}/{info['total_frames']} and {len(episodes)} "
            f"episodes.jsonl rows, expected {num_episodes}/{num_frames}"
        )
    stats = json.loads((root / STATS_PATH).read_text())
    missing = [
        f"{column}.{key}"
        for column in info["features"]
        for key in ("min", "max", "mean", "std", "q01", "q99")
        if key not in stats.get(column, {})
    ]
    if missing or num_tasks != info["total_tasks"]:
        raise fail(f"stats.json lacks {missing[:5]} or tasks.jsonl has {num_tasks} rows for {info['total_tasks']}")
    for modality_name, column in (("state", "observation.state"), ("action", "action")):
        ends = [s["end"] for s in modality[modality_name].values()]
        width = info["features"].get(column, {"shape": [0]})["shape"][0]
        if max(ends, default=0) != width:
            raise fail(f"modality.json {modality_name} slices end at {max(ends, default=0)}, {column} has {width}")
    start = 0
    for episode in episodes:
        index, length = episode["episode_index"], episode["length"]
        chunk = index // info["chunks_size"]
        table = pq.read_table(
            root / info["data_path"].format(episode_chunk=chunk, episode_index=index),
            columns=["index", TASK_ANNOTATION],
        )
        if not np.array_equal(table.column("index").to_numpy(), np.arange(start, start + length)):
            raise fail(f"episode {index}: parquet index is not {start}..{start + length - 1}")
        if not 0 <= int(table.column(TASK_ANNOTATION).to_numpy().max()) < num_tasks:
            raise fail(f"episode {index}: {TASK_ANNOTATION} names a task missing from tasks.jsonl")
        for key in modality["video"].values():
            path = root / info["video_path"].format(
                episode_chunk=chunk, video_key=key["original_key"], episode_index=index
            )
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                codec = stream.codec_context.codec.canonical_name
                num_packets = sum(1 for packet in container.demux(stream) if packet.size)
            if (codec, num_packets) != ("h264", length):
                raise fail(f"{path.name} is {codec} with {num_packets} frames, expected h264 with {length}")
        start += length
