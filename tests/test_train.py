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


# ---------------------------------------------------------------- scheduler, lr and seconds


def test_records_get_seconds_always_and_lr_only_with_an_optimizer():
    model = Scalar()
    history = fit(model, *scripted(model, [1.0, 0.9], [0.1, 0.2]), max_epochs=2, patience=2, progress=False)
    assert all("lr" not in r and r["seconds"] >= 0.0 for r in history.records)
    model = Scalar()
    opt = torch.optim.SGD(model.parameters(), lr=0.25)
    history = fit(
        model, *scripted(model, [1.0, 0.9], [0.1, 0.2]), max_epochs=2, patience=2, optimizer=opt, progress=False
    )
    assert history.column("lr") == [0.25, 0.25]


def test_a_per_epoch_scheduler_is_stepped_once_after_each_evaluation():
    model = Scalar()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    losses = [1.0 - 0.1 * i for i in range(5)]
    train_step, evaluate = scripted(model, losses, [0.5] * 5)

    def stepping():
        opt.step()  # no gradients: changes nothing, but the scheduler sees the order it expects
        return train_step()

    history = fit(
        model,
        stepping,
        evaluate,
        max_epochs=5,
        patience=5,
        optimizer=opt,
        scheduler=sched,
        progress=False,
    )
    # lr at each epoch's start: divided by 10 after epochs 2 and 4.
    assert history.column("lr") == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])


def test_reduce_on_plateau_watches_the_first_monitored_metric_and_must_share_its_mode():
    model = Scalar()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=0)
    accs = [0.1, 0.5, 0.4, 0.6, 0.3]
    # val_loss keeps falling: were the scheduler fed the loss (or the second metric), it would never cut.
    losses = [1.0, 0.9, 0.8, 0.7, 0.6]
    history = fit(
        model,
        *scripted(model, losses, accs),
        max_epochs=5,
        patience=5,
        monitor={"val_acc": "max", "val_loss": "min"},
        optimizer=opt,
        scheduler=plateau,
        progress=False,
    )
    # Accuracy dropped at epochs 3 and 5 (patience 0): the rate halves after each.
    assert history.column("lr") == [1.0, 1.0, 1.0, 0.5, 0.5]
    assert opt.param_groups[0]["lr"] == 0.25
    wrong = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min")
    with pytest.raises(ValueError, match=r"mode='min'.*'val_acc', which is 'max'.*mode='max'"):
        fit(
            model, *scripted(model, losses, accs), max_epochs=2, patience=1, monitor={"val_acc": "max"}, scheduler=wrong
        )
    with pytest.raises(ValueError, match="scheduler must be a torch learning-rate scheduler"):
        fit(model, *scripted(model, losses, accs), max_epochs=2, patience=1, scheduler=0.5)


# ---------------------------------------------------------------- errors from the caller's code


def test_an_exception_from_evaluate_propagates_with_the_history_and_leaves_the_weights():
    model = Scalar()
    train_step, evaluate = scripted(model, [1.0, 0.5, 0.7, 0.8], [0.1, 0.2, 0.3, 0.4])

    def failing_evaluate():
        if model.w.item() == 3.0:
            raise ValueError("validation data went missing")
        return evaluate()

    with pytest.raises(ValueError, match="validation data went missing") as info:
        fit(model, train_step, failing_evaluate, max_epochs=4, patience=3, monitor={"val_loss": "min"}, progress=False)
    err = info.value
    assert type(err) is ValueError  # unchanged, not wrapped
    assert [r["epoch"] for r in err.history.records] == [1, 2] and err.history.best_epoch == 2
    assert any("evaluate() at epoch 3" in note for note in err.__notes__)
    assert model.w.item() == 3.0  # fit restored nothing: the caller's code decides about the weights


def test_an_exception_from_train_step_in_the_first_epoch_has_an_empty_history():
    model = Scalar()

    def train_step():
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory") as info:
        fit(model, train_step, lambda: {"val_loss": 1.0}, max_epochs=3, patience=1, monitor={"val_loss": "min"})
    assert info.value.history.records == [] and "train_step() at epoch 1" in info.value.__notes__[0]


# ---------------------------------------------------------------- checkpoint


CONFIG = {"model": "scalar", "size": 1}


def test_checkpoint_holds_the_best_weights_and_says_complete_at_the_end(tmp_path):
    from tgad_lite.train import load_checkpoint

    model = Scalar()
    losses = [1.0, 0.5, 0.7, 0.8, 0.9]
    path = tmp_path / "run" / "best.pt"
    history = fit(
        model,
        *scripted(model, losses, [0.1] * 5),
        max_epochs=5,
        patience=2,
        monitor={"val_loss": "min"},
        checkpoint=path,
        checkpoint_config=CONFIG,
        progress=False,
    )
    assert (history.best_epoch, history.stopped_epoch) == (2, 4)
    back = Scalar()
    meta = load_checkpoint(path, back, CONFIG)["metrics"]
    assert back.w.item() == 2.0
    assert meta["complete"] is True and (meta["best_epoch"], meta["stopped_epoch"]) == (2, 4)
    assert meta["best"]["val_loss"] == 0.5 and meta["monitor"] == {"val_loss": "min"}
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt"]  # no temporary files left


