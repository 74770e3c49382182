"""The latent cache (hits, misses, invalidation) and the training fast path that uses it."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from cosmos_synth.cache import cache_key, encode_latent_cache, load_cached, window_starts
from cosmos_synth.config import CacheConfig
from cosmos_synth.encoding import encode_video
from cosmos_synth.files import read_jsonl
from cosmos_synth.layout import LOSS_LOG
from cosmos_synth.models import load_pipeline
from cosmos_synth.preprocess import load_clip
from cosmos_synth.speed import _ATTENTION_OPS, checkpoint_blocks
from cosmos_synth.train import train


def _cfg(model: Path, clips: Path, out: Path, **kw) -> CacheConfig:
    return CacheConfig(
        **{
            **dict(
                model=str(model),
                revision=None,
                data_dir=clips,
                out_dir=out,
                num_frames=9,
                num_windows=3,
                dtype="float32",
                device="cpu",
            ),
            **kw,
        }
    )


def test_cache_holds_what_encoding_gives_and_hits_on_rerun(tiny_model, clips, tmp_path):
    cfg = _cfg(tiny_model, clips, tmp_path / "cache")
    first = encode_latent_cache(cfg)
    assert (first.num_clips, first.num_encoded, first.num_prompts) == (4, 4, 4)
    row = read_jsonl(first.manifest)[0]
    latents, embeds = load_cached(row)
    assert latents.shape == (3, 16, 3, 4, 6) and embeds.shape == (1, 512, 32)
    assert len(set(row["starts"])) == 3 and all(0 <= s <= 33 - 9 for s in row["starts"])

    pipe = load_pipeline(tiny_model, dtype="float32", device="cpu")
    frames = load_clip(Path(read_jsonl(clips / "manifest.jsonl")[0]["clip"]))
    start = row["starts"][1]
    window = frames[start : start + 9].permute(3, 0, 1, 2).float() / 127.5 - 1.0
    torch.testing.assert_close(latents[1:2], encode_video(pipe, window.unsqueeze(0)))
    with torch.no_grad():
        torch.testing.assert_close(embeds, pipe._get_prompt_embeds(row["caption"]))

    again = encode_latent_cache(cfg)
    assert again.num_encoded == 0 and read_jsonl(again.manifest) == read_jsonl(first.manifest)


@pytest.mark.slow
def test_cache_misses_when_what_determines_it_changes(tiny_model, clips, tmp_path):
    cfg = _cfg(tiny_model, clips, tmp_path / "cache")
    encode_latent_cache(cfg)
    assert encode_latent_cache(dataclasses.replace(cfg, num_frames=5)).num_encoded == 4
    assert encode_latent_cache(dataclasses.replace(cfg, seed=1)).num_encoded == 4  # other windows

    other = shutil.copytree(tiny_model, tmp_path / "other-model")  # same weights, another folder: another model
    assert encode_latent_cache(dataclasses.replace(cfg, model=str(other))).num_encoded == 4


def test_cache_key_follows_the_hub_revision():
    cfg = _cfg(Path("unused"), Path("unused"), Path("unused"))
    a = cache_key(cfg, "nvidia/Cosmos-Predict2.5-2B@diffusers/base/post-trained", "abc", 432, 768)
    b = cache_key(cfg, "nvidia/Cosmos-Predict2.5-2B@diffusers/base/pre-trained", "abc", 432, 768)
    assert a != b and a == cache_key(cfg, "nvidia/Cosmos-Predict2.5-2B@diffusers/base/post-trained", "abc", 432, 768)
    assert cache_key(cfg, "m@r", "abc", 432, 768) != cache_key(cfg, "m@r", "abd", 432, 768)  # source bytes


def test_window_starts_are_seeded_and_bounded():
    cfg = _cfg(Path("m"), Path("d"), Path("o"), num_windows=4)
    assert window_starts(40, cfg, "clip") == window_starts(40, cfg, "clip")
    assert window_starts(40, cfg, "clip") != window_starts(40, cfg, "other")
    assert window_starts(10, cfg, "clip") == [0, 1]  # only two 9-frame windows fit in 10 frames
    with pytest.raises(ValueError, match="clip has 8 frames; num_frames=9"):
        window_starts(8, cfg, "clip")


@pytest.mark.slow
def test_training_on_the_cache_needs_no_text_encoder(tiny_model, tiny_train_config, clips, tmp_path):
    cache = encode_latent_cache(_cfg(tiny_model, clips, tmp_path / "cache")).out_dir
    cfg = tiny_train_config(
        clips,
        tmp_path / "train",
        num_epochs=3,
        num_warmup_steps=1,
        checkpoint_every_epochs=3,
        latent_cache=cache,
        gradient_checkpointing=True,
        checkpoint_layers=1,
    )
    result = train(cfg)
    losses = [r["loss"] for r in read_jsonl(tmp_path / "train" / LOSS_LOG)]
    assert result.num_steps == 12 and len(losses) == 12 and all(map(torch.isfinite, torch.tensor(losses)))


def _checkpointing(num_layers, policy="full"):
    """A `tiny_dit_run` prepare step: checkpoint `num_layers` blocks (None: none) under `policy`."""

    def prepare(transformer):
        if num_layers is not None:
            assert len(checkpoint_blocks(transformer, num_layers, policy=policy)) == num_layers

    return prepare


@pytest.mark.parametrize("policy", ["full", "save_attention"])
def test_selective_checkpointing_keeps_values_and_gradients(tiny_dit_run, policy):
    plain_out, plain_grads = tiny_dit_run()
    for layers in (1, 2):
        out, grads = tiny_dit_run(prepare=_checkpointing(layers, policy))
        torch.testing.assert_close(out, plain_out)
        for a, b in zip(grads, plain_grads, strict=True):
            torch.testing.assert_close(a, b)


class _CountAttention(TorchDispatchMode):
    """Counts attention-kernel forward calls (the ops a recomputation would run again)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in _ATTENTION_OPS:
            self.calls += 1
        return func(*args, **(kwargs or {}))


def test_save_attention_policy_does_not_recompute_attention(tiny_dit_run):
    counts = {}
    for policy in ("full", "save_attention"):
        counter = _CountAttention()
        tiny_dit_run(prepare=_checkpointing(2, policy), during_backward=counter)
        counts[policy] = counter.calls
    # The tiny DiT has 2 blocks, each with a self- and a cross-attention: "full" reruns all 4 in the backward pass,
    # "save_attention" only the 2 cheap cross-attentions (8 prompt tokens).
    assert counts == {"full": 4, "save_attention": 2}


def test_unknown_checkpoint_policy_is_refused(tiny_model):
    pipe = load_pipeline(tiny_model, dtype="float32", device="cpu")
    with pytest.raises(ValueError, match="checkpoint policy 'some'"):
        checkpoint_blocks(pipe.transformer, 1, policy="some")
