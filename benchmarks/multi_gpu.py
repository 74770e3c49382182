"""Two GPUs (or more): DDP training through `accelerate launch`, and generation with one Prefect worker per GPU.

Training: `cosmos_synth.train.train` itself, started by `accelerate launch` with the flags of
`cosmos_synth.launch.accelerate_command`, with 1 then 2 processes (NCCL on GPUs, gloo on the CPU), in train_step.py's
fast (fast_sac14) and low-memory (low_memory) modes, at 93x432x768 on full-size random weights (fullsize.py) read
from a latent cache of random latents (values do not change a step's speed). Each rank builds the same seeded
weights, then reports its own peak memory, the SHA-256 of its adapter after the last step (the ranks must agree),
the median of its steps split into input preparation and forward + backward + all-reduce + optimizer, and the kernel
seconds of its last step by kind (all-reduce included; fullsize.kernel_groups). s/step is the median of rank 0's
steps after `--warmup`, the two profiled steps left out; efficiency = samples/s on N GPUs / (N x samples/s on 1).
The 100-epoch GR1-100 projection takes 92 clips (docs/recipe.md: 100 epochs are 9,200 one-clip steps).

Generation: multi_gpu_generate.py (one finetune-and-generate run per worker count, shards on the `gpu` pool).

    python benchmarks/multi_gpu.py --out benchmarks/results

Each finished measurement is kept under --work and a rerun skips it, so the command can be repeated until
everything is measured; where one call may only last so long, stop it with SIGTERM (`timeout 550 python ...`): it
stops what it started, and the next call goes on from there. The JSON and the table cover what is measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import signal
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fullsize as fs  # noqa: E402
import train_step  # noqa: E402

from cosmos_synth.config import TrainConfig, load_config, write_config  # noqa: E402
from cosmos_synth.files import atomic_write, read_jsonl, write_jsonl, write_text_atomic  # noqa: E402
from cosmos_synth.launch import ChildFollower, _run_child, accelerate_command  # noqa: E402
from cosmos_synth.layout import LOSS_LOG, MANIFEST, TRAIN_LOG  # noqa: E402

GR1_CLIPS = 92  # docs/recipe.md: the reference's 100 epochs are 9,200 steps of one clip on one GPU
REFERENCE_CLAIM = "diffusers examples/cosmos: 100 epochs in 17 h on 1 H100, 2.5 h on 8 H100s (6.8x)"
NUM_WINDOWS = 4  # cached windows per clip, as the gr1 recipe
PROMPT_TOKENS = 512  # the pipeline pads every prompt to 512 tokens
SPEC = "rank_spec.json"  # what the parent tells each rank: network sizes, planned steps, warm-up steps
PROFILED_STEPS = 2  # the last steps of each rank run under the profiler (its warm-up + one recorded step)


def write_latent_cache(root: Path, num_clips: int) -> Path:
    """A latent cache in cosmos_synth.cache's layout with `num_clips` clips: random latents (NUM_WINDOWS windows at
    FRAMES x HEIGHT x WIDTH) and one random prompt embedding. Files are shared; each count gets its own manifest."""
    latent_shape = (NUM_WINDOWS, 16, (fs.FRAMES - 1) // 4 + 1, fs.HEIGHT // 8, fs.WIDTH // 8)
    generator = torch.Generator().manual_seed(0)
    prompt = root / "prompts" / "prompt.safetensors"
    files = {prompt: ("prompt_embeds", (1, PROMPT_TOKENS, fs.TRANSFORMER["crossattn_proj_in_channels"]))}
    files |= {root / "latents" / f"clip_{i}.safetensors": ("latents", latent_shape) for i in range(num_clips)}
    for path, (key, shape) in files.items():
        if not path.is_file():
            from safetensors.torch import save_file

            with atomic_write(path) as tmp:
                save_file({key: torch.randn(shape, generator=generator).to(torch.bfloat16)}, str(tmp))
    rows = [
        {"sample_id": f"clip_{i}", "latents": str((root / "latents" / f"clip_{i}.safetensors").resolve())}
        | {"prompt": str(prompt.resolve()), "caption": fs.PROMPT, "key": "random", "starts": list(range(NUM_WINDOWS))}
        for i in range(num_clips)
    ]
    return write_jsonl(root / f"{num_clips}-clips" / MANIFEST, rows).parent


def mode_settings(mode: str) -> dict:
    """train_step.py's variant as TrainConfig settings (the latent cache, fused AdamW: train() always)."""
    cached, layers, compiled, budget, policy, fp8 = train_step.VARIANTS[mode]
    if not cached:
        raise ValueError(f"mode {mode!r} encodes every step; train() measures the cached modes, e.g. low_memory.")
    return dict(
        checkpoint_layers=layers,
        compile=compiled,
        activation_memory_budget=budget,
        checkpoint_policy=policy,
        fp8_matmuls=fp8,
    )


