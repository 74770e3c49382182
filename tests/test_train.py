"""Adapters train, save in diffusers format, and load into a fresh pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cosmos_synth.config import TrainConfig
from cosmos_synth.encoding import encode_video
from cosmos_synth.loss import build_flow_inputs, masked_velocity_loss, predict_velocity
from cosmos_synth.models import ADAPTER_FILE, load_pipeline
from cosmos_synth.train import add_adapter, save_adapter


def _config(tmp_path: Path, adapter: str, **kw) -> TrainConfig:
    values = dict(
        model="unused",
        data_dir=tmp_path,
        out_dir=tmp_path,
        adapter=adapter,
        rank=4,
        alpha=4,
        num_frames=9,
        dtype="float32",
        cpu=True,
    )
    return TrainConfig(**{**values, **kw})


def _fixed_batch(pipe):
    g = torch.Generator().manual_seed(0)
    video = torch.rand(1, 3, 9, 32, 48, generator=g) * 2 - 1
    clean = encode_video(pipe, video)
    noise = torch.randn(clean.shape, generator=g)
    inputs = build_flow_inputs(clean, noise, torch.full((1, 1, 1, 1, 1), 0.7), [1], cond_timestep=1e-4)
    with torch.no_grad():
        embeds = pipe._get_prompt_embeds("The robot arm picks up the red cube.")
    return inputs, embeds


@pytest.mark.parametrize("adapter", ["lora", "dora"])
def test_adapter_trains_on_a_fixed_batch(tiny_pipe, tmp_path, adapter):
    cfg = _config(tmp_path, adapter)
    params = add_adapter(tiny_pipe.transformer, cfg)
    assert params and all(p.dtype == torch.float32 for p in params)
    names = [n for n, p in tiny_pipe.transformer.named_parameters() if p.requires_grad]
    assert all("lora" in n for n in names)
    magnitude = [n for n in names if "lora_magnitude_vector" in n]
    assert bool(magnitude) == (adapter == "dora")  # DoRA adds one magnitude vector per adapted layer
    for module in cfg.target_modules:
        assert any(f".{module}.lora_A" in n for n in names), module

    inputs, embeds = _fixed_batch(tiny_pipe)
    opt = torch.optim.AdamW(params, lr=1e-2)
    losses = []
    for _ in range(8):
        loss = masked_velocity_loss(
            predict_velocity(tiny_pipe.transformer, inputs, embeds, dtype=torch.float32), inputs
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses


@pytest.mark.parametrize("adapter", ["lora", "dora"])
def test_adapter_round_trips_and_changes_the_output(tiny_model, tiny_pipe, tmp_path, adapter):
    cfg = _config(tmp_path, adapter, alpha=8)
    add_adapter(tiny_pipe.transformer, cfg)
    with torch.no_grad():  # stand-in for training: make every adapter weight non-trivial
        g = torch.Generator().manual_seed(3)
        for p in tiny_pipe.transformer.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    path = save_adapter(tiny_pipe.transformer, tmp_path)
    assert path == tmp_path / ADAPTER_FILE
    saved = load_file(str(path))
    assert saved and all(k.startswith("transformer.") for k in saved)

    inputs, embeds = _fixed_batch(tiny_pipe)
    with torch.no_grad():
        trained = predict_velocity(tiny_pipe.transformer, inputs, embeds, dtype=torch.float32)

    fresh = load_pipeline(tiny_model, dtype="float32", device="cpu")
    with torch.no_grad():
        base = predict_velocity(fresh.transformer, inputs, embeds, dtype=torch.float32)
    fresh.load_lora_weights(str(tmp_path), weight_name=ADAPTER_FILE)
    fresh.fuse_lora(lora_scale=1.0)
    with torch.no_grad():
        loaded = predict_velocity(fresh.transformer, inputs, embeds, dtype=torch.float32)
    assert (loaded - base).abs().max() > 1e-3  # the adapter changes the transformer's output
    torch.testing.assert_close(loaded, trained, atol=1e-4, rtol=1e-4)  # and reproduces the trained model (alpha too)


def test_config_normalises_json_keys_and_rejects_bad_values(tmp_path):
    cfg = _config(tmp_path, "lora", cond_frame_probs={"1": 0.25, "2": 0.75})
    assert cfg.cond_frame_probs == {1: 0.25, 2: 0.75}
    with pytest.raises(ValueError, match="cond_frame_probs"):
        _config(tmp_path, "lora", cond_frame_probs={"3": 1.0})
    with pytest.raises(ValueError, match="num_frames=10.*4k\\+1"):
        _config(tmp_path, "lora", num_frames=10)
