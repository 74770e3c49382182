"""Full-size Cosmos Predict 2.5 (2B DiT, Wan VAE, Qwen2.5-VL-7B) through cosmos-synth's own code, on random weights.

No download: the three networks are built from their configs (REFERENCE.md §2) with random weights; speed and
memory do not depend on weight values. The run goes through the project's real stages: ingest and preprocess of
synthetic 432x768 clips, `cosmos_synth.train.train` for LoRA (>= 20 steps) and DoRA (>= 5 steps) at 93x432x768,
the saved LoRA adapter reloaded and fused by `cosmos_synth.generate.generate_videos`, and one video at the eval
setting (93 frames, 36 steps, guidance 7). Needs one GPU with ~80 GB.

    python benchmarks/full_size.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import contextlib
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

from cosmos_synth.config import GenerateConfig, IngestConfig, PreprocessConfig, TrainConfig  # noqa: E402
from cosmos_synth.files import read_jsonl, write_jsonl  # noqa: E402
from cosmos_synth.generate import generate_videos  # noqa: E402
from cosmos_synth.ingest import ingest_dataset  # noqa: E402
from cosmos_synth.preprocess import preprocess_dataset  # noqa: E402
from cosmos_synth.train import LOSS_LOG, train  # noqa: E402
from cosmos_synth.video import write_video  # noqa: E402

HEIGHT, WIDTH, FRAMES = 432, 768, 93
TRANSFORMER = dict(in_channels=17, out_channels=16, num_attention_heads=16, attention_head_dim=128, num_layers=28,
                   mlp_ratio=4.0, text_embed_dim=1024, adaln_lora_dim=256, max_size=(128, 240, 240),
                   patch_size=(1, 2, 2), rope_scale=(1.0, 3.0, 3.0), concat_padding_mask=True,
                   extra_pos_embed_type=None, use_crossattn_projection=True, crossattn_proj_in_channels=100352,
                   encoder_hidden_states_channels=1024)
QWEN_TEXT = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                 num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=128000,
                 layer_types=["full_attention"] * 28, bos_token_id=151643, eos_token_id=151645,
                 rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]})
QWEN_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                   fullatt_block_indexes=[7, 15, 23, 31])
VAE: dict = {}  # AutoencoderKLWan defaults are the full-size Wan2.1 VAE
PROMPT = "The robot arm is performing a task. The robot arm picks up the red cube and places it in the blue bowl."


@contextlib.contextmanager
def building_on(device: str, dtype: torch.dtype):
    """Create parameters directly on the GPU in bf16: no 33 GB float32 detour for the 8B text encoder."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def build_pipeline(vae, device: str = "cuda"):
    """A full-size pipeline with fresh random DiT and text-encoder weights (the VAE is shared between runs)."""
    from diffusers import Cosmos2_5_PredictBasePipeline, CosmosTransformer3DModel, UniPCMultistepScheduler
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from cosmos_synth.models import _build_tiny_tokenizer
    from cosmos_synth.safety import NoOpSafetyChecker

    with building_on(device, torch.bfloat16):
        transformer = CosmosTransformer3DModel(**TRANSFORMER)
        text_encoder = Qwen2_5_VLForConditionalGeneration(
            Qwen2_5_VLConfig(text_config=QWEN_TEXT, vision_config=QWEN_VISION))
    scheduler = UniPCMultistepScheduler(use_karras_sigmas=True, use_flow_sigmas=True,
                                        prediction_type="flow_prediction", sigma_max=200.0, sigma_min=0.01)
    # The Qwen tokenizer cannot be downloaded here; a byte-level one gives valid ids, and every prompt is padded
    # to 512 tokens anyway, so the text encoder does the same work.
    pipe = Cosmos2_5_PredictBasePipeline(text_encoder=text_encoder.eval(), tokenizer=_build_tiny_tokenizer(),
                                         transformer=transformer, vae=vae, scheduler=scheduler,
                                         safety_checker=NoOpSafetyChecker())
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def make_dataset(root: Path, num_clips: int) -> Path:
    """Synthetic 97-frame 432x768 clips through the real ingest + preprocess stages."""
    videos = root / "data" / "videos"
    lines = []
    for i in range(num_clips):
        t = np.arange(97)[:, None, None]
        y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
        base = ((x[None] + 3 * t + 40 * i) % 256).astype(np.uint8)
        frames = np.stack([base, np.broadcast_to((y[None] // 2) % 256, base.shape).astype(np.uint8),
                           np.broadcast_to(((x + y)[None] // 3 + 5 * t) % 256, base.shape).astype(np.uint8)], -1)
        write_video(frames, videos / f"clip_{i}.mp4", fps=16)
        lines.append(f"videos/clip_{i}.mp4,{PROMPT}")
    (root / "data" / "metadata.csv").write_text("\n".join(lines) + "\n")
    ingest = ingest_dataset(IngestConfig(dataset_dir=root / "data", out_dir=root / "ingest", min_frames=FRAMES))
    return preprocess_dataset(PreprocessConfig(manifest=ingest.manifest, out_dir=root / "preprocess",
                                               height=HEIGHT, width=WIDTH)).out_dir


def run_training(vae, data_dir: Path, out_dir: Path, adapter: str, num_epochs: int, device: str) -> dict:
    cfg = TrainConfig(model="full-size-random-weights", revision=None, data_dir=data_dir, out_dir=out_dir,
                      adapter=adapter, num_frames=FRAMES, num_epochs=num_epochs, checkpoint_every_epochs=10_000,
                      dtype="bfloat16", cpu=device == "cpu")
    result = train(cfg, pipe=build_pipeline(vae, device))
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    steps = read_jsonl(out_dir / LOSS_LOG)
    timed = [s["step_s"] for s in steps[2:] or steps]  # the first steps pay for cuDNN/cuBLAS autotuning
    losses = [s["loss"] for s in steps]
    assert all(np.isfinite(losses)), losses
    assert (out_dir / "pytorch_lora_weights.safetensors").is_file()
    return {"adapter": adapter, "steps": len(steps), "median_step_s": round(statistics.median(timed), 3),
            "peak_gib": result["peak_gib"], "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4)}


def run_generation(vae, adapter_dir: Path, root: Path, device: str) -> dict:
    from PIL import Image

    pairs = root / "pairs"
    pairs.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.random.RandomState(0).rand(HEIGHT, WIDTH, 3) * 255).astype(np.uint8)).save(pairs / "p0.png")
    (pairs / "p0.txt").write_text(PROMPT)
    cfg = GenerateConfig(model="full-size-random-weights", revision=None, pairs_dir=pairs, out_dir=root / "generate",
                         adapter=adapter_dir, device=device, height=HEIGHT, width=WIDTH, num_frames=FRAMES)
    pipe = build_pipeline(vae, device)  # eval setting: 36 steps, guidance 7 are GenerateConfig's defaults
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
    return {"s_per_video": round(seconds, 2), "peak_gib": round(peak, 2),
            "frames": cfg.num_frames, "steps": cfg.num_steps, "guidance": cfg.guidance_scale}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/cosmos-synth-full-size"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--lora-steps", type=int, default=20)
    parser.add_argument("--dora-steps", type=int, default=6)
    parser.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a smoke run of the harness)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from diffusers import AutoencoderKLWan

    card = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    with building_on(args.device, torch.bfloat16):
        vae = AutoencoderKLWan(**VAE)
    data_dir = make_dataset(args.work, num_clips=2)
    lora = run_training(vae, data_dir, args.work / "lora", "lora", args.lora_steps // 2, args.device)
    dora = run_training(vae, data_dir, args.work / "dora", "dora", max(1, args.dora_steps // 2), args.device)
    gen = run_generation(vae, args.work / "lora", args.work, args.device)
    record = {"benchmark": "full_size", "card": card, "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d"), "size": f"{FRAMES}x{HEIGHT}x{WIDTH}",
              "command": "python benchmarks/full_size.py", "train": [lora, dora], "generate": gen}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"full_size-{card.replace(' ', '_')}.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"\n{'what':<34}{'value':>14}")
    for run in (lora, dora):
        print(f"{run['adapter'] + ' steps':<34}{run['steps']:>14}")
        print(f"{run['adapter'] + ' median s/step':<34}{run['median_step_s']:>14}")
        print(f"{run['adapter'] + ' peak GiB':<34}{str(run['peak_gib']):>14}")
        print(f"{run['adapter'] + ' loss first -> last':<34}{str(run['first_loss']) + '->' + str(run['last_loss']):>14}")
    print(f"{'generate s/video':<34}{gen['s_per_video']:>14}")
    print(f"{'generate peak GiB':<34}{gen['peak_gib']:>14}")
    print(f"card: {card}; written {path}")


if __name__ == "__main__":
    main()
