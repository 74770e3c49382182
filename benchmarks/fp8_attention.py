"""FP8 self-attention (`cosmos_synth.fp8_attention`, cuDNN's FP8 kernel) against bf16 SDPA at the DiT's shape.

One process, one warm GPU: query/key/value of 1x16x31104x128 laid out as the DiT's processor makes them (a
transposed (B, S, H, D) tensor, query and key RMS-normalised). Times bf16 SDPA (torch picks cuDNN), the FP8 kernel
alone, and the whole `fp8_attention` call (quantisation, kernel, dequantisation) eager and compiled; gives each
one's relative error against bf16 SDPA, next to flash-vs-cuDNN bf16 (the error of a harmless change); and checks
the kernel against the plain-torch arithmetic (`fp8_attention_reference`) at 2,048 tokens. Median of `--repeat`.
Needs `pip install 'cosmos-synth[fp8]'` and a Hopper GPU.

    python benchmarks/fp8_attention.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cosmos_synth.fp8_attention import fp8_attention, fp8_attention_reference, fp8_sdpa  # noqa: E402
from cosmos_synth.speed import to_e4m3  # noqa: E402


def inputs(tokens: int, heads: int = 16, dim: int = 128, seed: int = 0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q, k, v = (torch.randn(1, tokens, heads, dim, device="cuda", generator=g).transpose(1, 2) for _ in range(3))
    rms = lambda t: t / t.square().mean(-1, keepdim=True).sqrt()  # noqa: E731
    return rms(q).bfloat16(), rms(k).bfloat16(), v.bfloat16()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def median_ms(fn, repeat: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1e3, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--tokens", type=int, default=31104)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    card = torch.cuda.get_device_name()
    q, k, v = inputs(args.tokens)
    expected = F.scaled_dot_product_attention(q, k, v)
    with torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.FLASH_ATTENTION]):
        flash = F.scaled_dot_product_attention(q, k, v)
    (q8, sq), (k8, sk), (v8, sv) = (to_e4m3(t, per_row=False) for t in (q, k, v))
    compiled = torch.compile(fp8_attention)
    rows = [
        {
            "what": "bf16 SDPA (cuDNN)",
            "ms": median_ms(lambda: F.scaled_dot_product_attention(q, k, v), args.repeat),
            "rel_err": 0.0,
        },
        {"what": "bf16 SDPA (flash)", "ms": None, "rel_err": rel(flash, expected)},
        {
            "what": "FP8 kernel alone",
            "ms": median_ms(lambda: fp8_sdpa(q8, k8, v8, sq, sk, sv, sv), args.repeat),
            "rel_err": rel(fp8_sdpa(q8, k8, v8, sq, sk, sv, sv).float() * sv, expected),
        },
        {
            "what": "fp8_attention, eager",
            "ms": median_ms(lambda: fp8_attention(q, k, v), args.repeat),
            "rel_err": rel(fp8_attention(q, k, v), expected),
        },
        {
            "what": "fp8_attention, compiled",
            "ms": median_ms(lambda: compiled(q, k, v), args.repeat),
            "rel_err": rel(compiled(q, k, v), expected),
        },
    ]
    small = [to_e4m3(t, per_row=False) for t in inputs(2048, seed=1)]
    (a8, sa), (b8, sb), (c8, sc) = small
    kernel = fp8_sdpa(a8, b8, c8, sa, sb, sc, sc).float() * sc
    reference = fp8_attention_reference(a8, b8, c8, sa, sb, sc, sc).float() * sc
    record = {
        "benchmark": "fp8_attention",
        "card": card,
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
        "date": time.strftime("%Y-%m-%d"),
        "shape": [1, 16, args.tokens, 128],
        "command": "python benchmarks/fp8_attention.py",
        "rows": rows,
        "kernel_vs_plain_torch_rel_diff_2048_tokens": rel(kernel, reference),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"fp8_attention-{card.replace(' ', '_')}.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"\n{'1x16x' + str(args.tokens) + 'x128':<26}{'ms':>9}{'rel err vs bf16':>17}")
    for row in rows:
        print(f"{row['what']:<26}{str(row['ms']):>9}{row['rel_err']:>17.4f}")
    print(
        f"cuDNN FP8 kernel vs the plain-torch arithmetic at 2048 tokens: rel diff "
        f"{record['kernel_vs_plain_torch_rel_diff_2048_tokens']:.4f}; card: {card}; written {path}"
    )


if __name__ == "__main__":
    main()
