"""Tracking noise: missing points, runs, hidden mice and whole frames (missing = missing rows, never NaN),
identity swaps after two mice met, and a few coordinates just outside the image."""
from __future__ import annotations

import numpy as np

from features.synth.arena import Arena


def missing_mask(T: int, M: int, bodyparts: list[str], lab: str, fps: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """present bool [T, M, K]: single dropped points, short runs per point, a chronically hard point,
    a mouse hiding now and then and a few whole missing frames (never the first or last frame, so the
    tracking spans the whole video). Returns (present, whole missing frames)."""
    K = len(bodyparts)
    p_point = np.array([0.04 if n == "tail_tip" else 0.012 for n in bodyparts])
    present = rng.random((T, M, K)) >= p_point
    for m in range(M):
        for k in range(K):
            for _ in range(rng.poisson(T / fps * 0.02)):
                s = int(rng.integers(0, T))
                present[s:s + int(rng.geometric(1 / max(1.0, 0.4 * fps))), m, k] = False
        if rng.random() < 0.3:  # the mouse hides (e.g. under the nest) for a second or two
            s = int(rng.integers(0, T))
            present[s:s + int(rng.uniform(0.5, 2.0) * fps), m, :] = False
    if lab == "AdaptableSnail" and "neck" in bodyparts:
        present[:, :, bodyparts.index("neck")] &= rng.random((T, M)) < 0.1  # real: neck missing ~90 %
    elif rng.random() < 0.5:
        k = int(rng.integers(K))
        present[:, :, k] &= rng.random((T, M)) >= rng.uniform(0.1, 0.4)
    whole = 0
    for _ in range(rng.poisson(max(1.0, T / 1500))):
        s = int(rng.integers(1, max(2, T - 1)))
        n = int(rng.integers(1, max(2, int(fps / 3))))
        stop = min(s + n, T - 1)
        present[s:stop] = False
        whole += max(0, stop - s)
    present[0, :, 0] = True
    present[T - 1, :, 0] = True  # keep frames 0 and T-1 (and every mouse) in the file
    return present, whole


# lab quirk (docs/mabe.md, Data quirks): the tracker swaps the ids of two mice for a while after they met
# (AdaptableSnail: the 2nd place hand-corrected this); chance per video. Labels keep the true ids.
ID_SWAP = {"AdaptableSnail": 0.5, "CautiousGiraffe": 0.2, "DeliriousFly": 0.2, "TranquilPanther": 0.2}


def identity_swaps(xy: np.ndarray, center: np.ndarray, fps: float, rng: np.random.Generator) -> int:
    """Swap two mice's tracking for 1-4 s, starting at a frame where their bodies are within 5 cm (in place).
    Returns the number of swaps (0 or 1)."""
    T, M = center.shape[:2]
    pairs = [(a, b) for a in range(M) for b in range(a + 1, M)]
    a, b = pairs[int(rng.integers(len(pairs)))]
    close = np.flatnonzero(np.linalg.norm(center[:, a] - center[:, b], axis=1) < 5.0)
    close = close[(close > 0) & (close < T - 2)]
    if close.size == 0:
        return 0
    s = int(close[int(rng.integers(close.size))])
    e = min(T - 1, s + int(rng.uniform(1.0, 4.0) * fps))
    xy[s:e, [a, b]] = xy[s:e, [b, a]]
    return 1


def out_of_frame(xy: np.ndarray, present: np.ndarray, arena: Arena, rng: np.random.Generator) -> None:
    """Move a few present coordinates just outside the image (DeepLabCut extrapolation), in place."""
    idx = np.flatnonzero(present)
    n_out = max(1, int(idx.size * 3e-4))
    pick = rng.choice(idx, size=n_out, replace=False)
    flat = xy.reshape(-1, 2)
    axis = rng.integers(0, 2, n_out)
    low = rng.random(n_out) < 0.5
    limit = np.where(axis == 0, arena.img_w, arena.img_h)
    flat[pick, axis] = np.where(low, -rng.uniform(0.5, 15, n_out), limit + rng.uniform(0.5, 15, n_out))
