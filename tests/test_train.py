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
    by_acc = fit(model, *scripted(model, losses, accs), max_epochs=8, patience=3, restore="val_acc",
                 progress=False)
    assert by_acc.best_epoch == 5 and model.w.item() == 5.0
    assert by_acc.best["val_acc"] == 0.7 and by_acc.stopped_epoch == paper.stopped_epoch == 8
    with pytest.raises(ValueError, match="restore must be 'all' or one of the monitored"):
        fit(model, *scripted(model, losses, accs), max_epochs=2, patience=1, restore="acc", progress=False)


def test_non_finite_loss_raises_and_restores_best_weights():
    model = Scalar()
    losses = [1.0, 0.5, float("nan"), 0.1]
    with pytest.raises(FloatingPointError, match="val_loss became non-finite at epoch 3"):
        fit(model, *scripted(model, losses, [0.1, 0.2, 0.3, 0.4]), max_epochs=4, patience=5, progress=False)
    assert model.w.item() == 2.0


def test_missing_monitored_metric_and_bad_arguments_are_named():
    model = Scalar()
    with pytest.raises(KeyError, match="val_acc"):
        fit(model, lambda: {"train_loss": 1.0}, lambda: {"val_loss": 1.0}, max_epochs=2, patience=1, progress=False)
    with pytest.raises(ValueError, match="patience"):
        fit(model, lambda: {}, lambda: {}, max_epochs=2, patience=0, progress=False)


def test_short_cora_training_clearly_beats_chance(data_mirror, monkeypatch, tmp_path):
    if data_mirror is None or not (data_mirror / "Cora" / "raw").is_dir():
        pytest.skip("needs the real Cora raw files in $TGAD_DATA_MIRROR (or ../shared/data)")
    monkeypatch.setenv("TGAD_DATA_MIRROR", str(data_mirror))
    monkeypatch.setenv("TGAD_DATA_DIR", str(tmp_path))
    from tgad_lite.data import load_cora
    from tgad_lite.gat import GAT, SparseFeatures, receptive_field
    from tgad_lite.repro import seed_everything
    from tgad_lite.train import train_node_classifier

    data = load_cora()[0]
    seed_everything(0)
    model = GAT(data.num_features, 7, impl="sparse")
    rf = receptive_field(data.edge_index, data.train_mask, 2, data.num_nodes)
    result = train_node_classifier(
        model, SparseFeatures(data.x), data.edge_index, data.y, data.train_mask, data.val_mask,
        data.test_mask, max_epochs=60, patience=60, train_graph=rf, progress=False,
    )
    # Chance is 1/7 (14%) and the majority class 32%; 60 epochs reach ~75-80%.
    assert result.test_acc > 0.65
    assert result.history.best_epoch >= 1 and len(result.history.records) == 60


def test_checkpoint_round_trip_and_refusal_of_a_mismatched_config(tmp_path):
    from tgad_lite.gat import GAT
    from tgad_lite.train import CheckpointMismatchError, load_checkpoint, save_checkpoint

    config = {"in_channels": 6, "num_classes": 3, "hidden": 4, "heads": 2, "impl": "sparse"}
    build = lambda c: GAT(c["in_channels"], c["num_classes"], hidden=c["hidden"], heads=c["heads"], impl=c["impl"])
    trained = build(config)
    path = save_checkpoint(tmp_path / "gat.pt", trained, config, metrics={"val_acc": 0.5})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gat.pt"]  # no temporary left behind

    fresh = build(config)
    meta = load_checkpoint(path, fresh, config)
    assert meta["metrics"] == {"val_acc": 0.5} and meta["config"] == config
    for a, b in zip(fresh.state_dict().values(), trained.state_dict().values()):
        assert torch.equal(a, b)

    other = dict(config, heads=4)
    untouched = build(other)
    before = [t.clone() for t in untouched.state_dict().values()]
    with pytest.raises(CheckpointMismatchError, match=r"heads: checkpoint 2 vs now 4"):
        load_checkpoint(path, untouched, other)
    assert all(torch.equal(a, b) for a, b in zip(before, untouched.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="train the model first"):
        load_checkpoint(tmp_path / "missing.pt", fresh, config)
