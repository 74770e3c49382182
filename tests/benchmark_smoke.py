"""Run one GPU benchmark's harness on the CPU at toy sizes: `python tests/benchmark_smoke.py <name> <out_dir>`.

The benchmarks read their sizes from `benchmarks/fullsize.py`; this shrinks them before the benchmark module is
imported, so the same code paths (variants, checkpointing policies, compilation, JSON record) run in seconds.
Used by tests/test_benchmarks.py, one subprocess per benchmark (module constants and compiled graphs stay there).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]

import fullsize as fs  # noqa: E402

fs.TRANSFORMER.update(
    num_attention_heads=2,
    attention_head_dim=16,
    num_layers=4,
    adaln_lora_dim=8,
    crossattn_proj_in_channels=64,
    encoder_hidden_states_channels=32,
    text_embed_dim=32,
)
fs.QWEN_TEXT.update(
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=4,
    num_attention_heads=2,
    num_key_value_heads=1,
    layer_types=["full_attention"] * 4,
    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [1, 1, 2]},
)
fs.QWEN_VISION.update(
    depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=16, fullatt_block_indexes=[0]
)
fs.VAE.update(base_dim=3, dim_mult=[1, 1, 1, 1], num_res_blocks=1)
fs.HEIGHT, fs.WIDTH, fs.FRAMES = 32, 48, 9


def main(name: str, out: str) -> None:
    common = ["--device", "cpu", "--out", out]
    if name == "train_step":
        import train_step

        # toy depth: 4 blocks, so 1 and 2 checkpointed blocks stand in for 14 and 16
        train_step.VARIANTS.update(
            fast_sac14=(True, 1, True, None, "save_attention", False),
            fast_sac14_fp8=(True, 1, True, None, "save_attention", True),
        )
        sys.argv = [
            "train_step",
            *common,
            "--steps",
            "1",
            "--warmup",
            "1",
            "--profile",
            "--variants",
            "reference,fast_sac14,fast_sac14_fp8,low_memory",
        ]
        train_step.main()
    elif name == "generate":
        import generate

        sys.argv = [
            "generate",
            *common,
            "--videos",
            "1",
            "--work",
            str(Path(out) / "work"),
            "--sides",
            "reference,ours,ours_fp8,ours_fp8_attention",
            "--profile",
        ]
        generate.main()
    elif name == "multi_gpu":
        import multi_gpu
        import train_step

        # nothing compiled: two gloo processes on two cores must stay within seconds
        train_step.VARIANTS["low_memory"] = (True, None, False, None, "save_attention", False)
        work = str(Path(out) / "work")
        sys.argv = ["multi_gpu", *common, "--work", work, "--parts", "train", "--modes", "low_memory"]
        sys.argv += ["--steps", "4", "--warmup", "1"]  # step 1 warm-up, 2 timed, 3-4 profiled
        multi_gpu.main()
    elif name == "chain_cost":
        import chain_cost

        sys.argv = ["chain_cost", *common, "--work", str(Path(out) / "work"), "--no-compile", "--repeats", "1"]
        chain_cost.main()
    elif name == "dit_probe":
        import dit_probe

        dit_probe.TOKENS_SHAPE = (3, 8, 12)
        sys.argv = ["dit_probe", *common, "--no-fp8", "--repeat", "1"]
        dit_probe.main()
    else:
        raise SystemExit(f"unknown benchmark {name!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
