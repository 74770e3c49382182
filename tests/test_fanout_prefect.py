"""Generation fanned out over a work pool: two process workers (one per "GPU") share one run's shards."""

from __future__ import annotations

import json

import pytest

from cosmos_synth.files import read_jsonl
from cosmos_synth.generate import video_is_complete
from cosmos_synth.layout import ANIMATION, CONTACT_SHEET, PREVIEWS_DIR, SHARDS_DIR
from cosmos_synth.recipe import load_run_config
from flows.local_stack import DEMO_DEPLOYMENT, local_stack

RUN_TIMEOUT_S = 1500


@pytest.mark.e2e
def test_two_workers_share_one_generation_run(tmp_path):
    overrides = {
        "run_dir": str(tmp_path / "run"),
        "cache_dir": str(tmp_path / "cache"),
        "generate_shards": 2,
        "label": False,
        "train.num_epochs": 1,
        "demo.num_episodes": 4,
    }
    with local_stack(tmp_path / "prefect") as stack:
        for name in ("gpu-a", "gpu-b"):  # what `CUDA_VISIBLE_DEVICES=i prefect worker start --pool gpu` does
            stack.start_worker("gpu", name=name, limit=1, env={"COSMOS_SYNTH_WORKER": name, "CUDA_VISIBLE_DEVICES": ""})
        run = stack.run_deployment(DEMO_DEPLOYMENT, params={"overrides": overrides}, timeout_s=RUN_TIMEOUT_S)
        artifacts = stack.artifacts(run.flow_run_id) if run.flow_run_id else []
    assert run.returncode == 0, run.output[-4000:]
    cfg = load_run_config("demo", overrides)
    out = cfg.stage_dir("generate")
    shards = {p.stem: [r["sample_id"] for r in read_jsonl(p)] for p in sorted((out / SHARDS_DIR).glob("*.jsonl"))}
    assert sorted(shards) == ["shard-000", "shard-001"]
    everything = [sid for ids in shards.values() for sid in ids]
    assert len(everything) == len(set(everything)) == 4  # no sample generated twice, none lost
    merged = read_jsonl(out / "manifest.jsonl")
    assert sorted(r["sample_id"] for r in merged) == sorted(everything)
    assert [r["seed"] for r in merged] == [0, 1, 2, 3]  # seeds follow the global pair order, not the shard
    assert all(video_is_complete(out / "videos" / f"{sid}.mp4", cfg.num_frames) for sid in everything)
    assert not list((out / "videos").glob(".*"))  # no temporary files left behind
    workers = {json.loads((out / SHARDS_DIR / f"{s}.worker.json").read_text())["COSMOS_SYNTH_WORKER"] for s in shards}
    assert workers == {"gpu-a", "gpu-b"}  # both workers took a shard of the same run
    assert "generation-shards" in {a["key"] for a in artifacts}
    progress = [a for a in artifacts if a["key"] == "generation-progress"]  # the parent's, over every shard
    assert [a["data"] for a in progress] == [100.0] and progress[0]["description"].startswith("video 4/4"), progress
    for folder in ("", "shard-000", "shard-001"):  # each shard's pictures, and the merged run's
        assert all((out / PREVIEWS_DIR / folder / name).is_file() for name in (CONTACT_SHEET, ANIMATION)), folder
    assert (cfg.stage_dir("export") / "lerobot" / "meta" / "info.json").is_file()
