"""Canonical skeleton: aliases, derived points, per-frame fallbacks, gap filling and was-missing flags."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from features.io import packaged_metadata
from features.skeleton import (
    CANONICAL,
    INDEX,
    KNOWN_BODYPARTS,
    SOURCES,
    fill_gaps,
    map_to_canonical,
    to_canonical,
)

NAN = np.nan


def _xy(parts: dict[str, list], T=None) -> tuple[np.ndarray, list[str]]:
    """{part: [(x, y) per frame]} for one mouse -> ([T, 1, K, 2], names)."""
    names = list(parts)
    arr = np.array([parts[n] for n in names], dtype=np.float32)  # [K, T, 2]
    return arr.transpose(1, 0, 2)[:, None], names


def test_every_real_lab_maps_to_all_canonical_points():
    meta = pd.read_csv(packaged_metadata("train"))
    seen = set()
    for bp in meta.body_parts_tracked.unique():
        parts = json.loads(bp)
        seen |= set(parts)
        xy = np.ones((3, 1, len(parts), 2), dtype=np.float32)
        canon, missing = to_canonical(xy, parts)
        assert not np.isnan(canon).any()
        # the core points have a direct source in every lab
        for p in ("nose", "ear_left", "ear_right", "neck", "body_center", "tail_base"):
            assert not missing[:, 0, INDEX[p]].any(), (parts, p)
    assert seen == KNOWN_BODYPARTS and len(seen) == 29
    used = {n for srcs in SOURCES.values() for s in srcs for n in s}
    assert used <= KNOWN_BODYPARTS


def test_aliases_and_derived_points():
    # GroovyShrew-like: head instead of nose, no neck / body_center / hips
    xy, names = _xy({"head": [(10, 0)], "ear_left": [(8, 2)], "ear_right": [(8, -2)], "tail_base": [(0, 0)]})
    c = map_to_canonical(xy, names)[0, 0]
    np.testing.assert_allclose(c[INDEX["nose"]], (10, 0))  # head -> nose
    np.testing.assert_allclose(c[INDEX["neck"]], (8, 0))  # mean of the ears
    np.testing.assert_allclose(c[INDEX["body_center"]], (16 / 3, 0))  # mean of ears and tail_base
    assert np.isnan(c[INDEX["hip_left"]]).all() and np.isnan(c[INDEX["tail_tip"]]).all()
    # lateral_* -> hip_*, body_center from the laterals when body_center is absent; headpiece ignored
    xy, names = _xy(
        {"lateral_left": [(4, 2)], "lateral_right": [(4, -2)], "headpiece_topfrontleft": [(99, 99)]}
    )
    c = map_to_canonical(xy, names)[0, 0]
    np.testing.assert_allclose(c[INDEX["hip_left"]], (4, 2))
    np.testing.assert_allclose(c[INDEX["body_center"]], (4, 0))
    assert np.isnan(c[INDEX["nose"]]).all()


def test_per_frame_fallback_to_next_source():
    # neck observed in frame 0 only; in frame 1 it falls back to the mean of the ears
    xy, names = _xy(
        {"neck": [(5, 5), (NAN, NAN)], "ear_left": [(0, 2), (2, 2)], "ear_right": [(0, -2), (2, -4)]}
    )
    c = map_to_canonical(xy, names)
    np.testing.assert_allclose(c[:, 0, INDEX["neck"]], [(5, 5), (2, -1)])


def test_fill_gaps_short_interpolated_long_held_edges():
    s = np.array([NAN, 0, NAN, NAN, 3, NAN, NAN, NAN, NAN, 8, NAN], dtype=np.float32)[:, None]
    got = fill_gaps(s, max_gap=2)[:, 0]
    # leading -> first value 0; gap of 2 -> 1, 2; gap of 4 > 2 -> hold 3; trailing -> last value 8
    np.testing.assert_allclose(got, [0, 0, 1, 2, 3, 3, 3, 3, 3, 8, 8])
    got = fill_gaps(s, max_gap=4)[:, 0]
    np.testing.assert_allclose(got, [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 8])
    assert np.isnan(fill_gaps(np.full((4, 1), NAN), 3)).all()  # never observed stays NaN
    assert np.isnan(s[0, 0])  # input not modified


def test_to_canonical_flags_and_anchors():
    T = 6
    nose = [(10 + t, 0) if t not in (2, 3) else (NAN, NAN) for t in range(T)]
    xy, names = _xy(
        {
            "nose": nose,
            "ear_left": [(8, 2)] * T,
            "ear_right": [(8, -2)] * T,
            "tail_base": [(0, 0)] * T,
            "body_center": [(5, 0)] * T,
        }
    )
    before = xy.copy()
    canon, missing = to_canonical(xy, names, max_gap=2)
    np.testing.assert_array_equal(xy, before)
    assert canon.shape == (T, 1, len(CANONICAL), 2) and missing.shape == (T, 1, len(CANONICAL))
    assert not np.isnan(canon).any()
    np.testing.assert_allclose(canon[:, 0, INDEX["nose"], 0], [10, 11, 12, 13, 14, 15])  # interpolated
    np.testing.assert_array_equal(missing[:, 0, INDEX["nose"]], [0, 0, 1, 1, 0, 0])
    # hips never observed -> placed on body_center, flagged everywhere; tail_tip -> tail_base
    np.testing.assert_allclose(canon[:, 0, INDEX["hip_left"]], np.tile([5, 0], (T, 1)))
    np.testing.assert_allclose(canon[:, 0, INDEX["tail_tip"]], np.tile([0, 0], (T, 1)))
    assert missing[:, 0, INDEX["hip_left"]].all() and missing[:, 0, INDEX["tail_tip"]].all()
    assert not missing[:, 0, INDEX["neck"]].any()  # derived from the ears in every frame


def test_mouse_with_nothing_stays_nan():
    xy = np.full((4, 2, 2, 2), NAN, dtype=np.float32)
    xy[:, 0] = 1.0
    canon, missing = to_canonical(xy, ["nose", "tail_base"])
    assert not np.isnan(canon[:, 0]).any() and np.isnan(canon[:, 1]).all() and missing[:, 1].all()
