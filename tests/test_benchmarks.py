"""The GPU benchmarks' harnesses, run on the CPU at toy sizes (tests/benchmark_smoke.py): every variant runs, the
JSON record is written, and the accuracy checks the benchmarks report hold (loss agreement, PSNR, compiled output)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def test_chain_cost_harness_runs_on_cpu(tmp_path):
    """One long video per overlap through the generate stage's chaining, timed per chunk (chunk 0 from the image,
    later chunks from 5 or 1 frames), and the VAE encode of 1, 5 and a whole chunk's frames alone."""
    record = run_smoke("chain_cost", tmp_path)
    assert record["benchmark"] == "chain_cost" and record["card"] == "cpu" and record["size"] == "9x32x48"
    chunks = [(r["overlap"], r["chunk"], r["condition"], r["new_frames"]) for r in record["chunks"]]
    assert chunks == [
        (5, 0, "image", 9),
        (5, 1, "video (5 frames)", 4),
        (5, 2, "video (5 frames)", 4),
        (1, 0, "image", 9),
        (1, 1, "video (1 frames)", 8),
    ]
    encode = record["vae_encode_s"]
    assert list(encode) == ["1", "5", "9"] and min(encode.values()) > 0
    for row in record["chunks"]:  # the VAE's time is part of the chunk's
        assert row["seconds"] > row["vae_encode_s"] + row["vae_decode_s"]
        assert row["vae_encode_s"] > 0 and row["vae_decode_s"] > 0
    assert record["first_chunk_s"] > 0 and record["later_chunk_s"] > 0


def test_multi_gpu_training_harness_runs_on_cpu(tmp_path):
    """train() through `accelerate launch` with 1 and 2 gloo processes; the ranks end with the same adapter.
    (The generation part needs a Prefect server and minutes per run: only its manifest check is tested, below.)"""
    record = run_smoke("multi_gpu", tmp_path)
    assert record["benchmark"] == "multi_gpu" and record["card"] == "cpu" and record["generate"] == []
    one, two = record["train"]
    assert (one["gpus"], one["mode"], two["gpus"], two["mode"]) == (1, "low_memory", 2, "low_memory")
    assert one["steps"] == two["steps"] == 4  # each process its own 4 clips
    for row in (one, two):
        assert row["s_per_step"] > 0 and row["input_s"] > 0 and row["compute_s"] > 0 and row["kernel_groups_s"]
        assert row["samples_per_s"] == pytest.approx(row["gpus"] / row["s_per_step"], rel=1e-3)
        assert len(row["peak_gib"]) == len(row["adapter_sha256"]) == row["gpus"]
    assert one["efficiency"] == 1.0 and one["adapters_agree"] is None
    assert two["adapters_agree"] is True and len(set(two["adapter_sha256"])) == 1
    assert two["adapter_sha256"] != one["adapter_sha256"]  # other clips, other noise: another adapter
    assert two["efficiency"] == pytest.approx(two["samples_per_s"] / (2 * one["samples_per_s"]), abs=1e-3)
    projected = {p["gpus"]: p for p in record["gr1_100_epochs"]}
    assert {g: p["steps"] for g, p in projected.items()} == {1: 9200, 2: 4600, 8: 1200}
    assert projected[2]["basis"] == "measured" and "2-GPU step time" in projected[8]["basis"]


def test_multi_gpu_manifest_check_counts_duplicates_and_missing(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SMOKE.parent.parent / "benchmarks"))
    import fullsize as fs
    from multi_gpu_generate import check_manifest

    from cosmos_synth.files import write_jsonl
    from cosmos_synth.layout import SHARDS_DIR
    from cosmos_synth.video import write_video

    pairs = [p.sample_id for p in fs.make_pairs(tmp_path / "pairs", 4)]
    out = tmp_path / "generate"
    rows = {}
    for sid in pairs[:3]:  # the fourth pair's video was never written
        write_video(np.zeros((5, 16, 16, 3), np.uint8), out / "videos" / f"{sid}.mp4", fps=16)
        rows[sid] = {"sample_id": sid, "video": str(out / "videos" / f"{sid}.mp4")}
    rows[pairs[3]] = {"sample_id": pairs[3], "video": str(out / "videos" / f"{pairs[3]}.mp4")}
    write_jsonl(out / SHARDS_DIR / "shard-000.jsonl", [rows[s] for s in pairs[:2]])
    write_jsonl(out / SHARDS_DIR / "shard-001.jsonl", [rows[s] for s in pairs[1:]])  # pairs[1] in both shards
    write_jsonl(out / "manifest.jsonl", list(rows.values()))
    assert check_manifest(out, tmp_path / "pairs", 5) == {"pairs": 4, "videos": 3, "duplicates": 1, "missing": 1}
    write_jsonl(out / SHARDS_DIR / "shard-001.jsonl", [rows[s] for s in pairs[2:3]])
    write_jsonl(out / "manifest.jsonl", [rows[s] for s in pairs[:3]])
    (tmp_path / "pairs" / f"{pairs[3]}.png").unlink()
    (tmp_path / "pairs" / f"{pairs[3]}.txt").unlink()
    assert check_manifest(out, tmp_path / "pairs", 5) == {"pairs": 3, "videos": 3, "duplicates": 0, "missing": 0}
    assert check_manifest(out, tmp_path / "pairs", 6)["missing"] == 3  # videos of the wrong length do not count
