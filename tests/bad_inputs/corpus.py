"""Bad input, made on demand: one small builder per kind of bad file, each writing into a folder the test owns.

Nothing here is a committed binary blob; every file is generated from a few lines, so the corpus shows exactly how
each file is broken. Builders take the path to write and return it.

Kinds (the test that covers each is named after it in tests/test_bad_inputs.py):
    videos      random bytes .mp4, first half of a real .mp4, zero-byte file, text renamed .mp4, audio-only .mp4,
                too few frames, far-off aspect ratio
    metadata    line without caption, empty caption, non-UTF-8 line, duplicate / case-colliding ids, `../` path,
                absolute path, symbolic link out of the root; BOM + CRLF (must work)
    images      RGBA, greyscale, 16-bit greyscale, 16-bit RGB, palette (converted); truncated, bad checksum, JPEG
                named .png, zero bytes, 100-megapixel header (refused)
    pairs       missing half, empty prompt, non-UTF-8 prompt, case-colliding ids, image or prompt a symbolic link out
                of the pairs folder
    weights     pickle named .safetensors, legacy pickle, .bin adapter, another architecture, wrong shape, rank
                unlike its metadata, NaN; a pipeline folder whose DiT weights are only a pickle
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from cosmos_synth.video import write_video


def _write(path: Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------------- videos


def good_video(path: Path, *, num_frames: int = 33, height: int = 64, width: int = 96, seed: int = 0) -> Path:
    frames = np.random.default_rng(seed).integers(0, 255, (num_frames, height, width, 3), dtype=np.uint8)
    return write_video(frames, Path(path), fps=16)


def random_bytes_mp4(path: Path) -> Path:
    return _write(path, np.random.default_rng(0).bytes(4096))


def truncated_mp4(path: Path, source: Path) -> Path:
    """The first half of a real mp4 (an interrupted download: the index at the end is gone)."""
    data = Path(source).read_bytes()
    return _write(path, data[: len(data) // 2])


def empty_file(path: Path) -> Path:
    return _write(path, b"")


def text_as_mp4(path: Path) -> Path:
    return _write(path, b"<html><body>404 Not Found</body></html>\n")


def audio_only_mp4(path: Path) -> Path:
    """A valid mp4 with one AAC audio stream and no video stream."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        for index in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, index * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


# ---------------------------------------------------------------------------------------------------- metadata


def metadata_csv(path: Path, lines: list[str | bytes], *, bom: bool = False, crlf: bool = False) -> Path:
    """metadata.csv from text lines (or raw byte lines, for bad encodings)."""
    end = b"\r\n" if crlf else b"\n"
    data = b"".join((line if isinstance(line, bytes) else line.encode()) + end for line in lines)
    return _write(path, (b"\xef\xbb\xbf" if bom else b"") + data)


def symlink_outside(link: Path, target: Path) -> Path:
    """`link` inside the dataset (or pairs folder) pointing at `target` outside it."""
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)
    return link


# ---------------------------------------------------------------------------------------------------- images


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, *, bit_depth: int = 8, colour_type: int = 2, rows: bytes = b"") -> bytes:
    """A PNG written by hand: IHDR with any size, IDAT holding `rows` (filter byte + pixels per row), IEND."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


def huge_png(path: Path, width: int = 10_000, height: int = 10_000) -> Path:
    """A header claiming 100 megapixels over a few bytes of data: a decompression bomb's shape."""
    return _write(path, png_bytes(width, height))


def rgb_png(path: Path, *, height: int = 64, width: int = 96, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return Path(path)


def rgba_png(path: Path) -> Path:
    pixels = np.zeros((64, 96, 4), np.uint8)
    pixels[..., 0], pixels[..., 3] = 200, 128  # red, half transparent
    Image.fromarray(pixels).save(path)
    return Path(path)


def grey_png(path: Path) -> Path:
    Image.fromarray(np.full((64, 96), 77, np.uint8)).save(path)
    return Path(path)


def grey16_png(path: Path, value: int = 0x1234) -> Path:
    """16-bit greyscale: every pixel `value` (0..65535)."""
    Image.fromarray(np.full((64, 96), value, np.uint16)).save(path)
    return Path(path)


def rgb16_png(path: Path, value: tuple[int, int, int] = (0xFF00, 0x8000, 0x0100)) -> Path:
    """16-bit RGB (Pillow cannot write it, so it is written by hand)."""
    row = b"\x00" + np.tile(np.array(value, ">u2"), 96).tobytes()
    return _write(path, png_bytes(96, 64, bit_depth=16, colour_type=2, rows=row * 64))


def palette_png(path: Path) -> Path:
    Image.fromarray(np.full((64, 96, 3), 40, np.uint8)).convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    return Path(path)


def truncated_png(path: Path) -> Path:
    data = rgb_png(path).read_bytes()
    return _write(path, data[: len(data) // 2])


def bad_checksum_png(path: Path) -> Path:
    """One byte of pixel data flipped: the IDAT checksum no longer matches."""
    data = bytearray(rgb_png(path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    return _write(path, bytes(data))


def jpeg_as_png(path: Path) -> Path:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(buffer, format="JPEG")
    return _write(path, buffer.getvalue())


def latin1_text(path: Path, text: str = "Le bras du robot saisit le cube rouge, puis l'éloigne.") -> Path:
    return _write(path, text.encode("latin-1"))


# ---------------------------------------------------------------------------------------------------- weights


def pickled_adapter(path: Path, source: Path) -> Path:
    """A real adapter's tensors written with torch.save (a zip of pickles) under the safetensors name."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(load_file(str(source)), path)
    return Path(path)


def legacy_pickle(path: Path) -> Path:
    """A plain pickle (protocol 2), the format that runs code when loaded."""
    return _write(path, pickle.dumps({"transformer.x.lora.down.weight": [0.0]}, protocol=2))


def edited_adapter(path: Path, source: Path, *, rename=None, reshape=None, metadata=None, nan_suffix=None) -> Path:
    """A copy of a real adapter with keys renamed (`rename(key) -> key`), tensors replaced (`reshape(key, t) -> t`),
    metadata replaced, or the first tensor whose key ends in `nan_suffix` set to NaN."""
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as fh:
        original = fh.metadata() or {}
    tensors = {}
    weights = load_file(str(source))
    nan_key = next((k for k in weights if k.endswith(nan_suffix)), None) if nan_suffix else None
    for key, tensor in weights.items():
        tensor = reshape(key, tensor) if reshape else tensor
        if key == nan_key:
            tensor = torch.full_like(tensor, float("nan"))
        tensors[rename(key) if rename else key] = tensor.contiguous()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=original if metadata is None else metadata)
    return Path(path)


def pickled_pipeline(folder: Path, model: Path) -> Path:
    """A copy of a model folder whose DiT weights exist only as a pickled diffusion_pytorch_model.bin."""
    shutil.copytree(model, folder)
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(str(weights)), weights.with_suffix(".bin"))
    weights.unlink()
    return folder
