"""Action vocabulary and the event <-> frame conversion pair.

Class ids: 0 = background, 1..37 = ACTIONS in alphabetical order. Intervals are half-open [start, stop),
exactly as the official metric expands them (`range(start_frame, stop_frame)`).
"""
from __future__ import annotations

import numpy as np

# Self-directed actions (target `self` in submissions, target_id == agent_id in annotations).
SELF_ACTIONS: tuple[str, ...] = (
    "biteobject", "climb", "dig", "exploreobject", "freeze", "genitalgroom",
    "huddle", "rear", "rest", "run", "selfgroom",
)
# Actions directed at another mouse.
PAIR_ACTIONS: tuple[str, ...] = (
    "allogroom", "approach", "attack", "attemptmount", "avoid", "chase", "chaseattack", "defend",
    "disengage", "dominance", "dominancegroom", "dominancemount", "ejaculate", "escape", "flinch",
    "follow", "intromit", "mount", "reciprocalsniff", "shepherd", "sniff", "sniffbody", "sniffface",
    "sniffgenital", "submit", "tussle",
)
ACTIONS: tuple[str, ...] = tuple(sorted(SELF_ACTIONS + PAIR_ACTIONS))
BACKGROUND = 0
NUM_CLASSES = len(ACTIONS) + 1  # 38
CLASS_OF: dict[str, int] = {a: i + 1 for i, a in enumerate(ACTIONS)}
SELF_CLASS_MASK = np.array([False] + [a in SELF_ACTIONS for a in ACTIONS])
PAIR_CLASS_MASK = np.array([False] + [a in PAIR_ACTIONS for a in ACTIONS])

assert len(ACTIONS) == 37 and len(set(ACTIONS)) == 37


def class_name(cls: int) -> str:
    return "background" if cls == BACKGROUND else ACTIONS[cls - 1]


def events_to_frames(events, n_frames: int) -> np.ndarray:
    """Intervals -> one class id per frame.

    events: iterable of (start, stop, cls) with [start, stop) semantics; parts outside [0, n_frames) are
    clipped. Later events overwrite earlier ones where they overlap, so callers that need a policy for
    overlaps (see `features.pipeline._labels_for_pair`) must order events accordingly.
    Returns int8 [n_frames], 0 = background.
    """
    out = np.zeros(n_frames, dtype=np.int8)
    for start, stop, cls in events:
        s, e = max(int(start), 0), min(int(stop), n_frames)
        if e > s:
            out[s:e] = cls
    return out


def runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of equal values of a 1-D array (background included): starts, stops (exclusive), values.

    [0, 0, 3, 3, 3, 0] -> starts [0, 2, 5], stops [2, 5, 6], values [0, 3, 0]; an empty array gives three
    empty ones.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp), labels[:0]
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate(([0], change))
    stops = np.concatenate((change, [labels.size]))
    return starts, stops, labels[starts]


def frames_to_events(labels: np.ndarray, min_length: int = 1) -> list[tuple[int, int, int]]:
    """One class id per frame -> maximal runs of one non-background class as (start, stop, cls).

    Adjacent runs of different classes are split; background splits runs; runs shorter than `min_length`
    frames are dropped. Inverse of `events_to_frames` for non-overlapping events.
    """
    starts, stops, classes = runs(np.asarray(labels))
    keep = (classes != BACKGROUND) & (stops - starts >= min_length)
    return [(int(s), int(e), int(c)) for s, e, c in zip(starts[keep], stops[keep], classes[keep])]
