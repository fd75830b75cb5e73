"""Evaluation tables of the service risk models (issue 10, items 5-7): hand-computed cases first."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from tgad_lite.metrics.detection import best_f1, pr_auc
from tgad_lite.temporal.evaluate import (
    DETECTION_KEYS,
    ROOTCAUSE_KEYS,
    SYSTEM_KEYS,
    _weighted_pr_auc,
    detection_row,
    event_counts,
    event_prf,
    incident_blocks,
    paired_rootcause,
    rootcause_rows,
    system_row,
    validation_threshold,
)


def test_incident_blocks_cut_halfway_between_starts_inside_the_span():
    steps = np.arange(100, 120)
    # 90 and 130 lie outside the steps and are ignored; cuts at (103+109+1)//2 = 106 and (109+115+1)//2 = 112
    blocks = incident_blocks(steps, [90, 103, 109, 115, 130])
    assert blocks.tolist() == [0] * 6 + [1] * 6 + [2] * 8
    # each incident start lies in its own block
    assert [int(blocks[s - 100]) for s in (103, 109, 115)] == [0, 1, 2]
    assert incident_blocks(steps, []).tolist() == [0] * 20
    assert incident_blocks(steps, [101, 101]).tolist() == [0] * 20  # one incident listed twice: one block
    with pytest.raises(ValueError, match="non-decreasing"):
        incident_blocks(steps[::-1], [103])


def test_event_counts_by_hand():
    # service 0: segments [1, 2] and [6, 6]; alarm runs [2, 3] (true, overlaps [1, 2]) and [8, 8] (false)
    # service 1: segment [4, 7]; alarm runs [0, 0] (false) and [5, 5] (true)
    labels = np.zeros((10, 2), dtype=int)
    labels[[1, 2, 6], 0] = 1
    labels[4:8, 1] = 1
    alarms = np.zeros((10, 2), dtype=bool)
    alarms[[2, 3, 8], 0] = True
    alarms[[0, 5], 1] = True
    counts = event_counts(alarms, labels)
    assert counts.tolist() == [[3, 2, 4, 2]]  # 3 segments, 2 detected ([1, 2] and [4, 7]); 4 runs, 2 true
    p, r, f1 = event_prf(counts)
    assert (p, r) == (0.5, 2 / 3) and f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    # with blocks, each event counts where it starts: rows 0-4 block 0, rows 5-9 block 1
    by_block = event_counts(alarms, labels, np.repeat([0, 1], 5))
    assert by_block.tolist() == [[2, 2, 2, 1], [1, 0, 2, 1]]
    assert by_block.sum(axis=0).tolist() == counts[0].tolist()
    # no alarm: precision 0 by convention; no segment: recall and F1 undefined
    assert event_prf([2, 0, 0, 0]) == (0.0, 0.0, 0.0)
    assert event_prf([0, 0, 3, 0]) == (0.0, None, None)


def test_sklearn_weighted_average_precision_equals_the_concatenated_blocks():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(60), 1)  # rounded: many ties, the case where weights could go wrong
    labels = (rng.random(60) < 0.3).astype(int)
    block = np.repeat(np.arange(6), 10)
    drawn = np.array([0, 2, 1, 0, 3, 1])  # a resample: block 1 twice, block 4 three times ...
    rows = np.concatenate([np.flatnonzero(block == k) for k in range(6) for _ in range(drawn[k])])
    expected = average_precision_score(labels[rows], scores[rows])
    assert _weighted_pr_auc(scores, labels, drawn[block].astype(float)) == pytest.approx(expected, abs=1e-12)
    # by hand on three points: scores 0.9 (pos), 0.5 (neg), 0.1 (pos) -> AP = (1/1 + 2/3) / 2
    assert average_precision_score([1, 0, 1], [0.9, 0.5, 0.1]) == pytest.approx(5 / 6)
    # the same with the first point weighted twice: precision 2/2 at recall 2/3, 3/4 at recall 1 -> 2/3 + 1/4
    assert _weighted_pr_auc(np.array([0.9, 0.5, 0.1]), np.array([1, 0, 1]), np.array([2.0, 1, 1])) == pytest.approx(
        2 / 3 * 1 + 1 / 3 * 3 / 4
    )


def _incident_series(seed: int = 0, steps: int = 300, services: int = 4):
    """Labels with 10 incidents on random services and a risk that sees most of them."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((steps, services), dtype=np.int8)
    starts = np.arange(10, steps - 10, (steps - 20) // 10)[:10]
    for s in starts:
        v = rng.integers(services, size=2)
        labels[s : s + 5, v] = 1
    risk = np.clip(0.6 * labels + 0.5 * rng.random(labels.shape), 0, 1)
    return risk, labels, starts


def test_detection_row_holds_its_estimates_inside_their_intervals_and_labels_the_oracle():
    risk, labels, starts = _incident_series()
    blocks = incident_blocks(np.arange(len(risk)), starts)
    th = validation_threshold(risk[:150], labels[:150])
    row = detection_row("model", risk, labels, th, blocks, n_resamples=300, seed=1)
    assert tuple(row) == DETECTION_KEYS and row["n_blocks"] == 10
    assert row["pr_auc"] == pytest.approx(pr_auc(risk.ravel(), labels.ravel()))
    assert row["pr_auc_low"] <= row["pr_auc"] <= row["pr_auc_high"]
    assert row["event_f1_low"] <= row["event_f1"] <= row["event_f1_high"]
    assert row["pr_auc_high"] - row["pr_auc_low"] > 0.0  # ten blocks do vary
    assert row["f1"] <= row["oracle_best_f1"] + 1e-12  # the oracle read the test labels
    assert row["oracle_best_f1"] == pytest.approx(best_f1(risk.ravel(), labels.ravel()).f1)
    assert row["positive_rate"] == pytest.approx(labels.mean())
    # a perfect risk finds every segment without a false alarm run
    perfect = detection_row("oracle risk", labels.astype(float), labels, 0.5, blocks, n_resamples=50)
    assert perfect["pr_auc"] == 1.0 and perfect["event_f1"] == 1.0 and perfect["event_f1_low"] == 1.0
    # without blocks: one unit, zero-width intervals
    one = detection_row("model", risk, labels, th, n_resamples=50)
    assert one["pr_auc_low"] == one["pr_auc"] == one["pr_auc_high"]
    assert one["event_f1"] == row["event_f1"]  # blocks change the interval, not the estimate
    # a labelled run crossing into block 1 gives it positive pairs but no run of its own: a resample of block 1
    # alone has no event recall, so that interval is left undefined while the PR-AUC one exists
    crossing = np.zeros((10, 1), dtype=int)
    crossing[3:8] = 1
    split_run = detection_row("m", crossing * 0.9, crossing, 0.5, np.repeat([0, 1], 5), n_resamples=50)
    assert split_run["event_f1"] == 1.0 and split_run["event_f1_low"] is None and split_run["event_f1_high"] is None
    assert split_run["pr_auc_low"] == split_run["pr_auc"] == 1.0
    # seeded: the same call gives the same interval
    assert detection_row("model", risk, labels, th, blocks, n_resamples=300, seed=1) == row


def test_detection_row_refuses_bad_input():
    risk, labels, starts = _incident_series()
    blocks = incident_blocks(np.arange(len(risk)), starts)
    with pytest.raises(ValueError, match=r"labels must be \[B, N\]"):
        detection_row("m", risk, labels[:, :2], 0.5, blocks)
    with pytest.raises(ValueError, match="non-finite"):
        detection_row("m", np.where(risk > 0.99, np.nan, risk), labels, 0.5, blocks)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        detection_row("m", risk, labels, None, blocks)
    with pytest.raises(ValueError, match="blocks must be"):
        detection_row("m", risk, labels, 0.5, blocks[::-1])
    no_positive_block = blocks.copy()
    no_positive_block[:5] = 0  # steps 0-4 hold no positive pair ...
    no_positive_block[5:] += 1  # ... and now form a block of their own
    with pytest.raises(ValueError, match="hold no positive pair"):
        detection_row("m", risk, labels, 0.5, no_positive_block)


def test_system_row_by_hand():
    # incidents at steps [2, 4] and [10, 12]; alarms at 3-5 (true run, delay 1), 7 (false), none in [10, 12]
    labels = np.zeros(15, dtype=int)
    labels[2:5] = labels[10:13] = 1
    score = np.zeros(15)
    score[[3, 4, 5, 7]] = 1.0
    row = system_row("max-z", score, labels, 0.5, n_resamples=200)
    assert tuple(row) == SYSTEM_KEYS
    assert (row["n_events"], row["n_detected"], row["event_recall"]) == (2, 1, 0.5)
    assert (row["n_alarm_runs"], row["event_precision"], row["false_alarm_events"]) == (2, 0.5, 1)
    assert row["delay_mean"] == 1.0 and row["delay_mean_low"] == row["delay_mean_high"] == 1.0
    assert row["event_f1"] == 0.5
    assert 0.0 <= row["event_recall_low"] <= 0.5 <= row["event_recall_high"] <= 1.0
    silent = system_row("silent", np.zeros(15), labels, 0.5, n_resamples=50)
    assert silent["event_recall"] == 0.0 and silent["event_precision"] == 0.0 and silent["delay_mean"] is None
    assert silent["event_f1"] == 0.0


def test_rootcause_rows_and_the_paired_difference_by_hand():
    truths = [0, 1, 2, 3]
    good = [[0, 1, 2, 3], [1, 0, 2, 3], [2, 0, 1, 3], [0, 1, 2, 3]]  # ranks of the truth: 1, 1, 1, 4
    bad = [[1, 0, 2, 3], [0, 2, 3, 1], [2, 0, 1, 3], [0, 1, 2, 3]]  # ranks: 2, 4, 1, 4
    rows = rootcause_rows({"good": good, "bad": bad}, truths, n_resamples=300)
    assert [r["method"] for r in rows] == ["good", "bad"] and all(tuple(r) == ROOTCAUSE_KEYS for r in rows)
    g, b = rows
    assert (g["AC@1"], g["AC@3"]) == (0.75, 0.75) and (b["AC@1"], b["AC@3"]) == (0.25, 0.5)
    # Avg@5 per incident is (5 - rank + 1) / 5: good (1 + 1 + 1 + 0.4) / 4, bad (0.8 + 0.4 + 1 + 0.4) / 4
    assert g["Avg@5"] == pytest.approx(0.85) and b["Avg@5"] == pytest.approx(0.65)
    for r in rows:
        for key in ("AC@1", "AC@3", "Avg@5"):
            assert r[f"{key}_low"] <= r[key] <= r[f"{key}_high"]
    diff = paired_rootcause(good, bad, truths, n_resamples=500)
    assert (diff["a"], diff["b"], diff["difference"]) == (0.75, 0.25, 0.5)
    assert diff["low"] <= 0.5 <= diff["high"] and diff["n_incidents"] == 4
    # good is never worse on any incident, so no resample has it behind ... but ties (both 0) can occur
    assert diff["low"] >= 0.0 and 0.0 <= diff["p_a_le_b"] < 0.2
    avg = paired_rootcause(good, bad, truths, metric="Avg@5", n_resamples=100)
    assert avg["difference"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="metric must be"):
        paired_rootcause(good, bad, truths, metric="MRR")
    with pytest.raises(ValueError, match="3 rankings for 4 incidents"):
        rootcause_rows({"short": good[:3]}, truths)


def test_validation_threshold_is_the_best_f1_rule_of_the_training_recipe():
    risk, labels, _ = _incident_series(seed=3)
    th = validation_threshold(risk, labels)
    assert th == best_f1(risk.ravel(), labels.ravel()).threshold
    with pytest.raises(ValueError, match="positive and negative"):
        validation_threshold(risk, np.zeros_like(labels))