def measured(folder: Path, measure) -> dict | None:
    """A measurement's row: from folder/row.json if an earlier run finished it, else measured now and kept there
    (measure=None: only what is kept, None if nothing is)."""
    done = folder / "row.json"
    if done.is_file() or measure is None:
        return json.loads(done.read_text()) if done.is_file() else None
    shutil.rmtree(folder, ignore_errors=True)  # a half-done earlier attempt: train() would resume its checkpoints
    folder.mkdir(parents=True)
    row = measure(folder)
    write_text_atomic(done, json.dumps(row, indent=2))
    return row


def train_row(out: Path, mode: str, gpus: int, args) -> dict:
    """One `accelerate launch` of train() with `gpus` processes, each doing args.steps steps of one clip."""
    cache = write_latent_cache(args.work / "cache", args.steps * gpus)
    cfg = fs.train_config(
        cache, out, args.device, latent_cache=cache, num_epochs=1, num_processes=gpus, **mode_settings(mode)
    )
    (out / SPEC).write_text(json.dumps({"sizes": fs.sizes(), "steps": args.steps, "warmup": args.warmup}))
    command = accelerate_command(cfg, write_config(cfg, out, "train"))
    assert command[-3:-1] == ["-m", "cosmos_synth.train"], command  # the rank below calls the same train()
    started = time.perf_counter()
    _run_child(
        [*command[:-3], str(Path(__file__).resolve()), "rank", command[-1]],
        out / TRAIN_LOG,
        None,
        ChildFollower(out, None),
    )
    launch_s = time.perf_counter() - started
    steps = read_jsonl(out / LOSS_LOG)
    ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in range(gpus)]
    timed = [s["step_s"] for s in steps[args.warmup : len(steps) - PROFILED_STEPS]] or [s["step_s"] for s in steps]
    s_per_step = statistics.median(timed)
    return {
        "gpus": gpus,
        "mode": mode,
        "steps": len(steps),
        "steps_timed": len(timed),
        "s_per_step": round(s_per_step, 4),
        "samples_per_s": round(gpus * cfg.batch_size / s_per_step, 4),
        "peak_gib": [r["peak_gib"] for r in ranks],
        "adapters_agree": len({r["adapter_sha256"] for r in ranks}) == 1 if gpus > 1 else None,
        "adapter_sha256": [r["adapter_sha256"] for r in ranks],
        "input_s": max(r["input_s"] for r in ranks),
        "compute_s": max(r["compute_s"] for r in ranks),
        "allreduce_kernel_s": [r["kernels"]["groups_s"].get("communication (all-reduce)", 0.0) for r in ranks],
        "kernel_groups_s": ranks[0]["kernels"]["groups_s"],
        "launch_s": round(launch_s, 1),
    }


def add_efficiency(rows: list[dict]) -> None:
    one = {r["mode"]: r["samples_per_s"] for r in rows if r["gpus"] == 1}
    for r in rows:
        base = one.get(r["mode"])
        r["efficiency"] = round(r["samples_per_s"] / (r["gpus"] * base), 3) if base else None


def project_gr1(rows: list[dict], num_clips: int) -> list[dict]:
    """Hours for 100 epochs of GR1-100 (one clip per step and process, epoch_order's padding) on 1, 2 and 8 GPUs."""
    projected = []
    for mode in dict.fromkeys(r["mode"] for r in rows):
        step_s = {r["gpus"]: r["s_per_step"] for r in rows if r["mode"] == mode}
        largest = max(step_s)
        for gpus in (1, 2, 8):
            measured_here = gpus in step_s
            if not measured_here and gpus < largest:
                continue
            steps = 100 * math.ceil(num_clips / gpus)
            seconds = steps * step_s[gpus if measured_here else largest]
            basis = "measured" if measured_here else f"assumes the {largest}-GPU step time (its efficiency) holds"
            projected.append({"mode": mode, "gpus": gpus, "steps": steps, "hours": round(seconds / 3600, 2)})
            projected[-1]["basis"] = basis
    return projected


