"""Known defects of the real MABe data that the pipeline corrects, with the evidence, in one place.

1. Labels on another frame axis than the tracking (`LABEL_FPS`).
   The four AdaptableSnail training videos 143861384, 878123481, 1212811043 and 1596473327 are the only
   AdaptableSnail videos of train.csv with `frames_per_second` 25 (the other 13 are 30 fps); all four are
   3,599 s long, 968 x 608 px and track 10 body parts. Their tracking has 25 frames per second, but their
   annotation frame numbers count frames of a 30-fps copy of the same recording: annotation frame f is the
   moment f / 30 s, which is tracking frame f x 25 / 30. Read as tracking frames, the labels run 20 %
   slow: an event at the end of the hour sits about 10 minutes late, and every annotation past tracking
   frame ~90,000 (3,599 s x 25) falls off the end of the video. The 2nd-place team of the competition found
   the same (their write-up: "labels are provided at 30 FPS"); on the hidden test set, multiplying their
   predicted start/stop frames of such videos by 30 / 25 raised their private score by 0.009, i.e. the
   hidden ground truth of such test videos uses the 30-fps axis too. The hidden test ids are unknown, so
   the rule is keyed by (lab, tracking fps); in the packaged train.csv it selects exactly the four videos
   above (`KNOWN_LABEL_FPS_VIDEOS`, checked by tests/test_quirks.py).

   Mapping (both directions round half up, stop frames exclusive like start frames):
       label axis -> tracking axis:  f_track = round(f_label x fps / label_fps)   (30 -> 25: x 5/6)
       tracking axis -> label axis:  f_label = round(f_track x label_fps / fps)   (25 -> 30: x 6/5)
   Label -> tracking merges frames (6 label frames share 5 tracking frames); tracking -> label -> tracking
   is exact whenever label_fps >= fps (the case here): |round(6g/5) x 5/6 - g| <= 5/12 < 1/2.
   `features.synth --fps-quirk` writes its 25-fps AdaptableSnail labels on the 30-fps axis with the second
   rule, so the first rule recovers the true frames exactly.

2. Known bad labels (`KNOWN_BAD_LABELS`): AdaptableSnail 1212811043 has erroneous annotations and mouse
   identities permuted against the tracking (competition discussion 612531; several top solutions drop it).
   `features.build --exclude-videos` leaves it out of training caches by default.

3. The labs of the hidden test set (`HIDDEN_TEST_LABS`): the public test.csv lists one placeholder video
   (AdaptableSnail 438887472); the hidden one (about 200 videos) holds only the 15 "adjective-animal" labs of
   train.csv, the 368 annotated training videos named <Adjective><Animal> (competition data page and
   discussion; docs/mabe.md, Counts). The public sets CalMS21_*, CRIM13 and MABe22_* are training-only.
   `test_labs(data_root)` adds the labs of the data's own test.csv (the synthetic twin's, or a future
   release's): cross-validation folds are dealt over these labs (`features.cache.assign_folds`).
"""

from __future__ import annotations

import numpy as np

# (lab_id, tracking frames_per_second) -> frame rate of the axis its annotation frame numbers count.
LABEL_FPS: dict[tuple[str, float], float] = {("AdaptableSnail", 25.0): 30.0}
# The training videos the rule selects (the evidence above); the hidden test set has more.
KNOWN_LABEL_FPS_VIDEOS: tuple[int, ...] = (143861384, 878123481, 1212811043, 1596473327)
# Training videos whose labels are wrong: excluded from training caches by default.
KNOWN_BAD_LABELS: tuple[int, ...] = (1212811043,)
# The 15 labs of the hidden test set (evidence above, 3.): what validation folds are dealt over by default.
HIDDEN_TEST_LABS: tuple[str, ...] = (
    "AdaptableSnail", "BoisterousParrot", "CautiousGiraffe", "DeliriousFly", "ElegantMink", "GroovyShrew",
    "InvincibleJellyfish", "JovialSwallow", "LyricalHare", "NiftyGoldfinch", "PleasantMeerkat",
    "ReflectiveManatee", "SparklingTapir", "TranquilPanther", "UppityFerret",
)


def label_fps(lab_id: str, fps: float) -> float:
    """Frame rate of the axis a video's annotation frame numbers count (== fps unless listed in LABEL_FPS)."""
    fps = float(fps)
    for (lab, tracked), labelled in LABEL_FPS.items():
        if lab == str(lab_id) and abs(fps - tracked) < 0.01:
            return labelled
    return fps


def test_labs(test_csv_labs=()) -> list[str]:
    """The labs a model is judged on: HIDDEN_TEST_LABS plus `test_csv_labs` (the lab_id column of the data's
    own test.csv, if any), sorted."""
    return sorted(set(HIDDEN_TEST_LABS) | {str(lab) for lab in test_csv_labs})


def _rescale(frames, num: float, den: float) -> np.ndarray:
    """round(frames x num / den), halves up, as int64 (frames: int scalar or array)."""
    return np.floor(np.asarray(frames, dtype=np.float64) * num / den + 0.5 + 1e-9).astype(np.int64)


def label_to_tracking(frames, lab_id: str, fps: float) -> np.ndarray:
    """Annotation frame numbers -> tracking frames of the video (unchanged unless the video is listed)."""
    lf = label_fps(lab_id, fps)
    return np.asarray(frames, dtype=np.int64) if lf == float(fps) else _rescale(frames, fps, lf)


def tracking_to_label(frames, lab_id: str, fps: float) -> np.ndarray:
    """Tracking frames -> the frame numbers the video's annotations (and the metric's solution) use."""
    lf = label_fps(lab_id, fps)
    return np.asarray(frames, dtype=np.int64) if lf == float(fps) else _rescale(frames, lf, fps)


def events_to_label_axis(events: list[tuple[int, int, int]], lab_id: str, fps: float) -> list:
    """[(start, stop, cls)] on the tracking axis -> the same on the label axis (order kept: the map is
    monotone, so intervals that did not overlap still do not)."""
    if label_fps(lab_id, fps) == float(fps) or not events:
        return list(events)
    se = tracking_to_label(np.array([(s, e) for s, e, _ in events], dtype=np.int64), lab_id, fps)
    return [(int(s), int(e), c) for (s, e), (_, _, c) in zip(se, events)]
