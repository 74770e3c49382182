"""One frozen, keyword-only config per stage, validated before any work starts.

Each class is the CLI's arguments, the Prefect flow's parameters, the tests' input, and the record written next to
the stage's outputs (``<stage>_config.json``) so any output can be reproduced. Each checks its own values in
``__post_init__``; :func:`cosmos_synth.recipe.load_run_config` builds every stage's config as soon as a recipe
and its overrides are read, so a misspelt key or a wrong value for any stage (even export, the last) fails at once,
in the CLI and in the flow, before the first stage runs.
"""

from cosmos_synth.config.data import CacheConfig, DemoDataConfig, IngestConfig, PreprocessConfig
from cosmos_synth.config.export import ExportConfig
from cosmos_synth.config.generate import GenerateConfig
from cosmos_synth.config.measure import EvaluateConfig, IDMTrainConfig, LabelConfig
from cosmos_synth.config.policy import ClosedLoopConfig, ClosedLoopEvalConfig, PolicyTrainConfig
from cosmos_synth.config.records import config_from_dict, config_to_dict, load_config, write_config
from cosmos_synth.config.train import TARGET_MODULES, TrainConfig

__all__ = [
    "TARGET_MODULES",
    "CacheConfig",
    "ClosedLoopConfig",
    "ClosedLoopEvalConfig",
    "DemoDataConfig",
    "EvaluateConfig",
    "ExportConfig",
    "GenerateConfig",
    "IDMTrainConfig",
    "IngestConfig",
    "LabelConfig",
    "PolicyTrainConfig",
    "PreprocessConfig",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "write_config",
]
