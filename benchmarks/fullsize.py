"""Full-size Cosmos Predict 2.5 architectures with random weights, shared by the benchmarks.

The sizes are those of docs/recipe.md, "Full-size sizes and costs".

Speed and memory do not depend on weight values, so nothing is downloaded. The sizes are module constants so a
smoke run on CPU can shrink them (tests/benchmark_smoke.py, run by tests/test_benchmarks.py).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
import torch

HEIGHT, WIDTH, FRAMES = 432, 768, 93
TRANSFORMER = dict(
    in_channels=17,
    out_channels=16,
    num_attention_heads=16,
    attention_head_dim=128,
    num_layers=28,
    mlp_ratio=4.0,
    text_embed_dim=1024,
    adaln_lora_dim=256,
    max_size=(128, 240, 240),
    patch_size=(1, 2, 2),
    rope_scale=(1.0, 3.0, 3.0),
    concat_padding_mask=True,
    extra_pos_embed_type=None,
    use_crossattn_projection=True,
    crossattn_proj_in_channels=100352,
    encoder_hidden_states_channels=1024,
)
QWEN_TEXT = dict(
    vocab_size=152064,
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    max_position_embeddings=128000,
    layer_types=["full_attention"] * 28,
    bos_token_id=151643,
    eos_token_id=151645,
    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
)
QWEN_VISION = dict(
    depth=32,
    hidden_size=1280,
    intermediate_size=3420,
    num_heads=16,
    out_hidden_size=3584,
    fullatt_block_indexes=[7, 15, 23, 31],
)
VAE: dict = {}  # AutoencoderKLWan defaults are the full-size Wan2.1 VAE
PROMPT = "The robot arm is performing a task. The robot arm picks up the red cube and places it in the blue bowl."


def sizes() -> dict:
    """The DiT and VAE sizes in use, for a child process to build the same networks (`use_sizes`)."""
    return {"transformer": TRANSFORMER, "vae": VAE, "height": HEIGHT, "width": WIDTH, "frames": FRAMES}


def use_sizes(given: dict) -> None:
    """Build what `sizes()` of another process described (JSON turned the DiT's tuples into lists)."""
    global HEIGHT, WIDTH, FRAMES
    TRANSFORMER.update({k: tuple(v) if isinstance(v, list) else v for k, v in given["transformer"].items()})
    VAE.update(given["vae"])
    HEIGHT, WIDTH, FRAMES = given["height"], given["width"], given["frames"]


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


def build_pipeline(vae, device: str = "cuda", *, text_encoder: bool = True, seed: int = 0):
    """A full-size pipeline with fresh random DiT and text-encoder weights, drawn from `seed` (the VAE is shared
    between runs)."""
    from diffusers import Cosmos2_5_PredictBasePipeline, CosmosTransformer3DModel, UniPCMultistepScheduler
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from cosmos_synth.models import _build_tiny_tokenizer
    from cosmos_synth.safety import NoOpSafetyChecker

    torch.manual_seed(seed)  # the same weights every run: comparisons (PSNR, losses) repeat exactly
    with building_on(device, torch.bfloat16):
        transformer = CosmosTransformer3DModel(**TRANSFORMER)
        encoder = (
            Qwen2_5_VLForConditionalGeneration(
                Qwen2_5_VLConfig(text_config=QWEN_TEXT, vision_config=QWEN_VISION)
            ).eval()
            if text_encoder
            else None
        )
    scheduler = UniPCMultistepScheduler(
        use_karras_sigmas=True, use_flow_sigmas=True, prediction_type="flow_prediction", sigma_max=200.0, sigma_min=0.01
    )
    # The Qwen tokenizer cannot be downloaded here; a byte-level one gives valid ids, and every prompt is padded
    # to 512 tokens anyway, so the text encoder does the same work.
    pipe = Cosmos2_5_PredictBasePipeline(
        text_encoder=encoder,
        tokenizer=_build_tiny_tokenizer(),
        transformer=transformer,
        vae=vae,
        scheduler=scheduler,
        safety_checker=NoOpSafetyChecker(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def build_vae(device: str = "cuda", *, seed: int = 0):
    """The full-size Wan2.1 VAE with random weights drawn from `seed`."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    with building_on(device, torch.bfloat16):
        return AutoencoderKLWan(**VAE)


def test_video(num_frames: int, seed: int = 0) -> torch.Tensor:
    """A smooth moving pattern, (1, 3, T, H, W) in [-1, 1] (not noise: the VAE sees video-like input)."""
    t = torch.arange(num_frames).view(-1, 1, 1)
    y, x = torch.meshgrid(torch.arange(HEIGHT), torch.arange(WIDTH), indexing="ij")
    channels = [((x + 3 * t + 40 * seed) % 256), ((y // 2 + 0 * t) % 256), (((x + y) // 3 + 5 * t) % 256)]
    return (torch.stack(channels).float() / 127.5 - 1.0).unsqueeze(0)


def train_config(data_dir: Path, out_dir: Path, device: str, **settings):
    """A TrainConfig for these random weights at FRAMES frames; `settings` sets any other field."""
    from cosmos_synth.config import TrainConfig

    return TrainConfig(
        model="full-size-random-weights",
        revision=None,
        data_dir=data_dir,
        out_dir=out_dir,
        num_frames=FRAMES,
        cpu=device == "cpu",
        **settings,
    )


def record_header(benchmark: str, card: str, command: str) -> dict:
    """The fields every full-size benchmark's JSON record starts with: what ran, on which card and torch, when, at
    which size, and the command that reproduces it."""
    return {
        "benchmark": benchmark,
        "card": card,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "size": f"{FRAMES}x{HEIGHT}x{WIDTH}",
        "command": command,
    }


def generate_config(work: Path, device: str, **settings):
    """A GenerateConfig for these random weights at FRAMES frames, pairs in work/pairs; `settings` sets any other
    field."""
    from cosmos_synth.config import GenerateConfig

    return GenerateConfig(
        model="full-size-random-weights",
        revision=None,
        pairs_dir=work / "pairs",
        out_dir=work / "out",
        device=device,
        height=HEIGHT,
        width=WIDTH,
        num_frames=FRAMES,
        **settings,
    )


def write_clips(root: Path, num_clips: int) -> Path:
    """Synthetic 97-frame HEIGHT x WIDTH clips in the GR1 layout: root/videos/clip_<i>.mp4 + root/metadata.csv."""
    from cosmos_synth.video import write_video

    lines = []
    for i in range(num_clips):
        t = np.arange(97)[:, None, None]
        y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
        base = ((x[None] + 3 * t + 40 * i) % 256).astype(np.uint8)
        frames = np.stack(
            [
                base,
                np.broadcast_to((y[None] // 2) % 256, base.shape).astype(np.uint8),
                np.broadcast_to(((x + y)[None] // 3 + 5 * t) % 256, base.shape).astype(np.uint8),
            ],
            -1,
        )
        write_video(frames, root / "videos" / f"clip_{i}.mp4", fps=16)
        lines.append(f"videos/clip_{i}.mp4,{PROMPT}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def make_pairs(root: Path, count: int) -> list:
    """`count` (image .png, prompt .txt) pairs p0..p<count-1>: the test pattern's first frame, shifted per pair."""
    from PIL import Image

    from cosmos_synth.generate import list_pairs

    root.mkdir(parents=True, exist_ok=True)
    video = ((test_video(1, seed=0)[0, :, 0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    for i in range(count):
        Image.fromarray(np.roll(video, 37 * i, axis=1)).save(root / f"p{i}.png")
        (root / f"p{i}.txt").write_text(PROMPT)
    return list_pairs(root)


def profile_kernels(fn, device: str) -> tuple[float, dict]:
    """Run `fn` once under the profiler: (wall seconds, `kernel_groups` of what it ran)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA if device == "cuda" else ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    return seconds, kernel_groups(prof, device)


def kernel_groups(prof, device: str) -> dict:
    """A profiler run's kernel time in seconds by kind (communication between processes, attention, convolution,
    matmul, inductor's fused elementwise, other), plus the 12 costliest kernels. On CPU (smoke runs) the ops' self
    CPU time stands in for kernel time."""
    groups: dict[str, float] = {}
    top = []
    for event in prof.key_averages():
        total = (event.device_time_total if device == "cuda" else event.self_cpu_time_total) / 1e6
        if total <= 0:
            continue
        name = event.key.lower()
        if any(s in name for s in ("nccl", "gloo", "allreduce", "all_reduce")):  # DDP's gradient all-reduce
            group = "communication (all-reduce)"
        elif "triton" in name:  # inductor's fused kernels (their names list the ops fused, e.g. a quantisation)
            group = "fused elementwise (triton)"
        elif any(s in name for s in ("fmha", "flash", "attention", "sdpa")):
            group = "attention"
        elif any(s in name for s in ("conv", "implicit_gemm", "winograd")):  # cuDNN convolutions: the VAE
            group = "convolution"
        elif any(s in name for s in ("gemm", "xmma", "cutlass", "nvjet", "matmul", "_mm", "scaled_mm")):
            group = "matmul"
        else:
            group = "other"
        groups[group] = groups.get(group, 0.0) + total
        top.append((total, event.key[:90]))
    top.sort(reverse=True)
    return {
        "groups_s": {k: round(v, 4) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
        "top_kernels": [{"s": round(t, 4), "kernel": k} for t, k in top[:12]],
    }
