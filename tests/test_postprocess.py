"""Post-processing: hand-computed steps, config round trip, and never-overlapping output (hypothesis)."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ensemble.metric import PairFrames, pairs_to_solution, score
from ensemble.postprocess import (
    frame_decisions,
    PostprocessConfig,
    decide_frames,
    drop_short,
    events_to_submission,
    fill_gaps,
    probs_to_events,
    smooth,
    video_events,
)
from ensemble.submission import COLUMNS as SUBMISSION_COLUMNS
from features.errors import MabeDataError
from features.labels import CLASS_OF, NUM_CLASSES, PAIR_CLASS_MASK, SELF_CLASS_MASK

SNIFF, ATTACK, REAR = CLASS_OF["sniff"], CLASS_OF["attack"], CLASS_OF["rear"]


def mask(*classes):
    m = np.zeros(NUM_CLASSES, dtype=bool)
    m[[0, *classes]] = True
    return m


def test_smooth_centred_with_edges():
    x = np.array([[0.0], [3.0], [6.0], [9.0]])
    # window 3: (0+3)/2, (0+3+6)/3, (3+6+9)/3, (6+9)/2
    np.testing.assert_allclose(smooth(x, 3)[:, 0], [1.5, 3.0, 6.0, 7.5])
    # window 2 (extra frame on the right): (0+3)/2, (3+6)/2, (6+9)/2, 9
    np.testing.assert_allclose(smooth(x, 2)[:, 0], [1.5, 4.5, 7.5, 9.0])
    assert smooth(x, 1) is x


@settings(max_examples=60, deadline=None)
@given(T=st.integers(0, 40), window=st.integers(1, 50), seed=st.integers(0, 2**32 - 1))
def test_smooth_equals_direct_mean(T, window, seed):
    x = np.random.default_rng(seed).random((T, 3)).astype(np.float32)
    left, right = (window - 1) // 2, window - 1 - (window - 1) // 2
    direct = [x[max(0, t - left): min(T, t + right + 1)].astype(np.float64).mean(axis=0) for t in range(T)]
    np.testing.assert_allclose(smooth(x, window), np.array(direct).reshape(T, 3), rtol=0, atol=1e-6)


def test_fill_gaps_and_drop_short():
    x = np.array([1, 1, 0, 0, 1, 0, 2, 0, 0, 0, 2, 0])
    # gap of 2 between 1s filled; gap 1 between 1 and 2 kept; gap of 3 > 2 kept; edges never filled
    np.testing.assert_array_equal(fill_gaps(x, 2), [1, 1, 1, 1, 1, 0, 2, 0, 0, 0, 2, 0])
    np.testing.assert_array_equal(fill_gaps(x, 0), x)
    y = np.array([0, 1, 1, 0, 2, 2, 2, 1])
    np.testing.assert_array_equal(drop_short(y, 3), [0, 0, 0, 0, 2, 2, 2, 0])
    np.testing.assert_array_equal(drop_short(y, 1), y)


def test_decide_by_margin_over_threshold():
    thr = np.full(NUM_CLASSES, 0.5)
    thr[ATTACK] = 0.75
    probs = np.zeros((4, NUM_CLASSES))
    probs[0, [SNIFF, ATTACK]] = [0.7, 0.9]    # margins 0.2 vs 0.15 -> sniff, though attack is more probable
    probs[1, [SNIFF, ATTACK]] = [0.4, 0.74]   # both below their thresholds -> background
    probs[2, [SNIFF, REAR]] = [0.6, 0.99]     # rear not allowed -> sniff
    probs[3, [SNIFF, ATTACK]] = [0.625, 0.875]  # exact tie 0.125 / 0.125 -> the lower class id (attack)
    np.testing.assert_array_equal(decide_frames(probs, mask(SNIFF, ATTACK), thr), [SNIFF, 0, SNIFF, ATTACK])


def test_argmax_rule_background_competes():
    """PostprocessConfig.argmax: an action must also beat the background's probability. Frame 0: sniff 0.4 vs
    background 0.6 -> background (a 0.3 threshold alone would say sniff); frame 1: sniff 0.45, attack 0.35,
    background 0.2 -> sniff; frame 2: sniff 0.5 = background 0.5 -> background (the tie goes to the lower
    class id, background, as np.argmax does)."""
    probs = np.zeros((3, NUM_CLASSES))
    probs[0, [0, SNIFF]] = [0.6, 0.4]
    probs[1, [0, SNIFF, ATTACK]] = [0.2, 0.45, 0.35]
    probs[2, [0, SNIFF]] = [0.5, 0.5]
    allowed = mask(SNIFF, ATTACK)
    low = PostprocessConfig(default_threshold=0.3)
    np.testing.assert_array_equal(frame_decisions(probs, allowed, low), [SNIFF, SNIFF, SNIFF])
    rule = PostprocessConfig(default_threshold=0.0, argmax=True)
    np.testing.assert_array_equal(frame_decisions(probs, allowed, rule), [0, SNIFF, 0])
    np.testing.assert_array_equal(frame_decisions(probs, allowed, rule), probs.argmax(1))
    assert PostprocessConfig.from_dict(json.loads(json.dumps(rule.to_dict()))) == rule
    assert PostprocessConfig.from_dict({"default_threshold": 0.5}).argmax is False  # older thresholds.json


def test_threshold_precedence_and_json_round_trip():
    cfg = PostprocessConfig(
        smooth_window=5,
        min_duration=3,
        gap_fill=2,
        thresholds={"LabA": {"sniff": 0.3}},
        action_thresholds={"sniff": 0.4, "attack": 0.7},
        default_threshold=0.6,
    )
    a = cfg.threshold_vector("LabA")
    b = cfg.threshold_vector("LabB")
    assert (a[SNIFF], a[ATTACK], a[REAR]) == (0.3, 0.7, 0.6)
    assert (b[SNIFF], b[ATTACK], b[REAR]) == (0.4, 0.7, 0.6)
    assert PostprocessConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown action"):
        PostprocessConfig(action_thresholds={"dance": 0.5})
    with pytest.raises(ValueError, match="smooth_window"):
        PostprocessConfig(smooth_window=0)


def test_probs_to_events_pipeline():
    T = 20
    probs = np.zeros((T, NUM_CLASSES), dtype=np.float32)
    probs[2:8, SNIFF] = 0.9
    probs[9:12, SNIFF] = 0.9    # gap of 1 frame (8) -> filled with gap_fill=1
    probs[15:16, ATTACK] = 0.9  # 1 frame -> dropped with min_duration=2
    cfg = PostprocessConfig(gap_fill=1, min_duration=2)
    assert probs_to_events(probs, mask(SNIFF, ATTACK), cfg) == [(2, 12, SNIFF)]
    # not allowed -> nothing
    assert probs_to_events(probs, mask(REAR), cfg) == []
    # mapping back to original frames: each resampled frame covers two original frames
    idx = np.repeat(np.arange(T), 2)
    assert probs_to_events(probs, mask(SNIFF, ATTACK), cfg, to_original=idx) == [(4, 24, SNIFF)]
    assert probs_to_events(probs, mask(SNIFF, ATTACK), cfg, to_original=lambda a: np.repeat(a, 2)) == [
        (4, 24, SNIFF)]
    # self pair keeps only self-directed actions
    assert probs_to_events(probs, mask(SNIFF, ATTACK), cfg, self_pair=True) == []


def test_events_to_submission_rows():
    df = events_to_submission([(7, 1, 2, [(10, 20, SNIFF), (0, 5, ATTACK)]), (7, 1, 1, [(3, 9, REAR)]),
                               (7, 2, 2, [(0, 4, SNIFF)])])  # a pair action on a self pair: dropped
    assert list(df.columns) == SUBMISSION_COLUMNS
    assert df.values.tolist() == [[0, 7, "mouse1", "self", "rear", 3, 9],
                                  [1, 7, "mouse1", "mouse2", "attack", 0, 5],
                                  [2, 7, "mouse1", "mouse2", "sniff", 10, 20]]
    assert df["start_frame"].dtype == np.int64 and df["video_id"].dtype == np.int64


def test_video_events_restricts_self_and_pair_actions():
    probs = np.zeros((2, 6, NUM_CLASSES), dtype=np.float32)
    probs[:, 0:3, SNIFF] = 0.9
    probs[:, 3:6, REAR] = 0.9
    allowed = np.ones((2, NUM_CLASSES), dtype=bool)  # everything allowed: the pair kind decides
    items = video_events(9, [(1, 2), (1, 1)], probs, allowed, PostprocessConfig(), "L",
                         to_original=np.repeat(np.arange(6), 2))
    assert items == [(9, 1, 2, [(0, 6, SNIFF)]), (9, 1, 1, [(6, 12, REAR)])]
    with pytest.raises(MabeDataError, match="do not match"):
        video_events(9, [(1, 2)], probs, allowed, PostprocessConfig())


def test_perfect_probabilities_score_one():
    rng = np.random.default_rng(0)
    labels = np.repeat(rng.choice([0, SNIFF, ATTACK], 30), 5)
    self_labels = np.repeat(rng.choice([0, REAR], 30), 5)
    pairs = [
        PairFrames("L", 1, 1, 2, labels, labels, mask(SNIFF, ATTACK)),
        PairFrames("L", 1, 1, 1, self_labels, self_labels, mask(REAR)),
    ]
    items = []
    for p in pairs:
        probs = np.eye(NUM_CLASSES, dtype=np.float32)[p.labels]
        items.append(
            (p.video_id, p.agent, p.target, probs_to_events(probs, p.allowed, PostprocessConfig(), "L"))
        )
    assert score(pairs_to_solution(pairs), events_to_submission(items)) == 1.0


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), window=st.integers(1, 9), min_duration=st.integers(1, 6),
       gap_fill=st.integers(0, 6), default=st.floats(0.0, 1.0), stretch=st.booleans())
def test_random_postprocessing_never_overlaps(seed, window, min_duration, gap_fill, default, stretch):
    """Whatever the probabilities and settings, the rows never trip the metric's overlap error."""
    rng = np.random.default_rng(seed)
    T = int(rng.integers(1, 80))
    cfg = PostprocessConfig(
        window,
        min_duration,
        gap_fill,
        thresholds={"L": {"sniff": float(rng.random()), "rear": float(rng.random())}},
        action_thresholds={"attack": float(rng.random())},
        default_threshold=default,
    )
    to_original = np.sort(rng.integers(0, T, int(rng.integers(T, 3 * T)))) if stretch else None
    n_orig = T if to_original is None else to_original.size
    pairs, items = [], []
    for agent in (1, 2, 3):
        for target in (1, 2, 3):
            allowed = (rng.random(NUM_CLASSES) < 0.5) & (
                SELF_CLASS_MASK if agent == target else PAIR_CLASS_MASK
            )
            allowed[0] = True
            probs = rng.random((T, NUM_CLASSES)).astype(np.float32) ** 3
            events = probs_to_events(probs, allowed, cfg, "L", to_original=to_original)
            starts = [e[0] for e in events]
            assert starts == sorted(starts)
            assert all(e0[1] <= e1[0] for e0, e1 in itertools.pairwise(events))  # no overlap within the pair
            assert all(allowed[c] and 0 <= s < e <= n_orig for s, e, c in events)
            items.append((5, agent, target, events))
            labels = np.where(rng.random(n_orig) < 0.3, rng.choice(np.flatnonzero(allowed)), 0)
            pairs.append(PairFrames("L", 5, agent, target, labels, np.zeros(n_orig, np.int64), allowed))
    sub = events_to_submission(items)
    sol = pairs_to_solution(pairs)
    if len(sub) and len(sol):
        s = score(sol, sub)  # raises on any overlap of two actions of one pair
        assert 0.0 <= s <= 1.0
