"""Regeneration: new (image, prompt) pairs from an inbox become new episodes of the exported datasets, once each.

Every inbox pair is identified by the sha256 of its image bytes and prompt text. A ledger (`ledger.jsonl`) lists the
pairs already turned into episodes; a run takes only the pairs whose hash is not in it, copies them into a batch
folder named after their hashes (so a renamed or re-dropped file is still the same pair), generates, labels, and
then rewrites the exports from the union of every episode so far. The ledger is written last: a run that dies before
it is redone by the next run (generation skips the videos it already finished), and nothing is ever listed twice.

Layout under `<run_dir>/regenerate/`:
    ledger.jsonl                 one row per pair turned into an episode: hash, inbox file, batch, sample_id
    batches/<batch>/pairs/       the batch's pairs, <hash prefix>.png + .txt
    batches/<batch>/generate/    videos and manifest;  batches/<batch>/label/  actions and manifest
    episodes.jsonl               every episode exported so far (the base run's, then each batch's)
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from cosmos_synth.files import read_jsonl, write_jsonl
from cosmos_synth.generate import list_pairs

logger = logging.getLogger(__name__)

LEDGER = "ledger.jsonl"
EPISODES = "episodes.jsonl"
ID_CHARS = 16  # hex characters of the content hash used as the sample id


@dataclass(frozen=True, kw_only=True)
class Batch:
    name: str  # batch folder name: the first new pair's id and the count, stable for the same inbox
    root: Path  # <regen_dir>/batches/<name>
    pairs_dir: Path  # root / pairs
    entries: list[dict]  # ledger rows to record once the batch is exported


def pair_hash(image: Path, prompt: str) -> str:
    digest = hashlib.sha256(Path(image).read_bytes())
    digest.update(b"\0" + prompt.encode("utf-8"))
    return digest.hexdigest()


def read_ledger(regen_dir: Path) -> dict[str, dict]:
    path = regen_dir / LEDGER
    return {row["hash"]: row for row in read_jsonl(path)} if path.is_file() else {}


def collect_new_pairs(inbox: Path, regen_dir: Path) -> Batch | None:
    """The inbox pairs not yet in the ledger, copied into a new batch folder; None when there are none."""
    ledger = read_ledger(regen_dir)
    new, seen = [], set()
    for pair in list_pairs(inbox):
        digest = pair_hash(pair.image, pair.prompt)
        if digest in ledger or digest in seen:
            logger.info("inbox %s: already an episode (%s), skipped", pair.sample_id, digest[:ID_CHARS])
            continue
        seen.add(digest)
        new.append((pair, digest))
    if not new:
        return None
    name = f"{new[0][1][:ID_CHARS]}-{len(new)}"
    root = regen_dir / "batches" / name
    pairs_dir = root / "pairs"
    pairs_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for pair, digest in new:
        sample_id = digest[:ID_CHARS]
        shutil.copyfile(pair.image, pairs_dir / f"{sample_id}.png")
        (pairs_dir / f"{sample_id}.txt").write_text(pair.prompt, encoding="utf-8")
        entries.append({"hash": digest, "inbox_file": str(pair.image), "batch": name, "sample_id": sample_id})
    logger.info("batch %s: %d new pairs from %s", name, len(new), inbox)
    return Batch(name=name, root=root, pairs_dir=pairs_dir, entries=entries)


def combined_manifest(regen_dir: Path, base_manifest: Path | None, batch_manifest: Path) -> Path:
    """episodes.jsonl = every episode so far (the base run's on first use) + this batch's, no sample twice."""
    path = regen_dir / EPISODES
    if path.is_file():
        rows = read_jsonl(path)
    else:
        rows = read_jsonl(base_manifest) if base_manifest is not None and base_manifest.is_file() else []
    known = {r["sample_id"] for r in rows}
    rows += [r for r in read_jsonl(batch_manifest) if r["sample_id"] not in known]
    return write_jsonl(path, rows)


def record_batch(regen_dir: Path, batch: Batch) -> Path:
    """Add the batch's pairs to the ledger (last step: only after their episodes are exported)."""
    rows = list(read_ledger(regen_dir).values()) + batch.entries
    return write_jsonl(regen_dir / LEDGER, rows)
