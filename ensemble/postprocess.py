"""Frame probabilities of one (agent, target) pair -> non-overlapping action intervals -> submission rows.

Pipeline per pair (every step a pure numpy function):

    probs float[T, 38] --smooth (centred moving average)--> --whitelist + thresholds--> margin p - thr
    --> one class per frame: argmax of the margin among allowed actions with p >= thr, else background
    --> gap filling (short background gaps inside one action) --> minimum duration
    --> optional map to the video's own frame numbers --> runs [(start, stop, cls)] --> submission rows

Because every frame gets exactly one class, two actions of one pair never overlap: the official metric's
"Multiple predictions for the same frame" error cannot happen (tests/test_postprocess.py hammers this).

Thresholds: per (lab, action), else a per-action fallback, else the global default (`PostprocessConfig`).
The config is plain JSON (`to_dict`/`from_dict`) and goes into thresholds.json of the export bundle.
Imports only numpy and pandas.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from ensemble.submission import to_frame
from features.errors import MabeDataError
from features.labels import (ACTIONS, BACKGROUND, CLASS_OF, NUM_CLASSES, PAIR_CLASS_MASK, SELF_CLASS_MASK,
                             runs)



@dataclass
class PostprocessConfig:
    """Everything needed to turn probabilities into intervals.

    smooth_window: centred moving-average window in frames (1 = no smoothing); at the edges the mean is
        taken over the frames that exist.
    min_duration: runs shorter than this many frames are dropped (1 = keep all).
    gap_fill: background gaps of at most this many frames between two runs of the same action are filled
        (0 = off). Applied before `min_duration`, so fragments can join and survive.
    thresholds: {lab_id: {action: threshold}}; an action is predicted on a frame only if p >= threshold.
    action_thresholds: {action: threshold}, the fallback for (lab, action) pairs not in `thresholds`.
    default_threshold: the fallback for actions in neither.
    argmax: an action must also beat the background's (smoothed) probability on the frame; with all
        thresholds 0 this is the trainer's argmax rule (`val/score_argmax`), deployable as it is.
    """

    smooth_window: int = 1
    min_duration: int = 1
    gap_fill: int = 0
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    action_thresholds: dict[str, float] = field(default_factory=dict)
    default_threshold: float = 0.5
    argmax: bool = False

    def __post_init__(self):
        for name in ("smooth_window", "min_duration"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                raise ValueError(f"PostprocessConfig.{name} must be an integer >= 1, "
                                 f"got {getattr(self, name)!r}")
        if int(self.gap_fill) != self.gap_fill or self.gap_fill < 0:
            raise ValueError(f"PostprocessConfig.gap_fill must be an integer >= 0, got {self.gap_fill!r}")
        self.smooth_window, self.min_duration, self.gap_fill = (
            int(self.smooth_window), int(self.min_duration), int(self.gap_fill))
        self.thresholds = {str(lab): {a: float(t) for a, t in d.items()}
                           for lab, d in self.thresholds.items()}
        self.action_thresholds = {a: float(t) for a, t in self.action_thresholds.items()}
        self.default_threshold = float(self.default_threshold)
        tables = [("action_thresholds", self.action_thresholds)] + [
            (f"thresholds[{lab!r}]", d) for lab, d in self.thresholds.items()]
        for where, table in tables:
            for action, thr in table.items():
                if action not in CLASS_OF:
                    raise ValueError(f"PostprocessConfig.{where}: unknown action {action!r}")
                if not np.isfinite(thr) or thr < 0:
                    raise ValueError(f"PostprocessConfig.{where}[{action!r}] must be a finite number >= 0")
        if not np.isfinite(self.default_threshold) or self.default_threshold < 0:
            raise ValueError("PostprocessConfig.default_threshold must be a finite number >= 0")

    def threshold_vector(self, lab_id: str | None = None) -> np.ndarray:
        """float64[38] threshold per class for one lab (index 0, background, is unused: +inf)."""
        thr = np.full(NUM_CLASSES, self.default_threshold)
        for action, t in self.action_thresholds.items():
            thr[CLASS_OF[action]] = t
        for action, t in self.thresholds.get(str(lab_id), {}).items():
            thr[CLASS_OF[action]] = t
        thr[BACKGROUND] = np.inf
        return thr

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PostprocessConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def smooth(probs: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over time of float[T, C]; the mean at the edges uses only existing frames.

    For an even window the extra frame is on the right (window 2 averages frames t and t+1).
    """
    probs = np.asarray(probs)
    if window <= 1 or probs.shape[0] == 0:
        return probs
    T = probs.shape[0]
    left = (window - 1) // 2
    right = window - 1 - left
    csum = np.empty((T + 1 + left + right,) + probs.shape[1:], dtype=np.float64)
    # padded prefix sums: C[i] = sum of frames before clip(i - left, 0, T), so that the window of frame t is
    # C[t + window] - C[t] (plain slices, no gathers)
    csum[: left + 1] = 0.0
    np.cumsum(probs, axis=0, out=csum[left + 1: left + 1 + T])
    csum[left + 1 + T:] = csum[left + T]
    t = np.arange(T)
    n = (np.minimum(t + right + 1, T) - np.maximum(t - left, 0)).reshape((T,) + (1,) * (probs.ndim - 1))
    out = csum[window: window + T] - csum[:T]
    out /= n
    return out.astype(probs.dtype if probs.dtype.kind == "f" else np.float64, copy=False)


