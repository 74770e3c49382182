"""Full-size Cosmos Predict 2.5 (2B DiT, Wan VAE, Qwen2.5-VL-7B) through cosmos-synth's own code, on random weights.

No download: the three networks are built from their configs (docs/recipe.md, "Full-size sizes and costs") with
random weights; speed and memory do not depend on weight values. The run goes through the project's real stages:
ingest and preprocess of synthetic 432x768 clips, `cosmos_synth.train.train` for LoRA (>= 20 steps) and DoRA
(>= 5 steps) at 93x432x768, the saved LoRA adapter reloaded and fused by `cosmos_synth.generate.generate_videos`, and
one video at the eval setting (93 frames, 36 steps, guidance 7). Needs one GPU with ~80 GB.

    python benchmarks/full_size.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fullsize as fs  # noqa: E402

from cosmos_synth.config import GenerateConfig, IngestConfig, PreprocessConfig  # noqa: E402
from cosmos_synth.files import read_jsonl  # noqa: E402
from cosmos_synth.generate import generate_videos  # noqa: E402
from cosmos_synth.ingest import ingest_dataset  # noqa: E402
from cosmos_synth.layout import LOSS_LOG  # noqa: E402
from cosmos_synth.preprocess import preprocess_dataset  # noqa: E402
from cosmos_synth.train import train  # noqa: E402


def make_dataset(root: Path, num_clips: int) -> Path:
    """Synthetic 97-frame 432x768 clips through the real ingest + preprocess stages."""
    fs.write_clips(root / "data", num_clips)
    ingest = ingest_dataset(IngestConfig(dataset_dir=root / "data", out_dir=root / "ingest", min_frames=fs.FRAMES))
    return preprocess_dataset(
        PreprocessConfig(manifest=ingest.manifest, out_dir=root / "preprocess", height=fs.HEIGHT, width=fs.WIDTH)
    ).out_dir


def run_training(vae, data_dir: Path, out_dir: Path, adapter: str, num_epochs: int, device: str) -> dict:
    cfg = fs.train_config(
        data_dir, out_dir, device, adapter=adapter, num_epochs=num_epochs, checkpoint_every_epochs=10_000
    )
    result = train(cfg, pipe=fs.build_pipeline(vae, device))
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    steps = read_jsonl(out_dir / LOSS_LOG)
    timed = [s["step_s"] for s in steps[2:] or steps]  # the first steps pay for cuDNN/cuBLAS autotuning
    losses = [s["loss"] for s in steps]
    assert all(np.isfinite(losses)), losses
    assert (out_dir / "pytorch_lora_weights.safetensors").is_file()
    return {
        "adapter": adapter,
        "steps": len(steps),
        "median_step_s": round(statistics.median(timed), 3),
        "peak_gib": result.peak_gib,
        "first_loss": round(losses[0], 4),
        "last_loss": round(losses[-1], 4),
    }


def run_generation(vae, adapter_dir: Path, root: Path, device: str) -> dict:
    from PIL import Image

    pairs = root / "pairs"
    pairs.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.random.RandomState(0).rand(fs.HEIGHT, fs.WIDTH, 3) * 255).astype(np.uint8)).save(
        pairs / "p0.png"
    )
    (pairs / "p0.txt").write_text(fs.PROMPT)
    cfg = GenerateConfig(
        model="full-size-random-weights",
        revision=None,
        pairs_dir=pairs,
        out_dir=root / "generate",
        adapter=adapter_dir,
        device=device,
        height=fs.HEIGHT,
        width=fs.WIDTH,
        num_frames=fs.FRAMES,
    )
    pipe = fs.build_pipeline(vae, device)  # eval setting: 36 steps, guidance 7 are GenerateConfig's defaults
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = generate_videos(cfg, pipe=pipe)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    assert result.num_videos == 1 and result.num_skipped == 0
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return {
        "s_per_video": round(seconds, 2),
        "peak_gib": round(peak, 2),
        "frames": cfg.num_frames,
        "steps": cfg.num_steps,
        "guidance": cfg.guidance_scale,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/cosmos-synth-full-size"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--lora-steps", type=int, default=20)
    parser.add_argument("--dora-steps", type=int, default=6)
    parser.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a smoke run of the harness)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    card = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    vae = fs.build_vae(args.device)
    data_dir = make_dataset(args.work, num_clips=2)
    lora = run_training(vae, data_dir, args.work / "lora", "lora", args.lora_steps // 2, args.device)
    dora = run_training(vae, data_dir, args.work / "dora", "dora", max(1, args.dora_steps // 2), args.device)
    gen = run_generation(vae, args.work / "lora", args.work, args.device)
    record = {
        **fs.record_header("full_size", card, "python benchmarks/full_size.py"),
        "train": [lora, dora],
        "generate": gen,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"full_size-{card.replace(' ', '_')}.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"\n{'what':<34}{'value':>14}")
    for run in (lora, dora):
        print(f"{run['adapter'] + ' steps':<34}{run['steps']:>14}")
        print(f"{run['adapter'] + ' median s/step':<34}{run['median_step_s']:>14}")
        print(f"{run['adapter'] + ' peak GiB':<34}{str(run['peak_gib']):>14}")
        print(
            f"{run['adapter'] + ' loss first -> last':<34}{str(run['first_loss']) + '->' + str(run['last_loss']):>14}"
        )
    print(f"{'generate s/video':<34}{gen['s_per_video']:>14}")
    print(f"{'generate peak GiB':<34}{gen['peak_gib']:>14}")
    print(f"card: {card}; written {path}")


if __name__ == "__main__":
    main()