# ----------------------------------------------------------------------------------------------- in each rank


class StepClock:
    """Wall-clock marks around each of train()'s steps, seen from hooks (the loop itself is untouched): when the
    DiT's forward starts and when the optimizer step has finished on the device. The last PROFILED_STEPS steps run
    under torch.profiler (a warm-up step, then one recorded)."""

    def __init__(self, transformer, device: str, num_steps: int) -> None:
        from torch.profiler import ProfilerActivity, profile, schedule

        self.transformer, self.device, self.forward_at, self.stepped_at = transformer, device, [], []
        activity = ProfilerActivity.CUDA if device.startswith("cuda") else ProfilerActivity.CPU
        wait = max(num_steps - PROFILED_STEPS, 0)
        self.profiler = profile(activities=[activity], schedule=schedule(wait=wait, warmup=1, active=1))

    def _forward(self, *_) -> None:
        self.forward_at.append(time.perf_counter())

    def _stepped(self, *_) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()  # the loop's loss.item() right after waits for the same work
        self.stepped_at.append(time.perf_counter())
        self.profiler.step()

    def __enter__(self) -> StepClock:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.profiler.start()
        self.hooks = [
            self.transformer.register_forward_pre_hook(self._forward),
            register_optimizer_step_post_hook(self._stepped),
        ]
        return self

    def __exit__(self, *exc) -> None:
        for hook in self.hooks:
            hook.remove()
        self.profiler.stop()

    def summary(self, warmup: int) -> dict:
        """Median input preparation (previous step's end to this forward) and forward-to-optimizer-done seconds
        over the steps after `warmup`, before the profiled ones; kernel seconds of the profiled step."""
        last = len(self.stepped_at) - PROFILED_STEPS
        steps = range(max(warmup, 1), last) if last > max(warmup, 1) else range(1, len(self.stepped_at))
        return {
            "input_s": round(statistics.median(self.forward_at[i] - self.stepped_at[i - 1] for i in steps), 4),
            "compute_s": round(statistics.median(self.stepped_at[i] - self.forward_at[i] for i in steps), 4),
            "kernels": fs.kernel_groups(self.profiler, "cuda" if self.device.startswith("cuda") else "cpu"),
        }


def adapter_sha256(transformer) -> str:
    import hashlib

    from peft.utils import get_peft_model_state_dict

    state, digest = get_peft_model_state_dict(transformer), hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode() + state[key].detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def rank_main(config_path: Path) -> None:
    """One process of `accelerate launch`: build the seeded full-size pipeline on this rank's device, run train()."""
    from cosmos_synth.train import LOG_FORMAT, train

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    cfg = load_config(TrainConfig, config_path)
    spec = json.loads((cfg.out_dir / SPEC).read_text())
    fs.use_sizes(spec["sizes"])
    local, rank = int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("RANK", "0"))
    device = "cpu" if cfg.cpu else f"cuda:{local}"
    if not cfg.cpu:
        torch.cuda.set_device(local)
    pipe = fs.build_pipeline(fs.build_vae(device), device, text_encoder=False)  # the same seed on every rank
    with StepClock(pipe.transformer, device, spec["steps"]) as clock:
        result = train(cfg, pipe=pipe)
    record = {"rank": rank, "peak_gib": result.peak_gib, "adapter_sha256": adapter_sha256(pipe.transformer)}
    write_text_atomic(cfg.out_dir / f"rank-{rank}.json", json.dumps(record | clock.summary(spec["warmup"])))


# ------------------------------------------------------------------------------------------------------ main


