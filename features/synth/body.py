"""The body model (where each body part sits relative to the centre, in cm) and the simulated trajectories
(`Sim`) that the simulator writes and the renderer reads."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Front points are placed relative to the neck pivot (rotated by heading + head yaw, scaled by the posture's
# elongation e); back points relative to the body centre; tail points along the tail. cm, x forward, y left.
NECK_DIST = 2.2
FRONT: dict[str, tuple[float, float]] = {
    "nose": (2.0, 0.0), "head": (1.2, 0.0), "ear_left": (0.4, 0.9), "ear_right": (0.4, -0.9),
    "neck": (0.0, 0.0),
    **{f"headpiece_{tb}{fb}{lr}": (fx + (0.15 if tb == "top" else 0.0), (0.4 if tb == "top" else 0.55) * sy)
       for tb in ("top", "bottom") for fb, fx in (("front", 1.0), ("back", 0.3))
       for lr, sy in (("left", 1.0), ("right", -1.0))},
}
BACK: dict[str, tuple[float, float]] = {
    "body_center": (0.0, 0.0), "spine_1": (1.1, 0.0), "spine_2": (-1.1, 0.0),
    "lateral_left": (0.0, 1.3), "lateral_right": (0.0, -1.3),
    "hip_left": (-1.7, 1.1), "hip_right": (-1.7, -1.1),
    "tail_base": (-3.6, 0.0), "forepaw_left": (1.6, 0.9), "forepaw_right": (1.6, -0.9),
    "hindpaw_left": (-2.2, 1.2), "hindpaw_right": (-2.2, -1.2),
}
TAIL: dict[str, float] = {"tail_middle_1": 2.5, "tail_midpoint": 4.0, "tail_middle_2": 5.3, "tail_tip": 8.0}
NOSE_REACH = NECK_DIST + FRONT["nose"][0]  # 4.2 cm centre -> nose at e = 1
TAIL_BASE = 3.6


@dataclass
class Sim:
    """Trajectories of one video in cm: state per frame and mouse, plus planted labels (0-based mice)."""

    center: np.ndarray      # float64 [T, M, 2]
    heading: np.ndarray     # [T, M] rad
    e: np.ndarray           # [T, M] elongation
    phi: np.ndarray         # [T, M] head yaw
    tail: np.ndarray        # [T, M] tail angle
    nose_amp: np.ndarray    # [T, M] cm
    nose_freq: np.ndarray   # [T, M] Hz
    thrust: np.ndarray      # [T, M] cm
    scale: np.ndarray       # [M]
    events: list[tuple[int, int, str, int, int]] = field(default_factory=list)  # agent, target, action, s, e
    scenes: int = 0         # scenes started
    aborted: int = 0        # ... of which the pose never reached the contact (nothing labelled from there on)
    decoys: int = 0         # ... of which unlabelled look-alikes (hard mode)
