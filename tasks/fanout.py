"""Fan generation out over a work pool: one `generate-shard` flow run per shard, waited for, retried, merged."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.logging import get_run_logger

from cosmos_synth.config import GenerateConfig, config_to_dict
from cosmos_synth.files import read_jsonl
from cosmos_synth.generate import GenerateResult, list_pairs, manifest_path, merge_shards, split_shards
from cosmos_synth.progress import ProgressReporter
from tasks.progress import ProgressArtifact

POLL_S = 3  # how often the parent looks at its shards' states
MAX_ATTEMPTS = 3  # a failed or crashed shard is run again (it skips the samples it already finished)


def fan_out_generation(cfg: GenerateConfig, *, num_shards: int, deployment: str) -> tuple[GenerateResult, list]:
    """Run every shard as a child flow run of `deployment` and merge their manifests; return (merged, one row per
    shard: flow run, attempts, samples, and the worker that ran it)."""
    logger = get_run_logger()
    shards = split_shards([p.sample_id for p in list_pairs(cfg.pairs_dir)], num_shards)
    config = config_to_dict(cfg)
    attempts = {name: 0 for name in shards}
    running = {name: _submit(deployment, config, name, ids, attempts) for name, ids in shards.items()}
    outputs = {}
    report = ProgressReporter(
        ProgressArtifact("generation-progress"),
        "generate",
        unit="video",
        total=sum(len(ids) for ids in shards.values()),
    ).start()
    with get_client(sync_client=True) as client:
        while running:
            time.sleep(POLL_S)
            report.update(_videos_done(cfg, shards))
            for name, flow_run_id in list(running.items()):
                state = client.read_flow_run(flow_run_id).state
                if not state.is_final():
                    continue
                del running[name]
                if state.is_completed():
                    outputs[name] = flow_run_id
                elif attempts[name] < MAX_ATTEMPTS:
                    logger.warning(
                        "shard %s ended %s; running it again (attempt %d)", name, state.type.value, attempts[name] + 1
                    )
                    running[name] = _submit(deployment, config, name, shards[name], attempts)
                else:
                    raise RuntimeError(
                        f"shard {name} ended {state.type.value} after {MAX_ATTEMPTS} attempts: {state.message}"
                    )
    merged = merge_shards(cfg, shards)
    report.update(merged.num_videos)
    workers = [
        {
            "shard": name,
            "flow_run": str(outputs[name]),
            "attempts": attempts[name],
            "samples": len(shards[name]),
            **json.loads((manifest_path(replace(cfg, shard=name)).with_suffix(".worker.json")).read_text()),
        }
        for name in shards
    ]
    return merged, workers


def _videos_done(cfg: GenerateConfig, shards: dict[str, list[str]]) -> int:
    """Videos the shards have finished so far (each shard rewrites its manifest after every video)."""
    paths = [manifest_path(replace(cfg, shard=name)) for name in shards]
    return sum(len(read_jsonl(path)) for path in paths if path.is_file())


def _submit(deployment: str, config: dict[str, Any], name: str, ids: list[str], attempts: dict[str, int]):
    attempts[name] += 1
    flow_run = run_deployment(
        deployment, parameters={"config": config, "shard": name, "sample_ids": ids}, timeout=0, as_subflow=True
    )
    return flow_run.id
