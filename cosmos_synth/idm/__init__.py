"""The inverse-dynamics model (IDM): video frames in, the actions between them out.

model.py holds the network, its on-disk form and labelling (predict_*); training.py trains and scores it.
"""

from cosmos_synth.idm.model import (
    CONFIG_FILE,
    CONFIG_FORMAT,
    METRICS_FILE,
    WEIGHTS_FILE,
    IDMSpec,
    InverseDynamicsModel,
    average_chunks,
    idm_files,
    load_idm,
    predict_actions,
    predict_resized,
    resize_for_idm,
    save_idm,
)
from cosmos_synth.idm.training import IDMResult, TrainingEpisode, train_idm

__all__ = [
    "CONFIG_FILE",
    "CONFIG_FORMAT",
    "METRICS_FILE",
    "WEIGHTS_FILE",
    "IDMResult",
    "IDMSpec",
    "InverseDynamicsModel",
    "TrainingEpisode",
    "average_chunks",
    "idm_files",
    "load_idm",
    "predict_actions",
    "predict_resized",
    "resize_for_idm",
    "save_idm",
    "train_idm",
]
