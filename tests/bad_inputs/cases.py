"""The bad-input cases: for each kind, how to build it (with corpus.py) and the strict-mode error it must give.

Each table maps a kind to (build, message). The tests run every kind alone in strict mode (the error must match
`message`) and all kinds of a table together in lenient mode (each must be quarantined once, `message` its reason).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import safe_open

from bad_inputs import corpus

GOOD = [f"videos/episode_{i:04d}.mp4,Pick up cube {i}." for i in range(4)]  # the demo dataset's 4 episodes


# ---------------------------------------------------------------------------------------------------- ingest
# Each builder writes its bad file under the dataset root `r` and returns the metadata.csv line naming it.


def _line(path: Path, root: Path) -> str:
    return f"{path.relative_to(root)},x"


def _copy(root: Path, stem: str, relative: str) -> Path:
    (root / relative).parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(root / "videos" / f"{stem}.mp4", root / relative))


def _outside(root: Path) -> Path:
    return corpus.good_video(root.parent / "outside.mp4")


VIDEO_CASES = {
    "corrupt_mp4": (
        lambda r: _line(corpus.random_bytes_mp4(r / "bad/random.mp4"), r),
        r"line 2: Video .*bad/random\.mp4 cannot be decoded \(.*\); re-encode it or remove it",
    ),
    "truncated_mp4": (
        lambda r: _line(corpus.truncated_mp4(r / "bad/half.mp4", r / "videos/episode_0001.mp4"), r),
        r"line 2: Video .*bad/half\.mp4 cannot be decoded",
    ),
    "zero_length_mp4": (
        lambda r: _line(corpus.empty_file(r / "bad/empty.mp4"), r),
        r"Video .*bad/empty\.mp4 is empty \(0 bytes\), usually an interrupted copy",
    ),
    "text_as_mp4": (
        lambda r: _line(corpus.text_as_mp4(r / "bad/page.mp4"), r),
        r"Video .*bad/page\.mp4 cannot be decoded",
    ),
    "audio_only_mp4": (
        lambda r: _line(corpus.audio_only_mp4(r / "bad/audio.mp4"), r),
        r"Video .*bad/audio\.mp4 has no video stream; re-encode it as H\.264 mp4",
    ),
    "too_few_frames": (
        lambda r: _line(corpus.good_video(r / "bad/short.mp4", num_frames=9), r),
        r"Video bad/short\.mp4 has 9 frames; min_frames=33 needs at least 33\. Lower num_frames",
    ),
    "aspect_ratio": (
        lambda r: _line(corpus.good_video(r / "bad/wide.mp4", width=160), r),
        r"Video bad/wide\.mp4 is 160x64 \(aspect 2\.50\) but most videos of the dataset are 96x64 "
        r"\(aspect 1\.50\); .* stretch it by 67%.* Crop or pad it",
    ),
    "missing_caption": (
        lambda r: "videos/episode_0001.mp4",
        r"line 2: expected '<video path>,<caption>', got 'videos/episode_0001\.mp4'; add a comma",
    ),
    "empty_caption": (
        lambda r: 'videos/episode_0002.mp4, "" ',
        r"line 2: the caption of videos/episode_0002\.mp4 is empty; write a caption",
    ),
    "non_utf8_metadata": (
        lambda r: "videos/episode_0003.mp4,Le bras saisit le cube doré".encode("latin-1"),
        r"metadata\.csv line 2 is not UTF-8 text \(.*\); save metadata\.csv as UTF-8",
    ),
    "missing_video": (
        lambda r: "bad/nowhere.mp4,gone",
        r"line 2: video bad/nowhere\.mp4 does not exist under .*; fix the path or drop the line",
    ),
    "duplicate_id": (
        lambda r: _line(_copy(r, "episode_0000", "other/episode_0000.mp4"), r),
        r"lines 1 and 2 both give sample id 'episode_0000' .* rename one video",
    ),
    "case_colliding_id": (
        lambda r: _line(_copy(r, "episode_0000", "other/EPISODE_0000.mp4"), r),
        r"give sample ids 'episode_0000' and 'EPISODE_0000', which differ only in letter case",
    ),
    "parent_path": (
        lambda r: f"../{_outside(r).name},x",
        r"line 2: path '\.\./outside\.mp4' escapes the dataset root .*; use a path inside the dataset",
    ),
    "absolute_path": (lambda r: f"{_outside(r)},x", r"line 2: path '/.*outside\.mp4' escapes the dataset root"),
    "symlink_outside": (
        lambda r: _line(corpus.symlink_outside(r / "videos/link.mp4", _outside(r)), r),
        r"line 2: 'videos/link\.mp4' is a symbolic link to .*outside\.mp4, outside the dataset root "
        r".*; copy the file into the dataset",
    ),
}


# ---------------------------------------------------------------------------------------------------- pairs
# Each builder writes the bad pair `<s>` into the pairs folder `d`; {s} / {S} in a message stand for s / s.upper().


def make_pair(folder: Path, stem: str, prompt: str = "The robot arm picks up the cube.") -> Path:
    corpus.rgb_png(folder / f"{stem}.png")
    (folder / f"{stem}.txt").write_text(prompt)
    return folder


def _broken_image(build):
    return lambda d, s: build(make_pair(d, s) / f"{s}.png")


def _linked_out(suffix: str):
    """A pair whose `<s><suffix>` is a symbolic link to a good file beside the pairs folder, outside it."""

    def build(d: Path, s: str) -> None:
        outside = make_pair(d.parent / "outside", s) / f"{s}{suffix}"
        make_pair(d, s)
        (d / f"{s}{suffix}").unlink()
        corpus.symlink_outside(d / f"{s}{suffix}", outside)

    return build


PAIR_CASES = {
    "missing_prompt": (lambda d, s: corpus.rgb_png(d / f"{s}.png"), r"{s}\.png has no partner {s}\.txt in .*; add it"),
    "missing_image": (lambda d, s: (d / f"{s}.txt").write_text("a prompt"), r"{s}\.txt has no partner {s}\.png"),
    "empty_prompt": (lambda d, s: make_pair(d, s, prompt=" \n"), r"Prompt .*{s}\.txt is empty; write the task"),
    "non_utf8_prompt": (
        lambda d, s: corpus.latin1_text(make_pair(d, s) / f"{s}.txt"),
        r"Prompt .*{s}\.txt is not UTF-8 text \(.*\); save it as UTF-8",
    ),
    "case_colliding_ids": (
        lambda d, s: make_pair(make_pair(d, s.upper()), s),
        r"Pair ids '{S}' and '{s}' in .* differ only in letter case; .* Rename one pair",
    ),
    "truncated_png": (
        _broken_image(corpus.truncated_png),
        r"Image .*{s}\.png is truncated or corrupt \(.*\); re-export it as an 8-bit RGB PNG",
    ),
    "bad_checksum_png": (
        _broken_image(corpus.bad_checksum_png),
        r"Image .*{s}\.png is truncated or corrupt \(.*(checksum|broken).*\)",
    ),
    "jpeg_named_png": (
        _broken_image(corpus.jpeg_as_png),
        r"Image .*{s}\.png is not a PNG file \(it starts with b'\\xff\\xd8",
    ),
    "zero_length_png": (_broken_image(corpus.empty_file), r"Image .*{s}\.png is empty \(0 bytes\)"),
    "huge_png": (
        _broken_image(corpus.huge_png),
        r"Image .*{s}\.png is 10000x10000 pixels; cosmos-synth decodes at most MAX_IMAGE_PIXELS = 64 "
        r"megapixels \(a guard against decompression bombs\).* Downscale it",
    ),
    "image_linked_out": (
        _linked_out(".png"),
        r"Image .*pairs/{s}\.png is a symbolic link to .*/outside/{s}\.png, outside the pairs folder "
        r".*pairs; copy the file into the pairs folder instead of linking to it \(lenient mode skips "
        r"the pair\)",
    ),
    "prompt_linked_out": (
        _linked_out(".txt"),
        r"Prompt .*pairs/{s}\.txt is a symbolic link to .*/outside/{s}\.txt, outside the pairs "
        r"folder .*pairs; copy the file into the pairs folder instead of linking to it",
    ),
}


def pair_message(kind: str, stem: str) -> str:
    return PAIR_CASES[kind][1].replace("{s}", stem).replace("{S}", stem.upper())


# ---------------------------------------------------------------------------------------------------- adapters
# Each builder writes a bad adapter at `p` (pytorch_lora_weights.safetensors) from the good adapter file `a` and the
# tiny model folder `m`, and returns the path to validate.


def _rank_in_metadata(adapter: Path, rank: int) -> dict:
    with safe_open(str(adapter), framework="pt") as fh:
        config = json.loads(fh.metadata()["lora_adapter_metadata"])
    return {"format": "pt", "lora_adapter_metadata": json.dumps({**config, "transformer.r": rank})}


def _other_architecture(key: str) -> str:
    return key.replace("transformer_blocks", "down_blocks")


def _wider_inputs(key: str, tensor: torch.Tensor) -> torch.Tensor:
    return torch.zeros(tensor.shape[0], 64) if key.endswith("lora.down.weight") else tensor


ADAPTER_CASES = {
    "pickle_named_safetensors": (
        lambda p, a, m: corpus.pickled_adapter(p, a),
        r"adapter .*pytorch_lora_weights\.safetensors is not a safetensors file \(it is a zip "
        r"archive, which is how torch\.save writes a pickle\) \(.*\); cosmos-synth loads "
        r"adapters from safetensors only; re-save it with safetensors' save_file",
    ),
    "legacy_pickle": (lambda p, a, m: corpus.legacy_pickle(p), r"is not a safetensors file \(it is a Python pickle\)"),
    "bin_adapter": (
        lambda p, a, m: corpus.legacy_pickle(p.with_suffix(".bin")),
        r"adapter .*pytorch_lora_weights\.bin is a \.bin file, not safetensors; .* never unpickles one",
    ),
    "other_architecture": (
        lambda p, a, m: corpus.edited_adapter(p, a, rename=_other_architecture),
        r"adapter .*: 20 of its 20 adapted layers are not linear layers of this DiT \(e\.g\. "
        r"\['down_blocks\..*\]\); it was trained for another architecture",
    ),
    "wrong_shape": (
        lambda p, a, m: corpus.edited_adapter(p, a, reshape=_wider_inputs),
        r"\.lora\.down\.weight has shape \[4, 64\] but layer .* is Linear\(in_features=32, "
        r"out_features=\d+\), which needs \[4, 32\]; the adapter was trained for another model size",
    ),
    "rank_unlike_metadata": (
        lambda p, a, m: corpus.edited_adapter(p, a, metadata=_rank_in_metadata(a, 8)),
        r"its metadata says rank r=8 but layer transformer_blocks\.\d\..* has rank 4",
    ),
    "nan_weights": (
        lambda p, a, m: corpus.edited_adapter(p, a, nan_suffix="lora.up.weight"),
        r"tensor .*lora\.up\.weight holds NaN or Inf; the run that wrote it diverged",
    ),
    "full_checkpoint": (
        lambda p, a, m: Path(shutil.copy(m / "transformer/diffusion_pytorch_model.safetensors", p)),
        r"tensor '.*' is not a LoRA/DoRA weight .* full model checkpoint rather than an adapter",
    ),
}
