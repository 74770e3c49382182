"""Safety checkers that the pipeline can hold.

NVIDIA's Cosmos weights ship under a licence that expects its guardrail (`cosmos-guardrail`). The tiny offline
model built by :mod:`cosmos_synth.models` has random weights and no such licence, so it carries this no-op
checker instead. The class lives in a real module because `model_index.json` records it by import path, so
`Cosmos2_5_PredictBasePipeline.from_pretrained(tiny_folder)` rebuilds it with no extra argument.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin


class NoOpSafetyChecker(ModelMixin, ConfigMixin):
    """Accepts every prompt and returns every video unchanged. Used only for the tiny offline model."""

    @register_to_config
    def __init__(self) -> None:
        super().__init__()
        # One tiny buffer so that `dtype`/`device` resolve and save_pretrained writes a safetensors file.
        self.register_buffer("_anchor", torch.zeros(1))

    def check_text_safety(self, prompt: str) -> bool:
        return True

    def check_video_safety(self, frames):
        return frames
