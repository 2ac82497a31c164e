import numpy as np

from features import labels as L


def test_vocabulary():
    assert L.NUM_CLASSES == 38
    assert L.CLASS_OF["allogroom"] == 1 and L.class_name(1) == "allogroom"
    assert L.class_name(0) == "background"
    assert L.SELF_CLASS_MASK.sum() == 11 and L.PAIR_CLASS_MASK.sum() == 26
    assert not (L.SELF_CLASS_MASK & L.PAIR_CLASS_MASK).any()


def test_events_to_frames_half_open():
    # [2, 5) -> frames 2, 3, 4; stop is exclusive
    lab = L.events_to_frames([(2, 5, 7)], 8)
    assert lab.tolist() == [0, 0, 7, 7, 7, 0, 0, 0]
    # clipped at both ends, empty interval contributes nothing
    assert L.events_to_frames([(-3, 2, 1), (6, 20, 2), (4, 4, 3)], 8).tolist() == [1, 1, 0, 0, 0, 0, 2, 2]


def test_round_trip_and_splits():
    events = [(0, 3, 5), (3, 6, 9), (8, 9, 5)]  # adjacent different actions, a gap, a 1-frame run
    lab = L.events_to_frames(events, 10)
    assert L.frames_to_events(lab) == events
    assert L.frames_to_events(lab, min_length=2) == [(0, 3, 5), (3, 6, 9)]
    rng = np.random.default_rng(0)
    for _ in range(50):
        lab = rng.choice([0, 0, 0, 1, 2], size=rng.integers(0, 40)).astype(np.int8)
        assert np.array_equal(L.events_to_frames(L.frames_to_events(lab), lab.size), lab)
