"""tune/augment.py: each feature-space transform against its definition (mirror: against features computed
from mirrored coordinates; stretch: hand-computed resampling and rate scaling)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from features import motion
from features.pipeline import FeatureSettings
from features.skeleton import CANONICAL
from helpers import mirror_scene
from tune.augment import Augmenter, AugSettings, part_columns
from tune.data import IGNORE

C = len(CANONICAL)
NAMES = FeatureSettings(feature_set="pair_rich").feature_names()


def _scene(T=120, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 3 * np.pi, T)[:, None]
    body = rng.normal(scale=2.0, size=(1, C, 2))
    a = body + np.stack([9 * np.cos(t / 2), 4 * np.sin(t)], -1) + rng.normal(scale=0.05, size=(T, C, 2))
    b = body[:, ::-1] + np.stack([3 * np.sin(t / 3), 7 * np.cos(t / 4)], -1)
    return a, b


def _batch(x: np.ndarray):
    B, W = x.shape[:2]
    y = torch.from_numpy(np.random.default_rng(1).integers(0, 5, size=(B, W)))
    return torch.from_numpy(x.astype(np.float32)), y, torch.ones(B, W, dtype=torch.bool)


def test_mirror_equals_features_of_mirrored_coordinates():
    a, b = _scene()
    f = motion.pair_rich_features(a, b, 30.0)
    g = motion.pair_rich_features(mirror_scene(a), mirror_scene(b), 30.0)
    x, y, mask = _batch(f[None])
    got, y2, m2 = Augmenter(NAMES, AugSettings(flip=1.0))(x, y, mask, np.random.default_rng(0))
    hd = NAMES.index("heading_diff")
    keep = np.abs(np.abs(f[:, hd]) - 180) > 1e-3  # +180 and -180 are the same angle
    np.testing.assert_allclose(got[0].numpy()[keep], g[keep], atol=1e-4)
    assert torch.equal(y2, y) and torch.equal(m2, mask)
    # the chirality-odd columns the names give: lateral coordinates, signed angles, turn rates
    odd = {n for n, s in zip(NAMES, Augmenter(NAMES, AugSettings(flip=1.0)).flip_sign.numpy()) if s < 0}
    assert {"a_nose_y", "tf_tail_tip_y", "rel_vel_y", "heading_diff", "heading_diff_sin"} <= odd
    assert {"a_turn_rate", "t_turn_rate", "t_ear_left_y"} <= odd
    assert not odd & {"heading_diff_cos", "xdist_nose__nose", "a_speed", "a_nose_x", "rel_vel_x"}


def test_mirror_refused_for_motion_set():
    with pytest.raises(ValueError, match="motion"):
        Augmenter(FeatureSettings(feature_set="motion").feature_names(), AugSettings(flip=0.5))


def test_off_is_identity_and_draws_nothing():
    x, y, mask = _batch(np.random.default_rng(2).normal(size=(3, 16, len(NAMES))))
    gen = np.random.default_rng(5)
    out = Augmenter(NAMES, AugSettings())(x, y, mask, gen)
    assert all(o is i for o, i in zip(out, (x, y, mask)))
    assert gen.random() == np.random.default_rng(5).random()


def test_jitter_leaves_flags_and_padding():
    x, y, mask = _batch(np.zeros((64, 32, len(NAMES))))
    mask[:, 20:] = False
    aug = Augmenter(NAMES, AugSettings(jitter=1.0, jitter_std=0.1))
    got, _, _ = aug(x, y, mask, np.random.default_rng(0))
    flags = [i for i, n in enumerate(NAMES) if n.endswith("_missing") or n == "is_self"]
    assert (got[..., flags] == 0).all() and (got[:, 20:] == 0).all()
    cont = np.setdiff1d(np.arange(len(NAMES)), flags)
    assert abs(float(got[:, :20][..., cont].std()) - 0.1) < 0.005  # 64 * 20 * 196 draws


def test_stretch_resamples_and_rescales_rates():
    W = 24
    x = np.zeros((8, W, len(NAMES)), np.float32)
    ax, sp, ac = NAMES.index("a_nose_x"), NAMES.index("a_speed"), NAMES.index("a_accel")
    x[:, :, ax] = np.arange(W)  # a ramp: frame j holds j
    x[:, :, sp], x[:, :, ac] = 2.0, 3.0
    xt, y, mask = _batch(x)
    mask[0, 18:] = False  # window 0: 18 valid frames
    xt[0, 18:] = 0
    aug = Augmenter(NAMES, AugSettings(stretch=1.0, stretch_max=0.5))
    got, y2, m2 = aug(xt, y.clone(), mask.clone(), np.random.default_rng(3))
    for b in range(8):
        s = float(got[b, 1, ax])  # the ramp read at position 1 * s: the window's playback rate
        assert 1 / 1.5 - 1e-6 <= s <= 1.5 + 1e-6
        n_valid = 18 if b == 0 else W
        valid = np.arange(W) * s <= n_valid - 1 + 1e-6
        assert (m2[b].numpy() == valid).all()
        np.testing.assert_allclose(got[b, valid, ax], np.arange(W)[valid] * s, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got[b, valid, sp], 2.0 * s, rtol=1e-5)  # speeds follow the playback rate
        np.testing.assert_allclose(got[b, valid, ac], 3.0 * s * s, rtol=1e-5)  # accelerations its square
        near = np.where(np.arange(W) * s - np.floor(np.arange(W) * s) < 0.5, np.floor(np.arange(W) * s),
                        np.floor(np.arange(W) * s) + 1).astype(int)
        np.testing.assert_array_equal(y2[b, valid], y[b, near[valid]])
        assert (y2[b, ~valid] == IGNORE).all() and (got[b, ~valid] == 0).all()


def test_part_dropout_zeroes_one_part_and_sets_its_missing_flags():
    x, y, mask = _batch(np.full((16, 8, len(NAMES)), 0.5))
    got, _, _ = Augmenter(NAMES, AugSettings(part_dropout=1.0))(x, y, mask, np.random.default_rng(0))
    seen = set()
    for b in range(16):
        hit = [p for p in CANONICAL if (got[b, :, part_columns(NAMES, p)] != 0.5).all()]
        assert len(hit) == 1
        cols = part_columns(NAMES, hit[0])
        miss = np.array([n.endswith("_missing") for n in NAMES])
        assert (got[b][:, cols & miss] == 1).all() and (got[b][:, cols & ~miss] == 0).all()
        assert (got[b][:, ~cols] == 0.5).all()
        seen.add(hit[0])
    assert len(seen) > 3
    assert part_columns(NAMES, "tail_base").sum() > 0
    assert not part_columns(["a_tail_tip_x"], "tail_base").any()
