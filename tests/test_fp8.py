"""FP8 in the DiT: matmuls of the frozen linears (`use_fp8_matmuls`, `train.fp8_matmuls`, `generate.fp8_matmuls`)
and self-attention (`use_fp8_attention`, `generate.fp8_attention`).

torch's FP8 matmul (`torch._scaled_mm`, e4m3 operands with per-row scales) also runs on the CPU, so those tests run
the same kernels' arithmetic as a GPU does, at tiny sizes. cuDNN's FP8 attention kernel needs a Hopper GPU; here the
plain-torch version of its arithmetic runs behind the same custom op (benchmarks/fp8_attention.py compares the two
on a GPU).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cosmos_synth.config import GenerateConfig
from cosmos_synth.files import read_jsonl
from cosmos_synth.fp8_attention import (
    Fp8SelfAttnProcessor,
    fp8_attention,
    fp8_sdpa,
    use_fp8_attention,
)
from cosmos_synth.generate import generate_videos
from cosmos_synth.layout import LOSS_LOG
from cosmos_synth.models import load_pipeline
from cosmos_synth.speed import FP8_MODULES, Fp8Linear, to_e4m3, use_fp8_matmuls
from cosmos_synth.train import train
from cosmos_synth.video import read_video


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


def test_e4m3_rows_use_the_whole_range_and_round_trip():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 256, generator=g) * torch.tensor([1e-3, 1.0, 0.0, 1e2, 1e4]).unsqueeze(1)
    q, scale = to_e4m3(x)
    assert q.dtype == torch.float8_e4m3fn and scale.shape == (5, 1)
    back = q.float() * scale
    assert torch.equal(back[2], torch.zeros(256))  # an all-zero row stays zero (no 0/0)
    for row in (0, 1, 3, 4):  # each row's largest value lands on e4m3's largest, 448, whatever the row's size
        assert q[row].float().abs().max().item() == 448.0
        assert rel(back[row], x[row]) < 0.05  # 3 mantissa bits: at most 2^-4 relative per element


def test_fp8_linear_matches_the_layer_and_computes_no_weight_gradient():
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 48).requires_grad_(False)
    fp8 = Fp8Linear(64, 48).requires_grad_(False)
    fp8.load_state_dict(layer.state_dict())
    x = torch.randn(2, 10, 64, requires_grad=True)
    grad_out = torch.randn(2, 10, 48)
    expected = layer(x)
    expected.backward(grad_out)
    expected_grad, x.grad = x.grad, None
    out = fp8(x)
    out.backward(grad_out)
    assert out.shape == expected.shape and 0 < rel(out, expected) < 0.05  # really FP8, and close
    assert 0 < rel(x.grad, expected_grad) < 0.05
    assert fp8.weight.grad is None and fp8.bias.grad is None
    fp8.weight.requires_grad_(True)
    with pytest.raises(RuntimeError, match="only for frozen weights"):
        fp8(x)


@pytest.mark.parametrize("adapter", ["lora", "dora"])
def test_fp8_dit_converts_the_frozen_base_layers_and_trains_like_float(tiny_dit_run, adapter):
    def convert(transformer):
        keys = list(transformer.state_dict())
        # 2 blocks x (q, k, v, out of self- and cross-attention + the MLP's two layers)
        assert use_fp8_matmuls(transformer) == 2 * 10
        assert list(transformer.state_dict()) == keys  # names unchanged: adapters save and load as before
        for name, module in transformer.transformer_blocks.named_modules():
            if isinstance(module, torch.nn.Linear):
                base = name.endswith(".base_layer") and name.removesuffix(".base_layer").endswith(FP8_MODULES)
                assert isinstance(module, Fp8Linear) == base, name  # adapters and adaLN layers stay as they were

    plain_out, plain_grads = tiny_dit_run(adapter)
    out, grads = tiny_dit_run(adapter, prepare=convert)
    assert 0 < rel(out, plain_out) < 0.05
    assert rel(torch.cat([g.flatten() for g in grads]), torch.cat([g.flatten() for g in plain_grads])) < 0.1  # the
    # adapter's gradient, through FP8 input gradients


def test_fp8_refuses_trainable_weights(tiny_model):
    pipe = load_pipeline(tiny_model, dtype="float32", device="cpu")  # nothing frozen
    with pytest.raises(ValueError, match=r"0\.attn1\.to_q has a trainable weight"):
        use_fp8_matmuls(pipe.transformer)


@pytest.mark.slow
def test_training_with_fp8_matmuls_follows_the_float_loss(tiny_train_config, clips, tmp_path):
    losses = {}
    for fp8 in (False, True):
        out = tmp_path / f"fp8-{fp8}"
        cfg = tiny_train_config(clips, out, num_epochs=1, num_warmup_steps=1, fp8_matmuls=fp8)
        train(cfg)
        losses[fp8] = [r["loss"] for r in read_jsonl(out / LOSS_LOG)]
    assert len(losses[True]) == len(losses[False]) >= 2
    for a, b in zip(
        losses[True], losses[False], strict=True
    ):  # same data, noise and seed: the loss moves by FP8's rounding only
        assert a != b and abs(a - b) / b < 0.02


def _attention_inputs(seed: int = 0, tokens: int = 256):
    """(B, H, S, D) query/key/value laid out as the DiT's processor makes them (a transposed (B, S, H, D) tensor),
    query and key RMS-normalised as its QK norms do."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, tokens, 2, 32, generator=g).transpose(1, 2) for _ in range(3))
    return q / q.square().mean(-1, keepdim=True).sqrt(), k / k.square().mean(-1, keepdim=True).sqrt(), v


