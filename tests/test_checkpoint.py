"""Checkpoints: round trip, refusals that name the path and the fix, and loads that never half-happen."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from tgad_lite.gat import GAT
from tgad_lite.train import CheckpointError, CheckpointMismatchError, load_checkpoint, save_checkpoint
from tgad_lite.train.checkpoint import FORMAT

CONFIG = {"in_channels": 6, "num_classes": 3, "hidden": 4, "heads": 2, "impl": "sparse"}


def build(config: dict, **overrides) -> GAT:
    c = {**config, **overrides}
    return GAT(c["in_channels"], c["num_classes"], hidden=c["hidden"], heads=c["heads"], impl=c["impl"])


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_untouched(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    trained = build(CONFIG)
    return save_checkpoint(tmp_path / "gat.pt", trained, CONFIG, metrics={"val_acc": 0.5}), trained


def test_round_trip_restores_weights_and_metadata_and_leaves_no_temporary(saved, tmp_path):
    path, trained = saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gat.pt"]
    torch.manual_seed(1)
    fresh = build(CONFIG)
    assert not torch.equal(fresh.conv1.lin.weight, trained.conv1.lin.weight)
    meta = load_checkpoint(path, fresh, CONFIG)
    assert meta["metrics"] == {"val_acc": 0.5} and meta["config"] == CONFIG
    assert_untouched(fresh, weights(trained))
    # Stored as CPU tensors, so a machine without the GPU it was trained on can read it.
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == FORMAT
    assert {t.device.type for t in payload["state_dict"].values()} == {"cpu"}


def test_a_mismatched_config_is_refused_naming_each_key_and_the_model_is_untouched(saved):
    path, _ = saved
    other = dict(CONFIG, heads=4)
    model = build(other)
    before = weights(model)
    with pytest.raises(CheckpointMismatchError, match=r"heads: checkpoint 2 vs now 4") as err:
        load_checkpoint(path, model, other)
    assert str(path) in str(err.value) and "Build the model with the checkpoint's config" in str(err.value)
    assert_untouched(model, before)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="truncated"),
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(lambda b: b"not a checkpoint at all\n" * 20, id="garbage"),
        pytest.param(lambda b: b[:100] + bytes(200) + b[300:], id="zeroed-bytes"),
        pytest.param(lambda b: b[:-10], id="tail-cut"),
    ],
)
def test_a_corrupt_file_gives_a_checkpoint_error_naming_the_path_and_leaves_the_model(saved, damage):
    path, _ = saved
    path.write_bytes(damage(path.read_bytes()))
    model = build(CONFIG)
    before = weights(model)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, model, CONFIG)
    message = str(err.value)
    assert str(path) in message
    assert "corrupt" in message or "empty (0 bytes)" in message or "not a tgad-lite checkpoint" in message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert err.value.__cause__ is None  # torch's own message (which advises weights_only=False) is not chained
    assert_untouched(model, before)


def test_a_pickle_exploit_is_blocked_without_advising_weights_only_false(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "config": CONFIG, "state_dict": {}, "x": Exploit()}, path)
    model = build(CONFIG)
    before = weights(model)
    with pytest.raises(CheckpointError, match="safe loading refuses") as err:
        load_checkpoint(path, model, CONFIG)
    assert str(path) in str(err.value) and "weights_only=False" not in str(err.value)
    assert not marker.exists()
    assert_untouched(model, before)


def test_wrong_shapes_and_missing_keys_are_named_and_the_model_is_untouched(tmp_path):
    # Same config, different model: what happens when the model class changes under a checkpoint.
    path = save_checkpoint(tmp_path / "other.pt", build(CONFIG, hidden=5), CONFIG)
    model = build(CONFIG)
    before = weights(model)
    with pytest.raises(
        CheckpointMismatchError,
        match=r"conv1\.lin\.weight has shape \[10, 6\] in the checkpoint but "
        r"\[8, 6\] in the model",
    ) as err:
        load_checkpoint(path, model, CONFIG)
    assert str(path) in str(err.value)
    assert_untouched(model, before)

    small = torch.nn.Sequential(torch.nn.Linear(6, 3))
    path = save_checkpoint(tmp_path / "small.pt", small, CONFIG)
    with pytest.raises(
        CheckpointMismatchError,
        match=r"missing from the checkpoint: conv1\.att_src.*not in the model: "
        r"0\.weight, 0\.bias",
    ):
        load_checkpoint(path, model, CONFIG)
    assert_untouched(model, before)


def test_files_that_are_not_complete_tgad_lite_checkpoints_are_refused(tmp_path):
    model = build(CONFIG)
    before = weights(model)
    other = tmp_path / "plain.pt"
    torch.save({"weights": torch.ones(2)}, other)
    with pytest.raises(CheckpointMismatchError, match="is not a tgad-lite checkpoint"):
        load_checkpoint(other, model, CONFIG)
    partial = tmp_path / "partial.pt"
    torch.save({"format": FORMAT, "config": CONFIG}, partial)
    with pytest.raises(CheckpointError, match=r"partial\.pt is a damaged checkpoint: it lacks state_dict"):
        load_checkpoint(partial, model, CONFIG)
    with pytest.raises(FileNotFoundError, match="train the model first"):
        load_checkpoint(tmp_path / "missing.pt", model, CONFIG)
    with pytest.raises(FileNotFoundError, match="a folder, not a file"):
        load_checkpoint(tmp_path, model, CONFIG)
    assert_untouched(model, before)


def test_map_location_is_checked_and_an_explicit_cpu_works(saved, monkeypatch):
    path, trained = saved
    model = build(CONFIG)
    load_checkpoint(path, model, CONFIG, map_location="cpu")
    assert_untouched(model, weights(trained))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="sees no usable GPU"):
        load_checkpoint(path, model, CONFIG, map_location="cuda")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        load_checkpoint(path, model, CONFIG, map_location="gpu")


def test_saving_onto_a_folder_or_under_a_file_names_the_path_and_writes_nothing(tmp_path):
    model = build(CONFIG)
    folder = tmp_path / "runs"
    folder.mkdir()
    with pytest.raises(CheckpointError, match=r"runs: it is a folder; give a file path inside it"):
        save_checkpoint(folder, model, CONFIG)
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(CheckpointError, match=r"cannot write the checkpoint .*notes\.txt/gat\.pt"):
        save_checkpoint(blocker / "gat.pt", model, CONFIG)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["notes.txt", "runs"]


def test_a_failed_write_keeps_the_old_checkpoint_and_leaves_no_partial_file(saved, tmp_path, monkeypatch):
    path, trained = saved
    old_bytes = path.read_bytes()

    def refuse(*args, **kwargs):  # what a read-only folder or a full disk does mid-write (root ignores chmod)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(torch, "save", refuse)
    with pytest.raises(CheckpointError, match=r"cannot write the checkpoint .*gat\.pt: Permission denied"):
        save_checkpoint(path, build(CONFIG), CONFIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gat.pt"]
    assert path.read_bytes() == old_bytes


def test_pickle_module_errors_are_reported_as_checkpoint_errors(tmp_path):
    # A pickle stream that is not a zip archive (an old torch.save format, or a plain pickle file).
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match=r"plain\.pkl"):
        load_checkpoint(path, build(CONFIG), CONFIG)
