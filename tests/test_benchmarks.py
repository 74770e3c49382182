"""The GPU benchmarks' harnesses, run on the CPU at toy sizes (tests/benchmark_smoke.py): every variant runs, the
JSON record is written, and the accuracy checks the benchmarks report hold (loss agreement, PSNR, compiled output)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each benchmark harness in a child process

SMOKE = Path(__file__).with_name("benchmark_smoke.py")


def run_smoke(name: str, out: Path) -> dict:
    done = subprocess.run([sys.executable, str(SMOKE), name, str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    suffix = "-ours-ours_fp8-ours_fp8_attention" if name == "generate" else ""
    return json.loads((out / f"{name}-cpu{suffix}.json").read_text())


@pytest.mark.parametrize("name", ["train_step", "generate", "dit_probe"])
def test_benchmark_harness_runs_on_cpu(name, tmp_path):
    record = run_smoke(name, tmp_path)
    assert record["benchmark"] == name and record["card"] == "cpu"
    if name == "train_step":
        rows = {r["variant"]: r for r in record["results"]}
        assert list(rows) == ["reference", "fast_sac14", "fast_sac14_fp8", "low_memory"]
        for row in rows.values():
            assert row["median_step_s"] > 0 and row["speedup"] > 0
            assert row["loss_rel_diff"] < 1e-2  # same weights, adapter init and noise: same loss within bf16
        assert "kernel_breakdown" not in rows["reference"]  # --profile: every variant but the reference
        assert all(rows[v]["kernel_breakdown"]["groups_s"] for v in ("fast_sac14", "fast_sac14_fp8", "low_memory"))
    elif name == "generate":
        assert record["videos"] == 1 and record["reference"]["s_per_video"] > 0
        assert record["command"].endswith("--sides reference,ours,ours_fp8,ours_fp8_attention")
        ours, fp8, fp8_attention = (record[s] for s in ("ours", "ours_fp8", "ours_fp8_attention"))
        assert ours["s_per_video"] > 0 and fp8["s_per_video"] > 0 and fp8_attention["s_per_video"] > 0
        assert ours["profile_4_steps"]["steps"] == 4 and ours["profile_4_steps"]["groups_s"]
        assert min(ours["psnr_db"]) >= 35  # our path reproduces the reference pipeline call
        # FP8 in the 10 linears of each of the 4 toy blocks, then in their self-attention too: it moves pixels, but
        # the video is still the reference's (two unrelated random videos are ≈ 8 dB apart)
        assert (ours["fp8_linears"], fp8["fp8_linears"], fp8_attention["fp8_linears"]) == (0, 40, 40)
        assert (ours["fp8_attention_blocks"], fp8["fp8_attention_blocks"], fp8_attention["fp8_attention_blocks"]) == (
            0,
            0,
            4,
        )
        for side in (fp8, fp8_attention):
            assert 20 <= min(side["psnr_db"]) and side["psnr_db"] != ours["psnr_db"]
        assert fp8_attention["psnr_db"] != fp8["psnr_db"]
    else:
        variants = [(v["variant"], v["batch"]) for v in record["forward"]["variants"]]
        assert variants == [
            ("eager", 1),
            ("outside the blocks (eager)", 1),
            ("compiled blocks", 1),
            ("compiled blocks", 2),
        ]
        assert record["forward"]["compiled_vs_eager_rel_err"] < 0.05
        default = next(r for r in record["attention"] if r["backend"] == "default")
        assert default["fwd_s"] >= 0 and "error" not in default
