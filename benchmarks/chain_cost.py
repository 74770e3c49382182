"""Long videos at full size: seconds per chained chunk, and what encoding the conditioning frames costs.

One long video per overlap, generated as the generate stage does (`generate_video`, cosmos_synth.chain): 93-frame
chunks at 432x768, 36 steps, guidance 7, the DiT's blocks compiled, the prompt encoded once and the text encoder
released, full-size random weights. Chunk 0 comes from the pair's image; each later chunk continues from the last
1 or 5 frames (`generate.chunk_overlap_frames`). Per chunk: wall seconds (frames back on the host), and the
seconds spent inside the VAE's encode (the conditioning) and decode. Then the VAE encode alone of 1, 5 and 93
frames: what conditioning costs with `encode_conditioning_frames_only`, against the whole padded chunk that the
pipeline would otherwise encode. A 2-step warm-up video per overlap pays for compilation first.

    python benchmarks/chain_cost.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fullsize as fs  # noqa: E402

from cosmos_synth import chain  # noqa: E402
from cosmos_synth.config import GenerateConfig  # noqa: E402
from cosmos_synth.generate import encode_prompts, generate_video, prepare_pipeline, release_text_encoder  # noqa: E402
from cosmos_synth.speed import compile_blocks  # noqa: E402


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class Stopwatch:
    """Seconds spent inside wrapped callables, by name (the GPU synchronised on both sides of each call)."""

    def __init__(self, device: str):
        self.device, self.seconds = device, {}

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            sync(self.device)
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                sync(self.device)
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

        return timed


def long_video_frames(chunk_frames: int, overlap: int, chunks: int) -> int:
    return chunk_frames + (chunks - 1) * (chunk_frames - overlap)


def time_chunks(pipe, cfg: GenerateConfig, pair, embeds, negative, watch: Stopwatch) -> list[dict]:
    """Generate one long video; one row per chunk: wall seconds, VAE encode and decode seconds, new frames."""
    rows, original = [], chain.sample_chunk

    def timed_chunk(*args, context=None, **kwargs):
        before = dict(watch.seconds)
        sync(cfg.device)
        started = time.perf_counter()
        frames = original(*args, context=context, **kwargs)  # uint8 on the host: the chunk is done
        seconds = time.perf_counter() - started
        spent = {k: watch.seconds.get(k, 0.0) - before.get(k, 0.0) for k in ("vae_encode", "vae_decode")}
        rows.append(
            {
                "overlap": cfg.chunk_overlap_frames,
                "chunk": len(rows),
                "condition": "image" if context is None else f"video ({len(context)} frames)",
                "seconds": round(seconds, 2),
                "vae_encode_s": round(spent["vae_encode"], 3),
                "vae_decode_s": round(spent["vae_decode"], 3),
                "new_frames": len(frames) - (0 if context is None else len(context)),
            }
        )
        return frames

    chain.sample_chunk = timed_chunk
    try:
        frames = generate_video(pipe, cfg, pair, embeds, negative)
    finally:
        chain.sample_chunk = original
    if len(frames) != cfg.num_frames or sum(r["new_frames"] for r in rows) != cfg.num_frames:
        raise RuntimeError(f"overlap {cfg.chunk_overlap_frames}: {len(frames)} frames, wanted {cfg.num_frames}")
    return rows


def time_vae_encode(vae, device: str, frame_counts: list[int], repeats: int) -> dict[str, float]:
    """Median seconds of one VAE encode of n frames at full size, for each n (one untimed call first)."""
    medians = {}
    for n in frame_counts:
        video = fs.test_video(n).to(device, vae.dtype)
        times = []
        for attempt in range(repeats + 1):
            sync(device)
            started = time.perf_counter()
            with torch.no_grad():
                vae.encode(video)
            sync(device)
            if attempt:
                times.append(time.perf_counter() - started)
        medians[str(n)] = round(statistics.median(times), 3)
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--overlaps", default="5,1", help="comma-separated chunk_overlap_frames, each 1 or 5")
    parser.add_argument("--chunks", default="3,2", help="comma-separated: chunks of each overlap's video")
    parser.add_argument("--fp8", action="store_true", help="generate.fp8_matmuls on (off in the gr1 recipe)")
    parser.add_argument("--no-compile", action="store_true", help="eager DiT blocks (a quick CPU smoke run)")
    parser.add_argument("--repeats", type=int, default=3, help="timed VAE encodes per frame count")
    parser.add_argument("--work", type=Path, default=Path("/tmp/cosmos-synth-chain"))
    parser.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a smoke run of the harness)")
    args = parser.parse_args()
    overlaps = [int(o) for o in args.overlaps.split(",")]
    chunks = [int(c) for c in args.chunks.split(",")]
    if len(chunks) != len(overlaps) or min(chunks) < 2:
        raise SystemExit("--chunks: one count of 2 or more per --overlaps entry")
    device = args.device
    card = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    pair = fs.make_pairs(args.work / "pairs", 1)[0]
    cfg = fs.generate_config(
        args.work,
        device,
        chunk_frames=fs.FRAMES,
        stream_text_encoder=False,
        compile=not args.no_compile,
        fp8_matmuls=args.fp8,
    )
    pipe = fs.build_pipeline(fs.build_vae(device), device)
    prepare_pipeline(cfg, base=pipe)  # the generate stage's switches: conditioning frames only, FP8 if asked
    (embeds, negative) = encode_prompts(pipe, cfg, [pair])
    embeds = embeds[pair.sample_id]
    release_text_encoder(pipe)
    if cfg.compile:
        compile_blocks(pipe.transformer)
    watch = Stopwatch(device)
    pipe.vae.encode = watch.wrap("vae_encode", pipe.vae.encode)
    pipe.vae.decode = watch.wrap("vae_decode", pipe.vae.decode)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    rows = []
    for overlap, count in zip(overlaps, chunks, strict=True):
        video = dataclasses.replace(
            cfg, chunk_overlap_frames=overlap, num_frames=long_video_frames(fs.FRAMES, overlap, count)
        )
        time_chunks(pipe, dataclasses.replace(video, num_steps=2), pair, embeds, negative, watch)  # warm-up
        rows += time_chunks(pipe, video, pair, embeds, negative, watch)
        print(rows[-count:], flush=True)
    peak = round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None
    encode = time_vae_encode(pipe.vae, device, [1, 5, fs.FRAMES], args.repeats)

    first = [r["seconds"] for r in rows if r["chunk"] == 0]
    later = [r["seconds"] for r in rows if r["chunk"] > 0]
    command = f"python benchmarks/chain_cost.py --overlaps {args.overlaps} --chunks {args.chunks}"
    command += (" --fp8" if args.fp8 else "") + (" --no-compile" if args.no_compile else "")
    record = {
        **fs.record_header("chain_cost", card, command),
        "steps": cfg.num_steps,
        "guidance": cfg.guidance_scale,
        "compiled": cfg.compile,
        "fp8_matmuls": cfg.fp8_matmuls,
        "chunks": rows,
        "first_chunk_s": round(statistics.median(first), 2),
        "later_chunk_s": round(statistics.median(later), 2),
        "vae_encode_s": encode,
        "peak_gib": peak,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"chain_cost-{card.replace(' ', '_')}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\n{'overlap':>7}{'chunk':>6}  {'condition':<18}{'seconds':>9}{'VAE enc s':>11}{'VAE dec s':>11}{'new':>5}")
    for r in rows:
        print(
            f"{r['overlap']:>7}{r['chunk']:>6}  {r['condition']:<18}{r['seconds']:>9}"
            f"{r['vae_encode_s']:>11}{r['vae_decode_s']:>11}{r['new_frames']:>5}"
        )
    print("VAE encode alone, median s: " + ", ".join(f"{n} frames {s}" for n, s in encode.items()))
    print(f"card: {card}; peak GiB {peak}; written {path}")


if __name__ == "__main__":
    main()
