"""The device knob every notebook has, and the progress display every long loop uses."""

from __future__ import annotations

import pytest
import torch

from tgad_lite.device import resolve_device
from tgad_lite.progress import Progress, progress


@pytest.fixture
def no_gpu(monkeypatch):
    """Behave as this CPU-only torch does, also on a machine with a GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_auto_and_cpu_resolve_to_the_cpu_without_a_gpu(no_gpu):
    assert resolve_device() == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_without_a_gpu_names_the_fix(no_gpu, name):
    with pytest.raises(ValueError, match=r"sees no usable GPU.*Use device='auto'.*or device='cpu'"):
        resolve_device(name)


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("gpu", r"unknown device 'gpu'; choose one of auto\|cpu\|cuda"),
        ("cuda:x", r"the GPU index must be a whole number, as in 'cuda:0'"),
        ("cuda:-1", r"whole number"),
        ("", r"unknown device ''"),
        (3, r"device must be one of auto\|cpu\|cuda"),
        (None, r"device must be one of"),
    ],
)
def test_bad_device_names_are_refused_clearly(name, match):
    with pytest.raises(ValueError, match=match):
        resolve_device(name)


def test_a_gpu_index_beyond_the_machine_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match=r"this machine has 1 GPU\(s\), numbered 0..0"):
        resolve_device("cuda:1")


@pytest.mark.parametrize(("total", "every"), [(50, 10), (47, 10), (5, 1), (3, 7), (1000, 100)])
def test_lines_mode_prints_at_most_total_over_every_plus_one_lines(capsys, total, every):
    with Progress(total, "fit", every=every, mode="lines") as bar:
        for i in range(total):
            bar.update(loss=1.0 / (i + 1))
    lines = capsys.readouterr().out.splitlines()
    assert 1 <= len(lines) <= total // every + 1
    assert lines[-1].startswith(f"fit: {total}/{total} done") and "loss=" in lines[-1]
    assert all(line.startswith("fit: ") for line in lines)


def test_lines_mode_default_every_keeps_a_long_run_short(capsys):
    bar = Progress(100_000, "train", mode="lines")  # 1/10 of the total, at most 100
    for _ in range(350):  # an early-stopped run
        bar.update()
    bar.close()
    bar.close()  # closing twice prints the closing line once
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "train: 100/100000",
        "train: 200/100000",
        "train: 300/100000",
        "train: 350/100000 done",
    ]


def test_off_and_disabled_print_nothing(capsys, monkeypatch):
    for kwargs in ({"mode": "off"}, {"mode": "lines", "enabled": False}):
        with Progress(20, "quiet", every=1, **kwargs) as bar:
            for _ in range(20):
                bar.update(loss=0.5)
    monkeypatch.setenv("TGAD_PROGRESS", "off")
    assert list(progress(range(30), desc="quiet")) == list(range(30))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_the_environment_variable_picks_the_mode_and_a_bad_value_is_named(monkeypatch, capsys):
    monkeypatch.setenv("TGAD_PROGRESS", "lines")
    assert list(progress(range(4), desc="env", every=2)) == [0, 1, 2, 3]
    assert [line.split(" (")[0] for line in capsys.readouterr().out.splitlines()] == ["env: 2/4", "env: 4/4 done"]
    monkeypatch.setenv("TGAD_PROGRESS", "bars")
    with pytest.raises(ValueError, match=r"TGAD_PROGRESS='bars' is not one of auto\|widget\|text\|lines\|off"):
        Progress(3)
    with pytest.raises(ValueError, match="every must be >= 1"):
        Progress(3, mode="lines", every=0)
