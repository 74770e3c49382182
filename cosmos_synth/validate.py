"""Bad input: the checks run on files a stage did not write itself, and what each mode does with a bad sample.

Modes (`IngestConfig.mode`, `GenerateConfig.mode`):
- "strict" (the default): the first bad sample stops the stage with a ValueError that names the file, what is wrong
  and the fix; the stage writes nothing.
- "lenient": a bad sample is skipped and recorded, with that same message as its reason, in `quarantine.jsonl` next
  to the stage's manifest (see :class:`Quarantine`); the stage goes on and fails only when no good sample is left.

Decisions, written down once:
- Images are PNG only and at most MAX_IMAGE_PIXELS, checked from the PNG header before a pixel is decoded, so a
  decompression bomb is refused, never decoded. RGBA, palette, greyscale and 16-bit PNGs are converted to 8-bit RGB
  with a logged warning (alpha is dropped, 16-bit keeps its top 8 bits); a truncated or corrupt PNG is an error.
- Videos of one dataset may differ in size: preprocess resizes every clip to the training size, so a different size
  is only logged. A video whose aspect ratio differs from the dataset's most common size by more than a factor
  MAX_ASPECT_CHANGE would be visibly stretched, so it is a bad sample.
- Sample ids (file stems) must differ case-insensitively: outputs are named `<id>.mp4` and would overwrite each other
  on case-insensitive file systems (macOS, Windows).
- Inputs are read from inside their folder only: a metadata.csv path may not leave the dataset root (`..`, absolute,
  a symbolic link out), and a pair's image or prompt may not be a symbolic link to a file outside the pairs folder
  (a link to another file of the folder is fine).
- Text is read as Python's text mode reads it: in a prompt, CRLF and lone CR line ends become LF; metadata.csv is
  split into lines at LF, CRLF or CR alike, so a caption never holds a line end.
- Weights and adapters are read from safetensors only; nothing is ever unpickled. An adapter's keys, shapes and rank
  are checked against the DiT before the pipeline loads it (cosmos_synth.safe_weights).
"""

from __future__ import annotations

import contextlib
import logging
import struct
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from cosmos_synth.files import inside, write_jsonl

logger = logging.getLogger(__name__)

Mode = Literal["strict", "lenient"]
QUARANTINE_FILE = "quarantine.jsonl"  # next to a stage's manifest: one {"file", "reason", ...} row per skipped sample
MAX_IMAGE_PIXELS = 64_000_000  # width x height above which a PNG is refused before decoding (64 megapixels)
# a video whose width/height differs from the dataset's by more than this factor (e.g. 4:3 in a 16:9 dataset, factor
# 1.33) is a bad sample; 16:10 (1.11) is fine
MAX_ASPECT_CHANGE = 1.25
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------------- quarantine
@dataclass
class Quarantine:
    """The bad samples one stage met: strict mode raises the first, lenient mode records each and goes on."""

    mode: Mode
    entries: list[dict[str, Any]] = field(default_factory=list)  # {"file", "reason", ...extra} per skipped sample

    def reject(self, file: Path | str, error: ValueError, **extra: Any) -> None:
        """Raise `error` (strict), or record it against `file` and log one warning (lenient)."""
        if self.mode != "lenient":
            raise error
        self.entries.append({"file": str(file), "reason": str(error), **extra})
        logger.warning("quarantined %s: %s", file, error)

    def write(self, out_dir: Path) -> Path:
        """Write `out_dir/quarantine.jsonl` atomically (an empty file when nothing was skipped)."""
        return write_jsonl(Path(out_dir) / QUARANTINE_FILE, self.entries)


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Re-raise an OSError met while writing `path` (disk full, read-only disk) as one that names `path` and the fix.

    Meant around atomic writers (temporary name, then rename): when they fail, the previous file is untouched.
    """
    try:
        yield
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"Could not write {path} ({exc.strerror or exc}); no partial file was left and any "
            f"earlier version is untouched. Free space on that disk (or fix its permissions) "
            f"and rerun.",
            str(path),
        ) from exc


# ---------------------------------------------------------------------------------------------------- paths, text
def resolve_inside(root: Path, relative: str, *, what: str) -> Path:
    """`relative` resolved under `root`; absolute paths, `..` and symbolic links leading outside `root` are refused."""
    root = Path(root).resolve()
    lexical, target = root / relative, (root / relative).resolve()  # as written / with links followed
    if not target.is_relative_to(root) and ".." not in lexical.parts and lexical.is_relative_to(root):
        raise ValueError(
            f"{what}: {relative!r} is a symbolic link to {target}, outside the dataset root {root}; "
            f"copy the file into the dataset instead of linking to it."
        )
    return inside(root, relative, what=what)


def check_not_empty(path: Path, what: str) -> None:
    """A zero-byte file is an interrupted copy or download: say so rather than 'cannot be decoded'."""
    if Path(path).stat().st_size == 0:
        raise ValueError(
            f"{what} {path} is empty (0 bytes), usually an interrupted copy or download; copy it again "
            f"or remove it (lenient mode skips it)."
        )


def normalise_line_ends(text: str) -> str:
    """CRLF and lone CR line ends as LF, as Python's text mode (universal newlines) reads them."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_prompt(path: Path) -> str:
    """A prompt file's text (UTF-8, a byte-order mark allowed), line ends as LF, stripped; empty or undecodable text is
    an error."""
    try:
        text = normalise_line_ends(Path(path).read_bytes().decode("utf-8-sig")).strip()
    except UnicodeDecodeError as exc:
        raise ValueError(f"Prompt {path} is not UTF-8 text ({exc}); save it as UTF-8.") from exc
    if not text:
        raise ValueError(f"Prompt {path} is empty; write the task description into it.")
    return text


