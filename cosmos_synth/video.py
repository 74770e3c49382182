"""Video and image files: decode and encode with PyAV, write atomically.

PyAV is imported where a video is read or written, not when this module is: the stages that import it for other
reasons (training on cached latents, the demo world model's builder) then run where PyAV is not installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cosmos_synth.files import atomic_write


def read_video(path: Path) -> tuple[np.ndarray, float]:
    """Decode every frame of `path` as uint8 RGB (T, H, W, 3); return (frames, fps).

    Raises ValueError naming the file when it cannot be decoded.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"Video {path} has no video stream; re-encode it as H.264 mp4.")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    except (av.error.FFmpegError, OSError) as exc:  # PyAV reports corrupt data as FFmpegError subclasses
        raise ValueError(f"Video {path} cannot be decoded ({exc}); re-encode it or remove it from the dataset.") from exc
    if not frames:
        raise ValueError(f"Video {path} has no frames; re-encode it or remove it from the dataset.")
    return np.stack(frames), fps


def count_frames(path: Path) -> int:
    """Number of decodable frames in `path` (decodes the stream: container metadata is often wrong)."""
    return read_video(path)[0].shape[0]


def write_video(frames: np.ndarray, path: Path, *, fps: int, codec: str = "libx264", crf: int = 18) -> Path:
    """Encode uint8 RGB frames (T, H, W, 3) to `path` atomically (temporary name, then rename).

    H.264 needs even sizes; yuv420p is what every player and loader reads.
    """
    import av

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"write_video({path}): expected uint8 (T, H, W, 3) frames, got {frames.dtype} {frames.shape}.")
    path = Path(path)
    with atomic_write(path) as tmp, av.open(str(tmp), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(crf)}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path

