"""Where the time goes in one full-size DiT forward, and what each generation knob buys.

One process, one warm GPU, full-size random weights at 93x432x768 (31,104 tokens). Sections:
  attention  the self-attention op alone (cuDNN / flash / mem-efficient SDPA): forward and forward+backward
  forward    no-grad DiT forwards as generation runs them: regionally compiled, batch 1 vs batch 2 (the two CFG
             branches in one call), FP8 matmuls (torchao, per-row scales), the time outside the 28 blocks, and
             a kernel breakdown (attention / matmul / fused elementwise) from the profiler

    python benchmarks/dit_probe.py --out benchmarks/results

The FP8 rows need torchao (`pip install torchao`, not a project dependency); --no-fp8 leaves them out.
"""

from __future__ import annotations

import argparse
import contextlib
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

from cosmos_synth.speed import compile_blocks, to_e4m3  # noqa: E402

TOKENS_SHAPE = (24, 54, 96)  # latent frames, height, width at 93x432x768


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def timeit(fn, device, repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        sync(device)
        started = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def peak(device) -> float:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else float("nan")


def reset(device) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# --- attention op -------------------------------------------------------------------------------------------------


def attention_section(device, tokens: int, heads: int, dim: int, repeat: int) -> list[dict]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    rows = []
    flops = 4 * tokens * tokens * heads * dim
    q, k, v = (
        torch.randn(1, heads, tokens, dim, device=device, dtype=torch.bfloat16, requires_grad=True) for _ in range(3)
    )
    grad = torch.randn_like(q)
    for name, backend in (
        ("cudnn", SDPBackend.CUDNN_ATTENTION),
        ("flash", SDPBackend.FLASH_ATTENTION),
        ("efficient", SDPBackend.EFFICIENT_ATTENTION),
        ("default", None),
    ):
        ctx = sdpa_kernel([backend]) if backend is not None else contextlib.nullcontext()
        try:
            with ctx:

                def forward():
                    with torch.no_grad():
                        torch.nn.functional.scaled_dot_product_attention(q, k, v)

                def both():
                    out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
                    out.backward(grad)

                fwd = timeit(forward, device, repeat)
                fb = timeit(both, device, repeat)
            rows.append(
                {
                    "backend": name,
                    "fwd_s": round(fwd, 4),
                    "fwd_tflops": round(flops / fwd / 1e12),
                    "fwd_bwd_s": round(fb, 4),
                    "bwd_tflops": round(2.5 * flops / (fb - fwd) / 1e12),
                }
            )
        except RuntimeError as error:  # a backend that does not support this shape or device
            rows.append({"backend": name, "error": str(error).splitlines()[0][:160]})
        print(rows[-1], flush=True)
    rows.append(fp8_attention_row(q.detach(), k.detach(), v.detach()))
    print(rows[-1], flush=True)
    return rows


def fp8_attention_row(q, k, v) -> dict:
    """Does torch's SDPA take float8_e4m3fn inputs (per-tensor scales folded into `scale`)? On torch 2.11 it does
    not; only the public entry point is tried, since the private cuDNN/flash ops fault on FP8 inputs."""
    (q8, sq), (k8, sk), (v8, sv) = (to_e4m3(t, per_row=False) for t in (q, k, v))
    row = {"backend": "fp8 e4m3 inputs (F.scaled_dot_product_attention)"}
    try:
        out = torch.nn.functional.scaled_dot_product_attention(q8, k8, v8, scale=float(sq * sk) / q.shape[-1] ** 0.5)
        reference = torch.nn.functional.scaled_dot_product_attention(q, k, v).float()
        row["rel_err"] = float((out.float() * sv - reference).norm() / reference.norm())
    except (RuntimeError, NotImplementedError) as error:
        row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
    return row


# --- DiT forward --------------------------------------------------------------------------------------------------


def dit_inputs(batch: int, device, dtype=torch.bfloat16) -> dict:
    frames, height, width = TOKENS_SHAPE
    generator = torch.Generator(device="cpu").manual_seed(0)
    latents = torch.randn(1, 16, frames, height, width, generator=generator).to(device, dtype).repeat(batch, 1, 1, 1, 1)
    mask = torch.zeros(batch, 1, frames, height, width, device=device, dtype=dtype)
    mask[:, :, :1] = 1
    timestep = torch.full((batch, 1, frames, 1, 1), 0.7, device=device, dtype=dtype)
    timestep[:, :, :1] = 1e-4
    embeds = torch.randn(batch, 512, fs.TRANSFORMER["crossattn_proj_in_channels"], generator=generator).to(
        device, dtype
    )
    padding = torch.zeros(1, 1, height * 8, width * 8, device=device, dtype=dtype)
    return dict(
        hidden_states=latents,
        condition_mask=mask,
        timestep=timestep,
        encoder_hidden_states=embeds,
        padding_mask=padding,
        return_dict=False,
    )


def build_transformer(device):
    from diffusers import CosmosTransformer3DModel

    torch.manual_seed(0)
    with fs.building_on(device, torch.bfloat16):
        return CosmosTransformer3DModel(**fs.TRANSFORMER).eval()


def kernel_breakdown(transformer, inputs, device) -> dict:
    with torch.no_grad():
        return fs.profile_kernels(lambda: transformer(**inputs), device)[1]


def fp8_blocks(transformer) -> None:
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    quantize_(
        transformer,
        Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),
        filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and fqn.startswith("transformer_blocks."),
    )


