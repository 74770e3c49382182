"""Video and image files: decode and encode with PyAV, write atomically.

Every video the project writes goes through :class:`VideoEncoder`: one stream in yuv420p (what every player and
loader reads), frame k at pts k/fps exactly. PyAV is imported where a video is read or written, not when this module
is: the stages that import it for other reasons (training on cached latents, the demo world model's builder) then
run where PyAV is not installed.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

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
        raise ValueError(
            f"Video {path} cannot be decoded ({exc}); re-encode it or remove it from the dataset."
        ) from exc
    if not frames:
        raise ValueError(f"Video {path} has no frames; re-encode it or remove it from the dataset.")
    return np.stack(frames), fps


def count_frames(path: Path) -> int:
    """Number of decodable frames in `path` (decodes the stream: container metadata is often wrong)."""
    return read_video(path)[0].shape[0]


class VideoEncoder:
    """Frames appended to one video stream at `path`, in yuv420p, frame k at pts k/fps exactly (a reader that looks
    frames up by timestamp finds each). The stream opens with the first frames: their size is the video's.

    `encoder` is PyAV's name (libx264: H.264, which needs even sizes; libsvtav1: AV1) and `options` its settings;
    `faststart` puts the index first, so a reader can seek before the whole file is fetched. Use it as a context
    manager, or call :meth:`close`, which flushes the encoder's delayed frames.
    """

    def __init__(
        self,
        path: Path,
        *,
        fps: int,
        encoder: str = "libx264",
        options: dict[str, str] | None = None,
        faststart: bool = False,
    ) -> None:
        import av

        self.fps, self.encoder, self.options = fps, encoder, dict(options or {})
        self.container: Any = av.open(str(path), mode="w", options={"movflags": "faststart"} if faststart else {})
        self.stream: Any = None
        self.num_frames = 0

    def add(self, frames: np.ndarray) -> None:
        """Append uint8 RGB frames (T, H, W, 3)."""
        import av

        if self.stream is None:
            self.stream = self.container.add_stream(self.encoder, rate=self.fps, options=self.options)
            self.stream.height, self.stream.width = frames.shape[1:3]
            self.stream.pix_fmt = "yuv420p"
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts, video_frame.time_base = self.num_frames, Fraction(1, self.fps)
            for packet in self.stream.encode(video_frame):
                self.container.mux(packet)
            self.num_frames += 1

    def close(self) -> None:
        """Flush the encoder's delayed frames and close the file."""
        if self.stream is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()

    def abandon(self) -> None:
        """Close the file without encoding what is buffered: it is being thrown away."""
        self.container.close()

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close() if exc_type is None else self.abandon()


def write_video(frames: np.ndarray, path: Path, *, fps: int, codec: str = "libx264", crf: int = 18) -> Path:
    """Encode uint8 RGB frames (T, H, W, 3) to `path` atomically (temporary name, then rename).

    H.264 needs even sizes; yuv420p is what every player and loader reads.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"write_video({path}): expected uint8 (T, H, W, 3) frames, got {frames.dtype} {frames.shape}.")
    path = Path(path)
    options = {"crf": str(crf)} if codec == "libx264" else {}
    with atomic_write(path) as tmp, VideoEncoder(tmp, fps=fps, encoder=codec, options=options) as video:
        video.add(frames)
    return path