def fill_gaps(labels: np.ndarray, max_gap: int) -> np.ndarray:
    """Fill background gaps of <= max_gap frames whose neighbours on both sides are the same action."""
    if max_gap <= 0 or labels.size == 0:
        return labels
    starts, stops, vals = runs(labels)
    inner = np.arange(1, len(vals) - 1)
    fill = inner[(vals[inner] == BACKGROUND) & (stops[inner] - starts[inner] <= max_gap)
                 & (vals[inner - 1] == vals[inner + 1])]
    if fill.size == 0:
        return labels
    vals = vals.copy()
    vals[fill] = vals[fill - 1]  # neighbours are actions, never filled themselves: one pass is exact
    return np.repeat(vals, stops - starts)


def drop_short(labels: np.ndarray, min_duration: int) -> np.ndarray:
    """Set action runs shorter than min_duration frames to background."""
    if min_duration <= 1 or labels.size == 0:
        return labels
    starts, stops, vals = runs(labels)
    short = (vals != BACKGROUND) & (stops - starts < min_duration)
    if not short.any():
        return labels
    return np.repeat(np.where(short, BACKGROUND, vals), stops - starts).astype(labels.dtype)


def decide_frames(probs: np.ndarray, allowed: np.ndarray, thr: np.ndarray,
                  background: np.ndarray | None = None) -> np.ndarray:
    """One class per frame from (already smoothed) probs: argmax of p - thr over allowed classes with
    p >= thr (and p > background[t] when given: `PostprocessConfig.argmax`), else background. Ties go to the
    lower class id. int64[T].

    probs may hold all 38 columns or only the allowed ones (`allowed` then says which classes they are, in
    order: see `frame_decisions`)."""
    cols = np.flatnonzero(allowed)
    cols = cols[cols != BACKGROUND]
    probs = np.asarray(probs)
    if probs.shape[1] == NUM_CLASSES:
        probs = probs[:, cols]
    if cols.size == 0 or probs.shape[0] == 0:
        return np.zeros(probs.shape[0], dtype=np.int64)
    margin = probs.astype(np.float64) - thr[cols][None, :]
    if background is not None:
        margin = np.where(probs > np.asarray(background)[:, None], margin, -np.inf)
    best = margin.argmax(axis=1)  # first maximum: the lower class id on ties
    return np.where(margin[np.arange(margin.shape[0]), best] >= 0, cols[best], BACKGROUND)


def effective_allowed(allowed: np.ndarray, self_pair: bool | None = None) -> np.ndarray:
    """The whitelist mask, optionally restricted to self actions (self pair) or pair actions (others)."""
    allowed = np.asarray(allowed, dtype=bool).copy()
    if self_pair is True:
        allowed &= SELF_CLASS_MASK
    elif self_pair is False:
        allowed &= PAIR_CLASS_MASK
    allowed[BACKGROUND] = True
    return allowed


