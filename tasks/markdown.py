"""Pictures in markdown artifacts. The Prefect UI runs in a browser that cannot read the worker's files, so a picture
is put into the artifact itself, as a data: URI, next to the path of its file."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

EMBED_MAX_BYTES = 1 << 20  # per picture: the artifact is stored in Prefect's database; larger ones are only named
MEDIA_TYPES = {".png": "image/png", ".gif": "image/gif", ".webp": "image/webp", ".jpg": "image/jpeg"}


def _inline_bytes(path: Path) -> tuple[bytes, str] | None:
    """(bytes, media type) small enough to inline: the file itself, or a large still picture as a JPEG."""
    data = path.read_bytes()
    if len(data) <= EMBED_MAX_BYTES:
        return data, MEDIA_TYPES.get(path.suffix.lower(), "image/png")
    if path.suffix.lower() == ".gif":  # an animation re-encoded would lose its frames
        return None
    buffer = io.BytesIO()
    with Image.open(path) as image:
        image.convert("RGB").save(buffer, format="JPEG", quality=80)
    return (buffer.getvalue(), "image/jpeg") if buffer.tell() <= EMBED_MAX_BYTES else None


def picture(path: Path | None, title: str) -> str:
    """Markdown that shows the picture at `path` in the UI and names its file ('' when there is no picture)."""
    if path is None or not Path(path).is_file():
        return ""
    path = Path(path).resolve()
    inline = _inline_bytes(path)
    shown = f"![{title}](data:{inline[1]};base64,{base64.b64encode(inline[0]).decode()})\n\n" if inline else ""
    return f"**{title}**: `{path}`\n\n{shown}"