def test_an_interrupted_training_leaves_a_checkpoint_marked_incomplete(tmp_path):
    from tgad_lite.train import load_checkpoint

    model = Scalar()
    path = tmp_path / "best.pt"
    losses = [1.0, 0.5, 0.7, 0.8, 0.9]
    train_step, evaluate = scripted(model, losses, [0.1] * 5)

    def interrupted():
        metrics = train_step()
        if model.w.item() == 4.0:
            raise KeyboardInterrupt  # Ctrl-C (or a kill) in the middle of epoch 4
        return metrics

    with pytest.raises(KeyboardInterrupt) as info:
        fit(
            model,
            interrupted,
            evaluate,
            max_epochs=5,
            patience=5,
            monitor={"val_loss": "min"},
            checkpoint=path,
            checkpoint_config=CONFIG,
            progress=False,
        )
    assert len(info.value.history.records) == 3 and str(path) in info.value.__notes__[0]
    back = Scalar()
    meta = load_checkpoint(path, back, CONFIG)["metrics"]
    assert meta["complete"] is False and "stopped_epoch" not in meta
    assert (meta["epoch"], meta["best_epoch"], back.w.item()) == (2, 2, 2.0)  # the best so far, epoch 2


def test_a_finished_checkpoint_from_an_earlier_run_is_not_left_claiming_this_run_finished(tmp_path):
    from tgad_lite.train import load_checkpoint

    path = tmp_path / "best.pt"
    model = Scalar()
    fit(model, *scripted(model, [1.0], [0.1]), max_epochs=1, patience=1, checkpoint=path, checkpoint_config=CONFIG)
    assert load_checkpoint(path, Scalar(), CONFIG)["metrics"]["complete"] is True

    def crash():
        raise RuntimeError("crash in the first epoch")

    with pytest.raises(RuntimeError, match="crash"):
        fit(Scalar(), crash, lambda: {}, max_epochs=3, patience=1, checkpoint=path, checkpoint_config=CONFIG)
    meta = load_checkpoint(path, Scalar(), CONFIG)["metrics"]
    assert meta["complete"] is False and meta["best_epoch"] == -1 and meta["epoch"] == 0


def test_checkpoint_arguments_are_checked_before_any_training(tmp_path):
    from tgad_lite.train import CheckpointError

    calls = []
    model = Scalar()

    def train_step():
        calls.append(1)
        return {"train_loss": 1.0}

    with pytest.raises(ValueError, match="checkpoint needs checkpoint_config"):
        fit(model, train_step, lambda: {"val_loss": 1.0}, max_epochs=2, patience=1, checkpoint=tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="it is a folder; give a file path inside it"):
        fit(model, train_step, lambda: {}, max_epochs=2, patience=1, checkpoint=tmp_path, checkpoint_config=CONFIG)
    assert calls == [] and list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- early stopping on PR-AUC


def test_early_stopping_and_restore_on_validation_pr_auc():
    from tgad_lite.metrics.detection import pr_auc

    labels = [0, 1, 0, 1]
    # Scores per epoch; PR-AUC (average precision) by hand from the ranks of the two positives:
    # ranks {3,4}: (1/3 + 2/4)/2 = 5/12; {2,3}: (1/2 + 2/3)/2 = 7/12; {1,3}: (1 + 2/3)/2 = 5/6;
    # {2,4}: (1/2 + 2/4)/2 = 1/2; {1,4}: (1 + 2/4)/2 = 3/4; then 7/12 again; epoch 7 would reach 1.
    scores = [
        [4, 2, 3, 1],
        [4, 3, 1, 2],
        [3, 4, 1, 2],
        [4, 3, 2, 1],
        [3, 4, 2, 1],
        [4, 3, 1, 2],
        [1, 4, 2, 3],
    ]
    model = Scalar()
    train_step, _ = scripted(model, [0.0] * 7, [0.0] * 7)

    def evaluate():
        epoch = int(model.w.item())
        # The loss keeps falling: a loss monitor would never stop, PR-AUC decides here.
        return {"val_pr_auc": pr_auc(scores[epoch - 1], labels), "val_loss": 1.0 / epoch}

    history = fit(
        model,
        train_step,
        evaluate,
        max_epochs=7,
        patience=3,
        monitor={"val_pr_auc": "max"},
        restore="val_pr_auc",
        progress=False,
    )
    assert history.column("val_pr_auc") == pytest.approx([5 / 12, 7 / 12, 5 / 6, 1 / 2, 3 / 4, 7 / 12])
    assert (history.best_epoch, history.stopped_epoch, model.w.item()) == (3, 6, 3.0)


def test_display_chooses_the_progress_postfix(monkeypatch, capsys):
    monkeypatch.setenv("TGAD_PROGRESS", "lines")
    model = Scalar()
    fit(model, *scripted(model, [1.0, 0.9], [0.5, 0.6]), max_epochs=2, patience=2, display=["train_loss"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("train: 2/2 done") and "train_loss=1" in lines[-1] and "val_acc" not in lines[-1]