def test_per_tensor_e4m3_uses_the_whole_range():
    x = torch.randn(3, 50) * 1e-3
    q, scale = to_e4m3(x, per_row=False)
    assert q.dtype == torch.float8_e4m3fn and scale.shape == (1,)
    assert q.float().abs().max().item() == 448.0 and rel(q.float() * scale, x) < 0.05
    zero, _ = to_e4m3(torch.zeros(4), per_row=False)
    assert torch.equal(zero.float(), torch.zeros(4))


def test_fp8_attention_is_close_to_sdpa_and_keeps_the_layout():
    q, k, v = _attention_inputs()
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    out = fp8_attention(q, k, v)
    assert out.dtype == q.dtype and out.shape == q.shape and out.stride() == q.stride()
    assert 0 < rel(out, expected) < 0.1  # e4m3 q, k, v, probabilities and output: a few percent each


def test_fp8_sdpa_is_a_well_formed_custom_op():
    q, k, v = _attention_inputs(tokens=64)
    (q8, sq), (k8, sk), (v8, sv) = (to_e4m3(t, per_row=False) for t in (q, k, v))
    # the fake (meta) implementation torch.compile traces with agrees with the real one on shape, dtype and
    # strides (opcheck's other checks do arithmetic that float8 tensors do not support on the CPU)
    torch.library.opcheck(fp8_sdpa, (q8, k8, v8, sq, sk, sv, sv), test_utils=("test_faketensor",))
    compiled = torch.compile(fp8_attention, fullgraph=True)
    assert torch.equal(compiled(q, k, v), fp8_attention(q, k, v))


def test_fp8_processor_runs_diffusers_steps_around_the_kernel(tiny_model):
    pipe = load_pipeline(tiny_model, dtype="float32", device="cpu")
    block = pipe.transformer.transformer_blocks[0]
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(1, 18, block.attn1.to_q.in_features, generator=g)
    rope = pipe.transformer.rope(torch.zeros(1, 16, 3, 4, 6))  # the DiT's rotary embedding for 3x2x3 patches
    with torch.no_grad():
        stock = block.attn1(hidden, image_rotary_emb=rope)
        block.attn1.set_processor(Fp8SelfAttnProcessor(attention=torch.nn.functional.scaled_dot_product_attention))
        same_steps = block.attn1(hidden, image_rotary_emb=rope)
        block.attn1.set_processor(Fp8SelfAttnProcessor())
        fp8 = block.attn1(hidden, image_rotary_emb=rope)
    torch.testing.assert_close(same_steps, stock)  # projections, QK norms, RoPE, output projection: diffusers' own
    assert 0 < rel(fp8, stock) < 0.1
    with pytest.raises(ValueError, match="self-attention"):
        block.attn1.processor(block.attn1, hidden, encoder_hidden_states=hidden)


def test_use_fp8_attention_switches_every_self_attention(tiny_model):
    pipe = load_pipeline(tiny_model, dtype="float32", device="cpu")
    assert use_fp8_attention(pipe.transformer) == 2
    for block in pipe.transformer.transformer_blocks:
        assert isinstance(block.attn1.processor, Fp8SelfAttnProcessor)
        assert not isinstance(block.attn2.processor, Fp8SelfAttnProcessor)  # cross-attention stays as it was


@pytest.mark.parametrize("options", [("fp8_matmuls",), ("fp8_matmuls", "fp8_attention")])
def test_generation_with_fp8_is_recorded_and_close(tiny_model, tmp_path, make_pairs, options):
    pairs = make_pairs(tmp_path / "pairs", 1)
    videos = {}
    for fp8 in (False, True):
        cfg = GenerateConfig(
            model=str(tiny_model),
            revision=None,
            pairs_dir=pairs,
            out_dir=tmp_path / "out",
            height=64,
            width=96,
            num_frames=9,
            num_steps=2,
            dtype="float32",
            device="cpu",
            **{name: fp8 for name in options},
        )
        result = generate_videos(cfg)
        assert result.num_skipped == 0  # switching FP8 on regenerates: it changes the pixels
        row = read_jsonl(result.manifest)[0]
        assert all(row.get(name, False) is fp8 for name in options)
        videos[fp8] = read_video(Path(row["video"]))[0].astype(np.float64)
    mse = np.mean((videos[True] - videos[False]) ** 2)
    assert 0 < mse and 10 * np.log10(255**2 / mse) > 25  # the same video, moved by FP8 rounding
