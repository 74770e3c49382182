"""generate-shard: one shard of a fanned-out generation, run by whichever worker of the pool picks it up.

The parent flow (finetune-and-generate with generate_shards > 1) splits the (image, prompt) pairs into shards and runs
one `generate-shard` flow run per shard; each GPU worker (`CUDA_VISIBLE_DEVICES=i prefect worker start --pool gpu
--limit 1`) takes one at a time. A shard skips samples whose videos already exist and verify, writes each video under
a temporary name, and records its samples in `shards/<shard>.jsonl`; the parent merges those manifests.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from cosmos_synth.config import GenerateConfig, config_from_dict
from cosmos_synth.files import write_text_atomic
from cosmos_synth.generate import generate_videos
from tasks.markdown import picture
from tasks.progress import ProgressArtifact

# A worker's identity, recorded with each shard: its GPU as the worker's environment sets it, and an optional name.
WORKER_ENV = ("COSMOS_SYNTH_WORKER", "CUDA_VISIBLE_DEVICES")


@flow(name="generate-shard")
def generate_shard(config: dict[str, Any], shard: str, sample_ids: list[str]) -> dict[str, Any]:
    """Generate `sample_ids` of the GenerateConfig `config` as shard `shard`; return its manifest and worker."""
    cfg = config_from_dict(GenerateConfig, {**config, "shard": shard, "sample_ids": sample_ids}, where="config")
    result = generate_videos(cfg, progress=ProgressArtifact(f"generation-progress-{shard}"))
    worker = {name: os.environ.get(name) for name in WORKER_ENV} | {"host": socket.gethostname(), "pid": os.getpid()}
    # Flow results are not persisted; the parent reads who ran the shard from this file next to its manifest.
    write_text_atomic(result.manifest.with_suffix(".worker.json"), json.dumps(worker))
    create_table_artifact(
        key=f"generated-{shard}",
        table=result.summary_rows(),
        description=f"{shard}: {result.num_videos} videos ({result.num_skipped} already there) on worker {worker}",
    )
    if result.previews is not None:
        create_markdown_artifact(
            key=f"previews-{shard}",
            description=f"{shard}: the first videos",
            markdown=picture(result.previews.contact_sheet, "Generated videos")
            + picture(result.previews.animation, "Preview"),
        )
    return {
        "shard": shard,
        "manifest": str(result.manifest),
        "num_videos": result.num_videos,
        "num_skipped": result.num_skipped,
        "worker": worker,
    }
