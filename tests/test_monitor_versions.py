"""Model versions (issue 11, item 4): save and load with metrics, the current pointer, atomic saves, and
damaged or mismatched versions refused clearly."""

from __future__ import annotations

import json

import pytest
import torch

from tgad_lite.monitor import versions as versions_module
from tgad_lite.monitor.versions import ModelRegistry, ModelVersionError
from tgad_lite.temporal import TemporalGAT
from tgad_lite.train.checkpoint import CheckpointMismatchError


def _model(seed: int = 0, hidden: int = 8) -> TemporalGAT:
    torch.manual_seed(seed)
    return TemporalGAT(4, hidden=hidden, heads=2)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_load_round_trip_with_metrics_parent_and_note(tmp_path):
    reg = ModelRegistry(tmp_path / "models")
    first, second = _model(0), _model(1)
    v1 = reg.save(first, metrics={"val_pr_auc": 0.8}, parent=None, note="initial training")
    v2 = reg.save(second, metrics={"new_pr_auc": 0.9, "old_pr_auc": 0.78}, parent=v1, note="retrained after drift")
    assert (v1, v2) == ("v0001", "v0002")
    loaded = reg.load(v2)
    assert _same_weights(loaded, second) and not _same_weights(loaded, first)
    assert loaded.config == second.config and not loaded.training
    listed = reg.versions()
    assert [v["id"] for v in listed] == [v1, v2]
    assert listed[1]["parent"] == v1 and listed[1]["metrics"] == {"new_pr_auc": 0.9, "old_pr_auc": 0.78}
    assert listed[1]["note"] == "retrained after drift" and listed[0]["created"].endswith("Z")
    # another registry object on the same folder sees the same versions
    assert [v["id"] for v in ModelRegistry(tmp_path / "models").versions()] == [v1, v2]


def test_the_current_pointer(tmp_path):
    reg = ModelRegistry(tmp_path)
    assert reg.current() is None
    v1 = reg.save(_model(), metrics={}, parent=None)
    reg.set_current(v1)
    assert reg.current() == v1
    with pytest.raises(ModelVersionError, match="no version v0009"):
        reg.set_current("v0009")
    assert reg.current() == v1  # a refused move leaves the pointer
    (tmp_path / "CURRENT").write_text("v0042\n")
    with pytest.raises(ModelVersionError, match="not a version"):
        reg.current()


def test_a_damaged_model_file_is_refused_by_name(tmp_path):
    reg = ModelRegistry(tmp_path)
    v1 = reg.save(_model(), metrics={"a": 1.0}, parent=None)
    path = tmp_path / v1 / "model.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelVersionError, match=f"version {v1}'s model.pt changed since it was saved"):
        reg.load(v1)
    with pytest.raises(ModelVersionError, match="changed since"):
        reg.set_current(v1)
    [listed] = reg.versions()
    assert listed["id"] == v1 and "changed since" in listed["error"]


def test_a_damaged_record_is_refused(tmp_path):
    reg = ModelRegistry(tmp_path)
    v1 = reg.save(_model(), metrics={}, parent=None)
    (tmp_path / v1 / "version.json").write_text("{not json")
    with pytest.raises(ModelVersionError, match="unreadable"):
        reg.load(v1)
    (tmp_path / v1 / "version.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ModelVersionError, match="not a tgad-lite-model-version/1 record"):
        reg.load(v1)


def test_a_mismatched_version_is_refused(tmp_path):
    reg = ModelRegistry(tmp_path)
    v1 = reg.save(_model(hidden=8), metrics={}, parent=None)
    with pytest.raises(CheckpointMismatchError, match="hidden: version 8 vs expected 16"):
        reg.load(v1, expect_config=_model(hidden=16).config)
    assert _same_weights(reg.load(v1, expect_config=_model(hidden=8).config), _model(hidden=8))
    # a record whose config no longer matches the stored weights (edited by hand)
    record_path = tmp_path / v1 / "version.json"
    record = json.loads(record_path.read_text())
    record["config"]["hidden"] = 16
    record_path.write_text(json.dumps(record))
    with pytest.raises(ModelVersionError, match="different configuration"):
        reg.load(v1)


def test_a_failed_save_leaves_nothing_behind(tmp_path, monkeypatch):
    reg = ModelRegistry(tmp_path)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(versions_module, "save_checkpoint", broken)
    with pytest.raises(OSError, match="disk full"):
        reg.save(_model(), metrics={}, parent=None)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    (tmp_path / ".v-crashed.partial").mkdir()  # what a killed save leaves: never listed
    assert reg.versions() == [] and reg.save(_model(), metrics={}, parent=None) == "v0001"


def test_an_id_taken_meanwhile_is_skipped(tmp_path, monkeypatch):
    reg = ModelRegistry(tmp_path)
    reg.save(_model(0), metrics={}, parent=None)
    # another process claims v0002 after this one listed the versions
    monkeypatch.setattr(ModelRegistry, "_ids", lambda self: ["v0001"])
    (tmp_path / "v0002").mkdir()
    (tmp_path / "v0002" / "model.pt").write_bytes(b"theirs")
    assert reg.save(_model(1), metrics={}, parent=None) == "v0003"
    assert (tmp_path / "v0002" / "model.pt").read_bytes() == b"theirs"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metrics": {"auc": float("nan")}}, "finite numbers"),
        ({"metrics": {"auc": "high"}}, "finite numbers"),
        ({"parent": "v0007"}, "no version v0007"),
        ({"parent": "latest"}, "looks like 'v0001'"),
    ],
)
def test_bad_save_arguments_are_refused(tmp_path, kwargs, match):
    reg = ModelRegistry(tmp_path)
    with pytest.raises(ModelVersionError, match=match):
        reg.save(_model(), **{"metrics": {}, "parent": None, **kwargs})
    assert reg.versions() == []
    with pytest.raises(ModelVersionError, match="TemporalGAT"):
        reg.save(torch.nn.Linear(2, 2), metrics={}, parent=None)
