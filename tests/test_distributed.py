"""Training on several processes: the same `accelerate launch` path as multi-GPU DDP, over gloo on the CPU."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from cosmos_synth.config import TrainConfig
from cosmos_synth.files import read_jsonl
from cosmos_synth.launch import accelerate_command, launch_training
from cosmos_synth.layout import LOSS_LOG, TRAIN_LOG
from cosmos_synth.train import epoch_order


def test_every_process_gets_the_same_number_of_clips():
    for num_samples in (4, 5, 7):
        parts = [epoch_order(num_samples, seed=3, rank=r, world=2) for r in range(2)]
        assert len(parts[0]) == len(parts[1]) == (num_samples + 1) // 2
        assert set(parts[0]) | set(parts[1]) == set(range(num_samples))
    assert epoch_order(5, seed=3, rank=0, world=1) == epoch_order(5, seed=3, rank=0, world=1)


def test_launch_command_picks_the_launcher(tmp_path):
    one = TrainConfig(data_dir=tmp_path, out_dir=tmp_path, cpu=True)
    two = TrainConfig(data_dir=tmp_path, out_dir=tmp_path, cpu=True, num_processes=2)
    assert "--cpu" in accelerate_command(one, tmp_path / "c.json") and "--multi_gpu" not in accelerate_command(
        one, tmp_path / "c.json"
    )
    command = accelerate_command(two, tmp_path / "c.json")
    assert command[command.index("--num_processes") + 1] == "2" and "--multi_gpu" in command


@pytest.mark.slow
def test_two_process_training_over_gloo(tiny_model, clips, tmp_path):
    cfg = TrainConfig(
        model=str(tiny_model),
        revision=None,
        data_dir=clips,
        out_dir=tmp_path / "ddp",
        rank=4,
        alpha=4,
        num_frames=9,
        num_epochs=2,
        learning_rate=1e-3,
        num_warmup_steps=1,
        checkpoint_every_epochs=1,
        dtype="float32",
        cpu=True,
        num_processes=2,
        gradient_checkpointing=False,
    )
    result = launch_training(cfg)
    log = (tmp_path / "ddp" / TRAIN_LOG).read_text()
    assert "DistributedType.MULTI_CPU" in log and "Num processes: 2" in log and "Backend: gloo" in log
    assert result.num_steps == 4  # 4 clips per epoch, 2 per process, 2 epochs: rank 0 logs its own steps
    assert len(read_jsonl(tmp_path / "ddp" / LOSS_LOG)) == 4
    adapter = load_file(str(result.adapter_file))
    assert adapter and any(v.abs().max() > 0 for k, v in adapter.items() if "lora_B" in k)
