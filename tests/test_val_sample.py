"""Validation on a fixed sample of segments (data.val_sample) with the full pass every K epochs
(data.val_full_every), and the K-fold runs' shared load (tune.data.subset_pairs)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ensemble.infer import InferSettings
from tune.data import (SegmentTable, feature_stats, gather, load_pairs, open_cache, sample_segments,
                       sample_windows, segment_bounds, select_rows, subset_pairs)
from tune.trainer import evaluate, train

from helpers import small_cfg, write_cache


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return write_cache(tmp_path_factory.mktemp("vs") / "c", n_videos=6, T=300)


def test_segments_are_fixed_and_cover_the_fraction(cache_dir):
    draw = [segment_bounds(1000, 100, 0.3, np.random.default_rng(5)) for _ in range(2)]
    assert draw[0] == draw[1] and len(draw[0]) == 3  # 3 segments of 100 frames, no overlap
    assert all(b - a == 100 and 0 <= a and b <= 1000 for a, b in draw[0])
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(draw[0], draw[0][1:]))
    assert segment_bounds(80, 100, 0.3, np.random.default_rng(0)) == [(0, 80)]  # shorter than L: whole
    assert segment_bounds(1000, 100, 0.01, np.random.default_rng(0))[0][1] > 0  # at least one segment

    cache = open_cache(cache_dir)
    va = load_pairs(cache, select_rows(cache, 0)[1])
    a, b = sample_segments(va, 0.4, 64, seed=3), sample_segments(va, 0.4, 64, seed=3)
    assert isinstance(a, SegmentTable) and np.array_equal(a.lo, b.lo) and np.array_equal(a.pair, b.pair)
    assert a.n_frames == pytest.approx(0.4 * va.n_frames, rel=0.15)
    for v in np.unique(va.video_id):  # a video's (equally long) pairs share their segments
        rows = [a.lo[a.pair == i].tolist() for i in np.flatnonzero(va.video_id == v)]
        assert all(r == rows[0] for r in rows)
    i = 1
    np.testing.assert_array_equal(a.pair_x(i), va.pair_x(int(a.pair[i]))[a.lo[i]:a.hi[i]])
    np.testing.assert_array_equal(a.pair_y(i), va.pair_y(int(a.pair[i]))[a.lo[i]:a.hi[i]])
    assert sample_segments(va, 1.0, 64, seed=3) is va


def test_whole_pair_segments_score_as_the_full_pass(cache_dir):
    cache = open_cache(cache_dir)
    va = load_pairs(cache, select_rows(cache, 0)[1])
    torch.manual_seed(0)
    from models import build_model
    from tune.config import TrainConfig

    model = build_model(TrainConfig().replace(**{"model.hidden": 8}).model, 8, 38)
    settings, w = InferSettings(window=64, stride=32, trim=8), torch.ones(38)
    whole = SegmentTable(va, np.arange(len(va.length)), np.zeros(len(va.length), np.int64), va.length.copy())
    for objective in ("argmax", "tuned"):
        full = evaluate(model, va, w, "cpu", settings, objective=objective)
        same = evaluate(model, whole, w, "cpu", settings, objective=objective)
        full.pop("time/objective_s", None), same.pop("time/objective_s", None)
        assert same == full
    # two segments of one pair are scored as one pair (frames concatenated), not refused as a duplicate
    half = va.length // 2
    two = SegmentTable(va, np.repeat(np.arange(len(va.length)), 2),
                       np.stack([np.zeros_like(half), half], 1).ravel(),
                       np.stack([half, va.length], 1).ravel())
    assert np.isfinite(evaluate(model, two, w, "cpu", settings, objective="tuned")["val/score"])


def test_sampled_epochs_never_make_the_best(cache_dir, tmp_path, capsys):
    cfg = small_cfg(cache_dir, tmp_path / "run", **{"optim.epochs": 3, "data.val_sample": 0.3,
                                                    "data.val_full_every": 2, "optim.lr": 3e-2,
                                                    "run.checkpoint_every": 1})
    reports, written = [], []
    out = train(cfg, report=lambda m, d: (reports.append(dict(m)), written.append(d is not None)))
    assert [m["val/sampled"] for m in reports] == [0.0, 1.0, 0.0]
    assert written == [True, False, True]  # checkpoints (ranked by val/score) only on full passes
    assert out["best_epoch"] in (1, 3) and reports[1]["val/best_score"] == reports[0]["val/score"]
    assert reports[1]["val/best_epoch"] == 1
    assert list(pd.read_csv(tmp_path / "run" / "summary.csv")["val/sampled"]) == [0, 1, 0]
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "] epoch " in ln]
    assert ["(sample)" in ln for ln in lines] == [False, True, False]
    # defaults: no val/sampled anywhere
    plain = []
    train(small_cfg(cache_dir, tmp_path / "plain", **{"optim.epochs": 1}),
          report=lambda m, d: plain.append(m))
    assert "val/sampled" not in plain[0]
    assert "val/sampled" not in pd.read_csv(tmp_path / "plain" / "summary.csv")


@pytest.mark.parametrize("in_memory_gb", [8.0, 0.0])
def test_fold_views_equal_their_own_load(cache_dir, in_memory_gb):
    cache = open_cache(cache_dir)
    rows, _ = select_rows(cache, -1)
    union = load_pairs(cache, rows, in_memory_gb)
    pos = {k: i for i, k in enumerate(rows.sort_values(["video_id", "pair"]).index)}
    train_rows = select_rows(cache, 1)[0]
    own = load_pairs(cache, train_rows, in_memory_gb, shuffle_labels=True, seed=4)
    view = subset_pairs(union, sorted(pos[k] for k in train_rows.index), shuffle_labels=True, seed=4)
    assert view.in_memory == own.in_memory and (view.x is union.x or not view.in_memory)
    for name in ("y", "start", "length", "allowed", "allowed_raw", "video_id", "lab_id", "agent", "target"):
        np.testing.assert_array_equal(getattr(view, name), getattr(own, name))
    for i in range(len(own.length)):
        np.testing.assert_array_equal(view.pair_x(i), own.pair_x(i))
    for a, b in zip(feature_stats(view, max_frames=500, seed=1), feature_stats(own, max_frames=500, seed=1)):
        np.testing.assert_array_equal(a, b)
    for alpha in (1.0, 0.0):  # the lab-balanced maps are computed once per table, the draws unchanged
        draws = [sample_windows(t, 50, 64, 0.5, np.random.default_rng(2), alpha) for t in (view, own, own)]
        for d in draws[1:]:
            np.testing.assert_array_equal(d[0], draws[0][0])
            np.testing.assert_array_equal(d[1], draws[0][1])
        for a, b in zip(gather(view, *draws[0], 64), gather(own, *draws[0], 64)):
            np.testing.assert_array_equal(a, b)
