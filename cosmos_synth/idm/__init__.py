"""The inverse-dynamics model (IDM): video frames in, the actions between them (and the states at them) out.

model.py holds the network, its on-disk form and labelling (predict_*); training.py trains and scores it.
"""

from cosmos_synth.idm.model import (
    CONFIG_FILE,
    CONFIG_FORMAT,
    METRICS_FILE,
    WEIGHTS_FILE,
    IDMSpec,
    InverseDynamicsModel,
    Labels,
    average_chunks,
    idm_files,
    load_idm,
    predict_actions,
    predict_labels,
    predict_resized,
    resize_for_idm,
    save_idm,
)
from cosmos_synth.idm.training import IDMResult, TrainingEpisode, metrics_table, train_idm

__all__ = [
    "CONFIG_FILE",
    "CONFIG_FORMAT",
    "METRICS_FILE",
    "WEIGHTS_FILE",
    "IDMResult",
    "IDMSpec",
    "InverseDynamicsModel",
    "Labels",
    "TrainingEpisode",
    "average_chunks",
    "idm_files",
    "load_idm",
    "metrics_table",
    "predict_actions",
    "predict_labels",
    "predict_resized",
    "resize_for_idm",
    "save_idm",
    "train_idm",
]
