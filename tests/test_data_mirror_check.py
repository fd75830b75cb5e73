"""The start-up check of $TGAD_DATA_MIRROR: set means it must be complete, or the run fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _mirror import CORA_RAW, MSL_LABELS, MirrorError, check_mirror, missing_files

REPO = Path(__file__).resolve().parents[1]


def fake_mirror(root: Path, channels=("M-1", "C-2"), skip: tuple[str, ...] = ()) -> Path:
    """Empty files in the mirror layout (presence is all the start-up check looks at)."""
    rows = "".join(f'{c},MSL,"[[1, 2]]",[point],10\n' for c in channels)
    paths = {MSL_LABELS: "chan_id,spacecraft,anomaly_sequences,class,num_values\n" + rows}
    paths |= {p: "" for p in CORA_RAW}
    paths |= {f"MSL/{part}/{c}.npy": "" for part in ("train", "test") for c in channels}
    for rel, text in paths.items():
        if rel not in skip:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
    return root


def test_unset_or_empty_variable_means_no_mirror():
    assert check_mirror({}) is None
    assert check_mirror({"TGAD_DATA_MIRROR": "  "}) is None


def test_complete_mirror_is_returned_absolute(tmp_path, monkeypatch):
    fake_mirror(tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    assert check_mirror({"TGAD_DATA_MIRROR": "m"}) == tmp_path.resolve() / "m"


def test_missing_folder_names_variable_and_folder(tmp_path):
    with pytest.raises(MirrorError) as err:
        check_mirror({"TGAD_DATA_MIRROR": str(tmp_path / "absent")})
    assert "TGAD_DATA_MIRROR" in str(err.value) and str(tmp_path / "absent") in str(err.value)


@pytest.mark.parametrize(
    "skip",
    [("Cora/raw/ind.cora.test.index",), ("MSL/test/C-2.npy", "MSL/train/M-1.npy")],
    ids=["one-cora-file", "two-msl-arrays"],
)
def test_incomplete_mirror_lists_exactly_the_missing_files(tmp_path, skip):
    mirror = fake_mirror(tmp_path, skip=skip)
    assert sorted(missing_files(mirror)) == sorted(skip)
    with pytest.raises(MirrorError) as err:
        check_mirror({"TGAD_DATA_MIRROR": str(mirror)})
    msg = str(err.value)
    assert "TGAD_DATA_MIRROR" in msg and str(mirror) in msg and all(p in msg for p in skip)


def test_mirror_without_the_msl_table_says_so(tmp_path):
    mirror = fake_mirror(tmp_path, skip=(MSL_LABELS,))
    assert MSL_LABELS in missing_files(mirror)


def test_cora_list_matches_the_loader():
    from tgad_lite.data.cora import CORA_FILES

    assert sorted(CORA_RAW) == sorted(f"Cora/{f.path}" for f in CORA_FILES)


def _pytest(env_value: str | None, tmp_path: Path) -> subprocess.CompletedProcess:
    """pytest on a trivial test file with this repository's conftest, as CI would run it."""
    env = {k: v for k, v in os.environ.items() if k != "TGAD_DATA_MIRROR" and not k.startswith("PYTEST_")}
    if env_value is not None:
        env["TGAD_DATA_MIRROR"] = env_value
    folder = tmp_path / "suite"
    folder.mkdir()
    shutil.copy(REPO / "tests" / "conftest.py", folder / "conftest.py")
    shutil.copy(REPO / "tests" / "_mirror.py", folder / "_mirror.py")
    (folder / "test_trivial.py").write_text("def test_trivial():\n    assert 1 + 1 == 2\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_run_with_an_empty_mirror_folder_fails_naming_the_variable(tmp_path):
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    out = _pytest(str(empty), tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "TGAD_DATA_MIRROR" in text and str(empty) in text and "ind.cora.x" in text
    assert "1 passed" not in text  # stopped before running anything


def test_a_run_without_the_variable_goes_ahead(tmp_path):
    out = _pytest(None, tmp_path)
    assert out.returncode == 0 and "1 passed" in out.stdout, out.stdout + out.stderr