# ---------------------------------------------------------------------------------------------------- images
def _png_header(path: Path) -> tuple[int, int, int]:
    """(width, height, bit depth) from a PNG's IHDR chunk, read without decoding anything."""
    check_not_empty(path, "Image")
    with Path(path).open("rb") as fh:
        head = fh.read(26)
    if not head.startswith(PNG_SIGNATURE):
        raise ValueError(f"Image {path} is not a PNG file (it starts with {head[:8]!r}); save it as an 8-bit RGB PNG.")
    if len(head) < 26 or head[12:16] != b"IHDR":
        raise ValueError(
            f"Image {path} is a truncated or corrupt PNG (no IHDR header); re-export it as an 8-bit RGB PNG."
        )
    width, height = struct.unpack(">II", head[16:24])
    return width, height, head[24]


def _to_rgb8(image: Image.Image, bit_depth: int) -> tuple[Image.Image, str | None]:
    """8-bit RGB, and a note of what was converted (None when nothing was)."""
    mode = image.mode
    if mode == "RGB":
        return image.copy(), None if bit_depth == 8 else f"{bit_depth}-bit RGB reduced to 8 bits per channel"
    if mode.startswith("I"):  # 16-bit greyscale ("I;16"): keep the top 8 bits, as Pillow does for 16-bit RGB
        grey = np.clip(np.asarray(image).astype(np.int64) >> 8, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB"), f"{bit_depth}-bit greyscale converted to 8-bit RGB"
    alpha = "A" in mode or "transparency" in image.info
    note = f"{mode} ({bit_depth}-bit) converted to 8-bit RGB" + (", alpha channel dropped" if alpha else "")
    return image.convert("RGB"), note


def read_png_rgb(path: Path) -> tuple[Image.Image, str | None]:
    """Decode a PNG as 8-bit RGB: (image, note of the conversion or None). Raises ValueError naming the file.

    The size is checked from the header against MAX_IMAGE_PIXELS first; then every chunk's checksum and the end of
    the file are verified, so truncated or corrupt files fail here instead of decoding to grey.
    """
    width, height, bit_depth = _png_header(path)
    if width * height > MAX_IMAGE_PIXELS or width == 0 or height == 0:
        raise ValueError(
            f"Image {path} is {width}x{height} pixels; cosmos-synth decodes at most MAX_IMAGE_PIXELS = "
            f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels (a guard against decompression bombs), and a "
            f"real size is never 0. Downscale it; generation resizes it to height x width anyway."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our lower limit is checked above
            with Image.open(path, formats=["PNG"]) as image:
                image.verify()  # chunk checksums and the end of the file, without keeping pixels
            with Image.open(path, formats=["PNG"]) as image:
                image.load()
                return _to_rgb8(image, bit_depth)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ValueError(f"Image {path} is truncated or corrupt ({exc}); re-export it as an 8-bit RGB PNG.") from exc


# ---------------------------------------------------------------------------------------------------- pairs
def _with_partners(pairs_dir: Path, images: dict, prompts: dict, quarantine: Quarantine) -> list[str]:
    """Ids that have both halves; each lone half is rejected."""
    good = []
    for stem in sorted(set(images) | set(prompts)):
        if stem in images and stem in prompts:
            good.append(stem)
            continue
        have, missing = (images[stem], f"{stem}.txt") if stem in images else (prompts[stem], f"{stem}.png")
        quarantine.reject(
            have,
            ValueError(f"{have} has no partner {missing} in {pairs_dir}; add it or remove {have.name}."),
            sample_id=stem,
        )
    return good


def _without_case_collisions(pairs_dir: Path, stems: list[str], images: dict, quarantine: Quarantine) -> list[str]:
    """The first of ids that differ only in letter case is kept, the others rejected."""
    first: dict[str, str] = {}
    good = []
    for stem in stems:
        other = first.setdefault(stem.casefold(), stem)
        if other == stem:
            good.append(stem)
            continue
        quarantine.reject(
            images[stem],
            ValueError(
                f"Pair ids {other!r} and {stem!r} in {pairs_dir} differ only in letter case; their outputs "
                f"(<id>.mp4) would overwrite each other on case-insensitive file systems. Rename one pair (e.g. "
                f"{stem}.png and {stem}.txt)."
            ),
            sample_id=stem,
        )
    return good


def _without_links_out(
    pairs_dir: Path, stems: list[str], images: dict, prompts: dict, quarantine: Quarantine
) -> list[str]:
    """Ids whose prompt and image lie inside `pairs_dir`; one that is a symbolic link to a file outside is rejected."""
    root, good = pairs_dir.resolve(), []
    for stem in stems:
        outside = [
            (what, path)
            for what, path in (("Prompt", prompts[stem]), ("Image", images[stem]))
            if not path.resolve().is_relative_to(root)
        ]
        if not outside:
            good.append(stem)
            continue
        what, path = outside[0]
        quarantine.reject(
            path,
            ValueError(
                f"{what} {path} is a symbolic link to {path.resolve()}, outside the pairs folder {root}; copy the file "
                f"into the pairs folder instead of linking to it (lenient mode skips the pair)."
            ),
            sample_id=stem,
        )
    return good


def check_pairs(pairs_dir: Path, quarantine: Quarantine) -> list[tuple[int, str, Path, str]]:
    """(index, id, image, prompt) of every good `<id>.png` + `<id>.txt` pair in `pairs_dir`, sorted by id.

    Cheap checks (missing halves, colliding ids, symbolic links out of the folder) run over the whole folder before
    any file is read. `index` is the id's position among every id in the folder, bad ones included, so skipping a bad
    pair never changes another pair's seed. Every image is decoded once here, so a bad one is found before generation
    starts.
    """
    pairs_dir = Path(pairs_dir)
    if not pairs_dir.is_dir():
        raise ValueError(f"pairs_dir {pairs_dir} does not exist; point it at a folder of <id>.png + <id>.txt pairs.")
    images = {p.stem: p for p in pairs_dir.glob("*.png") if p.is_file()}
    prompts = {p.stem: p for p in pairs_dir.glob("*.txt") if p.is_file()}
    if not images and not prompts:
        raise ValueError(f"pairs_dir {pairs_dir} holds no <id>.png + <id>.txt pairs.")
    index = {stem: i for i, stem in enumerate(sorted(set(images) | set(prompts)))}
    stems = _without_case_collisions(
        pairs_dir, _with_partners(pairs_dir, images, prompts, quarantine), images, quarantine
    )
    stems = _without_links_out(pairs_dir, stems, images, prompts, quarantine)
    pairs = []
    for stem in stems:
        file = prompts[stem]  # the file at fault, for the record: the prompt, then the image
        try:
            prompt = read_prompt(file)
            file = images[stem]
            _, note = read_png_rgb(file)
        except ValueError as exc:
            quarantine.reject(file, exc, sample_id=stem)
            continue
        if note:
            logger.warning("image %s: %s", images[stem], note)
        pairs.append((index[stem], stem, images[stem], prompt))
    if not pairs:
        raise ValueError(
            f"pairs_dir {pairs_dir}: no good <id>.png + <id>.txt pair is left ({len(quarantine.entries)} "
            f"quarantined, first: {quarantine.entries[0]['reason']}); fix the pairs and rerun."
        )
    return pairs


# ---------------------------------------------------------------------------------------------------- videos
def common_size(sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """The most common (height, width); on a tie, the one seen first."""
    return Counter(sizes).most_common(1)[0][0]


def check_aspect_ratio(what: str, size: tuple[int, int], reference: tuple[int, int]) -> None:
    """Refuse a (height, width) whose aspect ratio differs from `reference`'s by more than MAX_ASPECT_CHANGE."""
    aspect, wanted = size[1] / size[0], reference[1] / reference[0]
    stretch = max(aspect / wanted, wanted / aspect)
    if stretch > MAX_ASPECT_CHANGE:
        raise ValueError(
            f"{what} is {size[1]}x{size[0]} (aspect {aspect:.2f}) but most videos of the dataset are "
            f"{reference[1]}x{reference[0]} (aspect {wanted:.2f}); resizing both to one training size "
            f"would stretch it by {stretch - 1:.0%} (MAX_ASPECT_CHANGE allows "
            f"{MAX_ASPECT_CHANGE - 1:.0%}). Crop or pad it to aspect {wanted:.2f}, or drop it (lenient "
            f"mode skips it)."
        )
