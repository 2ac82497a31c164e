"""The official metric rule by rule (docs/mabe.md, Metric) with hand-computed values, on both paths.

Every case is scored with `score` (DataFrames) and with `score_frames` on the pairs built from the same
DataFrames, and both must equal the hand-computed value.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bench.metric_bench import set_based_score
from ensemble.metric import (
    PairFrames,
    aggregate,
    dataframes_to_pairs,
    frame_counts,
    interval_counts,
    main,
    pairs_to_solution,
    pairs_to_submission,
    per_action_f1,
    score,
    score_frames,
)
from features.errors import MabeDataError
from features.labels import ACTIONS, CLASS_OF, NUM_CLASSES

PAIR_WL = ["mouse1,mouse2,attack", "mouse1,mouse2,sniff", "mouse2,mouse1,sniff", "mouse1,self,rear"]


def solution(rows, whitelist=PAIR_WL, labs=None):
    """rows: (video, agent, target, action, start, stop); one whitelist for all videos; labs: video -> lab."""
    labs = labs or {}
    df = pd.DataFrame(
        rows, columns=["video_id", "agent_id", "target_id", "action", "start_frame", "stop_frame"]
    )
    df["lab_id"] = [labs.get(v, "LabA") for v in df["video_id"]]
    wl = whitelist if isinstance(whitelist, dict) else {v: whitelist for v in df["video_id"]}
    df["behaviors_labeled"] = [json.dumps(wl[v]) for v in df["video_id"]]
    return df


def submission(rows):
    df = pd.DataFrame(
        rows, columns=["video_id", "agent_id", "target_id", "action", "start_frame", "stop_frame"]
    )
    df.insert(0, "row_id", range(len(df)))
    return df


def both(sol, sub, beta=1.0):
    """Score with both paths; they must agree exactly."""
    a = score(sol, sub, beta=beta)
    b = score_frames(dataframes_to_pairs(sol, sub), beta=beta)
    assert a == b
    return a


# --- the doctest values of the official notebook ---------------------------------------------------------

def test_exact_match_is_one():
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 10), (1, "mouse1", "mouse2", "attack", 20, 30)])
    sub = submission([(1, "mouse1", "mouse2", "sniff", 0, 10), (1, "mouse1", "mouse2", "attack", 20, 30)])
    assert both(sol, sub) == 1.0


def test_wrong_action_is_zero():
    # sniff: TP 0, FN 10 -> 0; attack (whitelisted, predicted, never labelled): FP 10 -> 0
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 10)])
    sub = submission([(1, "mouse1", "mouse2", "attack", 0, 10)])
    assert both(sol, sub) == 0.0


def test_one_of_two_actions_is_half():
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 10), (1, "mouse2", "mouse1", "sniff", 0, 10),
                    (1, "mouse1", "mouse2", "attack", 20, 30)])
    sub = submission([(1, "mouse1", "mouse2", "attack", 20, 30)])
    # attack F 1, sniff TP 0 FN 20 -> 0: (1 + 0) / 2
    assert both(sol, sub) == 0.5


def test_second_lab_without_predictions_quarters():
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 10), (1, "mouse1", "mouse2", "attack", 20, 30),
                    (2, "mouse1", "mouse2", "sniff", 0, 10)], labs={2: "LabB"})
    sub = submission([(1, "mouse1", "mouse2", "attack", 20, 30)])
    # LabA 0.5, LabB 0 (labelled, nothing predicted) -> 0.25
    assert both(sol, sub) == 0.25


def test_one_prediction_spanning_adjacent_labels_is_one():
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 10), (1, "mouse1", "mouse2", "sniff", 10, 20)])
    sub = submission([(1, "mouse1", "mouse2", "sniff", 0, 20)])
    assert both(sol, sub) == 1.0


def test_prediction_over_gap_is_two_thirds():
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 10), (1, "mouse1", "mouse2", "sniff", 30, 40)])
    sub = submission([(1, "mouse1", "mouse2", "sniff", 0, 40)])
    # TP 20, FP 20, FN 0: 2*20 / (2*20 + 0 + 20) = 2/3
    assert math.isclose(both(sol, sub), 2 / 3, rel_tol=0, abs_tol=1e-15)


def test_self_action_needs_self_target():
    sol = solution([(1, "mouse1", "self", "rear", 0, 10)])
    # "mouse1,mouse1,rear" is not in the whitelist: ignored, rear FN 10 -> 0
    assert score(sol, submission([(1, "mouse1", "mouse1", "rear", 0, 10)])) == 0.0
    assert both(sol, submission([(1, "mouse1", "self", "rear", 0, 10)])) == 1.0


def test_predicted_whitelisted_never_labelled_action_halves_lab():
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 10)])
    perfect = [(1, "mouse1", "mouse2", "sniff", 0, 10)]
    assert both(sol, submission(perfect)) == 1.0
    # attack is whitelisted but nowhere labelled in the lab: adds an F = 0 term -> (1 + 0) / 2
    assert both(sol, submission(perfect + [(1, "mouse1", "mouse2", "attack", 20, 30)])) == 0.5
    # a non-whitelisted action adds nothing
    assert both(sol, submission(perfect + [(1, "mouse2", "mouse1", "attack", 20, 30)])) == 1.0


# --- the other rules --------------------------------------------------------------------------------------

def test_errors_before_scoring():
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 10)])
    sub = submission([(1, "mouse1", "mouse2", "sniff", 0, 10)])
    with pytest.raises(ValueError, match="^Missing solution or submission data$"):
        score(sol.iloc[:0], sub)
    with pytest.raises(ValueError, match="^Missing solution or submission data$"):
        score(sol, sub.iloc[:0])
    with pytest.raises(ValueError, match="^Solution is missing column action$"):
        score(sol.drop(columns="action"), sub)
    with pytest.raises(ValueError, match="^Submission is missing column stop_frame$"):
        score(sol, sub.drop(columns="stop_frame"))
    with pytest.raises(AssertionError):
        score(sol, submission([(1, "mouse1", "mouse2", "sniff", 10, 9)]))
    with pytest.raises(AssertionError):
        score(solution([(1, "mouse1", "mouse2", "sniff", 5, 4)]), sub)
    with pytest.raises(ValueError, match="dtype"):
        score(sol, sub.astype({"video_id": str}))


def test_negative_frames_and_float_frames():
    # the official code expands range(start, stop) whatever the sign: [-5, 5) vs [0, 10) -> TP 5, FP 5, FN 5
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 10)])
    sub = submission([(1, "mouse1", "mouse2", "sniff", -5, 5)])
    assert interval_counts(sol, sub) == {("LabA", "sniff"): (5, 5, 5)}
    assert score(sol, sub) == set_based_score(sol, sub) == 0.5
    with pytest.raises(ValueError, match="start_frame must be integers"):
        score(sol, sub.astype({"start_frame": float}))


def test_empty_interval_is_allowed_and_counts_nothing():
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 10)])
    sub = submission([(1, "mouse1", "mouse2", "sniff", 0, 10), (1, "mouse1", "mouse2", "sniff", 50, 50)])
    assert score(sol, sub) == 1.0
    assert interval_counts(sol, sub) == {("LabA", "sniff"): (10, 0, 0)}


def test_zero_length_rows_still_create_their_key():
    # Rules 4a/4d as the official code does them: a row adds its key (defaultdict) even with no frames, so a
    # zero-length row of an otherwise absent action adds an F = 0 term (TP + FN + FP == 0 -> 0).
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 10), (1, "mouse1", "mouse2", "attack", 5, 5)])
    sub = submission([(1, "mouse1", "mouse2", "sniff", 0, 10)])
    assert interval_counts(sol, sub) == {("LabA", "attack"): (0, 0, 0), ("LabA", "sniff"): (10, 0, 0)}
    assert score(sol, sub) == set_based_score(sol, sub) == 0.5
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 10)])
    sub = submission([(1, "mouse1", "mouse2", "sniff", 0, 10), (1, "mouse1", "mouse2", "attack", 3, 3)])
    assert score(sol, sub) == set_based_score(sol, sub) == 0.5


def test_unknown_video_rows_dropped():
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 10)])
    # video 2 has no ground truth rows: never scored, its whitelisted-looking attack adds no F = 0 term
    sub = submission([(1, "mouse1", "mouse2", "sniff", 0, 10), (2, "mouse1", "mouse2", "attack", 0, 99)])
    assert both(sol, sub) == 1.0


def test_whitelist_uses_raw_strings():
    wl = ["'mouse1','mouse2','attack'", "mouse1,mouse2,sniff"]  # attack only in the malformed form
    sol = solution([(1, "mouse1", "mouse2", "attack", 0, 10), (1, "mouse1", "mouse2", "sniff", 20, 30)], wl)
    sub = submission([(1, "mouse1", "mouse2", "attack", 0, 10), (1, "mouse1", "mouse2", "sniff", 20, 30)])
    # the attack prediction is ignored, attack labels still count: attack FN 10 -> 0, sniff 1 -> 0.5
    assert both(sol, sub) == 0.5
    assert interval_counts(sol, sub)[("LabA", "attack")] == (0, 0, 10)


def test_non_allowed_labels_are_false_negatives():
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 10), (1, "mouse2", "mouse1", "attack", 0, 10)])
    sub = submission([(1, "mouse1", "mouse2", "sniff", 0, 10), (1, "mouse2", "mouse1", "attack", 0, 10)])
    # "mouse2,mouse1,attack" is not whitelisted: prediction ignored, label FN -> (1 + 0) / 2
    assert both(sol, sub) == 0.5


def test_same_key_overlaps_merge():
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 15)])
    sub = submission([(1, "mouse1", "mouse2", "sniff", 0, 10), (1, "mouse1", "mouse2", "sniff", 5, 15),
                      (1, "mouse1", "mouse2", "sniff", 0, 15)])
    assert both(sol, sub) == 1.0
    assert interval_counts(sol, sub) == {("LabA", "sniff"): (15, 0, 0)}


def test_overlapping_labels_of_one_key_merge():
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 10), (1, "mouse1", "mouse2", "sniff", 5, 20)])
    sub = submission([(1, "mouse1", "mouse2", "sniff", 0, 10)])
    # label frames 0..19 (20), predicted 0..9: TP 10, FN 10 -> 20 / 30
    assert interval_counts(sol, sub) == {("LabA", "sniff"): (10, 0, 10)}
    assert score(sol, sub) == 2 * 10 / (2 * 10 + 10)


def test_two_actions_on_one_frame_of_a_pair_is_an_error():
    sol = solution([(7, "mouse1", "mouse2", "sniff", 0, 10)])
    sub = submission([(7, "mouse1", "mouse2", "sniff", 0, 10), (7, "mouse1", "mouse2", "attack", 9, 12)])
    with pytest.raises(MabeDataError) as err:
        score(sol, sub)
    msg = str(err.value)
    assert "Multiple predictions for the same frame from one agent/target pair" in msg
    assert "video 7" in msg and "mouse1" in msg and "mouse2" in msg
    with pytest.raises(MabeDataError, match="Multiple predictions"):
        dataframes_to_pairs(sol, sub)


def test_allowed_overlaps():
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 10)],
                   whitelist=PAIR_WL + ["mouse1,mouse3,attack"])
    # touching (not overlapping) actions; another target at the same frame; a non-whitelisted overlap
    sub = submission([(1, "mouse1", "mouse2", "sniff", 0, 10), (1, "mouse1", "mouse2", "attack", 10, 20),
                      (1, "mouse1", "mouse3", "attack", 0, 10), (1, "mouse1", "mouse2", "chase", 0, 10)])
    # sniff 1; attack: FP 20 (never labelled) -> 0: (1 + 0) / 2
    assert both(sol, sub) == 0.5


def test_frames_pooled_over_videos_of_a_lab():
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 10), (2, "mouse1", "mouse2", "sniff", 0, 30)])
    sub = submission([(1, "mouse1", "mouse2", "sniff", 0, 10)])
    # pooled TP 10, FN 30: 20 / 50 = 0.4 (a per-video mean would be 0.5)
    assert both(sol, sub) == 0.4


def test_beta():
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 10), (1, "mouse1", "mouse2", "sniff", 30, 40)])
    sub = submission([(1, "mouse1", "mouse2", "sniff", 0, 40)])
    # beta 2: 5*20 / (5*20 + 4*0 + 20) = 5/6
    assert math.isclose(both(sol, sub, beta=2.0), 5 / 6, rel_tol=0, abs_tol=1e-15)


# --- the frame path directly ------------------------------------------------------------------------------

def allowed_all():
    return np.ones(NUM_CLASSES, dtype=bool)


def test_frame_counts_hand_computed():
    a1, a2 = ACTIONS[0], ACTIONS[1]
    p = PairFrames("L", 1, 1, 2, labels=[0, 1, 1, 2, 0], preds=[1, 1, 0, 2, 2], allowed=allowed_all())
    # class 1: frames 1,2 labelled, 0,1 predicted -> TP 1, FP 1, FN 1; class 2: TP 1, FP 1, FN 0
    assert frame_counts([p]) == {("L", a1): (1, 1, 1), ("L", a2): (1, 1, 0)}
    assert score_frames([p]) == (2 / 4 + 2 / 3) / 2


def test_frame_counts_ignores_non_allowed_predictions_and_unlabelled_videos():
    allowed = np.zeros(NUM_CLASSES, dtype=bool)
    allowed[[0, CLASS_OF["sniff"]]] = True
    s, at = CLASS_OF["sniff"], CLASS_OF["attack"]
    p = PairFrames("L", 1, 1, 2, labels=[s, s, at, at], preds=[s, s, at, at], allowed=allowed)
    # video 2 has no labels: not in the solution, its predictions are dropped
    q = PairFrames("L", 2, 1, 2, labels=[0, 0, 0, 0], preds=[s, s, s, s], allowed=allowed)
    assert frame_counts([p, q]) == {("L", "sniff"): (2, 0, 0), ("L", "attack"): (0, 0, 2)}
    assert score_frames([p, q]) == 0.5


def test_per_action_f1_pools_labs():
    counts = {("A", "sniff"): (10, 0, 0), ("B", "sniff"): (0, 10, 10), ("B", "attack"): (1, 1, 0)}
    # sniff pooled TP 10, FP 10, FN 10 -> 20 / 40; attack 2 / 3
    assert per_action_f1(counts) == {"attack": 2 / 3, "sniff": 0.5}
    assert aggregate(counts) == (1.0 + (0 + 2 / 3) / 2) / 2


def test_pair_frames_validates():
    with pytest.raises(MabeDataError, match="equal length"):
        PairFrames("L", 1, 1, 2, labels=[0, 1], preds=[0], allowed=allowed_all())
    with pytest.raises(MabeDataError, match="allowed"):
        PairFrames("L", 1, 1, 2, labels=[0], preds=[0], allowed=[True])
    with pytest.raises(MabeDataError, match="class ids"):
        PairFrames("L", 1, 1, 2, labels=[38], preds=[0], allowed=allowed_all())
    p = PairFrames("L", 1, 1, 2, labels=[1], preds=[1], allowed=allowed_all())
    with pytest.raises(MabeDataError, match="twice"):
        frame_counts([p, p])


def test_pairs_round_trip_through_dataframes():
    rng = np.random.default_rng(0)
    allowed = np.zeros(NUM_CLASSES, dtype=bool)
    allowed[[0, CLASS_OF["sniff"], CLASS_OF["attack"]]] = True
    self_allowed = np.zeros(NUM_CLASSES, dtype=bool)
    self_allowed[[0, CLASS_OF["rear"]]] = True
    pairs = [
        PairFrames("L", 3, 1, 2, rng.choice([0, CLASS_OF["sniff"], CLASS_OF["attack"]], 50),
                   rng.choice([0, CLASS_OF["sniff"]], 50), allowed),
        PairFrames("L", 3, 1, 1, rng.choice([0, CLASS_OF["rear"]], 50), rng.choice([0, CLASS_OF["rear"]], 50),
                   self_allowed),
    ]
    sol, sub = pairs_to_solution(pairs), pairs_to_submission(pairs)
    assert list(sub.columns) == ["row_id", "video_id", "agent_id", "target_id", "action", "start_frame",
                                 "stop_frame"]
    assert set(sol.loc[sol["action"] == "rear", "target_id"]) == {"self"}
    back = dataframes_to_pairs(sol, sub, n_frames={3: 50})
    assert [(p.video_id, p.agent, p.target) for p in back] == [(3, 1, 1), (3, 1, 2)]
    for orig, new in zip(sorted(pairs, key=lambda p: p.target), back):
        np.testing.assert_array_equal(orig.labels, new.labels)
        np.testing.assert_array_equal(orig.preds, new.preds)
        np.testing.assert_array_equal(orig.allowed, new.allowed)
    assert score(sol, sub) == score_frames(pairs) == score_frames(back)


# --- CLI ---------------------------------------------------------------------------------------------------

def test_cli_prints_score_and_table(tmp_path, capsys):
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 10), (1, "mouse1", "mouse2", "sniff", 30, 40)])
    sub = submission([(1, "mouse1", "mouse2", "sniff", 0, 40)])
    sol.to_csv(tmp_path / "sol.csv", index=False)
    sub.to_csv(tmp_path / "sub.csv", index=False)
    result = main(["--solution", str(tmp_path / "sol.csv"), "--submission", str(tmp_path / "sub.csv")])
    out = capsys.readouterr().out
    assert math.isclose(result, 2 / 3, rel_tol=0, abs_tol=1e-15)
    assert "score = 0.666667" in out
    assert "sniff" in out and "20" in out


def test_cli_bad_input_one_line_nonzero(tmp_path):
    sol = solution([(1, "mouse1", "mouse2", "sniff", 0, 10)])
    sub = submission([(1, "mouse1", "mouse2", "sniff", 0, 10), (1, "mouse1", "mouse2", "attack", 5, 10)])
    sol.to_csv(tmp_path / "sol.csv", index=False)
    sub.to_csv(tmp_path / "sub.csv", index=False)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ensemble.metric",
            "--solution",
            str(tmp_path / "sol.csv"),
            "--submission",
            str(tmp_path / "sub.csv"),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Multiple predictions" in lines[0] and "video 1" in lines[0]
