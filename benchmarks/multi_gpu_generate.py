"""multi_gpu.py's generation part: one finetune-and-generate run per worker count, its shards on the `gpu` pool.

flows/local_stack.py starts a Prefect server, creates the pools, deploys prefect.yaml and starts a `cpu` pool worker,
which runs the parent flow (`finetune-and-generate/demo`, the deployment on the `cpu` pool, with recipe=gr1), as in
tests/test_fanout_prefect.py; one `gpu` pool worker per GPU (CUDA_VISIBLE_DEVICES=i, --limit 1) runs the shards.
The run: the gr1 recipe at the eval setting (93 frames at 432x768, 36 steps, guidance 7, compiled DiT blocks) with
FP8 matmuls, on a full-size random model saved once as a diffusers folder, 2 synthetic clips (1 epoch of training,
not compiled) and synthetic pairs (fullsize.py). The work grows with the workers (4 pairs in 2 shards per worker by
default: 8 pairs in `generate_shards=4` for two workers), so every shard and every worker does the same work in
each run and videos/hour compares like with like; a run takes about as long whatever the worker count. The runs
share one run folder: the first trains, later ones reuse its adapter (a finished stage with the same config is not
repeated) and generate again into an empty generate/. The largest worker count runs first, so cold caches (files,
compiled kernels) slow it, not the one-worker run.

Without prefect (not importable) the same shard code runs through the CLI instead ("path": "cli"): the stages up to
training once, then `python -m cosmos_synth.cli generate` with generate.shard and generate.sample_ids, one process
per shard, one shard at a time per GPU, and the shards merged by cosmos_synth.generate.merge_shards.

Per worker count: videos/hour over the shards' span (first start to last end), the duplicates and missing pairs of
the merged manifest (check_manifest), the workers' seconds outside any shard (picking a run up, starting its
process), and per shard its worker, seconds, seconds before its first video was written (model load, compilation,
prompt encoding, one video) and seconds per later video.
"""

from __future__ import annotations

import functools
import gc
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [p for p in (str(REPO), str(REPO / "benchmarks")) if p not in sys.path]

import fullsize as fs  # noqa: E402

from cosmos_synth.files import atomic_dir, read_jsonl  # noqa: E402
from cosmos_synth.generate import list_pairs, merge_shards, split_shards, video_is_complete  # noqa: E402
from cosmos_synth.layout import MANIFEST, SHARDS_DIR  # noqa: E402
from cosmos_synth.recipe import load_run_config  # noqa: E402
from cosmos_synth.stages import stages_of  # noqa: E402

RECIPE = "gr1"
NUM_CLIPS = 2  # training clips: one epoch of them trains the adapter that generation fuses
RUN_TIMEOUT_S = 3 * 3600


def save_random_model(folder: Path, device: str) -> Path:
    """The full-size pipeline with random weights (fullsize.build_pipeline) as a diffusers folder, built once."""
    if not (folder / "model_index.json").is_file():
        with atomic_dir(folder) as tmp:
            fs.build_pipeline(fs.build_vae(device), device).save_pretrained(tmp, safe_serialization=True)
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    return folder


def written_once(folder: Path, write) -> Path:
    """`folder`, written by `write(tmp)` unless it exists (atomic_dir: a folder that exists is complete)."""
    if not folder.is_dir():
        with atomic_dir(folder) as tmp:
            write(tmp)
    return folder


def run_overrides(work: Path, inputs: dict[str, Path], num_shards: int, device: str) -> dict:
    values = {
        "run_dir": str(work / "run"),
        "source": "local",
        "dataset_dir": str(inputs["dataset"]),
        "videos_dir": "videos",
        "caption_prefix": "",
        "pairs_dir": str(inputs["pairs"]),
        "pairs_repo": None,
        "model": str(inputs["model"]),
        "revision": None,
        "guardrail": False,  # random weights, not NVIDIA's
        "label": False,
        "generate_shards": num_shards,
        "cache.num_windows": 1,
        "train.num_epochs": 1,  # training only makes the adapter to fuse; multi_gpu.py measures its speed
        "train.compile": False,
        "generate.fp8_matmuls": True,
    }
    if device == "cpu":  # a smoke run at fullsize.py's (shrunk) sizes, nothing compiled
        values |= {"device": "cpu", "height": fs.HEIGHT, "width": fs.WIDTH, "num_frames": fs.FRAMES}
        values |= {"generate.compile": False}
    return values


