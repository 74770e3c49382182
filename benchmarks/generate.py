"""Generation: the reference eval's pipeline call against cosmos-synth's generation path, same process, same GPU.

Reference (diffusers examples/cosmos eval): `pipe(image=..., prompt=..., latents=<NumPy noise>)` with the text
encoder, DiT and VAE resident, 93 frames, 36 steps, guidance 7 at 432x768. Ours (`cosmos_synth.generate`): the text
encoder streamed from host memory to encode every prompt once and then released, the DiT's blocks compiled once,
the same latents and scheduler; `--sides` adds our path with the block linears in FP8 (ours_fp8:
`generate.fp8_matmuls`) and with their self-attention in FP8 too (ours_fp8_attention). Each side: one short
warm-up call (2 steps; it pays for compilation and autotuning), then `--videos` timed videos with seeds 0..n-1;
median seconds per video, peak GPU memory, and PSNR between the two sides' decoded frames for the same seed.
Full-size random weights.

    python benchmarks/generate.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fullsize as fs  # noqa: E402

from cosmos_synth.config import GenerateConfig  # noqa: E402
from cosmos_synth.fp8_attention import Fp8SelfAttnProcessor  # noqa: E402
from cosmos_synth.generate import (  # noqa: E402
    Pair,
    encode_prompts,
    generate_video,
    prepare_pipeline,
    release_text_encoder,
)
from cosmos_synth.speed import Fp8Linear, compile_blocks  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def timed(device: str, fn):
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - started


def peak_gib(device: str) -> float:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else float("nan")


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# ours_fp8: the block linears in FP8 too (generate.fp8_matmuls); ours_fp8_attention: and their self-attention
# (generate.fp8_attention). The FP8 switches happen in place, so a later side keeps an earlier side's.
SIDES = ("ours", "ours_fp8", "ours_fp8_attention")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument(
        "--sides",
        default="reference,ours",
        help=f"comma-separated: reference (always run first) and any of {', '.join(SIDES)}",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile one 4-step video per side (kernel time by kind against wall time)",
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/cosmos-synth-generate"))
    parser.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a smoke run of the harness)")
    args = parser.parse_args()
    sides = [s for s in args.sides.split(",") if s != "reference"]
    unknown = sorted(set(sides) - set(SIDES))
    if unknown:
        raise SystemExit(f"--sides: unknown {unknown}; choose from reference, {', '.join(SIDES)}")
    device, card = args.device, torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    pairs = fs.make_pairs(args.work / "pairs", args.videos)
    cfg = fs.generate_config(args.work, device, compile=True)
    warm = dataclasses.replace(cfg, num_steps=2)
    pipe = fs.build_pipeline(fs.build_vae(device), device)  # everything resident, as the reference eval

    reset_peak(device)
    generate_video(pipe, warm, pairs[0])  # warm-up: cuDNN/cuBLAS autotuning
    reference, ref_times = [], []
    for pair in pairs:  # the pipeline call with the prompt text, as the reference eval does
        frames, seconds = timed(device, lambda pair=pair: generate_video(pipe, cfg, pair))
        reference.append(frames)
        ref_times.append(seconds)
    ref_s = statistics.median(ref_times)
    record = {
        **fs.record_header(
            "generate", card, "python benchmarks/generate.py --sides " + ",".join(["reference", *sides])
        ),
        "steps": cfg.num_steps,
        "guidance": cfg.guidance_scale,
        "videos": len(pairs),
        "reference": {
            "s_per_video": round(ref_s, 2),
            "times": [round(t, 2) for t in ref_times],
            "peak_gib": peak_gib(device),
        },
    }
    print(record["reference"], flush=True)

    pipe.text_encoder.to("cpu")  # ours starts from host memory, as a worker loading the model does
    reset_peak(device)
    (embeds, negative), encode_s = timed(device, lambda: _encode_once(pipe, cfg, pairs))
    encode_peak = peak_gib(device)
    for side in sides:
        try:
            record[side] = run_side(
                side, pipe, cfg, warm, pairs, embeds, negative, reference, ref_s, encode_s, encode_peak
            )
            if args.profile:
                record[side]["profile_4_steps"] = profile_video(
                    pipe, dataclasses.replace(cfg, num_steps=4), pairs[0], embeds[pairs[0].sample_id], negative
                )
        except Exception as error:  # a side this torch/GPU cannot run: record it, keep the others
            record[side] = {"error": repr(error)[:500]}
        print(side, record[side], flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if sides == ["ours"] else "-" + "-".join(sides)  # other sides: their own file
    path = args.out / f"generate-{card.replace(' ', '_')}{suffix}.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"\n{'side':<12}{'s/video':>9}{'peak GiB':>10}{'speedup':>9}  PSNR dB")
    print(f"{'reference':<12}{round(ref_s, 2):>9}{record['reference']['peak_gib']:>10}")
    for side in sides:
        r = record[side]
        if "error" in r:
            print(f"{side:<12} failed: {r['error']}")
        else:
            print(f"{side:<12}{r['s_per_video']:>9}{r['peak_gib']:>10}{r['speedup']:>9}  {r['psnr_db']}")
    print(f"card: {card}; written {path}")


def run_side(side, pipe, cfg, warm, pairs, embeds, negative, reference, ref_s, encode_s, encode_peak) -> dict:
    """One of our sides: compile, warm up, time every video, compare each with the reference's frames."""
    device = cfg.device
    reset_peak(device)
    # the library's own switches (the text encoder is already gone, so nothing to stream)
    prepare_pipeline(
        dataclasses.replace(
            cfg, stream_text_encoder=False, fp8_matmuls=side != "ours", fp8_attention=side == "ours_fp8_attention"
        ),
        base=pipe,
    )
    torch._dynamo.reset()  # a fresh compilation per side
    compile_blocks(pipe.transformer)
    generate_video(pipe, warm, pairs[0], embeds[pairs[0].sample_id], negative)  # warm-up: compiles the blocks
    ours, our_times = [], []
    for pair in pairs:
        frames, seconds = timed(
            device, lambda pair=pair: generate_video(pipe, cfg, pair, embeds[pair.sample_id], negative)
        )
        ours.append(frames)
        our_times.append(seconds)
    our_s = statistics.median(our_times) + encode_s / len(pairs)
    return {
        "s_per_video": round(our_s, 2),
        "times": [round(t, 2) for t in our_times],
        "prompt_encoding_s": round(encode_s, 2),
        "peak_gib": max(encode_peak, peak_gib(device)),
        "speedup": round(ref_s / our_s, 2),
        "fp8_linears": sum(isinstance(m, Fp8Linear) for m in pipe.transformer.modules()),
        "fp8_attention_blocks": sum(
            isinstance(b.attn1.processor, Fp8SelfAttnProcessor) for b in pipe.transformer.transformer_blocks
        ),
        "psnr_db": [round(psnr(a, b), 2) for a, b in zip(reference, ours, strict=True)],
    }


def profile_video(pipe, cfg: GenerateConfig, pair: Pair, embeds, negative) -> dict:
    """Kernel time by kind for one short video, next to its wall time (the difference: the GPU waiting on Python)."""
    seconds, groups = fs.profile_kernels(lambda: generate_video(pipe, cfg, pair, embeds, negative), cfg.device)
    return {"steps": cfg.num_steps, "wall_s": round(seconds, 3), **groups}


def _encode_once(pipe, cfg: GenerateConfig, pairs: list[Pair]):
    """Our path's start: the text encoder streamed in for every prompt once, then released."""
    stream = dataclasses.replace(cfg, compile=False)
    prepare_pipeline(stream, base=pipe)  # stream_text_encoder: hooks the host-resident encoder
    out = encode_prompts(pipe, stream, pairs)
    release_text_encoder(pipe)
    return out


if __name__ == "__main__":
    main()
