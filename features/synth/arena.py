"""The arena (cm, rectangular or circular) and its placement in the image; wall avoidance of a heading."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class Arena:
    """Arena in cm ([0, w] x [0, h]; circular = inscribed circle) and its placement in the image (px)."""

    w: float
    h: float
    circular: bool
    ppcm: float
    off_x: float
    off_y: float
    img_w: int
    img_h: int

    @classmethod
    def from_row(cls, row: pd.Series) -> "Arena":
        ppcm = float(row["pix_per_cm_approx"])
        img_w, img_h = int(row["video_width_pix"]), int(row["video_height_pix"])
        # keep the arena inside the image (some real rows list an arena a little larger than the frame)
        w = min(float(row["arena_width_cm"]), 0.97 * img_w / ppcm)
        h = min(float(row["arena_height_cm"]), 0.97 * img_h / ppcm)
        return cls(w=w, h=h, circular=str(row["arena_shape"]) == "circular", ppcm=ppcm,
                   off_x=(img_w - w * ppcm) / 2, off_y=(img_h - h * ppcm) / 2, img_w=img_w, img_h=img_h)

    def inward(self, x: float, y: float) -> tuple[float, float, float]:
        """(distance to the nearest wall, inward unit normal x, y) of a point."""
        if self.circular:
            cx, cy, r = self.w / 2, self.h / 2, min(self.w, self.h) / 2
            dx, dy = cx - x, cy - y
            d = math.hypot(dx, dy) or 1e-6
            return r - d, dx / d, dy / d
        cands = ((x, 1.0, 0.0), (self.w - x, -1.0, 0.0), (y, 0.0, 1.0), (self.h - y, 0.0, -1.0))
        return min(cands)

    def clamp(self, x: float, y: float, margin: float) -> tuple[float, float]:
        if self.circular:
            cx, cy, r = self.w / 2, self.h / 2, min(self.w, self.h) / 2 - margin
            dx, dy = x - cx, y - cy
            d = math.hypot(dx, dy)
            if d > r:
                return cx + dx * r / d, cy + dy * r / d
            return x, y
        return min(max(x, margin), self.w - margin), min(max(y, margin), self.h - margin)

    def clamp_points(self, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Body points stay inside the walls (a tail along the wall, not through it)."""
        if self.circular:
            cx, cy, r = self.w / 2, self.h / 2, min(self.w, self.h) / 2
            dx, dy = px - cx, py - cy
            d = np.maximum(np.hypot(dx, dy), 1e-9)
            f = np.minimum(1.0, r / d)
            return cx + dx * f, cy + dy * f
        return np.clip(px, 0.0, self.w), np.clip(py, 0.0, self.h)


def wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def avoid_walls(arena: Arena, x: float, y: float, thd: float, reach: float = 4.0) -> float:
    """Heading turned away from a wall closer than `reach` cm (slide along it, then back inside)."""
    d, nx, ny = arena.inward(x, y)
    if d >= reach:
        return thd
    hx, hy = math.cos(thd), math.sin(thd)
    dot = hx * nx + hy * ny
    if dot >= 0.2:
        return thd
    push = 0.2 + (reach - d) / reach
    hx, hy = hx + (push - dot) * nx, hy + (push - dot) * ny
    return math.atan2(hy, hx)

