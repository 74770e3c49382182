"""Datasets on the Hugging Face Hub: GR1-100 (training videos) and EVAL-175 (seed image + prompt pairs).

Both are fetched with `huggingface_hub.snapshot_download` at a pinned revision with allow-patterns, into a local
folder that ingest then reads like any other dataset. With `HF_HUB_OFFLINE=1` the same call resolves from the local
cache or fails with the Hub library's own message. Pass a local folder instead of a repo id to skip the Hub.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)

GR1_REPO = "nvidia/GR1-100"
GR1_PATTERNS = ("metadata.csv", "gr1/*.mp4")  # the videos live in gr1/, metadata.csv names them by file name
GR1_VIDEOS_SUBDIR = "gr1"
GR1_CAPTION_PREFIX = "The robot arm is performing a task. "
EVAL_REPO = "nvidia/EVAL-175"
EVAL_SUBDIR = "gr1_object"  # 50 (prompt .txt, image .png) pairs
NUM_ATTEMPTS = 3  # Hub downloads can fail transiently; nothing else is retried


def _is_local(source: str) -> bool:
    return Path(source).is_dir()


def download_dataset(repo_id: str, *, revision: str | None, patterns: tuple[str, ...], local_dir: Path) -> Path:
    """snapshot_download a dataset repo (only `patterns`) into `local_dir`, retrying transient network errors."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    for attempt in range(1, NUM_ATTEMPTS + 1):
        try:
            path = snapshot_download(
                repo_id=repo_id,
                repo_type="dataset",
                revision=revision,
                allow_patterns=list(patterns),
                local_dir=str(local_dir),
            )
            logger.info("dataset %s@%s -> %s", repo_id, revision, path)
            return Path(path)
        except LocalEntryNotFoundError as exc:  # offline and not cached: retrying cannot help
            raise ValueError(
                f"Dataset {repo_id}@{revision} is not available offline and not in {local_dir} "
                f"({exc}); go online once, or pass a local folder with the same layout."
            ) from exc
        except (HfHubHTTPError, OSError) as exc:
            if attempt == NUM_ATTEMPTS:
                raise
            logger.warning("download of %s failed (%s); retry %d/%d", repo_id, exc, attempt, NUM_ATTEMPTS - 1)
            time.sleep(2**attempt)
    raise AssertionError("unreachable")


def fetch_gr1(source: str, *, revision: str | None, local_dir: Path) -> Path:
    """GR1-100's root (metadata.csv + gr1/*.mp4): a local folder as it is, or the Hub repo downloaded."""
    if _is_local(source):
        return Path(source)
    return download_dataset(source, revision=revision, patterns=GR1_PATTERNS, local_dir=local_dir)


def fetch_eval_pairs(source: str, *, revision: str | None, subdir: str, local_dir: Path) -> Path:
    """The folder of (image .png, prompt .txt) pairs: `<source>/<subdir>`, downloading `source` if it is a repo id."""
    root = (
        Path(source)
        if _is_local(source)
        else download_dataset(
            source, revision=revision, patterns=(f"{subdir}/*.png", f"{subdir}/*.txt"), local_dir=local_dir
        )
    )
    pairs = root / subdir
    if not pairs.is_dir():
        raise ValueError(f"{root} has no folder {subdir}/ of (image .png, prompt .txt) pairs; check pairs_subdir.")
    return pairs
