"""The training loop's stopping/restore rules, and a short real Cora training."""

from __future__ import annotations

import pytest
import torch

from tgad_lite.train import fit


class Scalar(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))


def scripted(model, val_losses, val_accs):
    """train_step bumps the weight to the epoch number; evaluate replays scripted metrics."""
    state = {"epoch": 0}

    def train_step():
        state["epoch"] += 1
        with torch.no_grad():
            model.w.fill_(state["epoch"])
        return {"train_loss": 1.0}

    def evaluate():
        i = state["epoch"] - 1
        return {"val_loss": val_losses[i], "val_acc": val_accs[i]}

    return train_step, evaluate


def test_restores_the_epoch_where_both_metrics_were_best_and_stops_on_patience():
    model = Scalar()
    losses = [1.0, 0.8, 0.7, 0.75, 0.6, 0.9, 0.9, 0.9, 0.9, 0.9]
    accs = [0.1, 0.5, 0.6, 0.7, 0.65, 0.5, 0.5, 0.5, 0.5, 0.5]
    history = fit(model, *scripted(model, losses, accs), max_epochs=10, patience=3, progress=False)
    # Epoch 3 is the last where loss and accuracy were both at their best; epochs 4 and 5 each
    # improved one metric (resetting patience) without the other, so they are not snapshotted.
    assert history.best_epoch == 3
    assert model.w.item() == 3.0
    assert history.stopped_epoch == 8  # 5 was the last improvement, then 3 epochs of patience
    assert history.column("val_loss") == losses[:8]


def test_restore_on_best_validation_accuracy_breaks_ties_by_loss():
    model = Scalar()
    # The paper's rule locks in epoch 2 (the last epoch where loss and accuracy were both at
    # their best); selecting on accuracy restores epoch 5, the tie with epoch 4 won by its loss.
    losses = [1.0, 0.5, 0.6, 0.7, 0.65, 0.9, 0.9, 0.9]
    accs = [0.1, 0.5, 0.6, 0.7, 0.7, 0.5, 0.5, 0.5]
    paper = fit(model, *scripted(model, losses, accs), max_epochs=8, patience=3, progress=False)
    assert paper.best_epoch == 2 and model.w.item() == 2.0
    model = Scalar()
    by_acc = fit(model, *scripted(model, losses, accs), max_epochs=8, patience=3, restore="val_acc", progress=False)
    assert by_acc.best_epoch == 5 and model.w.item() == 5.0
    assert by_acc.best["val_acc"] == 0.7 and by_acc.stopped_epoch == paper.stopped_epoch == 8
    with pytest.raises(ValueError, match="restore must be 'all' or one of the monitored"):
        fit(model, *scripted(model, losses, accs), max_epochs=2, patience=1, restore="acc", progress=False)


def test_non_finite_loss_raises_and_restores_best_weights():
    model = Scalar()
    losses = [1.0, 0.5, float("nan"), 0.1]
    with pytest.raises(FloatingPointError, match=r"val_loss became non-finite at epoch 3.*\(epoch 2\) were restored"):
        fit(model, *scripted(model, losses, [0.1, 0.2, 0.3, 0.4]), max_epochs=4, patience=5, progress=False)
    assert model.w.item() == 2.0


def test_non_finite_loss_in_the_first_epoch_says_no_best_epoch_yet():
    model = Scalar()
    with pytest.raises(FloatingPointError, match="no best epoch yet") as err:
        fit(model, *scripted(model, [float("inf")], [0.1]), max_epochs=3, patience=2, progress=False)
    assert "epoch -1" not in str(err.value)
    assert model.w.item() == 0.0  # the weights from before training


def test_fit_progress_prints_a_line_every_n_epochs_with_the_monitored_metrics(monkeypatch, capsys):
    monkeypatch.setenv("TGAD_PROGRESS", "lines")
    model = Scalar()
    losses = [1.0 - 0.01 * i for i in range(40)]
    fit(model, *scripted(model, losses, [0.5] * 40), max_epochs=40, patience=40, every=10, desc="demo")
    lines = capsys.readouterr().out.splitlines()
    # Epochs 10, 20, 30 and the closing line (epoch 40 is reported once, by the closing line).
    assert [line.split(" (")[0] for line in lines] == ["demo: 10/40", "demo: 20/40", "demo: 30/40", "demo: 40/40 done"]
    assert "val_loss=0.61" in lines[-1] and "val_acc=0.5" in lines[-1]
    fit(model, *scripted(model, losses, [0.5] * 40), max_epochs=40, patience=40, progress=False)
    assert capsys.readouterr().out == ""


def test_fit_closes_its_progress_display_when_training_fails(monkeypatch, capsys):
    monkeypatch.setenv("TGAD_PROGRESS", "lines")
    model = Scalar()
    with pytest.raises(FloatingPointError):
        fit(model, *scripted(model, [1.0, float("nan")], [0.1, 0.2]), max_epochs=100, patience=5, every=50)
    # One closing line: the display ends with the last completed epoch, not left open.
    assert [ln.split(" (")[0] for ln in capsys.readouterr().out.splitlines()] == ["train: 1/100 done"]


def test_train_node_classifier_names_inputs_on_another_device():
    from tgad_lite.train import train_node_classifier

    model = torch.nn.Linear(3, 2)
    x, ei = torch.randn(4, 3), torch.zeros(2, 0, dtype=torch.long)
    y, mask = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.bool)
    # The meta device stands in for a GPU: the check must fire before any kernel runs.
    with pytest.raises(ValueError, match=r"model is on cpu but edge_index on meta, y on meta; move them"):
        train_node_classifier(model, x, ei.to("meta"), y.to("meta"), mask, mask, mask, progress=False)


def test_missing_monitored_metric_and_bad_arguments_are_named():
    model = Scalar()
    with pytest.raises(KeyError, match="val_acc"):
        fit(model, lambda: {"train_loss": 1.0}, lambda: {"val_loss": 1.0}, max_epochs=2, patience=1, progress=False)
    with pytest.raises(ValueError, match="patience"):
        fit(model, lambda: {}, lambda: {}, max_epochs=2, patience=0, progress=False)


@pytest.fixture
def keep_determinism():
    """seed_everything switches deterministic mode on for the process: switch it back afterwards."""
    from tgad_lite.repro import determinism_state, restore_determinism

    state = determinism_state()
    yield
    restore_determinism(state)


def test_short_cora_training_clearly_beats_chance(data_mirror, monkeypatch, tmp_path, keep_determinism):
    if data_mirror is None or not (data_mirror / "Cora" / "raw").is_dir():
        pytest.skip("needs the real Cora raw files: set TGAD_DATA_MIRROR (CI: ../shared/data)")
    monkeypatch.setenv("TGAD_DATA_MIRROR", str(data_mirror))
    monkeypatch.setenv("TGAD_DATA_DIR", str(tmp_path))
    from _cora import train_cora_briefly

    _, _, _, result = train_cora_briefly(torch.device("cpu"))
    # Chance is 1/7 (14%) and the majority class 32%; 60 epochs reach ~75-80%.
    assert result.test_acc > 0.65
    assert result.history.best_epoch >= 1 and len(result.history.records) == 60
