"""Training loops shared by the notebooks (model-agnostic: they take callables and tensors)."""

from tgad_lite.train.amp import AmpStep, autocast
from tgad_lite.train.checkpoint import CheckpointError, CheckpointMismatchError, load_checkpoint, save_checkpoint
from tgad_lite.train.class_weight import positive_weight
from tgad_lite.train.gradients import clip_gradients
from tgad_lite.train.loop import History, fit
from tgad_lite.train.multilabel import (
    MultiLabelResult,
    evaluate_multilabel,
    micro_f1,
    multilabel_loss,
    predict_multilabel,
    train_multilabel,
)
from tgad_lite.train.node_classification import NodeClassificationResult, masked_accuracy, train_node_classifier
from tgad_lite.train.schedule import warmup_cosine, warmup_cosine_factor

__all__ = [
    "AmpStep",
    "CheckpointError",
    "CheckpointMismatchError",
    "History",
    "MultiLabelResult",
    "NodeClassificationResult",
    "autocast",
    "clip_gradients",
    "evaluate_multilabel",
    "fit",
    "load_checkpoint",
    "masked_accuracy",
    "micro_f1",
    "multilabel_loss",
    "positive_weight",
    "predict_multilabel",
    "save_checkpoint",
    "train_multilabel",
    "train_node_classifier",
    "warmup_cosine",
    "warmup_cosine_factor",
]
