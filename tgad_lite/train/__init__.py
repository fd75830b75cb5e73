"""Training loops shared by the notebooks (model-agnostic: they take callables and tensors)."""

from tgad_lite.train.checkpoint import CheckpointError, CheckpointMismatchError, load_checkpoint, save_checkpoint
from tgad_lite.train.loop import History, fit
from tgad_lite.train.node_classification import NodeClassificationResult, masked_accuracy, train_node_classifier

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "load_checkpoint",
    "save_checkpoint",
    "History",
    "NodeClassificationResult",
    "fit",
    "masked_accuracy",
    "train_node_classifier",
]
