"""Bad input, tried for real: every kind in tests/bad_inputs/corpus.py stops a stage in strict mode with an error that
names the file and the fix, and is skipped and recorded in lenient mode while the good samples go on; security
defaults (safetensors only, no remote code, paths inside their root, a loopback-only Prefect server) hold."""

from __future__ import annotations

import errno
import logging
import os
import pickle
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch
from bad_inputs import corpus
from bad_inputs.cases import ADAPTER_CASES, GOOD, PAIR_CASES, VIDEO_CASES, make_pair, pair_message
from safetensors.torch import save_file

from cosmos_synth import validate
from cosmos_synth.config import IngestConfig, TrainConfig
from cosmos_synth.files import read_jsonl, write_jsonl
from cosmos_synth.generate import list_pairs, list_pairs_checked, load_image
from cosmos_synth.ingest import ingest_dataset
from cosmos_synth.layout import RESULT_FILE
from cosmos_synth.models import ADAPTER_FILE, load_pipeline
from cosmos_synth.recipe import load_run_config
from cosmos_synth.safe_weights import check_weights_folder, validate_adapter_file
from cosmos_synth.train import add_adapter, save_adapter, train
from cosmos_synth.validate import MAX_IMAGE_PIXELS
from cosmos_synth.video import read_video, write_video

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def dataset(demo_dataset: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the session's demo dataset (4 episodes of 33 frames at 64x96)."""
    return Path(shutil.copytree(demo_dataset, tmp_path / "data"))


def _ingest(root: Path, mode: str = "strict"):
    return ingest_dataset(IngestConfig(dataset_dir=root, out_dir=root.parent / "ingest", min_frames=33, mode=mode))


@pytest.fixture
def no_unpickling(monkeypatch):
    """Any attempt to unpickle fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("something tried to unpickle a file")

    for owner, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
        monkeypatch.setattr(owner, name, refuse)


# ---------------------------------------------------------------------------------------------------- ingest
@pytest.mark.parametrize("kind", VIDEO_CASES)
def test_ingest_strict_names_the_file_and_the_fix(dataset, kind):
    build, message = VIDEO_CASES[kind]
    corpus.metadata_csv(dataset / "metadata.csv", [GOOD[0], build(dataset)])
    with pytest.raises(ValueError, match=message):
        _ingest(dataset)
    assert not (dataset.parent / "ingest").exists()  # strict: nothing written


def test_ingest_lenient_quarantines_every_kind_and_keeps_the_good(dataset):
    lines = [build(dataset) for build, _ in VIDEO_CASES.values()]
    corpus.metadata_csv(dataset / "metadata.csv", GOOD + lines)
    result = _ingest(dataset, mode="lenient")
    assert (result.num_samples, result.num_quarantined) == (4, len(VIDEO_CASES))
    assert [r["sample_id"] for r in read_jsonl(result.manifest)] == [f"episode_{i:04d}" for i in range(4)]
    assert result.quarantine == result.out_dir / "quarantine.jsonl"
    reasons = [row["reason"] for row in read_jsonl(result.quarantine)]
    for kind, (_, message) in VIDEO_CASES.items():  # each kind once, with its strict-mode message as the reason
        message = message.replace("line 2", r"line \d+").replace("lines 1 and 2", r"lines \d and \d+")
        assert len([r for r in reasons if re.search(message, r)]) == 1, (kind, reasons)
    assert {"file", "line", "reason"} <= set(read_jsonl(result.quarantine)[0])
    assert sorted(p.name for p in result.out_dir.iterdir()) == [
        "ingest_config.json",
        "manifest.jsonl",
        "quarantine.jsonl",
    ]


def test_ingest_lenient_with_nothing_good_left(dataset):
    corpus.metadata_csv(dataset / "metadata.csv", ["bad/nowhere.mp4,gone", "videos/episode_0000.mp4"])
    with pytest.raises(ValueError, match=r"no good sample is left; all 2 were quarantined \(reasons in .*quarantine"):
        _ingest(dataset, mode="lenient")
    assert not (dataset.parent / "ingest" / "manifest.jsonl").exists()
    assert len(read_jsonl(dataset.parent / "ingest" / "quarantine.jsonl")) == 2


def test_bom_and_crlf_metadata_work(dataset):
    corpus.metadata_csv(dataset / "metadata.csv", GOOD, bom=True, crlf=True)  # no header: the BOM sits on a path
    result = _ingest(dataset)
    rows = read_jsonl(result.manifest)
    assert [r["caption"] for r in rows] == [f"Pick up cube {i}." for i in range(4)]
    assert (result.num_quarantined, read_jsonl(result.quarantine)) == (0, [])


def test_captions_end_at_any_line_end_as_in_text_mode(dataset):
    lines = [f"videos/episode_{i:04d}.mp4,Pick up cube {i}.".encode() for i in range(4)]
    (dataset / "metadata.csv").write_bytes(lines[0] + b"\r\n" + lines[1] + b"\r" + lines[2] + b"\n" + lines[3])
    rows = read_jsonl(_ingest(dataset).manifest)
    assert [r["caption"] for r in rows] == [f"Pick up cube {i}." for i in range(4)]  # no CR left in any


def test_other_sizes_with_the_same_aspect_are_only_logged(dataset, caplog):
    corpus.good_video(dataset / "videos/small.mp4", height=32, width=48)
    corpus.metadata_csv(dataset / "metadata.csv", GOOD + ["videos/small.mp4,smaller"])
    with caplog.at_level(logging.WARNING, logger="cosmos_synth.ingest"):
        rows = read_jsonl(_ingest(dataset).manifest)
    assert [(r["height"], r["width"]) for r in rows][-1] == (32, 48)
    assert "videos come in 2 sizes (48x32, 96x64); preprocess resizes each" in caplog.text


# ---------------------------------------------------------------------------------------------------- pairs, images
@pytest.mark.parametrize("kind", PAIR_CASES)
def test_pairs_strict_names_the_file_and_the_fix(tmp_path, kind):
    folder = make_pair(tmp_path / "pairs", "a0")
    PAIR_CASES[kind][0](folder, "x")
    with pytest.raises(ValueError, match=pair_message(kind, "x")):
        list_pairs(folder)


def test_multi_line_prompt_reads_as_in_text_mode(tmp_path):
    folder = make_pair(tmp_path / "pairs", "a0")
    (folder / "a0.txt").write_bytes(b"\xef\xbb\xbfPick up the cube.\r\nPut it in the bowl.\rDone.\r\n")
    (pair,) = list_pairs(folder)
    assert pair.prompt == "Pick up the cube.\nPut it in the bowl.\nDone."


def test_pair_linked_to_a_file_of_its_own_folder_is_read(tmp_path):
    folder = make_pair(tmp_path / "pairs", "a0")
    os.symlink("a0.png", folder / "a1.png")  # relative links, inside the folder
    os.symlink("a0.txt", folder / "a1.txt")
    pairs = list_pairs(folder)
    assert [(p.sample_id, p.image, p.prompt) for p in pairs] == [
        ("a0", folder / "a0.png", "The robot arm picks up the cube."),
        ("a1", folder / "a1.png", "The robot arm picks up the cube."),
    ]


def test_huge_png_is_refused_from_its_header(tmp_path, monkeypatch):
    assert MAX_IMAGE_PIXELS == 64_000_000  # the explicit limit, lower than Pillow's own 89-megapixel warning
    path = corpus.huge_png(tmp_path / "bomb.png")
    monkeypatch.setattr(validate.Image, "open", lambda *a, **k: pytest.fail("a decoder saw a 100-megapixel image"))
    with pytest.raises(ValueError, match=pair_message("huge_png", "bomb")):
        load_image(path)


def test_pairs_lenient_skip_each_bad_pair_and_keep_seeds(tmp_path):
    folder = make_pair(make_pair(tmp_path / "pairs", "a0"), "zz")
    for kind, (build, _) in PAIR_CASES.items():
        build(folder, kind)
    stems = sorted({p.stem for p in folder.iterdir()})
    pairs, quarantined = list_pairs_checked(folder, "lenient")
    assert [p.sample_id for p in pairs] == ["CASE_COLLIDING_IDS", "a0", "zz"]
    assert [p.index for p in pairs] == [stems.index(p.sample_id) for p in pairs]  # skipping never reseeds the rest
    assert sorted(q["sample_id"] for q in quarantined) == sorted(PAIR_CASES)
    for entry in quarantined:
        assert re.search(pair_message(entry["sample_id"], entry["sample_id"]), entry["reason"]), entry
        assert Path(entry["file"]).name in entry["reason"]  # the record names the file at fault
    assert list_pairs_checked(make_pair(tmp_path / "clean", "a0"), "strict") == (list_pairs(tmp_path / "clean"), [])
    validate.Quarantine("lenient", quarantined).write(tmp_path / "out")
    assert read_jsonl(tmp_path / "out" / "quarantine.jsonl") == quarantined


@pytest.mark.parametrize(
    "kind, build, expected",
    [
        ("rgba", corpus.rgba_png, (200, 0, 0)),  # alpha dropped
        ("grey", corpus.grey_png, (77, 77, 77)),
        ("grey16", corpus.grey16_png, (0x12, 0x12, 0x12)),  # 0x1234: the top 8 bits
        ("rgb16", corpus.rgb16_png, (0xFF, 0x80, 0x01)),
        ("palette", corpus.palette_png, (40, 40, 40)),
    ],
)
def test_odd_pngs_become_8_bit_rgb_with_a_warning(tmp_path, caplog, kind, build, expected):
    folder = tmp_path / "pairs"
    folder.mkdir()
    (folder / f"{kind}.txt").write_text("The robot arm picks up the cube.")
    build(folder / f"{kind}.png")
    with caplog.at_level(logging.WARNING, logger="cosmos_synth.validate"):
        (pair,) = list_pairs(folder)
    assert re.search(rf"image .*{kind}\.png: .*(converted to 8-bit RGB|reduced to 8 bits per channel)", caplog.text)
    assert ("alpha channel dropped" in caplog.text) == (kind == "rgba")
    image = np.asarray(load_image(pair.image))
    assert image.dtype == np.uint8 and image.shape == (64, 96, 3)
    assert tuple(image[0, 0]) == expected and (image == image[0, 0]).all()


# ---------------------------------------------------------------------------------------------------- adapters
@pytest.fixture(scope="module")
def adapter(tiny_model: Path, tmp_path_factory) -> Path:
    """A real rank-4 LoRA adapter file for the tiny DiT, with non-zero weights."""
    pipe = load_pipeline(tiny_model, dtype="float32", device="cpu")
    add_adapter(
        pipe.transformer,
        TrainConfig(
            model="x", data_dir=Path("."), out_dir=Path("."), rank=4, alpha=4, num_frames=9, dtype="float32", cpu=True
        ),
    )
    with torch.no_grad():
        for p in pipe.transformer.parameters():
            if p.requires_grad:
                p.add_(0.01)
    return save_adapter(pipe.transformer, tmp_path_factory.mktemp("adapter"))


@pytest.fixture(scope="module")
def dit(tiny_model: Path):
    return load_pipeline(tiny_model, dtype="float32", device="cpu").transformer


@pytest.mark.parametrize("kind", ADAPTER_CASES)
def test_bad_adapters_are_refused_before_loading(tmp_path, adapter, dit, tiny_model, no_unpickling, kind):
    build, message = ADAPTER_CASES[kind]
    path = build(tmp_path / ADAPTER_FILE, adapter, tiny_model)
    with pytest.raises(ValueError, match=message):
        validate_adapter_file(path, dit)


def test_good_adapter_passes_and_loads(adapter, tiny_pipe, no_unpickling):
    assert validate_adapter_file(adapter, tiny_pipe.transformer) == {
        "file": str(adapter),
        "num_layers": 20,
        "rank": 4,
        "dora": False,
    }
    tiny_pipe.load_lora_weights(str(adapter.parent), weight_name=ADAPTER_FILE)


def test_pipeline_with_pickled_weights_is_refused_unread(tmp_path, tiny_model, no_unpickling):
    folder = corpus.pickled_pipeline(tmp_path / "model", tiny_model)
    with pytest.raises(
        OSError,
        match=r"no file named diffusion_pytorch_model\.safetensors found in directory "
        r".*model/transformer",
    ):
        load_pipeline(folder, dtype="float32")  # use_safetensors=True: diffusers refuses, never unpickles
    with pytest.raises(
        ValueError,
        match=r"Model folder .*model: transformer/diffusion_pytorch_model\.bin is a pickle "
        r"checkpoint and transformer/ holds no \.safetensors weights; .*safetensors "
        r"only and never unpickles",
    ):
        check_weights_folder(folder)
    check_weights_folder(tiny_model)  # the real folder passes


# ---------------------------------------------------------------------------------------------------- training
def _latent_cache(root: Path, latents: list[torch.Tensor]) -> Path:
    """A latent cache as the cache stage writes it, from given latents ([1, 16, 3, 4, 6] each: 9 frames, 32x48)."""
    prompt = root / "prompts" / "p.safetensors"
    prompt.parent.mkdir(parents=True)
    save_file({"prompt_embeds": torch.randn(1, 512, 32, generator=torch.Generator().manual_seed(0))}, str(prompt))
    rows = []
    for i, tensor in enumerate(latents):
        path = root / "latents" / f"clip_{i}.safetensors"
        path.parent.mkdir(exist_ok=True)
        save_file({"latents": tensor}, str(path))
        rows.append({"sample_id": f"clip_{i}", "latents": str(path), "prompt": str(prompt)})
    write_jsonl(root / "manifest.jsonl", rows)
    return root


@pytest.mark.parametrize(
    "case, where",
    [
        ("nan_latents", r"step 0, clips \['clip_0'\]"),  # the NaN clip comes first
        ("learning_rate_1e30", r"step 1, clips \['clip_\d'\]"),
    ],
)  # the first update explodes
def test_non_finite_loss_stops_training_without_an_adapter(tmp_path, tiny_model, case, where):
    clean = torch.randn(2, 1, 16, 3, 4, 6, generator=torch.Generator().manual_seed(1))
    if case == "nan_latents":
        clean[0, 0, :, 2] = float("nan")
    cache = _latent_cache(tmp_path / "cache", list(clean))
    cfg = TrainConfig(
        model=str(tiny_model),
        revision=None,
        data_dir=cache,
        out_dir=tmp_path / "train",
        rank=4,
        alpha=4,
        num_frames=9,
        num_epochs=2,
        num_warmup_steps=0,
        dtype="float32",
        cpu=True,
        gradient_checkpointing=False,
        latent_cache=cache,
        cfg_dropout_prob=0.0,
        learning_rate=1e30 if case == "learning_rate_1e30" else 1e-4,
    )
    with pytest.raises(
        FloatingPointError,
        match=rf"loss is (nan|inf) at epoch 0, {where}; lower learning_rate or "
        r"check the data\.",
    ):
        train(cfg)
    assert not (tmp_path / "train" / ADAPTER_FILE).exists() and not (tmp_path / "train" / RESULT_FILE).exists()


# ---------------------------------------------------------------------------------------------------- disk full
def test_disk_full_while_writing_the_manifest(dataset, monkeypatch):
    earlier = _ingest(dataset).manifest.read_bytes()
    corpus.metadata_csv(dataset / "metadata.csv", GOOD[:2])  # a rerun that writes a different manifest
    real_write_text = Path.write_text

    def half_then_full(self, data, *args, **kwargs):
        if "manifest.jsonl" not in self.name:
            return real_write_text(self, data, *args, **kwargs)
        with open(self, "w") as fh:
            fh.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", half_then_full)
    out = dataset.parent / "ingest"
    with pytest.raises(
        OSError,
        match=r"Could not write .*ingest/manifest\.jsonl \(No space left on device\); no "
        r"partial file was left .* Free space on that disk",
    ) as caught:
        _ingest(dataset)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(out / "manifest.jsonl")
    assert (out / "manifest.jsonl").read_bytes() == earlier  # the earlier manifest is untouched
    assert sorted(p.name for p in out.iterdir()) == ["ingest_config.json", "manifest.jsonl", "quarantine.jsonl"]


def test_disk_full_while_writing_a_video(tmp_path, monkeypatch):
    path = corpus.good_video(tmp_path / "videos" / "p0.mp4")  # an earlier, complete video
    real_open = av.open

    class FillsUp:  # the container fills the disk after two packets
        def __init__(self, *args, **kwargs):
            self.container, self.packets = real_open(*args, **kwargs), 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.container.__exit__(*exc)

        def add_stream(self, *args, **kwargs):
            return self.container.add_stream(*args, **kwargs)

        def mux(self, packet):
            self.packets += 1
            if self.packets > 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.container.mux(packet)

    with monkeypatch.context() as patch, pytest.raises(OSError, match="No space left on device") as caught:
        patch.setattr("av.open", FillsUp)  # cosmos_synth.video imports av where it writes
        write_video(np.zeros((33, 64, 96, 3), np.uint8), path, fps=16)
    assert caught.value.errno == errno.ENOSPC
    assert [p.name for p in path.parent.iterdir()] == ["p0.mp4"]  # no temporary file left
    assert read_video(path)[0].shape == (33, 64, 96, 3)  # the earlier video is whole


# ---------------------------------------------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    "override, message",
    [
        ({"train.rank": "abc"}, r"train: rank='abc' is not a whole number; give a whole number, e.g\. rank=32\."),
        ({"train.rank": 3.5}, r"train: rank=3\.5 is not a whole number"),
        (
            {"num_frames": "lots"},
            r"recipe \S+/demo/recipe\.toml: num_frames='lots' is not a whole number; .* e\.g\. "
            r"num_frames=93\.",
        ),  # a top-level key: refused as such, before any stage is built
        ({"train.learning_rate": "fast"}, r"train: learning_rate='fast' is not a number"),
        ({"train.learning_rate": float("nan")}, r"train: learning_rate=nan is not a number \(it must be finite\)"),
        ({"train.cpu": "yes"}, r"train: cpu='yes' is not true or false"),
        ({"train.target_modules": "to_q"}, r"train: target_modules='to_q' is not a list"),
        ({"train.adapter": "qlora"}, r"train: adapter='qlora' is not one of \['lora', 'dora', 'full'\]"),
        ({"train.rank": None}, r"train: rank is null but has no 'none' setting"),
    ],
)
def test_wrong_parameter_types_name_the_field(override, message):
    with pytest.raises(ValueError, match=message):  # at load: tests/test_recipe.py covers every stage
        load_run_config("demo", override)


def test_parameters_given_as_text_still_work():
    cfg = load_run_config("demo", {"train.rank": "16", "train.cpu": "true", "generate.mode": "lenient"})
    assert (cfg.train_config().rank, cfg.train_config().cpu, cfg.generate_config(None).mode) == (16, True, "lenient")
    with pytest.raises(ValueError, match=r"generate: mode='loose' is not one of \['strict', 'lenient'\]"):
        load_run_config("demo", {"generate.mode": "loose"})


# ---------------------------------------------------------------------------------------------------- security
FORBIDDEN = {  # pattern -> why it is refused
    r"trust_remote_code\s*=\s*True": "runs code from the Hub",
    r"\btorch\.load\s*\(": "unpickles",
    r"\bpickle\.(load|loads|Unpickler)\b": "unpickles",
    r"^\s*(import|from)\s+(pickle|dill|cloudpickle|joblib)\b": "a pickle library",
    r"allow_pickle\s*=\s*True": "unpickles NumPy object arrays",
    r"weights_only\s*=\s*False": "unpickles",
    r"use_safetensors\s*=\s*False|safe_serialization\s*=\s*False": "pickled weights",
}


def test_no_code_runs_when_anything_is_loaded():
    offenders = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()} ({why})"
        for folder in ("cosmos_synth", "tasks", "flows")
        for path in sorted((REPO / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        for pattern, why in FORBIDDEN.items()
        if re.search(pattern, line)
    ]
    assert offenders == []
    assert "use_safetensors=True" in (REPO / "cosmos_synth/models.py").read_text()


def test_local_prefect_server_listens_on_loopback_only(tmp_path, monkeypatch):
    from flows import local_stack

    spawned = []
    monkeypatch.setattr(
        local_stack.LocalStack,
        "_spawn",
        lambda self, args, *rest, **kw: spawned.append(args) or SimpleNamespace(poll=lambda: None),
    )
    monkeypatch.setattr(local_stack.httpx, "get", lambda url, **kw: SimpleNamespace(status_code=200))
    stack = local_stack.LocalStack(tmp_path / "stack")
    stack.start_server()  # the command is built and "started"; no server runs
    (args,) = spawned
    assert args[:2] == ["server", "start"] and args[args.index("--host") + 1] == "127.0.0.1"
    assert stack.api_url.startswith("http://127.0.0.1:") and stack.env["PREFECT_API_URL"] == stack.api_url
    texts = [p.read_text() for p in [*(REPO / "flows").glob("*.py"), REPO / "prefect.yaml", REPO / "Makefile"]]
    assert not any("0.0.0.0" in text for text in texts)
