"""Renderer: simulated centre, heading and posture (cm) -> body-part pixels of every frame."""
from __future__ import annotations

import numpy as np

from features.synth.arena import Arena
from features.synth.body import BACK, FRONT, NECK_DIST, TAIL, TAIL_BASE, Sim


def render(sim: Sim, bodyparts: list[str], arena: Arena, rng: np.random.Generator,
           fps: float) -> np.ndarray:
    """Body model -> pixel coordinates float64 [T, M, K, 2] (no missing data yet)."""
    T, M = sim.heading.shape
    t = np.arange(T)[:, None] / fps
    s = sim.scale[None, :]
    ux, uy = np.cos(sim.heading), np.sin(sim.heading)
    lx, ly = uy, -ux                              # left flank in image coordinates (y down)
    push = sim.thrust * np.sin(2 * np.pi * 5.0 * t + rng.uniform(0, 2 * np.pi, M))
    cx = sim.center[..., 0] + push * ux
    cy = sim.center[..., 1] + push * uy
    nx_ = cx + NECK_DIST * sim.e * s * ux
    ny_ = cy + NECK_DIST * sim.e * s * uy
    hth = sim.heading + sim.phi
    hux, huy = np.cos(hth), np.sin(hth)
    hlx, hly = huy, -hux
    phase = np.cumsum(2 * np.pi * sim.nose_freq / fps, axis=0) + rng.uniform(0, 2 * np.pi, M)
    wob_f = sim.nose_amp * np.sin(phase)
    wob_l = 0.5 * sim.nose_amp * np.cos(phase)
    out = np.empty((T, M, len(bodyparts), 2))
    for k, name in enumerate(bodyparts):
        if name in FRONT:
            fx, fy = FRONT[name]
            fx, fy = fx * sim.e * s, fy * s
            w = 1.0 if name == "nose" else (0.5 if name == "head" else 0.0)
            px = nx_ + fx * hux + fy * hlx + w * (wob_f * hux + wob_l * hlx)
            py = ny_ + fx * huy + fy * hly + w * (wob_f * huy + wob_l * hly)
        elif name in BACK:
            bx, by = BACK[name]
            px = cx + s * (bx * ux + by * lx)
            py = cy + s * (bx * uy + by * ly)
        elif name in TAIL:
            d = TAIL[name]
            a = sim.heading + np.pi + sim.tail * (d / 8.0)
            bx, by = cx - TAIL_BASE * s * ux, cy - TAIL_BASE * s * uy
            px, py = bx + s * d * np.cos(a), by + s * d * np.sin(a)
        else:  # make_video checked the names
            raise AssertionError(name)
        sd = 0.08 + (0.06 if name in TAIL else 0.0)
        px, py = arena.clamp_points(px + sd * rng.standard_normal((T, M)),
                                    py + sd * rng.standard_normal((T, M)))
        out[:, :, k, 0] = arena.off_x + px * arena.ppcm
        out[:, :, k, 1] = arena.off_y + py * arena.ppcm
    return out

