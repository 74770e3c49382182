"""What the LeRobot v3.0 dataset and the GR00T flavour (LeRobot v2.1) share: a camera's video feature (its key, its
encoder settings, the `info` block read back from the file) and the per-frame parquet table."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
import pyarrow as pa

VideoCodec = Literal["h264", "av1"]
DEFAULT_VIDEO_CODEC: VideoCodec = "h264"  # every loader reads H.264 (GR00T's cannot); AV1 is lerobot's own default
VIDEO_ENCODERS = {  # codec -> (PyAV encoder, options); g=2: a keyframe every 2 frames, so random access
    "h264": ("libx264", {"crf": "18", "g": "2"}),  # decodes little (as lerobot)
    "av1": ("libsvtav1", {"crf": "30", "g": "2", "preset": "12"}),  # lerobot's own AV1 settings (encode_video_frames)
}


def video_key(camera: str) -> str:
    """The feature (and folder) name of a camera's video: `observation.images.<camera>`."""
    return f"observation.images.{camera}"


def video_encoder(codec: str) -> tuple[str, dict[str, str]]:
    """The PyAV encoder and its options for a codec name, failing early when this PyAV build lacks the encoder."""
    if codec not in VIDEO_ENCODERS:
        raise ValueError(f"codec={codec!r}: use one of {sorted(VIDEO_ENCODERS)} (h264 is read everywhere).")
    encoder, options = VIDEO_ENCODERS[codec]
    if encoder not in av.codecs_available:
        raise ValueError(
            f"codec={codec!r} needs the {encoder} encoder, which this PyAV build lacks; install a PyAV "
            "wheel from PyPI (it bundles libx264 and libsvtav1) or use codec='h264'."
        )
    return encoder, dict(options)


def frame_table(columns: list[dict[str, np.ndarray]]) -> pa.Table:
    """The per-frame parquet table; vector features become fixed-size lists (lerobot's Sequence(length=dim))."""
    arrays = {}
    for name in columns[0]:
        values = np.concatenate([episode[name] for episode in columns])
        if values.ndim == 2:
            arrays[name] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
        else:
            arrays[name] = pa.array(values)
    return pa.table(arrays)


def video_info(path: Path) -> dict[str, Any]:
    """The `info` block of a video feature, read from the encoded file (the keys lerobot's get_video_info writes)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {
            "video.height": stream.height,
            "video.width": stream.width,
            "video.codec": stream.codec_context.codec.canonical_name,
            "video.pix_fmt": stream.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": int(stream.base_rate),
            "video.channels": 3,
            "has_audio": bool(container.streams.audio),
        }