def print_table(record: dict) -> None:
    if record["train"]:
        print(f"\n{'train mode':<16}{'GPUs':>5}{'s/step':>9}{'samples/s':>11}{'eff.':>7}{'peak GiB/GPU':>15}", end="")
        print(f"{'agree':>7}{'input s':>9}{'fwd-opt s':>11}{'all-reduce s':>14}")
    for r in record["train"]:
        peak, reduce = ("/".join(str(v) for v in r[key]) for key in ("peak_gib", "allreduce_kernel_s"))
        print(f"{r['mode']:<16}{r['gpus']:>5}{r['s_per_step']:>9}{r['samples_per_s']:>11}", end="")
        print(f"{str(r['efficiency']):>7}{peak:>15}{str(r['adapters_agree']):>7}{r['input_s']:>9}", end="")
        print(f"{r['compute_s']:>11}{reduce:>14}")
    for p in record["gr1_100_epochs"]:
        print(f"GR1-100 x 100 epochs, {p['mode']}, {p['gpus']} GPU(s): {p['steps']} steps, {p['hours']} h", end="")
        print(f" ({p['basis']})")
    if record["generate"]:
        import multi_gpu_generate  # not in the ranks: it imports every stage

        multi_gpu_generate.print_rows(record["generate"])
    print(f"card: {record['card']}; written {record['path']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/multi_gpu"), help="measurements kept here")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--parts", default="train,generate")
    parser.add_argument("--gpus", default="1,2", help="process counts (training) and worker counts (generation)")
    parser.add_argument("--modes", default="fast_sac14,low_memory", help="train_step.py variants with a cache")
    parser.add_argument("--steps", type=int, default=12, help="steps per process, warm-up and profiled included")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of s/step (compilation)")
    parser.add_argument("--pairs-per-worker", type=int, default=4, help="(image, prompt) pairs per worker")
    parser.add_argument("--shards-per-worker", type=int, default=2, help="generate_shards per worker")
    parser.add_argument("--via", default="auto", choices=("auto", "prefect", "cli"), help="generation's path")
    parser.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a smoke run, gloo)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # `timeout` (or a scheduler) stops us with SIGTERM: as SystemExit it stops the children and the Prefect stack too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    gpus, parts = [int(g) for g in args.gpus.split(",")], args.parts.split(",")
    if not 2 <= args.shards_per_worker <= args.pairs_per_worker:
        parser.error("need 2 <= --shards-per-worker <= --pairs-per-worker: one shard in all does not fan out")
    if args.device == "cuda" and max(gpus) > torch.cuda.device_count():
        raise SystemExit(f"--gpus {args.gpus} needs {max(gpus)} GPUs; this machine has {torch.cuda.device_count()}.")
    card = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    import multi_gpu_generate  # not in the ranks: it imports every stage

    # a part left out of --parts still reports what an earlier run measured
    train_rows = [
        measured(
            args.work / "train" / f"{mode}-{n}gpu",
            (lambda out, m=mode, n=n: train_row(out, m, n, args)) if "train" in parts else None,
        )
        for mode in args.modes.split(",")
        for n in gpus
    ]
    train_rows = [row for row in train_rows if row is not None]
    add_efficiency(train_rows)
    record = write_record(args, card, train_rows, [])  # now too: what training measured survives a stopped run
    per_worker, counts = (args.pairs_per_worker, args.shards_per_worker), sorted(gpus, reverse=True)
    keep = measured if "generate" in parts else lambda folder, _: measured(folder, None)
    rows = multi_gpu_generate.run(args.work, counts, per_worker, args.device, args.via, keep)
    print_table(write_record(args, card, train_rows, rows) if rows else record)


def write_record(args, card: str, train_rows: list[dict], generate_rows: list[dict]) -> dict:
    record = {
        **fs.record_header("multi_gpu", card, " ".join(["python benchmarks/multi_gpu.py", *sys.argv[1:]])),
        "gpus": torch.cuda.device_count() if args.device == "cuda" else 0,
        "train": train_rows,
        "gr1_100_epochs": project_gr1(train_rows, GR1_CLIPS) if train_rows else [],
        "gr1_100_epochs_note": "steps x s/step: start-up, compilation and checkpoints not included",
        "reference_claim": REFERENCE_CLAIM,
        "generate": generate_rows,
    }
    path = args.out / f"multi_gpu-{card.replace(' ', '_')}.json"
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(record, indent=2))
    return record | {"path": str(path)}


if __name__ == "__main__":
    if sys.argv[1:2] == ["rank"]:  # started by accelerate launch (train_row)
        rank_main(Path(sys.argv[2]))
    else:
        main()
