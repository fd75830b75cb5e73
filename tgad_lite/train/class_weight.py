"""The positive-class weight for a binary loss when positives (incidents, anomalies) are rare."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def positive_weight(labels: Any) -> float:
    """``n_negative / n_positive`` of the 0/1 ``labels`` (any shape; bool, int or float; array or tensor).

    Passed as ``torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(w))``, it makes the positives'
    total loss weigh as much as the negatives' (with 1% positives, each counts 99 times), so the
    model cannot do well by predicting "normal" everywhere. Compute it on the training labels only.

    Raises ``ValueError`` for labels that are empty, not all 0/1 (NaN included), or hold no
    positives or no negatives (the ratio is then 0 or undefined).
    """
    if isinstance(labels, torch.Tensor):
        values = labels.detach().cpu().numpy()
    else:
        values = np.asarray(labels)
    if values.dtype == object or not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
        raise ValueError(f"labels must be numbers 0/1 or booleans, got an array of {values.dtype}")
    values = values.reshape(-1)
    if values.size == 0:
        raise ValueError("labels is empty: positive_weight needs the training labels (0 = normal, 1 = positive)")
    binary = (values == 0) | (values == 1)
    if not binary.all():
        odd = np.unique(values[~binary])[:5].tolist()
        raise ValueError(
            f"labels must be 0 or 1 (1 = positive), found {odd}; binarise them first, e.g. labels > 0, "
            "and mask unobserved entries out (NaN is not a label)"
        )
    n_pos = int(np.count_nonzero(values == 1))
    n_neg = values.size - n_pos
    if n_pos == 0 or n_neg == 0:
        missing = "positives (1)" if n_pos == 0 else "negatives (0)"
        raise ValueError(
            f"labels hold no {missing} among {values.size}, so n_negative / n_positive is "
            f"{'undefined' if n_pos == 0 else 0}: the split has only one class. Choose a training span or "
            "seed that includes both classes (incidents and normal steps), or drop pos_weight"
        )
    return n_neg / n_pos
