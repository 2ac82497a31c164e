"""One synthetic video: simulate, render, degrade and annotate it from one real metadata row."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from features.errors import MabeDataError
from features.quirks import label_fps, tracking_to_label
from features.synth.annotate import QUANTUM, annotate
from features.synth.arena import Arena
from features.synth.body import BACK, FRONT, TAIL
from features.synth.hard import LabStyle, annotate_hard, nose_distances
from features.synth.meta import META_GZ, n_mice, whitelist
from features.synth.noise import ID_SWAP, identity_swaps, missing_mask, out_of_frame
from features.synth.render import render
from features.synth.scenes import Ctx
from features.synth.simulate import simulate


@dataclass
class VideoResult:
    video_id: int
    lab_id: str
    n_frames: int
    events: list[tuple[int, int, str, int, int]]  # 1-based mice, annotated (noisy) intervals
    tracking: pa.Table
    positive_frames: int
    pair_frames: int
    overlaps: int
    whole_missing: int
    out_of_frame: int
    scenes: int = 0
    aborted: int = 0
    id_swaps: int = 0
    planted: list[tuple[int, int, str, int, int]] = field(default_factory=list)  # true episodes, same axis
    decoys: int = 0                                  # unlabelled look-alike scenes (hard mode)
    dropped: dict[str, int] = field(default_factory=dict)  # hard annotator: missed / too_far / too_short
    tracking_rows: int = 0                           # rows of `tracking` (kept when the writer drops it)
    planted_dist: list[float] = field(default_factory=list)  # hard mode: each planted episode's median
    #                                                  agent-nose -> target-centre distance (cm; 0 = self)


def tracking_table(xy: np.ndarray, present: np.ndarray, bodyparts: list[str]) -> pa.Table:
    f, m, k = np.nonzero(present)  # C order: frame, then mouse, then body part
    names = pa.array(bodyparts, type=pa.string())
    return pa.table({
        "video_frame": pa.array(f.astype(np.int64)),
        "mouse_id": pa.array((m + 1).astype(np.int64)),
        "bodypart": pa.DictionaryArray.from_arrays(pa.array(k.astype(np.int32)), names).cast(pa.string()),
        "x": pa.array(xy[f, m, k, 0].astype(np.float32)),
        "y": pa.array(xy[f, m, k, 1].astype(np.float32)),
    })


def _positive_frames(events, pairs: list[tuple[int, int]], n_frames: int) -> int:
    """Labelled (pair, frame) cells of the whitelisted pairs."""
    pos = 0
    for pair in pairs:
        mask = np.zeros(n_frames, dtype=bool)
        for a, t, _, s, e in events:
            if (a, t) == pair:
                mask[s:e] = True
        pos += int(mask.sum())
    return pos


def make_video(row: pd.Series, video_id: int, n_frames: int, rng: np.random.Generator,
               idle: tuple[float, float] = (1.5, 5.0), fps_quirk: bool = True,
               style: LabStyle | None = None) -> VideoResult:
    """Simulate, render, degrade and annotate one video of a metadata row (its lab, fps, parts, whitelist).

    fps_quirk: reproduce the real 25-fps AdaptableSnail defect (tracked at 25 fps, labels on a 30-fps frame
    axis; features.quirks): the written frame numbers are round(true x 30/25), so events past 5/6 of the video
    fall off its end when read as tracking frames. features.quirks.label_to_tracking recovers the true frames
    exactly. Ground truth in test_solution.csv gets the same defect, as on Kaggle.
    style: the lab's hard-mode style (features.synth.hard); None = the easy generator. `planted` holds the
    un-noised planted episodes (on the written labels' frame axis), the oracle of bench/synth_calibration.
    """
    lab = str(row["lab_id"])
    fps = float(row["frames_per_second"])
    wl = whitelist(row["behaviors_labeled"])
    mice = n_mice(row, wl)
    bodyparts = json.loads(row["body_parts_tracked"])
    unknown = [p for p in bodyparts if p not in FRONT and p not in BACK and p not in TAIL]
    if unknown:
        raise MabeDataError(f"the synthetic body model has no point(s) {unknown} (lab {lab})", file=META_GZ,
                            video=int(row["video_id"]))
    arena = Arena.from_row(row)
    ctx = Ctx(fps=fps, n_mice=mice, whitelist={(a - 1, t - 1, act) for a, t, act in wl}, rng=rng, style=style)
    sim = simulate(ctx, arena, n_frames, idle)
    xy = render(sim, bodyparts, arena, rng, fps)
    swaps = identity_swaps(xy, sim.center, fps, rng) if rng.random() < ID_SWAP.get(lab, 0.0) else 0
    present, whole = missing_mask(n_frames, mice, bodyparts, lab, fps, rng)
    out_of_frame(xy, present, arena, rng)
    dropped: dict[str, int] = {}
    dist: list[float] = []
    if style is None:
        events, overlaps = annotate(sim.events, n_frames, fps, rng, QUANTUM.get(lab, 1))
    else:
        dist = nose_distances(sim, sim.events)
        events, overlaps, dropped = annotate_hard(sim.events, n_frames, fps, rng, style, dist,
                                                  QUANTUM.get(lab, 1))
    events = [(a + 1, t + 1, act, s, e) for a, t, act, s, e in events]
    planted = [(a + 1, t + 1, act, s, e) for a, t, act, s, e in sim.events]
    if fps_quirk and label_fps(lab, fps) != fps:  # frame numbers of the 30-fps label axis
        events, planted = ([(a, t, act, int(tracking_to_label(s, lab, fps)),
                             int(tracking_to_label(e, lab, fps))) for a, t, act, s, e in evs]
                           for evs in (events, planted))
    pairs = sorted({(a, t) for a, t, _ in wl})
    xyf = xy.astype(np.float32)
    outside = int(((xyf[..., 0] < 0) | (xyf[..., 0] > arena.img_w) | (xyf[..., 1] < 0)
                   | (xyf[..., 1] > arena.img_h))[present].sum())
    tracking = tracking_table(xyf, present, bodyparts)
    return VideoResult(video_id=video_id, lab_id=lab, n_frames=n_frames, events=events,
                       tracking=tracking, tracking_rows=tracking.num_rows,
                       positive_frames=_positive_frames(events, pairs, n_frames),
                       pair_frames=len(pairs) * n_frames, overlaps=overlaps, whole_missing=whole,
                       out_of_frame=outside, scenes=sim.scenes, aborted=sim.aborted, id_swaps=swaps,
                       planted=planted, decoys=sim.decoys, dropped=dropped, planted_dist=dist)