def frame_decisions(probs: np.ndarray, allowed: np.ndarray, cfg: PostprocessConfig, lab_id: str | None = None,
                    self_pair: bool | None = None) -> np.ndarray:
    """The whole per-frame pipeline (smooth, whitelist, thresholds, argmax, gap fill, min duration)."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] != NUM_CLASSES:
        raise MabeDataError(f"probs must be float[T, {NUM_CLASSES}], got shape {probs.shape}")
    if not np.isfinite(probs).all():
        raise MabeDataError("probs contain NaN or inf")
    allowed = effective_allowed(allowed, self_pair)
    if allowed.shape != (NUM_CLASSES,):
        raise MabeDataError(f"allowed must be bool[{NUM_CLASSES}], got shape {allowed.shape}")
    cols = np.flatnonzero(allowed)
    cols = cols[cols != BACKGROUND]
    # only the allowed columns are smoothed and compared (the others can never be predicted)
    bg = smooth(probs[:, [BACKGROUND]], cfg.smooth_window)[:, 0] if cfg.argmax else None
    pred = decide_frames(smooth(probs[:, cols], cfg.smooth_window), allowed, cfg.threshold_vector(lab_id), bg)
    return drop_short(fill_gaps(pred, cfg.gap_fill), cfg.min_duration)


def to_original_frames(pred: np.ndarray, to_original: Callable | np.ndarray | None) -> np.ndarray:
    """Map per-frame classes from resampled frames to the video's own frames.

    to_original: None (identity), a callable arr[T'] -> arr[n_orig] (e.g. `VideoFeatures.to_original`),
    or an index array idx[n_orig] with, for each original frame, its resampled frame.
    """
    if to_original is None:
        return pred
    if callable(to_original):
        out = np.asarray(to_original(pred))
    else:
        idx = np.asarray(to_original)
        out_of_range = idx.size and (idx.min() < 0 or idx.max() >= pred.size)
        if idx.ndim != 1 or idx.dtype.kind not in "iu" or out_of_range:
            raise MabeDataError(f"to_original index array must be ints in 0..{pred.size - 1}")
        out = pred[idx]
    if out.ndim != 1:
        raise MabeDataError(f"to_original must return a 1-D array, got shape {out.shape}")
    return np.rint(out).astype(np.int64) if out.dtype.kind == "f" else out.astype(np.int64)


def probs_to_events(probs: np.ndarray, allowed: np.ndarray, cfg: PostprocessConfig, lab_id: str | None = None,
                    to_original: Callable | np.ndarray | None = None,
                    self_pair: bool | None = None) -> list[tuple[int, int, int]]:
    """Intervals [(start, stop, cls)] (half-open, non-overlapping) for one pair.

    allowed: bool[38] whitelist of the pair (pass the raw one to predict only what the metric accepts);
    self_pair: True keeps only self-directed actions, False only pair actions, None no extra restriction.
    """
    pred = to_original_frames(frame_decisions(probs, allowed, cfg, lab_id, self_pair), to_original)
    starts, stops, vals = runs(pred)
    keep = vals != BACKGROUND
    return [(int(s), int(e), int(c)) for s, e, c in zip(starts[keep], stops[keep], vals[keep])]


def video_events(video_id: int, pairs: list[tuple[int, int]], probs: np.ndarray, allowed: np.ndarray,
                 cfg: PostprocessConfig, lab_id: str | None = None,
                 to_original: Callable | np.ndarray | None = None) -> list[tuple[int, int, int, list]]:
    """All pairs of one video: probs float[P, T, 38], allowed bool[P, 38] (rows in `pairs` order, as in
    `VideoFeatures`) -> [(video_id, agent, target, events)] ready for `events_to_submission`. Self pairs
    (target == agent) keep only self-directed actions, the others only pair actions."""
    probs = np.asarray(probs)
    allowed = np.asarray(allowed, dtype=bool)
    if probs.ndim != 3 or probs.shape[0] != len(pairs) or allowed.shape != (len(pairs), NUM_CLASSES):
        raise MabeDataError(f"probs {probs.shape} / allowed {allowed.shape} do not match {len(pairs)} pairs",
                            video=video_id)
    return [(int(video_id), int(a), int(t),
             probs_to_events(probs[i], allowed[i], cfg, lab_id, to_original, self_pair=(int(a) == int(t))))
            for i, (a, t) in enumerate(pairs)]


def events_to_submission(items: Iterable[tuple[int, int, int, list[tuple[int, int, int]]]]) -> pd.DataFrame:
    """Submission rows from (video_id, agent, target, events) items, in the official column order.

    agent/target are ints (mouse ids); target == agent is a self pair and is written as `self`. Events of
    self-directed actions on other pairs, and of pair actions on self pairs, are dropped: no whitelist has
    them, and writing them with target `self` could overlap the self pair's own rows. Rows are sorted by
    (video, agent, target, start) and `row_id` enumerates them from 0.
    """
    rows = []
    for video_id, agent, target, events in items:
        is_self = int(target) == int(agent)
        for start, stop, cls in events:
            if is_self != bool(SELF_CLASS_MASK[int(cls)]):
                continue  # e.g. "mouse1,mouse2,rear": never whitelisted, and as "self" it could overlap
            rows.append((int(video_id), int(agent), int(target), f"mouse{int(agent)}",
                         "self" if is_self else f"mouse{int(target)}", ACTIONS[int(cls) - 1], int(start),
                         int(stop)))
    rows.sort(key=lambda r: (r[0], r[1], r[2], r[6]))
    return to_frame(r[:1] + r[3:] for r in rows)
