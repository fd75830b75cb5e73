"""Seeding and deterministic mode: repeatable draws, restorable settings, the CUDA environment."""

from __future__ import annotations

import os
import random
import re

import numpy as np
import pytest
import torch

from tgad_lite.repro import (
    CUBLAS_WORKSPACE_CONFIG,
    DeterminismState,
    determinism_state,
    deterministic,
    restore_determinism,
    seed_everything,
    write_scores,
)


@pytest.fixture(autouse=True)
def keep_determinism():
    """Every test here changes the process-wide settings: put them back for the rest of the session."""
    state = determinism_state()
    yield
    restore_determinism(state)


def draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_the_same_seed_gives_the_same_draws_and_another_seed_others():
    seed_everything(3)
    first = draws()
    seed_everything(3)
    assert draws() == first
    seed_everything(4)
    assert all(a != b for a, b in zip(draws(), first, strict=True))


@pytest.mark.parametrize("start", [False, True])
def test_seed_everything_returns_the_previous_settings_and_they_can_be_restored(start):
    torch.use_deterministic_algorithms(start)
    torch.backends.cudnn.benchmark = not start
    previous = seed_everything(0)
    assert previous == DeterminismState(enabled=start, warn_only=False, cudnn_benchmark=not start)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.benchmark is False
    restore_determinism(previous)
    assert torch.are_deterministic_algorithms_enabled() is start
    assert torch.is_deterministic_algorithms_warn_only_enabled() is False
    assert torch.backends.cudnn.benchmark is (not start)


def test_seed_everything_false_turns_deterministic_mode_off():
    torch.use_deterministic_algorithms(True)
    previous = seed_everything(0, deterministic=False)
    assert previous.enabled and not torch.are_deterministic_algorithms_enabled()


def test_deterministic_context_restores_the_settings_even_after_an_error():
    torch.use_deterministic_algorithms(False)
    with pytest.raises(RuntimeError, match="inside"):
        with deterministic() as before:
            assert before.enabled is False
            assert torch.are_deterministic_algorithms_enabled()
            raise RuntimeError("inside")
    assert not torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    with deterministic(False):
        assert not torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled()


def test_cublas_workspace_is_set_when_missing_and_an_existing_value_is_kept(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seed_everything(0, deterministic=False)
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ  # only deterministic mode needs it
    seed_everything(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE_CONFIG == ":4096:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    seed_everything(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_pythonhashseed_is_left_alone(monkeypatch):
    # It only works when set before Python starts (the runner sets it for the kernel).
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    seed_everything(7)
    assert "PYTHONHASHSEED" not in os.environ


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_bad_seeds_are_refused(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        seed_everything(seed)


def test_write_scores_round_trips_every_array_under_its_key(tmp_path):
    arrays = {"test/mtad-gat/seed0/C-1": np.array([0.5, 2.0, 0.25]), "labels/C-1": np.array([0, 1, 0], dtype=np.int8)}
    path = write_scores(tmp_path / "run", arrays)
    assert path == tmp_path / "run" / "scores.npz"
    with np.load(path) as saved:
        assert sorted(saved.files) == sorted(arrays)
        for key, value in arrays.items():
            np.testing.assert_array_equal(saved[key], value)
            assert saved[key].dtype == value.dtype
    assert [p.name for p in path.parent.iterdir()] == ["scores.npz"]  # no temporary left behind


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"test/a": np.array([1.0, np.nan])}, "'test/a' has 1 NaN or infinite"),
        ({"test/a": np.array([np.inf])}, "NaN or infinite"),
        ({"test/a": np.array(["x"])}, "must be numeric"),
        ({"../a": np.zeros(2)}, "relative names"),
        ({}, "no arrays"),
    ],
)
def test_write_scores_refuses_bad_arrays_and_leaves_the_old_file(tmp_path, arrays, message):
    good = write_scores(tmp_path, {"a": np.zeros(2)})
    before = good.read_bytes()
    with pytest.raises(ValueError, match=re.escape(message)):
        write_scores(tmp_path, arrays)
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.npz"]


def test_write_scores_leaves_no_partial_file_when_writing_fails(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(np, "savez_compressed", fail)
    with pytest.raises(OSError, match="No space"):
        write_scores(tmp_path, {"a": np.zeros(3)})
    assert list(tmp_path.iterdir()) == []
