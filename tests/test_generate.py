"""Generation: device-independent noise, determinism, pair validation, resumable outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cosmos_synth.chain import latent_shape, numpy_latents
from cosmos_synth.config import GenerateConfig
from cosmos_synth.files import read_jsonl
from cosmos_synth.generate import (
    fuse_adapter,
    generate_video,
    generate_videos,
    hooked_components,
    list_pairs,
    stream_text_encoder,
)
from cosmos_synth.video import read_video


def _config(model: Path, pairs: Path, out: Path, **kw) -> GenerateConfig:
    values = dict(
        model=str(model),
        pairs_dir=pairs,
        out_dir=out,
        height=64,
        width=96,
        num_frames=9,
        num_steps=2,
        dtype="float32",
        device="cpu",
    )
    return GenerateConfig(**{**values, **kw})


def test_numpy_latents_ignore_torch_rng_state():
    shape = (1, 16, 3, 8, 12)
    torch.manual_seed(0)
    a = numpy_latents(shape, seed=7)
    torch.manual_seed(12345)
    torch.randn(1000)
    b = numpy_latents(shape, seed=7)
    assert a.dtype == torch.float32 and a.shape == shape
    assert torch.equal(a, b)
    expected = np.random.RandomState(7).standard_normal(shape).astype(np.float32)
    assert np.array_equal(a.numpy(), expected)
    assert not torch.equal(a, numpy_latents(shape, seed=8))


def test_latent_shape_follows_the_vae():
    cfg = GenerateConfig(pairs_dir=Path("x"), out_dir=Path("y"))  # reference eval setting: 93 x 432 x 768
    assert latent_shape(cfg) == (1, 16, 24, 54, 96)


def test_same_seed_gives_identical_frames(tiny_pipe, tmp_path, make_pairs):
    cfg = _config(Path("unused"), make_pairs(tmp_path / "pairs"), tmp_path / "out")
    pair = list_pairs(cfg.pairs_dir)[0]
    torch.manual_seed(1)
    first = generate_video(tiny_pipe, cfg, pair)
    torch.manual_seed(2)  # torch's RNG plays no part
    second = generate_video(tiny_pipe, cfg, pair)
    assert first.dtype == np.uint8 and first.shape == (9, 64, 96, 3)
    assert np.array_equal(first, second)
    other = generate_video(tiny_pipe, _config(Path("unused"), cfg.pairs_dir, cfg.out_dir, seed=5), pair)
    assert not np.array_equal(first, other)


def test_generate_writes_videos_and_manifest_then_skips(tiny_model, tmp_path, make_pairs):
    cfg = _config(tiny_model, make_pairs(tmp_path / "pairs", 3), tmp_path / "out")
    result = generate_videos(cfg)
    assert (result.num_videos, result.num_skipped) == (3, 0)
    rows = read_jsonl(result.manifest)
    assert [r["sample_id"] for r in rows] == ["p0", "p1", "p2"]
    assert [r["seed"] for r in rows] == [0, 1, 2]
    assert rows[0]["prompt"] == "The robot arm picks up cube 0." and rows[0]["adapter"] is None
    for row in rows:
        frames, fps = read_video(Path(row["video"]))
        assert frames.shape == (9, 64, 96, 3) and fps == 16
    assert not list((tmp_path / "out" / "videos").glob(".*"))  # no temporary files left

    inode = Path(rows[0]["video"]).stat().st_ino  # a rewrite goes through a temporary name: a new inode
    again = generate_videos(cfg)
    assert (again.num_videos, again.num_skipped) == (3, 3)
    assert Path(rows[0]["video"]).stat().st_ino == inode

    Path(rows[1]["video"]).write_bytes(b"truncated")  # a corrupt output is redone, the rest kept
    redo = generate_videos(cfg)
    assert redo.num_skipped == 2 and read_video(Path(rows[1]["video"]))[0].shape[0] == 9

    reseeded = generate_videos(_config(tiny_model, cfg.pairs_dir, cfg.out_dir, seed=10))
    assert reseeded.num_skipped == 0  # different settings never reuse old videos
    assert [r["seed"] for r in read_jsonl(reseeded.manifest)] == [10, 11, 12]


def test_pair_errors_name_the_file(tmp_path, make_pairs):
    pairs = make_pairs(tmp_path / "pairs")
    (pairs / "p1.txt").unlink()
    with pytest.raises(ValueError, match=r"p1.png has no partner p1.txt"):
        list_pairs(pairs)
    (pairs / "p1.txt").write_text("   \n")
    with pytest.raises(ValueError, match=r"Prompt .*p1.txt is empty"):
        list_pairs(pairs)
    (pairs / "p1.txt").write_bytes(b"\xff\xfe bad")
    with pytest.raises(ValueError, match=r"p1.txt is not UTF-8"):
        list_pairs(pairs)
    with pytest.raises(ValueError, match="does not exist"):
        list_pairs(tmp_path / "nowhere")


def test_missing_adapter_is_reported(tiny_model, tmp_path, make_pairs):
    cfg = _config(tiny_model, make_pairs(tmp_path / "pairs"), tmp_path / "out", adapter=tmp_path / "no-adapter")
    with pytest.raises(
        ValueError,
        match=r"adapter .*no-adapter holds neither pytorch_lora_weights\.safetensors "
        r"\(LoRA/DoRA\) nor transformer/diffusion_pytorch_model\.safetensors",
    ):
        generate_videos(cfg)


def test_precomputed_embeddings_give_the_pipeline_call_frames(tiny_model, tmp_path, make_pairs):
    from cosmos_synth.generate import encode_prompts, release_text_encoder
    from cosmos_synth.models import load_pipeline

    cfg = _config(tiny_model, make_pairs(tmp_path / "pairs", 2), tmp_path / "out")
    pairs = list_pairs(cfg.pairs_dir)
    pipe = load_pipeline(tiny_model, dtype="float32", device="cpu")
    reference = [generate_video(pipe, cfg, p) for p in pairs]  # the plain pipeline call, prompt text in
    embeds, negative = encode_prompts(pipe, cfg, pairs)
    release_text_encoder(pipe)
    assert pipe.text_encoder is None and negative.shape == embeds["p0"].shape == (1, 512, 32)
    for pair, frames in zip(pairs, reference, strict=True):
        assert np.array_equal(generate_video(pipe, cfg, pair, embeds[pair.sample_id], negative), frames)


def test_encoding_only_the_conditioning_frame_changes_nothing(tiny_model, tmp_path, make_pairs):
    from cosmos_synth.generate import encode_conditioning_frames_only
    from cosmos_synth.models import load_pipeline

    cfg = _config(tiny_model, make_pairs(tmp_path / "pairs", 1), tmp_path / "out")
    pair = list_pairs(cfg.pairs_dir)[0]
    pipe = load_pipeline(tiny_model, dtype="float32", device="cpu")
    encoded = []
    encode = pipe.vae.encode
    pipe.vae.encode = lambda video, **kw: encoded.append(video.shape[2]) or encode(video, **kw)
    full = generate_video(pipe, cfg, pair)
    encode_conditioning_frames_only(pipe)
    encode_conditioning_frames_only(pipe)  # idempotent
    first = generate_video(pipe, cfg, pair)
    assert encoded == [9, 1]  # the pipeline alone encodes the image plus 8 black frames; now only the image
    assert np.array_equal(first, full)


def test_frames_are_the_pipelines_numpy_output_rounded(tiny_pipe, tmp_path, make_pairs):
    from cosmos_synth.generate import load_image

    cfg = _config(Path("unused"), make_pairs(tmp_path / "pairs", 1), tmp_path / "out")
    pair = list_pairs(cfg.pairs_dir)[0]
    ours = generate_video(tiny_pipe, cfg, pair)  # converted to uint8 as a tensor, where the frames are
    output = tiny_pipe(
        image=load_image(pair.image),
        prompt=pair.prompt,
        height=cfg.height,
        width=cfg.width,
        num_frames=cfg.num_frames,
        num_inference_steps=cfg.num_steps,
        guidance_scale=cfg.guidance_scale,
        latents=numpy_latents(latent_shape(cfg), cfg.seed),
        output_type="np",
    )
    expected = (np.clip(output.frames[0], 0.0, 1.0) * 255.0).round().astype(np.uint8)
    assert ours.shape == expected.shape == (9, 64, 96, 3) and np.array_equal(ours, expected)


def test_adapter_is_fused_before_the_text_encoder_is_streamed(tiny_model, tiny_lora_adapter, tiny_dit_output, tmp_path):
    """The GPU path's order (the text encoder streamed from host memory), run on the CPU: the fused DiT computes
    differently from the base DiT, and hooking the text encoder afterwards leaves it fused and unhooked."""
    from cosmos_synth.models import load_pipeline

    adapter = tiny_lora_adapter(tmp_path / "adapter")
    base = tiny_dit_output(load_pipeline(tiny_model, dtype="float32", device="cpu").transformer)
    pipe = load_pipeline(tiny_model, dtype="float32", device="cpu")
    fuse_adapter(pipe, adapter)
    fused = tiny_dit_output(pipe.transformer)
    stream_text_encoder(pipe, torch.device("cpu"))
    assert hooked_components(pipe) == ["text_encoder"]
    assert (fused - base).abs().max() > 1e-2
    torch.testing.assert_close(tiny_dit_output(pipe.transformer), fused)


def test_adapter_is_refused_on_a_pipeline_with_offload_hooks(tiny_lora_adapter, tmp_path, tiny_pipe):
    """diffusers' load_lora_weights on a hooked pipeline re-offloads all of it and the DiT keeps its base weights
    (on a GPU: LoRA videos identical to the base model's). fuse_adapter refuses instead of going silently wrong."""
    adapter = tiny_lora_adapter(tmp_path / "adapter")
    stream_text_encoder(tiny_pipe, torch.device("cpu"))
    with pytest.raises(RuntimeError, match=r"\['text_encoder'\] already carry accelerate hooks.*fuse before"):
        fuse_adapter(tiny_pipe, adapter)
