"""One canonical skeleton for the 29 body-part names used by the 21 labs.

Every lab tracks a different set of points (docs/mabe.md, Data quirks); models need one fixed layout. The
table `SOURCES` below is the whole mapping: for each canonical point, candidate sources in priority order,
each a tuple of lab body-part names whose mean gives the point. Per frame, the first candidate whose parts are
all present wins, so a point missing in one frame falls back to the next candidate in that frame (e.g. a
missing `neck` becomes the mean of the ears). Names not in the table (headpiece_*, paws, spine_*, ...) are
ignored.

Canonical points (C = 9), in this order:

    nose, ear_left, ear_right, neck, body_center, hip_left, hip_right, tail_base, tail_tip

Aliases: head -> nose (GroovyShrew); lateral_left/right -> hip_left/right (ReflectiveManatee,
SparklingTapir, AdaptableSnail, UppityFerret when hips are missing); tail_middle_2 / tail_midpoint stand in
for tail_tip when no tip is tracked. Derived: neck = mean of the ears, body_center = mean of the hips (or
laterals, spine_1/2, neck + tail_base, ears + tail_base).

    python -c "from features.skeleton import SOURCES; [print(k, v) for k, v in SOURCES.items()]"

Gaps (`fill_gaps`): a run of <= max_gap missing frames between two observed frames is filled by linear
interpolation; longer runs hold the last observed position (forward fill), leading runs take the first
observed position (backward fill). A point never observed for a mouse takes its `ANCHOR` point (e.g. hips
-> body_center, tail_tip -> tail_base), or, failing that, the mean of the mouse's observed canonical points.
Every filled value is flagged in `was_missing`, so the model can tell measurements from guesses.
"""

from __future__ import annotations

import numpy as np

CANONICAL: tuple[str, ...] = (
    "nose",
    "ear_left",
    "ear_right",
    "neck",
    "body_center",
    "hip_left",
    "hip_right",
    "tail_base",
    "tail_tip",
)
C = len(CANONICAL)
INDEX: dict[str, int] = {name: i for i, name in enumerate(CANONICAL)}

# canonical point -> candidate sources in priority order; a source = lab names averaged together.
SOURCES: dict[str, tuple[tuple[str, ...], ...]] = {
    "nose": (("nose",), ("head",)),
    "ear_left": (("ear_left",),),
    "ear_right": (("ear_right",),),
    "neck": (("neck",), ("ear_left", "ear_right")),
    "body_center": (
        ("body_center",),
        ("hip_left", "hip_right"),
        ("lateral_left", "lateral_right"),
        ("spine_1", "spine_2"),
        ("neck", "tail_base"),
        ("ear_left", "ear_right", "tail_base"),
    ),
    "hip_left": (("hip_left",), ("lateral_left",)),
    "hip_right": (("hip_right",), ("lateral_right",)),
    "tail_base": (("tail_base",),),
    "tail_tip": (("tail_tip",), ("tail_middle_2",), ("tail_midpoint",)),
}
# Where a canonical point is never observed for a mouse, it is placed on this (already filled) point.
ANCHOR: dict[str, str] = {
    "nose": "neck",
    "ear_left": "neck",
    "ear_right": "neck",
    "neck": "body_center",
    "body_center": "tail_base",
    "hip_left": "body_center",
    "hip_right": "body_center",
    "tail_base": "body_center",
    "tail_tip": "tail_base",
}
# Fill order for anchors: a point's anchor is filled before the point itself where possible.
_ANCHOR_ORDER = (
    "body_center",
    "tail_base",
    "neck",
    "nose",
    "ear_left",
    "ear_right",
    "hip_left",
    "hip_right",
    "tail_tip",
)
# All 29 names seen in the real train.csv; those not used by SOURCES are deliberately ignored.
KNOWN_BODYPARTS: frozenset[str] = frozenset(
    {
        "body_center",
        "ear_left",
        "ear_right",
        "forepaw_left",
        "forepaw_right",
        "head",
        "headpiece_bottombackleft",
        "headpiece_bottombackright",
        "headpiece_bottomfrontleft",
        "headpiece_bottomfrontright",
        "headpiece_topbackleft",
        "headpiece_topbackright",
        "headpiece_topfrontleft",
        "headpiece_topfrontright",
        "hindpaw_left",
        "hindpaw_right",
        "hip_left",
        "hip_right",
        "lateral_left",
        "lateral_right",
        "neck",
        "nose",
        "spine_1",
        "spine_2",
        "tail_base",
        "tail_middle_1",
        "tail_middle_2",
        "tail_midpoint",
        "tail_tip",
    }
)


