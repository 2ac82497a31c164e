"""The annotator: planted intervals -> the annotations a person would have written (boundary jitter, missed
short events, rare overlaps, lab-specific boundary steps)."""
from __future__ import annotations

import numpy as np

# lab quirk (docs/mabe.md, Data quirks): BoisterousParrot boundaries are mostly multiples of 15 frames
QUANTUM = {"BoisterousParrot": 15}


def annotate(events, n_frames: int, fps: float, rng: np.random.Generator, quantum: int = 1):
    """Planted intervals -> annotations: boundary jitter, a few missed short events, no single-frame events,
    and different actions of one pair kept apart except for rare overlaps. `quantum` rounds boundaries to
    multiples of that many frames (BoisterousParrot annotated in steps of 15 frames). Returns (events,
    n_overlaps)."""
    sd = max(0.7, 0.04 * fps)
    noisy = []
    for a, t, act, s, e in events:
        if e - s < 0.6 * fps and rng.random() < 0.12:
            continue  # the annotator missed a short one
        s2 = int(np.clip(s + round(rng.normal(0, sd)), 0, n_frames))
        e2 = int(np.clip(e + round(rng.normal(0, sd)), 0, n_frames))
        if quantum > 1:
            s2, e2 = quantum * round(s2 / quantum), min(n_frames, quantum * round(e2 / quantum))
        if e2 - s2 >= 2:
            noisy.append((a, t, act, s2, e2))
    return resolve_overlaps(noisy, rng)


def resolve_overlaps(noisy, rng: np.random.Generator):
    """Overlapping intervals of one pair: the same action merges; different actions are cut apart, except
    for a rare kept overlap. Returns (events sorted by start, n_overlaps)."""
    noisy = sorted(noisy, key=lambda r: (r[0], r[1], r[3], r[4], r[2]))
    out, overlaps = [], 0
    for a, t, act, s, e in noisy:
        prev = [r for r in out if r[0] == a and r[1] == t and r[4] > s]
        same = [r for r in prev if r[2] == act]
        if same:  # merge with an overlapping interval of the same action
            r = same[-1]
            out[out.index(r)] = (a, t, act, r[3], max(r[4], e))
            continue
        if prev:
            if rng.random() < 0.15:
                overlaps += 1  # keep the overlap (the real data have a few)
            else:
                s = max(r[4] for r in prev)
                if e - s < 2:
                    continue
        out.append((a, t, act, s, e))
    out.sort(key=lambda r: (r[3], r[4], r[0], r[1], r[2]))
    return out, overlaps