def forward_section(device, repeat: int, with_fp8: bool) -> dict:
    transformer = build_transformer(device)
    out: dict = {"variants": []}

    def measure(name, batch):
        inputs = dit_inputs(batch, device)
        reset(device)
        with torch.no_grad():
            seconds = timeit(lambda: transformer(**inputs), device, repeat, warmup=2)
            result = transformer(**inputs)[0][:1].float()
        row = {
            "variant": name,
            "batch": batch,
            "s_per_call": round(seconds, 4),
            "s_per_sample": round(seconds / batch, 4),
            "peak_gib": peak(device),
        }
        out["variants"].append(row)
        print(row, flush=True)
        return result

    eager = measure("eager", 1)
    blocks = transformer.transformer_blocks
    transformer.transformer_blocks = torch.nn.ModuleList()
    measure("outside the blocks (eager)", 1)
    transformer.transformer_blocks = blocks
    compile_blocks(transformer)
    compiled = measure("compiled blocks", 1)
    measure("compiled blocks", 2)
    out["breakdown_compiled_b1"] = kernel_breakdown(transformer, dit_inputs(1, device), device)
    print(out["breakdown_compiled_b1"], flush=True)
    out["compiled_vs_eager_rel_err"] = float((compiled - eager).norm() / eager.norm())
    if with_fp8:
        torch._dynamo.reset()
        fp8_blocks(transformer)
        compile_blocks(transformer)
        fp8 = measure("fp8 + compiled blocks", 1)
        measure("fp8 + compiled blocks", 2)
        out["fp8_vs_eager_rel_err"] = float((fp8 - eager).norm() / eager.norm())
        out["breakdown_fp8_b1"] = kernel_breakdown(transformer, dit_inputs(1, device), device)
        print(out["breakdown_fp8_b1"], flush=True)
    return out  # the transformer goes with this frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--sections", default="attention,forward")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-fp8", action="store_true")
    parser.add_argument("--device", default="cuda", help="cuda (the probe) or cpu (a smoke run at reduced sizes)")
    args = parser.parse_args()
    device = args.device
    card = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    sections = args.sections.split(",")
    record: dict = {
        "benchmark": "dit_probe",
        "card": card,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/dit_probe.py",
    }
    frames, height, width = TOKENS_SHAPE
    tokens = frames * height * width // 4
    if "attention" in sections:
        record["attention"] = attention_section(
            device, tokens, fs.TRANSFORMER["num_attention_heads"], fs.TRANSFORMER["attention_head_dim"], args.repeat
        )
    if "forward" in sections:
        record["forward"] = forward_section(device, args.repeat, with_fp8=not args.no_fp8)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"dit_probe-{card.replace(' ', '_')}.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"\ncard: {card}")
    for row in record.get("attention", []):
        print("attention", row)
    for row in record.get("forward", {}).get("variants", []):
        print(
            f"forward {row['variant']:<28} batch {row['batch']}  {row['s_per_sample']:.4f} s/sample  "
            f"{row['peak_gib']} GiB"
        )
    for key in ("breakdown_compiled_b1", "breakdown_fp8_b1"):
        if key in record.get("forward", {}):
            print(key, record["forward"][key]["groups_s"])
    for key in ("compiled_vs_eager_rel_err", "fp8_vs_eager_rel_err"):
        if key in record.get("forward", {}):
            print(key, round(record["forward"][key], 5))
    print(f"written {path}")


if __name__ == "__main__":
    main()
