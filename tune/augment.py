"""Training-time augmentation in feature space: the trainer sees cached features, not coordinates.

Four transforms of a batch (x [B, W, F], y [B, W], mask [B, W]), each applied to a window with its own
probability (`optim.aug_*`; all 0 by default, and then nothing is drawn, so a run without augmentation gives
exactly the numbers it gave before this module existed):

- mirror (`aug_flip`): the left/right mirror of both mice. For the agent-centred sets (`pair`, `pair_rich`)
  this is an exact feature transform derived from the names alone by `ensemble.infer.flip_permutation` (the
  same one flip TTA uses): `_left`/`_right` columns swap, lateral (`_y`) components, the signed heading
  difference and the turn rates change sign. tests/test_augment.py checks it against features computed from
  mirrored coordinates. Refused for the `motion` set (absolute coordinates: the mirror axis is unknown).
- jitter (`aug_jitter`, `aug_jitter_std`): Gaussian noise of that std (in cached units, where features are
  O(1)) on every continuous column of the window's valid frames; flag columns (`*_missing`, `is_self`,
  `*_present`) are left alone.
- time stretch (`aug_stretch`, `aug_stretch_max`): the window is resampled at a rate s drawn log-uniformly
  from [1 / (1 + m), 1 + m] (as if the video ran s times faster): frame j reads the linear interpolation of
  frames j * s (labels and mask: the nearest frame); frames that would read past the window's valid part
  become padding. Rates follow the playback: speeds, velocities, turn and distance rates are multiplied by s,
  accelerations by s².
- body-part dropout (`aug_part_dropout`): one canonical body part (by name, `features.skeleton.CANONICAL`)
  drawn per window; every column whose name mentions it (coordinates, distances, speeds of that part, for both
  mice) is zeroed and its `_missing` flags are set to 1, as for a point the tracker lost.

Per-window choices come from the trainer's numpy generator (seeded per epoch and rank, so a resumed run draws
the same); noise from torch's generator (seeded per epoch by the trainer).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from features.skeleton import CANONICAL
from tune.data import IGNORE


_FLAG = re.compile(r"(_missing|_present)$|^is_self$")
_RATE = re.compile(r"(_speed$|^rel_vel_|^dist_rate$|_turn_rate$)")
_ACCEL = re.compile(r"_accel$")


def part_columns(names: list[str], part: str) -> np.ndarray:
    """bool [F]: the columns whose name mentions canonical point `part` as a whole word (`tail_base` is not
    `tail_tip`)."""
    pat = re.compile(rf"(^|_){re.escape(part)}(_|$)")
    return np.array([bool(pat.search(n)) for n in names])


@dataclass
class AugSettings:
    flip: float = 0.0
    jitter: float = 0.0
    jitter_std: float = 0.05
    stretch: float = 0.0
    stretch_max: float = 0.2
    part_dropout: float = 0.0

    @classmethod
    def from_optim(cls, optim) -> "AugSettings":
        return cls(flip=optim.aug_flip, jitter=optim.aug_jitter, jitter_std=optim.aug_jitter_std,
                   stretch=optim.aug_stretch, stretch_max=optim.aug_stretch_max,
                   part_dropout=optim.aug_part_dropout)

    @property
    def active(self) -> bool:
        return max(self.flip, self.jitter, self.stretch, self.part_dropout) > 0


class Augmenter:
    """`aug(x, y, mask, gen) -> (x, y, mask)` on torch tensors (any device); built once per run from the
    cache's feature names. Raises ValueError at construction when a transform cannot apply to the set."""

    def __init__(self, names: list[str], settings: AugSettings):
        self.s = settings
        self.names = list(names)
        F = len(names)
        self.flip_src = self.flip_sign = None
        if settings.flip > 0:
            from ensemble.infer import flip_permutation  # refuses the motion set with a clear message

            src, sign = flip_permutation(self.names)
            self.flip_src, self.flip_sign = torch.from_numpy(src), torch.from_numpy(sign)
        self.continuous = torch.from_numpy(np.array([not _FLAG.search(n) for n in names]))
        rate = np.array([bool(_RATE.search(n)) for n in names])
        accel = np.array([bool(_ACCEL.search(n)) for n in names])
        self.rate_pow = torch.from_numpy(np.where(accel, 2.0, np.where(rate, 1.0, 0.0)).astype(np.float32))
        parts = [(p, part_columns(names, p)) for p in CANONICAL]
        parts = [(p, cols) for p, cols in parts if cols.any()]
        if settings.part_dropout > 0 and not parts:
            raise ValueError("optim.aug_part_dropout needs features named after canonical body parts (the "
                             "'pair'/'pair_rich' sets or motion_points='canonical'); this set has none")
        self.part_names = [p for p, _ in parts]
        miss = np.array([n.endswith("_missing") for n in names])
        self.part_zero = torch.from_numpy(np.stack([c & ~miss for _, c in parts]) if parts else
                                          np.zeros((0, F), bool))
        self.part_miss = torch.from_numpy(np.stack([c & miss for _, c in parts]) if parts else
                                          np.zeros((0, F), bool))

    def __call__(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, gen: np.random.Generator):
        s, B, dev = self.s, x.shape[0], x.device
        if not s.active:
            return x, y, mask
        if s.stretch > 0:
            x, y, mask = self._stretch(x, y, mask, gen.random(B) < s.stretch, gen)
        if s.flip > 0:
            sel = torch.from_numpy(gen.random(B) < s.flip).to(dev)
            flipped = x[..., self.flip_src.to(dev)] * self.flip_sign.to(dev, x.dtype)
            x = torch.where(sel[:, None, None], flipped, x)
        if s.part_dropout > 0:
            sel = gen.random(B) < s.part_dropout
            which = torch.from_numpy(gen.integers(0, len(self.part_names), size=B)).to(dev)
            on = torch.from_numpy(sel).to(dev)[:, None]
            zero = self.part_zero.to(dev)[which] & on  # [B, F]
            miss = self.part_miss.to(dev)[which] & on
            x = torch.where(zero[:, None, :], torch.zeros((), dtype=x.dtype, device=dev), x)
            x = torch.where(miss[:, None, :] & mask[..., None], torch.ones((), dtype=x.dtype, device=dev), x)
        if s.jitter > 0:
            sel = torch.from_numpy(gen.random(B) < s.jitter).to(dev)
            keep = sel[:, None, None] & mask[..., None] & self.continuous.to(dev)[None, None, :]
            x = x + torch.randn(x.shape, device=dev, dtype=x.dtype) * s.jitter_std * keep
        return x, y, mask

    def _stretch(self, x, y, mask, sel: np.ndarray, gen: np.random.Generator):
        B, W, _ = x.shape
        dev = x.device
        lo = math.log(1.0 / (1.0 + self.s.stretch_max))
        rate = np.where(sel, np.exp(gen.uniform(lo, -lo, size=B)), 1.0)  # playback speed per window
        n_valid = mask.sum(1).cpu().numpy()  # valid frames are a prefix (tune.data.gather)
        pos = np.arange(W)[None, :] * rate[:, None]  # [B, W] source position
        ok = pos <= (n_valid[:, None] - 1)
        pos = np.minimum(pos, np.maximum(n_valid[:, None] - 1, 0))
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, np.maximum(n_valid[:, None] - 1, 0))
        frac = torch.from_numpy((pos - i0).astype(np.float32)).to(dev, x.dtype)[..., None]
        g0, g1 = torch.from_numpy(i0).to(dev), torch.from_numpy(i1).to(dev)
        F = x.shape[-1]
        x0 = torch.gather(x, 1, g0[..., None].expand(B, W, F))
        x1 = torch.gather(x, 1, g1[..., None].expand(B, W, F))
        xs = x0 + (x1 - x0) * frac
        gn = torch.from_numpy(np.where(pos - i0 < 0.5, i0, i1)).to(dev)
        ys = torch.gather(y, 1, gn)
        r = torch.from_numpy(rate.astype(np.float32)).to(dev, x.dtype)
        xs = xs * r[:, None, None] ** self.rate_pow.to(dev, x.dtype)[None, None, :]
        okt = torch.from_numpy(ok).to(dev) & mask
        xs = torch.where(okt[..., None], xs, torch.zeros((), dtype=x.dtype, device=dev))
        ys = torch.where(okt, ys, torch.full((), IGNORE, dtype=y.dtype, device=dev))
        keep = torch.from_numpy(sel).to(dev)
        x = torch.where(keep[:, None, None], xs, x)
        y = torch.where(keep[:, None], ys, y)
        mask = torch.where(keep[:, None], okt, mask)
        return x, y, mask
