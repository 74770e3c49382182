"""A training run restarted on the same folder continues from its latest checkpoint and ends where an
uninterrupted run ends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cosmos_synth import launch
from cosmos_synth.files import read_jsonl
from cosmos_synth.launch import launch_training
from cosmos_synth.layout import LOSS_LOG
from cosmos_synth.models import ADAPTER_FILE
from cosmos_synth.train import latest_checkpoint, train


@pytest.fixture()
def config(tiny_train_config):
    """`config(clips, out, num_epochs)`: 4 clips an epoch, a checkpoint every 2 epochs."""

    def make(clips: Path, out: Path, num_epochs: int):
        return tiny_train_config(
            clips,
            out,
            num_epochs=num_epochs,
            num_warmup_steps=2,
            num_training_steps=50,
            checkpoint_every_epochs=2,
            gradient_checkpointing=False,
        )

    return make


@pytest.mark.slow
def test_resumed_run_ends_with_the_same_adapter(config, clips, tmp_path):
    straight = train(config(clips, tmp_path / "straight", num_epochs=4))

    first = train(config(clips, tmp_path / "resumed", num_epochs=2))  # "interrupted" after epoch 2
    assert latest_checkpoint(tmp_path / "resumed").name == "epoch_000002"
    resumed = train(config(clips, tmp_path / "resumed", num_epochs=4))

    assert first.num_steps == 8 and resumed.num_steps == straight.num_steps == 16
    log = read_jsonl(tmp_path / "resumed" / LOSS_LOG)
    assert [r["step"] for r in log] == list(range(1, 17))  # continued at step 9, nothing repeated
    expected = [r["loss"] for r in read_jsonl(tmp_path / "straight" / LOSS_LOG)]
    assert [r["loss"] for r in log] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    a = load_file(str(tmp_path / "straight" / ADAPTER_FILE))
    b = load_file(str(tmp_path / "resumed" / ADAPTER_FILE))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)
    assert any(a[k].abs().max() > 0 for k in a if "lora_B" in k)  # the adapter did train


@pytest.mark.slow
def test_finished_run_is_not_repeated(config, clips, tmp_path, monkeypatch):
    cfg = config(clips, tmp_path / "run", num_epochs=1)
    result = launch_training(cfg)
    assert result.num_steps == 4 and result.adapter_file.is_file()
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["num_epochs"] == 1
    adapter = result.adapter_file.read_bytes()
    monkeypatch.setattr(launch, "_run_child", lambda *args: pytest.fail("a finished run was started again"))
    again = launch_training(cfg)  # same config, finished: reuse it
    assert again.adapter_file.read_bytes() == adapter and (again.num_steps, again.final_loss) == (4, result.final_loss)