def worker_env(index: int, device: str) -> dict[str, str]:
    return {"CUDA_VISIBLE_DEVICES": str(index) if device == "cuda" else "", "COSMOS_SYNTH_WORKER": f"gpu-{index}"}


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def run_prefect(stack_dir: Path, overrides: dict, workers: int, device: str) -> list[dict]:
    """One finetune-and-generate run on a local stack with `workers` gpu-pool workers; each shard's run times."""
    from flows.local_stack import DEMO_DEPLOYMENT, local_stack

    with local_stack(stack_dir) as stack:
        for i in range(workers):
            stack.start_worker("gpu", name=f"gpu-{i}", limit=1, env=worker_env(i, device))
        params = {"recipe": RECIPE, "overrides": overrides}
        run = stack.run_deployment(DEMO_DEPLOYMENT, params=params, timeout_s=RUN_TIMEOUT_S)
        if run.returncode != 0:
            raise RuntimeError(f"the flow run did not complete; logs in {stack_dir}:\n{run.output[-4000:]}")
        table = next(a for a in stack.artifacts(run.flow_run_id) if a["key"] == "generation-shards")
        rows = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
        runs = {row["shard"]: stack.flow_run(row["flow_run"]) for row in rows}
    return [
        {"shard": row["shard"], "worker": row.get("COSMOS_SYNTH_WORKER"), "attempts": row["attempts"]}
        | {"start": _seconds(runs[row["shard"]]["start_time"]), "end": _seconds(runs[row["shard"]]["end_time"])}
        for row in rows
    ]