def map_to_canonical(xy: np.ndarray, bodyparts: list[str]) -> np.ndarray:
    """[T, M, K, 2] in the lab's body-part order -> [T, M, C, 2] canonical, NaN where no source is observed.

    Per frame the first candidate source with all parts observed is used (see module docstring).
    """
    xy = np.asarray(xy, dtype=np.float32)
    if xy.ndim != 4 or xy.shape[-1] != 2 or xy.shape[2] != len(bodyparts):
        raise ValueError(f"xy must be [T, M, K={len(bodyparts)}, 2], got {xy.shape}")
    pos = {name: k for k, name in enumerate(bodyparts)}
    T, M = xy.shape[:2]
    out = np.full((T, M, C, 2), np.nan, dtype=np.float32)
    for c, name in enumerate(CANONICAL):
        for source in SOURCES[name]:
            if not all(p in pos for p in source):
                continue
            cand = xy[:, :, [pos[p] for p in source], :].mean(axis=2)  # NaN if any part missing
            hole = np.isnan(out[:, :, c, 0])
            if not hole.any():
                break
            out[:, :, c, :] = np.where(hole[..., None], cand, out[:, :, c, :])
    return out


def fill_gaps(series: np.ndarray, max_gap: int) -> np.ndarray:
    """Fill NaN runs along axis 0 of [T, ...] (all trailing dims filled independently, NaN in x <=> NaN in y).

    Interior runs of <= max_gap frames: linear interpolation between the neighbours; longer interior runs:
    the last observed value; leading runs: the first observed value; trailing runs: the last one. Columns
    with no observation at all stay NaN. Returns a new array.
    """
    a = np.array(series, dtype=np.float32, copy=True, order="C")  # C order: `flat` below must be a view
    T = a.shape[0]
    flat = a.reshape(T, -1)
    idx = np.arange(T)
    for j in range(flat.shape[1]):
        col = flat[:, j]
        miss = np.isnan(col)
        if not miss.any() or miss.all():
            continue
        # index of the previous / next observed frame for every frame (-1 / T when none)
        prev = np.where(~miss, idx, -1)
        np.maximum.accumulate(prev, out=prev)
        nxt = np.where(~miss, idx, T)
        nxt = np.minimum.accumulate(nxt[::-1])[::-1]
        first, last = nxt[0], prev[-1]
        filled = col.copy()
        gap = nxt - prev - 1
        interior = miss & (prev >= 0) & (nxt < T)
        short = interior & (gap <= max_gap)
        if short.any():
            p, n = prev[short], nxt[short]
            w = ((idx[short] - p) / (n - p)).astype(np.float32)
            filled[short] = col[p] * (1 - w) + col[n] * w
        hold = interior & ~short
        filled[hold] = col[prev[hold]]
        filled[miss & (prev < 0)] = col[first]
        filled[miss & (nxt >= T)] = col[last]
        flat[:, j] = filled
    return a


def to_canonical(xy: np.ndarray, bodyparts: list[str], max_gap: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Lab skeleton [T, M, K, 2] -> (canonical [T, M, C, 2], no NaN for observed mice; was_missing [T, M, C]).

    was_missing is True wherever the value is not a direct observation of a candidate source (interpolated,
    held, or placed on its anchor). A mouse with no observed canonical point at all stays NaN: callers must
    reject such input (features.pipeline raises MabeDataError naming the video).
    """
    mapped = map_to_canonical(xy, bodyparts)
    was_missing = np.isnan(mapped[..., 0])
    out = fill_gaps(mapped, max_gap)
    T, M = out.shape[:2]
    for name in _ANCHOR_ORDER:
        c = INDEX[name]
        never = np.isnan(out[:, :, c, 0]).all(axis=0)  # [M]
        for m in np.flatnonzero(never):
            anchor = out[:, m, INDEX[ANCHOR[name]], :]
            if np.isnan(anchor).all():
                anchor = np.nanmean(out[:, m, :, :], axis=1) if not np.isnan(out[:, m]).all() else anchor
            out[:, m, c, :] = anchor
    return out, was_missing
