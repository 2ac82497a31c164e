"""Optional resampling of a video's time axis to a common frame rate, with an exact way back.

Resampled frame j sits at original time position s_j = j * fps / target_fps (in original frame units),
j = 0 .. T'-1 with T' = ceil((T - 1) * target_fps / fps) + 1, so the first and the last original frame are
covered (positions past the last frame hold its value). Features are resampled linearly, labels by nearest
frame. `to_original` maps an array over resampled frames back onto every original frame by nearest
resampled frame:
original frame i <- resampled frame round(i * target_fps / fps) (rounding half up, clipped).

Up-sampling (e.g. 25 -> 30 fps) is lossless for labels: `to_original(nearest(labels)) == labels` exactly.
Down-sampling keeps every original frame that is itself a sample point.

Positions (`resample_positions`, what features.pipeline resamples: kinematics and angles are computed after
it) are low-passed before decimating: a symmetric moving average over w = round(fps / target_fps) frames
(`lowpass`; even w uses w + 1 taps with half weights at both ends, so it stays centred), which cancels
frame-to-frame tracker jitter that linear interpolation would otherwise alias into the 30-fps series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _round_half_up(a: np.ndarray) -> np.ndarray:
    return np.floor(np.asarray(a, dtype=np.float64) + 0.5).astype(np.int64)


@dataclass(frozen=True)
class ResamplePlan:
    """Mapping between n_orig original frames at `fps` and n_new frames at `target_fps`."""

    n_orig: int
    fps: float
    target_fps: float

    @property
    def ratio(self) -> float:
        """New frames per original frame."""
        return self.target_fps / self.fps

    @property
    def identity(self) -> bool:
        return abs(self.fps - self.target_fps) < 1e-9

    @property
    def n_new(self) -> int:
        if self.identity or self.n_orig == 0:
            return self.n_orig
        return int(np.ceil((self.n_orig - 1) * self.ratio - 1e-9)) + 1

    def source_positions(self) -> np.ndarray:
        """Original-frame position (float) of every resampled frame, [n_new]."""
        return np.arange(self.n_new, dtype=np.float64) / self.ratio

    def new_of_orig(self) -> np.ndarray:
        """Resampled frame index nearest to every original frame, [n_orig]."""
        if self.identity:
            return np.arange(self.n_orig)
        return np.clip(_round_half_up(np.arange(self.n_orig) * self.ratio), 0, self.n_new - 1)

    def orig_of_new(self) -> np.ndarray:
        """Original frame nearest to every resampled frame, [n_new]."""
        if self.identity:
            return np.arange(self.n_orig)
        return np.clip(_round_half_up(self.source_positions()), 0, self.n_orig - 1)


def make_plan(n_frames: int, fps: float, target_fps: float | None) -> ResamplePlan:
    """Plan for a video; target_fps None means no resampling (identity plan)."""
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return ResamplePlan(int(n_frames), float(fps), float(fps if target_fps is None else target_fps))


def resample_linear(arr: np.ndarray, plan: ResamplePlan) -> np.ndarray:
    """[n_orig, ...] -> [n_new, ...] by linear interpolation along axis 0 (a copy even for identity)."""
    arr = np.asarray(arr)
    if arr.shape[0] != plan.n_orig:
        raise ValueError(f"expected {plan.n_orig} frames, got {arr.shape[0]}")
    if plan.identity:
        return arr.copy()
    pos = plan.source_positions()
    lo = np.clip(np.floor(pos).astype(np.int64), 0, plan.n_orig - 1)
    hi = np.clip(lo + 1, 0, plan.n_orig - 1)
    w = (pos - lo).reshape((-1,) + (1,) * (arr.ndim - 1))
    out = arr[lo] * (1.0 - w) + arr[hi] * w
    return out.astype(arr.dtype, copy=False)


def decimation_width(plan: ResamplePlan) -> int:
    """Frames the low-pass averages before decimating: round(fps / target_fps), 1 when not decimating
    (120 -> 30 fps: 4; 60 -> 30: 2; 45 or 50 -> 30: 2; 25 -> 30: 1)."""
    if plan.identity or plan.fps <= plan.target_fps:
        return 1
    return max(1, int(np.floor(plan.fps / plan.target_fps + 0.5)))


def lowpass(arr: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average of `width` frames along axis 0 (a copy; width <= 1: unchanged).

    Odd width: `width` equal taps; even width: width + 1 taps, the two end taps at half weight (e.g. 4 ->
    [.5, 1, 1, 1, .5] / 4). The ends are padded by point reflection (x[-k] = 2 x[0] - x[k]), so constants
    and linear trends (constant velocities) pass unchanged up to the first and last frame."""
    arr = np.asarray(arr)
    if width <= 1 or arr.shape[0] < 2:
        return arr.copy()
    taps = np.ones(width + 1 - width % 2)
    if width % 2 == 0:
        taps[0] = taps[-1] = 0.5
    taps /= taps.sum()
    h = len(taps) // 2
    widths = [(h, h)] + [(0, 0)] * (arr.ndim - 1)
    pad = np.pad(np.asarray(arr, dtype=np.float64), widths, mode="reflect", reflect_type="odd")
    out = np.zeros(arr.shape, dtype=np.float64)
    for k, w in enumerate(taps):
        out += w * pad[k : k + arr.shape[0]]
    return out.astype(arr.dtype, copy=False)


def resample_positions(arr: np.ndarray, plan: ResamplePlan) -> np.ndarray:
    """Positions [n_orig, ...] -> [n_new, ...]: `lowpass` of `decimation_width` frames, then linear."""
    return resample_linear(lowpass(arr, decimation_width(plan)), plan)


def resample_nearest(arr: np.ndarray, plan: ResamplePlan) -> np.ndarray:
    """[n_orig, ...] -> [n_new, ...] taking the nearest original frame (labels, flags)."""
    arr = np.asarray(arr)
    if arr.shape[0] != plan.n_orig:
        raise ValueError(f"expected {plan.n_orig} frames, got {arr.shape[0]}")
    return arr[plan.orig_of_new()].copy()


def to_original(arr: np.ndarray, plan: ResamplePlan, axis: int = 0) -> np.ndarray:
    """[n_new, ...] -> [n_orig, ...] (time on `axis`): each original frame takes its nearest resampled one."""
    arr = np.asarray(arr)
    if arr.shape[axis] != plan.n_new:
        raise ValueError(f"expected {plan.n_new} resampled frames on axis {axis}, got {arr.shape[axis]}")
    return np.take(arr, plan.new_of_orig(), axis=axis)
