"""Training step: the reference-style step against cosmos-synth's fast path, same process, same warm GPU.

Reference style (diffusers examples/cosmos): the video window is VAE-encoded and the prompt encoded by the 8B text
encoder on every step, both resident on the GPU, every DiT block checkpointed, autocast bf16, AdamW.
Ours: latents and prompt embeddings from the latent cache (text encoder gone, no VAE work), regional
torch.compile, fused AdamW, and checkpointed blocks that keep their attention outputs and recompute only the rest
(`save_attention`): 14 or 16 such blocks (fast_sac14/16, the others keep everything) or every block (low_memory);
the *_fp8 variants also run the frozen block linears in FP8 (`train.fp8_matmuls`). `--profile` adds a kernel-time
breakdown of one step per variant to the JSON. Older variants stay runnable with --variants: whole-block
recomputation (fast_ckpt14, low_memory_full) and the compiler's activation-memory budget instead of block
checkpointing (fast_budget*).
All variants start from the same base weights, adapter initialisation and noise, so their first-step losses must
agree within bf16 tolerance. Median of the timed steps after warm-up; full-size random weights at 93x432x768.

    python benchmarks/train_step.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fullsize as fs  # noqa: E402

from cosmos_synth.config import TrainConfig  # noqa: E402
from cosmos_synth.encoding import encode_video  # noqa: E402
from cosmos_synth.speed import checkpoint_blocks, compile_blocks, use_fp8_matmuls  # noqa: E402
from cosmos_synth.train import add_adapter, draw_flow_noise, flow_loss  # noqa: E402

VARIANTS = {  # name: (cached inputs, checkpointed blocks (None = all), compile, activation memory budget, policy, fp8)
    "reference": (False, None, False, None, "full", False),
    "fast_sac14": (True, 14, True, None, "save_attention", False),
    "fast_sac16": (True, 16, True, None, "save_attention", False),
    "low_memory": (True, None, True, None, "save_attention", False),
    # the same with the frozen block linears in FP8 (train.fp8_matmuls)
    "fast_sac14_fp8": (True, 14, True, None, "save_attention", True),
    "low_memory_fp8": (True, None, True, None, "save_attention", True),
    # measured before the save_attention policy existed (benchmarks/RESULTS.md); run them with --variants
    "fast_ckpt14": (True, 14, True, None, "full", False),
    "fast_budget50": (True, 0, True, 0.5, "full", False),
    "fast_budget30": (True, 0, True, 0.3, "full", False),
    "low_memory_full": (True, None, True, None, "full", False),
}
DEFAULT_VARIANTS = "reference,fast_sac14,fast_sac14_fp8,low_memory,low_memory_fp8"


def fresh_transformer(device: str):
    """The same random base weights every time (seeded), a LoRA r=32 adapter with the same initialisation."""
    from diffusers import CosmosTransformer3DModel

    torch.manual_seed(0)
    with fs.building_on(device, torch.bfloat16):
        transformer = CosmosTransformer3DModel(**fs.TRANSFORMER)
    cfg = TrainConfig(data_dir=Path("."), out_dir=Path("."), num_frames=fs.FRAMES)
    torch.manual_seed(1)
    params = add_adapter(transformer, cfg)
    return transformer, params, cfg


def run_variant(name: str, pipe, inputs: dict, steps: int, warmup: int, device: str, profile: bool = False) -> dict:
    cached, layers, compiled, budget, policy, fp8 = VARIANTS[name]
    fused = cached  # ours: fused AdamW; the reference: the default
    transformer, params, cfg = fresh_transformer(device)
    if fp8:
        use_fp8_matmuls(transformer)
    checkpoint_blocks(transformer, layers, policy=policy)
    if compiled:
        torch._dynamo.reset()  # a fresh compilation per variant: the memory budget is read when compiling
        compile_blocks(transformer, activation_memory_budget=budget if budget is not None else 1.0)
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=fused)
    times, losses = [], []
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    def one_step():
        with torch.autocast(device, dtype=torch.bfloat16):
            if cached:
                clean, embeds = inputs["latents"].float(), inputs["embeds"]
            else:  # what the reference does every step
                with torch.no_grad():
                    embeds = pipe._get_prompt_embeds(fs.PROMPT, device=device)
                    clean = encode_video(pipe, inputs["video"])
            noise, sigma, num_cond, drop = inputs["noise"]
            loss = flow_loss(transformer, cfg, clean, embeds, noise, sigma, num_cond, drop, dtype=torch.bfloat16)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    for step in range(warmup + steps):
        sync()
        started = time.perf_counter()
        losses.append(one_step())
        sync()
        if step >= warmup:
            times.append(time.perf_counter() - started)
    breakdown = fs.profile_kernels(one_step, device)[1] if profile else None  # one more step
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    row = {
        "variant": name,
        "median_step_s": round(statistics.median(times), 3),
        "peak_gib": round(peak, 2),
        "first_loss": losses[0],
        "steps_timed": len(times),
    }
    return {**row, "kernel_breakdown": breakdown} if breakdown else row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument(
        "--profile", action="store_true", help="also profile one step of each variant but the reference"
    )
    parser.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a smoke run of the harness)")
    args = parser.parse_args()
    device, card = args.device, torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    pipe = fs.build_pipeline(fs.build_vae(device), device)  # text encoder + VAE resident: the reference's setup
    inputs = {"video": fs.test_video(fs.FRAMES).to(device, torch.bfloat16)}
    with torch.no_grad():  # what the latent cache stores (bfloat16), computed the same way
        inputs["embeds"] = pipe._get_prompt_embeds(fs.PROMPT, device=device)
        inputs["latents"] = encode_video(pipe, inputs["video"]).to(torch.bfloat16)
    generator = torch.Generator().manual_seed(0)
    noise, sigma, num_cond, _ = draw_flow_noise(
        TrainConfig(data_dir=Path("."), out_dir=Path("."), num_frames=fs.FRAMES), inputs["latents"].shape, generator
    )
    inputs["noise"] = (noise, sigma, [num_cond], [False])  # no CFG dropout, so the prompt path is compared too
    results = []
    for name in args.variants.split(","):
        if name != "reference" and pipe.text_encoder is not None:
            pipe.text_encoder = None  # ours never holds the text encoder
        try:
            results.append(
                run_variant(
                    name, pipe, inputs, args.steps, args.warmup, device, profile=args.profile and name != "reference"
                )
            )
        except Exception as error:  # out of memory, or a variant this torch/GPU cannot run: record it, go on
            oom = isinstance(error, torch.OutOfMemoryError)
            results.append(
                {
                    "variant": name,
                    "median_step_s": None,
                    "peak_gib": "OOM" if oom else None,
                    "first_loss": None,
                    **({} if oom else {"error": repr(error)[:500]}),
                }
            )
        finally:  # the variant's model and optimizer went with its frame
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
        print(results[-1], flush=True)
    ref = next((r for r in results if r["variant"] == "reference"), None)
    for r in results:
        r["speedup"] = round(ref["median_step_s"] / r["median_step_s"], 2) if ref and r["median_step_s"] else None
        r["loss_rel_diff"] = (
            abs(r["first_loss"] - ref["first_loss"]) / abs(ref["first_loss"])
            if ref and r["first_loss"] is not None
            else None
        )
    record = {
        **fs.record_header("train_step", card, "python benchmarks/train_step.py"),
        "steps_timed": args.steps,
        "warmup": args.warmup,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"train_step-{card.replace(' ', '_')}.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"\n{'variant':<14}{'s/step':>9}{'peak GiB':>10}{'speedup':>9}{'loss':>10}{'rel diff':>10}")
    for r in results:
        print(
            f"{r['variant']:<14}{str(r['median_step_s']):>9}{str(r['peak_gib']):>10}{str(r['speedup']):>9}"
            f"{str(round(r['first_loss'], 5) if r['first_loss'] is not None else None):>10}"
            f"{str(round(r['loss_rel_diff'], 5) if r['loss_rel_diff'] is not None else None):>10}"
        )
    print(f"card: {card}; written {path}")


if __name__ == "__main__":
    main()
