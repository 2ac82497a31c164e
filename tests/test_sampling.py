"""Lab-balanced window sampling (data.lab_alpha): the empirical lab shares of many windows against the formula
p(lab) = frames(lab) ** alpha / sum, computed by hand on a tiny table; per-lab class weights
(optim.per_lab_class_weights) by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from features.labels import NUM_CLASSES
from tune.data import TAIL, PairTable, epoch_batches, lab_class_weights, lab_shares, sample_windows
from tune.losses import hard_targets

# lab A: one pair of 100 frames; lab B: pairs of 150 and 250 (400); lab C: one pair of 1600 frames
LENGTHS = [100, 150, 250, 1600]
LABS = ["A", "B", "B", "C"]


def _table() -> PairTable:
    length = np.array(LENGTHS, np.int64)
    start = np.concatenate([[0], np.cumsum(length)[:-1]])
    n = int(length.sum())
    y = np.zeros(n + TAIL, np.int64)
    y[n:] = -100
    y[100 + 150 + 10:100 + 150 + 20] = 3  # lab B, its second pair: 10 behaviour frames
    y[500 + 5] = 2  # lab C: one behaviour frame
    allowed = np.ones((4, NUM_CLASSES), bool)
    return PairTable(x=np.zeros((n + TAIL, 2), np.float32), y=y, start=start, length=length, allowed=allowed,
                     allowed_raw=allowed, video_id=np.arange(4), lab_id=np.array(LABS, dtype=object),
                     agent=np.ones(4, np.int64), target=np.ones(4, np.int64))


@pytest.mark.parametrize("alpha, expect", [
    (1.0, {"A": 100 / 2100, "B": 400 / 2100, "C": 1600 / 2100}),  # frame-proportional (today)
    (0.5, {"A": 10 / 70, "B": 20 / 70, "C": 40 / 70}),  # sqrt(100, 400, 1600) = 10, 20, 40
    (0.0, {"A": 1 / 3, "B": 1 / 3, "C": 1 / 3}),  # every lab equally often
])
def test_lab_shares_match_the_formula(alpha, expect):
    tab = _table()
    assert lab_shares(tab, alpha) == pytest.approx(expect)
    n = 60_000
    pair, start = sample_windows(tab, n, 32, 0.0, np.random.default_rng(0), lab_alpha=alpha)
    labs = np.array(LABS)[pair]
    for lab, p in expect.items():  # binomial std <= 0.002 at n = 60k: 0.01 is 5 sigma
        assert abs((labs == lab).mean() - p) < 0.01, (lab, (labs == lab).mean(), p)
    # within lab B, pairs are drawn by their frames as before: 150 / 400 and 250 / 400
    b = pair[labs == "B"]
    assert abs((b == 1).mean() - 150 / 400) < 0.02
    assert ((start >= 0) & (start <= np.maximum(tab.length[pair] - 32, 0))).all()


def test_alpha_one_is_todays_draw_exactly():
    tab = _table()
    a = sample_windows(tab, 500, 32, 0.5, np.random.default_rng(4))
    b = sample_windows(tab, 500, 32, 0.5, np.random.default_rng(4), lab_alpha=1.0)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    for (p1, s1), (p2, s2) in zip(epoch_batches(tab, 64, 32, 16, 0.5, seed=1, epoch=2),
                                  epoch_batches(tab, 64, 32, 16, 0.5, seed=1, epoch=2, lab_alpha=1.0)):
        np.testing.assert_array_equal(p1, p2)
        np.testing.assert_array_equal(s1, s2)


def test_behaviour_bias_stays_within_the_drawn_lab():
    tab = _table()
    pair, start = sample_windows(tab, 30_000, 8, 1.0, np.random.default_rng(1), lab_alpha=0.0)
    labs = np.array(LABS)[pair]
    assert abs((labs == "A").mean() - 1 / 3) < 0.01  # lab A has no behaviour frame: uniform within A
    # lab B: behaviour rows 260..269 (local 10..19 of pair 2); an 8-frame window holding one: starts 253..269
    first_b = start[labs == "B"] + tab.start[pair[labs == "B"]]
    assert (pair[labs == "B"] == 2).all() and first_b.min() == 253 and first_b.max() == 269
    # lab C: its one behaviour row 505 (local 5) -> starts 0..5 (clipped at the pair's start)
    assert set(start[labs == "C"].tolist()) == {0, 1, 2, 3, 4, 5}


def test_per_lab_class_weights_by_hand():
    tab = _table()
    w = lab_class_weights(tab, bg_weight=1.0, power=0.5, cap=8.0)
    assert w.shape == (4, NUM_CLASSES) and (w[:, 0] == 1).all()
    # lab B: 400 frames, class 3 on 10 -> f_bg / f_3 = 390 / 10 -> sqrt(39) = 6.245; class 2 unseen -> cap 8
    assert w[1, 3] == w[2, 3] == pytest.approx(39 ** 0.5) and w[1, 2] == 8.0
    # lab C: 1600 frames, class 2 on 1 -> sqrt(1599) = 40 -> cap 8; lab A: no action at all -> cap everywhere
    assert w[3, 2] == 8.0 and (w[0, 1:] == 8.0).all()
    wc = lab_class_weights(tab, bg_weight=1.0, power=0.25, cap=100.0)
    assert wc[3, 2] == pytest.approx(1599 ** 0.25) and wc[1, 3] == pytest.approx(39 ** 0.25)
    # the loss reads per-window weights: window b's frame of class c weighs w[b, c]
    y = torch.tensor([[3, 0, -100], [2, 3, 0]])
    allowed = torch.ones(2, NUM_CLASSES, dtype=torch.bool)
    _, fw = hard_targets(y, allowed, torch.from_numpy(wc[[1, 3]]), 0.0)
    # (lab C's unseen class 3 counts as one frame: 1599 ** 0.25 too)
    expect = [[39 ** 0.25, 1.0, 0.0], [1599 ** 0.25, 1599 ** 0.25, 1.0]]
    np.testing.assert_allclose(fw.numpy(), expect, rtol=1e-6)
