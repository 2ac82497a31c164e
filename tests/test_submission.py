"""Submission validation: one problem line per rule; the ensemble package stays offline-importable."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from ensemble.submission import COLUMNS, check, main, validate
from features.errors import MabeDataError

TEST = pd.DataFrame({"video_id": [438887472, 5]})


def good():
    return pd.DataFrame([(0, 438887472, "mouse1", "mouse2", "sniff", 0, 10),
                         (1, 438887472, "mouse1", "mouse2", "sniff", 5, 20),     # same action overlap: fine
                         (2, 438887472, "mouse1", "mouse2", "attack", 20, 30),   # touching: fine
                         (3, 438887472, "mouse1", "mouse3", "attack", 0, 10),    # other target: fine
                         (4, 438887472, "mouse1", "self", "rear", 0, 10),
                         (5, 5, "mouse2", "mouse1", "chase", 7, 7)], columns=COLUMNS)


def test_valid_submission_has_no_problems():
    assert validate(good(), TEST) == []
    check(good(), TEST)


def test_sample_submission_is_valid():
    from pathlib import Path
    data = Path(__file__).resolve().parents[1] / "features" / "data"
    assert validate(pd.read_csv(data / "sample_submission.csv"), data / "test_meta.csv") == []


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d[COLUMNS[::-1]], "columns must be exactly"),
    (lambda d: d.drop(columns="action"), "missing ['action']"),
    (lambda d: d.iloc[:0], "empty"),
    (lambda d: d.astype({"start_frame": float}), "column start_frame must be integer"),
    (lambda d: d.assign(agent_id=["mouse1"] * 5 + ["m2"]), "agent_id must look like mouseN"),
    (lambda d: d.assign(target_id=["mouse2"] * 5 + ["itself"]), "target_id must look like mouseN or self"),
    (lambda d: d.assign(target_id=["mouse1"] * 6), "target_id equals agent_id"),
    (lambda d: d.assign(action=["sniff"] * 5 + ["dance"]), "unknown action"),
    (lambda d: d.assign(row_id=[0, 0, 1, 2, 3, 4]), "row_id must be unique"),
    (lambda d: d.assign(start_frame=[0, 5, 20, 0, 0, 8]), "start_frame > stop_frame"),
    (lambda d: d.assign(start_frame=[-1, 5, 20, 0, 0, 7]), "negative start_frame"),
    (lambda d: d.assign(video_id=[438887472] * 5 + [99]), "video_id not in test.csv"),
    (lambda d: d.assign(stop_frame=[10, 21, 30, 10, 10, 7]), "attack from frame 20 overlaps"),
])
def test_each_problem_is_reported(mutate, expected):
    problems = validate(mutate(good()), TEST)
    assert any(expected in p for p in problems), problems
    with pytest.raises(MabeDataError, match="problem"):
        check(mutate(good()), TEST)


def test_overlap_line_names_video_and_pair():
    d = good().assign(stop_frame=[10, 21, 30, 10, 10, 7])  # sniff [5, 21) overlaps attack [20, 30)
    problems = validate(d, TEST)
    assert problems == [("video 438887472, mouse1 -> mouse2: attack from frame 20 overlaps another action "
                         "(Multiple predictions for the same frame from one agent/target pair)")]


def test_cli(tmp_path, capsys):
    good().to_csv(tmp_path / "sub.csv", index=False)
    TEST.to_csv(tmp_path / "test.csv", index=False)
    assert main(["--submission", str(tmp_path / "sub.csv"), "--test-csv", str(tmp_path / "test.csv")]) == []
    assert "valid (6 rows, 2 videos)" in capsys.readouterr().out
    good().assign(action=["sniff"] * 5 + ["dance"]).to_csv(tmp_path / "bad.csv", index=False)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ensemble.submission",
            "--submission",
            str(tmp_path / "bad.csv"),
            "--test-csv",
            str(tmp_path / "test.csv"),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "problem: unknown action" in proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1


def test_ensemble_metric_side_imports_offline():
    """metric/postprocess/thresholds/submission must not pull Ray, Optuna, Modal, polars or scipy."""
    code = ("import sys, ensemble.metric, ensemble.postprocess, ensemble.thresholds, ensemble.submission; "
            "bad = [m for m in ('ray', 'optuna', 'modal', 'polars', 'scipy') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