def run_cli(log_dir: Path, overrides: dict, workers: int, device: str) -> list[dict]:
    """The same run through the CLI: stages up to training, then one `generate` process per shard, a GPU each."""
    cfg = load_run_config(RECIPE, overrides)
    params = [f"--param={key}={json.dumps(value)}" for key, value in overrides.items()]
    log_dir.mkdir(parents=True, exist_ok=True)

    def cli(command: str, *extra: str, env: dict | None = None, log: str = "cli.log") -> None:
        with open(log_dir / log, "ab") as out:
            subprocess.run(
                [sys.executable, "-m", "cosmos_synth.cli", command, "-r", RECIPE, *params, *extra],
                cwd=REPO,
                env={**os.environ, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
            )

    for stage in stages_of(cfg):
        if stage.name == "generate":
            break
        cli(stage.name)
    shards = split_shards([p.sample_id for p in list_pairs(cfg.resolved_pairs_dir)], cfg.generate_shards)
    queue, timings = list(shards.items()), []

    def worker(index: int) -> None:
        while queue:
            name, ids = queue.pop(0)  # list.pop is atomic under the GIL: each shard goes to one worker
            row = {"shard": name, "worker": f"gpu-{index}", "attempts": 1, "start": time.time()}
            shard = [f"--param=generate.shard={json.dumps(name)}", f"--param=generate.sample_ids={json.dumps(ids)}"]
            cli("generate", *shard, env=worker_env(index, device), log=f"gpu-{index}.log")
            timings.append(row | {"end": time.time()})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(timings) != len(shards):
        raise RuntimeError(f"{len(shards) - len(timings)} shards failed; see {log_dir}/gpu-*.log")
    merge_shards(cfg.generate_config(cfg.trained_dir), shards)
    return sorted(timings, key=lambda row: row["shard"])


def check_manifest(out_dir: Path, pairs_dir: Path, num_frames: int) -> dict:
    """From the shards' manifests and the merged manifest: pairs generated more than once (`duplicates`) and pairs
    without a video that decodes to num_frames frames (`missing`)."""
    pairs = [p.sample_id for p in list_pairs(pairs_dir)]
    shard_ids = [r["sample_id"] for path in sorted((out_dir / SHARDS_DIR).glob("*.jsonl")) for r in read_jsonl(path)]
    merged = read_jsonl(out_dir / MANIFEST) if (out_dir / MANIFEST).is_file() else []
    merged_ids = [r["sample_id"] for r in merged]
    verified = {r["sample_id"] for r in merged if video_is_complete(Path(r["video"]), num_frames)}
    return {
        "pairs": len(pairs),
        "videos": len(verified),
        "duplicates": len(shard_ids) - len(set(shard_ids)) + len(merged_ids) - len(set(merged_ids)),
        "missing": sum(1 for sid in pairs if sid not in verified),
    }


def add_video_times(out_dir: Path, shard: dict) -> dict:
    """A shard's seconds, its seconds before the first video (from the videos' modification times) and the median
    seconds of each later video."""
    written = sorted(
        Path(r["video"]).stat().st_mtime for r in read_jsonl(out_dir / SHARDS_DIR / f"{shard['shard']}.jsonl")
    )
    gaps = [b - a for a, b in zip(written, written[1:], strict=False)]
    return shard | {
        "s": round(shard["end"] - shard["start"], 1),
        "before_first_video_s": round(written[0] - shard["start"], 1) if written else None,
        "s_per_video": round(statistics.median(gaps), 1) if gaps else None,
    }


def measure(work: Path, inputs: dict[str, Path], workers: int, per_worker: tuple[int, int], device: str, path: str):
    """One run with `workers` workers over per_worker = (pairs, shards) times `workers`; its row."""
    num_pairs, num_shards = (workers * n for n in per_worker)
    pairs = written_once(work / f"pairs-{num_pairs}", lambda tmp: fs.make_pairs(tmp, num_pairs))
    overrides = run_overrides(work, inputs | {"pairs": pairs}, num_shards, device)
    cfg = load_run_config(RECIPE, overrides)
    for stage in ("generate", "export"):  # generation again from nothing; training and the cache are reused
        shutil.rmtree(cfg.stage_dir(stage), ignore_errors=True)
    log_dir = work / "logs" / f"{workers}workers"
    if path == "prefect":
        shards = run_prefect(log_dir, overrides, workers, device)
    else:
        shards = run_cli(log_dir, overrides, workers, device)
    out_dir = cfg.stage_dir("generate")
    shards = [add_video_times(out_dir, shard) for shard in shards]
    check = check_manifest(out_dir, cfg.resolved_pairs_dir, cfg.num_frames)
    span = max(s["end"] for s in shards) - min(s["start"] for s in shards)
    per_video = [s["s_per_video"] for s in shards if s["s_per_video"] is not None]
    return {
        "workers": workers,
        "path": path,
        "shards": len(shards),
        "span_s": round(span, 1),
        "videos_per_hour": round(check["videos"] / span * 3600, 1),
        **check,
        "workers_used": sorted({s["worker"] for s in shards}),
        "s_per_video": round(statistics.median(per_video), 1) if per_video else None,
        "before_first_video_s": round(statistics.median(s["before_first_video_s"] for s in shards), 1),
        # worker seconds outside any shard's flow run: picking the run up, starting its process, importing
        "outside_shards_s": round(workers * span - sum(s["s"] for s in shards), 1),
        "shard_runs": [{k: v for k, v in s.items() if k not in ("start", "end")} for s in shards],
    }


def run(work: Path, worker_counts: list[int], per_worker: tuple[int, int], device: str, via: str, measured):
    """A row per worker count (`measured(folder, measure)` keeps each, see multi_gpu.py), with its speed-up over one
    worker; per_worker = (pairs, shards) per worker. `via`: "prefect", "cli", or "auto" (prefect when importable)."""
    work = work.resolve()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    path = via if via != "auto" else "prefect" if importlib.util.find_spec("prefect") else "cli"

    @functools.cache
    def inputs() -> dict[str, Path]:  # built for the first measurement, not when every row is kept
        return {
            "model": save_random_model(work / "model", device),
            "dataset": written_once(work / "dataset", lambda tmp: fs.write_clips(tmp, NUM_CLIPS)),
        }

    rows = [
        measured(work / "generate" / f"{n}workers", lambda _, n=n: measure(work, inputs(), n, per_worker, device, path))
        for n in worker_counts
    ]
    rows = [row for row in rows if row is not None]
    one = next((r["videos_per_hour"] for r in rows if r["workers"] == 1), None)
    for row in rows:
        row["speedup"] = round(row["videos_per_hour"] / one, 3) if one else None
    return sorted(rows, key=lambda row: row["workers"])


def print_rows(rows: list[dict]) -> None:
    print(f"\n{'generate':<10}{'workers':>8}{'videos/h':>10}{'speed-up':>10}{'dup.':>6}{'missing':>9}", end="")
    print(f"{'s/video':>9}{'s to 1st video':>16}{'outside shards s':>18}  path")
    for r in rows:
        print(f"{'':<10}{r['workers']:>8}{r['videos_per_hour']:>10}{str(r['speedup']):>10}{r['duplicates']:>6}", end="")
        print(f"{r['missing']:>9}{str(r['s_per_video']):>9}{str(r['before_first_video_s']):>16}", end="")
        print(f"{r['outside_shards_s']:>18}  {r['path']}")
