"""Threshold tuning: hand-computed thresholds, the vectorised sweep against brute force, and never-worse."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ensemble.postprocess import PostprocessConfig
from ensemble.thresholds import (
    OOFItem,
    TuneGrid,
    _counts,
    crossfit,
    _prepare,
    _score,
    _sweep_scores,
    evaluate,
    tune,
)
from features.errors import MabeDataError
from features.labels import CLASS_OF, NUM_CLASSES

SNIFF, ATTACK, CHASE = CLASS_OF["sniff"], CLASS_OF["attack"], CLASS_OF["chase"]
SMALL = TuneGrid(windows=(1, 3), min_durations=(1, 3), gap_fills=(0, 2))


def mask(*classes):
    m = np.zeros(NUM_CLASSES, dtype=bool)
    m[[0, *classes]] = True
    return m


def test_low_probabilities_get_a_low_threshold():
    # sniff frames have p = 0.3, others 0.1: at the default 0.5 nothing is predicted (score 0); the first
    # grid threshold above 0.1 (0.125) predicts exactly the sniff frames (score 1).
    labels = np.array([0, 0, SNIFF, SNIFF, SNIFF, 0, 0, 0])
    probs = np.zeros((8, NUM_CLASSES), dtype=np.float32)
    probs[:, SNIFF] = np.where(labels == SNIFF, 0.3, 0.1)
    items = [OOFItem("L", 1, 1, 2, probs, labels, mask(SNIFF))]
    result = tune(items, grid=SMALL)
    assert result.steps["defaults"] == 0.0
    assert result.steps["thresholds"] == 1.0
    assert result.config.thresholds["L"]["sniff"] == 0.125
    assert result.config.action_thresholds["sniff"] == 0.125  # fallback = median over labs
    assert result.steps["verified"] == evaluate(items, result.config) == 1.0
    assert list(result.steps) == ["defaults", "thresholds", "smoothing", "min_duration", "verified"]


def test_unlabelled_action_is_switched_off():
    # attack is allowed but never labelled: any attack prediction adds an F = 0 term, so the best thresholds
    # are those above every attack probability (0.8); among equal scores the lowest grid value wins: 0.825
    labels = np.array([SNIFF] * 4 + [0] * 4)
    probs = np.zeros((8, NUM_CLASSES), dtype=np.float32)
    probs[:4, SNIFF] = 0.9
    probs[4:, ATTACK] = np.array([0.2, 0.4, 0.6, 0.8], dtype=np.float32)
    items = [OOFItem("L", 1, 1, 2, probs, labels, mask(SNIFF, ATTACK))]
    assert evaluate(items, PostprocessConfig()) == 0.5  # sniff 1, attack 0
    result = tune(items, grid=SMALL)
    assert result.config.thresholds["L"]["attack"] == 0.825
    assert result.steps["verified"] == 1.0


def random_items(seed: int, n_videos: int = 4, T: int = 120):
    rng = np.random.default_rng(seed)
    items = []
    for v in range(n_videos):
        lab = ["A", "B"][v % 2]
        for agent, target in ((1, 2), (2, 1)):
            allowed = mask(*[c for c in (SNIFF, ATTACK, CHASE) if rng.random() < 0.8])
            labels = np.repeat(rng.choice([0, SNIFF, ATTACK, CHASE], T // 6), 6)
            probs = rng.random((T, NUM_CLASSES)).astype(np.float32) * 0.6
            probs[np.arange(T), labels] += rng.random(T).astype(np.float32) * 0.4
            items.append(OOFItem(lab, v, agent, target, probs, labels, allowed))
    return items


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_sweep_matches_brute_force(seed):
    """The one-pass histogram sweep gives, for every candidate threshold, the exact lab score."""
    items = random_items(seed)
    grid = np.round(np.arange(0.1, 0.95, 0.1), 4)
    labs = _prepare(items, 1, PostprocessConfig())
    for lab in labs:
        for k in range(lab.classes.size):
            cand, scores = _sweep_scores(lab, k, grid, 1.0)
            saved = lab.thr[k]
            for t, s in zip(cand, scores):
                lab.set_threshold(k, t)  # updates the cached decisions incrementally
                assert math.isclose(s, _score([lab], 1.0), rel_tol=0, abs_tol=1e-12)
                fresh = _prepare(items, 1, PostprocessConfig())[[x.lab for x in labs].index(lab.lab)]
                fresh.thr[:] = lab.thr
                np.testing.assert_array_equal(fresh.decide(), lab.pred)
                np.testing.assert_array_equal(_counts(lab.labels, lab.pred), lab.counts)
            lab.set_threshold(k, saved)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), default=st.sampled_from([0.2, 0.5, 0.8]))
def test_tuning_never_returns_a_worse_config(seed, default):
    items = random_items(seed)
    start = PostprocessConfig(default_threshold=default, smooth_window=3)
    result = tune(items, start=start, grid=SMALL)
    s = result.steps
    assert s["defaults"] == evaluate(items, start)
    assert s["defaults"] <= s["thresholds"] <= s["smoothing"] <= s["min_duration"]
    assert s["verified"] == evaluate(items, result.config) == s["min_duration"]
    assert s["verified"] >= s["defaults"]


def test_already_optimal_start_is_kept():
    # one-hot probabilities: the defaults already score 1.0; tuning must not make it worse
    rng = np.random.default_rng(3)
    labels = np.repeat(rng.choice([0, SNIFF, ATTACK], 20), 5)
    probs = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    items = [OOFItem("L", 1, 1, 2, probs, labels, mask(SNIFF, ATTACK))]
    result = tune(items, grid=SMALL)
    assert result.steps["defaults"] == result.steps["verified"] == 1.0


def test_oof_item_validates():
    with pytest.raises(MabeDataError, match="probs must be"):
        OOFItem("L", 1, 1, 2, np.zeros((3, 5)), np.zeros(3, int), mask())
    with pytest.raises(MabeDataError, match="NaN"):
        OOFItem("L", 1, 1, 2, np.full((3, NUM_CLASSES), np.nan), np.zeros(3, int), mask())


# ------------------------------------------------------------------------------------------------ cross-fit
ONLY_THR = TuneGrid(windows=(1,), min_durations=(1,), gap_fills=(0,))  # thresholds only: hand-computable


def sniff_video(video: int, p_sniff: float, p_bg: float, lab: str = "L"):
    """4 sniff frames with p = p_sniff, then 4 background frames with p(sniff) = p_bg."""
    labels = np.array([SNIFF] * 4 + [0] * 4)
    probs = np.zeros((8, NUM_CLASSES), dtype=np.float32)
    probs[:, SNIFF] = np.where(labels == SNIFF, p_sniff, p_bg)
    return OOFItem(lab, video, 1, 2, probs, labels, mask(SNIFF))


def test_crossfit_hand_computed():
    """Video 1 (sniff 0.3, background 0.1) alone is best at threshold 0.125; video 2 (0.7 / 0.5) at 0.525.
    In-sample, one threshold for both: t in (0.1, 0.3] gives TP 8, FP 4 (video 2's background), FN 0:
    F1 = 16 / 20 = 0.8; t in (0.5, 0.7] gives TP 4, FN 4: 8 / 12. So 0.125 and 0.8.
    Cross-fitted: video 1 decided at 0.525 (tuned on video 2): TP 0, FN 4; video 2 at 0.125 (tuned on
    video 1): TP 4, FP 4. Pooled over the lab: TP 4, FP 4, FN 4 -> F1 = 8 / 16 = 0.5 (not the mean of the
    per-video scores, 0 and 2/3)."""
    items = [sniff_video(1, 0.3, 0.1), sniff_video(2, 0.7, 0.5)]
    full = tune(items, grid=ONLY_THR)
    assert full.config.thresholds["L"]["sniff"] == 0.125
    assert full.steps["verified"] == pytest.approx(0.8)
    cf = crossfit(items, {1: 0, 2: 1}, grid=ONLY_THR)
    assert cf.configs[0].thresholds["L"]["sniff"] == 0.525  # group 0 (video 1) tuned on video 2
    assert cf.configs[1].thresholds["L"]["sniff"] == 0.125
    assert cf.score == pytest.approx(0.5)
    # without tuning, every group keeps the start: the cross-fitted score is the untuned one
    assert crossfit(items, {1: 0, 2: 1}, tune_post=False).score == evaluate(items, PostprocessConfig())
    with pytest.raises(ValueError, match="without a group"):
        crossfit(items, {1: 0})


def test_threshold_scopes_hand_computed():
    """Lab A: video 1 (sniff 0.3, background 0.1); lab B: video 2 (0.7 / 0.5). Scope "lab": A at 0.125 and B
    at 0.525 are both perfect: score (1 + 1) / 2 = 1. Scope "action": one threshold for both labs, tuned with
    the labs pooled: 0.125 (pooled F1 0.8, see above) -> A 1, B TP 4 FP 4 = 2/3: (1 + 2/3) / 2 = 5/6, written
    as the per-action threshold. Scope "none": 0.5 -> A nothing (0), B TP 4 FP 4 (2/3): 1/3."""
    items = [sniff_video(1, 0.3, 0.1, lab="A"), sniff_video(2, 0.7, 0.5, lab="B")]
    lab = tune(items, grid=ONLY_THR, scope="lab")
    assert lab.config.thresholds == {"A": {"sniff": 0.125}, "B": {"sniff": 0.525}}
    assert lab.steps["verified"] == pytest.approx(1.0)
    action = tune(items, grid=ONLY_THR, scope="action")
    assert action.config.thresholds == {} and action.config.action_thresholds == {"sniff": 0.125}
    assert action.steps["verified"] == pytest.approx(5 / 6)
    assert evaluate(items, action.config) == pytest.approx(5 / 6)
    none = tune(items, grid=ONLY_THR, scope="none")
    assert none.config == PostprocessConfig() and none.steps["defaults"] == pytest.approx(1 / 3)
    # cross-fitted, each lab is decided by the other lab's tuning: lab A at 0.525 (0), lab B at 0.125 (2/3)
    for scope in ("lab", "action"):
        assert crossfit(items, {1: 0, 2: 1}, grid=ONLY_THR, scope=scope).score == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="scope"):
        tune(items, scope="video")


@pytest.mark.parametrize("seed", [0, 1])
def test_argmax_scope_is_the_trainers_argmax_score(seed):
    """Scope "argmax" deploys the rule val/score_argmax and ensemble.build's untuned OOF score report: the
    same score, through the post-processing path predict uses."""
    from ensemble.build import argmax_score

    rng = np.random.default_rng(seed)
    items = []
    for v in range(4):
        labels = rng.choice([0, SNIFF, CLASS_OF["attack"]], size=60, p=[0.6, 0.25, 0.15])
        probs = np.zeros((60, NUM_CLASSES))
        probs[:, [0, SNIFF, CLASS_OF["attack"]]] = rng.dirichlet([1, 1, 1], size=60)
        items.append(OOFItem(f"L{v % 2}", v, 1, 2, probs, labels, mask(SNIFF, CLASS_OF["attack"])))
    res = tune(items, scope="argmax")
    assert res.config.argmax and res.steps["defaults"] == pytest.approx(argmax_score(items))
    assert crossfit(items, {v: v % 2 for v in range(4)}, scope="argmax").score == pytest.approx(
        argmax_score(items))


def test_crossfit_equals_in_sample_when_one_threshold_fits_all_groups():
    items = [sniff_video(v, 0.3, 0.1) for v in (1, 2, 3)]
    assert crossfit(items, {1: 0, 2: 1, 3: 1}, grid=ONLY_THR).score == tune(items, grid=ONLY_THR).steps[
        "verified"] == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crossfit_below_in_sample_when_tuning_fits_noise(seed):
    """Probabilities unrelated to the labels: in-sample tuning fits the noise, the cross-fitted score does
    not get it."""
    rng = np.random.default_rng(seed)
    items = []
    for v in range(6):
        labels = np.repeat(rng.choice([0, SNIFF, ATTACK], 10), 8)
        probs = (rng.random((80, NUM_CLASSES)) * 0.9).astype(np.float32)
        items.append(OOFItem("AB"[v % 2], v, 1, 2, probs, labels, mask(SNIFF, ATTACK)))
    groups = {v: v % 3 for v in range(6)}
    assert crossfit(items, groups, grid=SMALL).score < tune(items, grid=SMALL).steps["verified"]
