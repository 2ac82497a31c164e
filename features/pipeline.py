"""One video -> per-(agent, target) feature matrices, frame labels and whitelist masks.

`video_features` is the single function used by the cache build (features.build) and by offline predict,
so training and inference see identical features. Steps: canonical skeleton with gap filling
(features.skeleton; gaps up to `max_gap_s` seconds interpolated) -> pixels to cm (pix_per_cm_approx) ->
POSITIONS resampled to `target_fps` (features.resample.resample_positions: low-passed first when
decimating, e.g. 120 -> 30 fps) -> pair or motion features at the target rate (features.motion; speeds in
cm/s): velocities, accelerations and angles are computed after resampling, so tracker jitter at 120 fps is
not differentiated at 120 fps, and no angle is ever interpolated (a heading going 179 -> -179 deg passes
through 180, not 0) -> fixed per-feature scaling and clipping so every value is finite and O(1).

Labels: annotation frame numbers are first mapped onto the tracking axis where the lab records them on
another frame axis (features.quirks: the 25-fps AdaptableSnail videos labelled at 30 fps), then painted.

Pairs: every ordered (agent, target) of the video's normalised whitelist (`behaviors`), self pairs as
(a, a); only pairs with at least one whitelisted action. A whitelisted mouse that the metadata lists but
that has no valid tracked point is bad input (MabeDataError). Exception, a real quirk: four 3-mouse
AdaptableSnail videos whitelist a `mouse4` the metadata does not list and nobody tracked; pairs with such a
mouse are dropped and counted (`counts["unlisted_pairs"]`). With `untracked="drop"` (offline predict) a
whitelisted mouse without any valid point drops only its own pairs, counted in `counts["untracked_pairs"]`.

Overlap policy (labels): the metric allows one action per (pair, frame), but annotations sometimes overlap
with different actions for the same pair. Where they do, the SHORTER interval wins on the overlap (it is
usually the more specific, rarer event, e.g. a short attack inside a chase; equal lengths: the higher class
id wins, so the result never depends on file order). Every such
pair-frame is counted in `VideoFeatures.counts["overlap_frames"]` (and the build summary).

Used by `python -m features.build` (the cache) and offline predict; quick look at the feature layout:

    python -c "from features.pipeline import FeatureSettings as S; s = S(); print(s.num_features)"
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features import motion, quirks
from features.errors import MabeDataError
from features.io import (
    Tracking,
    check_annotations_tracked,
    kaggle_paths,
    parse_behaviors,
    read_annotations,
    read_tracking,
)
from features.labels import CLASS_OF, NUM_CLASSES, events_to_frames
from features.resample import (
    ResamplePlan,
    make_plan,
    resample_linear,
    resample_nearest,
    resample_positions,
    to_original,
)
from features.skeleton import CANONICAL, C, fill_gaps, to_canonical

FEATURE_VERSION = 2  # bump when the feature math changes: invalidates caches
# 2: positions resampled (low-passed when decimating) before kinematics; max_gap in seconds; labels of the
#    25-fps AdaptableSnail videos mapped from their 30-fps axis (features.quirks)
RAW_POINTS = 18  # point slots of the seed's motion layout (the most points any lab tracks)

# Fixed divisors that bring each feature group to O(1) (applied after computing in physical units).
_SCALE_PAIR_PREFIX = (
    ("dist_rate", 50.0),  # cm/s
    ("dist_", 10.0),  # cm
    ("rel_vel_", 50.0),  # cm/s
    ("heading_diff_", 1.0),  # sin / cos
    ("heading_diff", 180.0),  # deg
    ("a_turn_rate", 360.0),
    ("t_turn_rate", 360.0),  # deg/s
    ("a_nose_speed", 50.0),
    ("t_nose_speed", 50.0),
    ("a_speed", 50.0),
    ("t_speed", 50.0),  # cm/s
    ("a_accel", 1000.0),
    ("t_accel", 1000.0),  # cm/s^2
    ("a_body_len", 10.0),
    ("t_body_len", 10.0),  # cm
    ("xdist_", 10.0),
    ("adist_", 10.0),
    ("tf_", 10.0),  # cm (pair_rich set)
)
PAIR_SETS = ("pair", "pair_rich")  # agent-centred sets (features.motion), left/right mirror TTA applies
FEATURE_SETS = PAIR_SETS + ("motion",)


def _scale_of(name: str) -> float:
    if name.endswith("_missing") or name in ("is_self",) or name.endswith("_present"):
        return 1.0
    for prefix, s in _SCALE_PAIR_PREFIX:
        if name.startswith(prefix):
            return s
    if name.endswith("_speed"):
        return 50.0
    if name.endswith("_accel"):
        return 1000.0
    if name.startswith(("a_", "t_")):
        return 10.0  # agent-frame coordinates, cm
    return 50.0  # motion-set absolute coordinates, cm


@dataclass
class FeatureSettings:
    """How features are computed; saved in the cache's meta.json and in every checkpoint's config."""

    feature_set: str = field(default="pair", metadata={"help": (
        "'pair': agent-centred rotation-invariant pair features (79); 'pair_rich': the pair set + all 81 "
        "agent-target point distances, the agent in the target's body frame, 36 within-agent distances "
        "(214); 'motion': the seed's coordinates + speed + acceleration of all mice (4 mice x 18 points -> "
        "288 values)")})
    target_fps: float | None = field(default=30.0, metadata={"help": (
        "resample every video to this frame rate ('none' keeps each video's own fps)")})
    max_gap_s: float = field(default=10 / 30, metadata={"help": (
        "missing runs up to this many seconds (rounded to the video's own frames: 10 frames at 30 fps, 40 at "
        "120, 3 at 10) are linearly interpolated (longer: held)")})
    max_mice: int = field(default=4, metadata={"help": (
        "mouse slots of the motion set (agent, target, others, zero padded)")})
    motion_points: str = field(default="raw", metadata={"help": (
        "motion set only: 'raw' = the lab's own points sorted by name, padded to 18 slots (the seed's exact "
        "4 x 18 -> 288 layout), or 'canonical' = the 9 canonical points + slot/is_self flags")})
    clip: float = field(default=10.0, metadata={"help": "after scaling, values are clipped to [-clip, clip]"})
    fix_label_fps: bool = field(default=True, metadata={"help": (
        "map the labels of videos annotated on another frame axis (features/quirks.py: the 25-fps "
        "AdaptableSnail videos labelled at 30 fps) onto the tracking axis, and predictions back; off = the "
        "labels as written (the pre-issue-14 behaviour, for comparisons)")})

    def __post_init__(self):
        if self.feature_set not in FEATURE_SETS:
            raise ValueError(f"feature_set must be one of {FEATURE_SETS}, got {self.feature_set!r}")
        if self.target_fps is not None:
            self.target_fps = float(self.target_fps)
            if not self.target_fps > 0:
                raise ValueError(f"target_fps must be > 0 or None, got {self.target_fps}")
        self.max_gap_s = float(self.max_gap_s)
        if not self.max_gap_s >= 0:
            raise ValueError(f"max_gap_s must be >= 0, got {self.max_gap_s}")
        if self.motion_points not in ("raw", "canonical"):
            raise ValueError(f"motion_points must be 'raw' or 'canonical', got {self.motion_points!r}")
        if not 1 <= int(self.max_mice) <= 8:
            raise ValueError("max_mice must be in 1..8")
        self.max_mice = int(self.max_mice)
        if not self.clip > 0:
            raise ValueError("clip must be > 0")
        self.clip = float(self.clip)
        self.fix_label_fps = bool(self.fix_label_fps)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureSettings":
        """Settings from a dict; unknown keys ignored. Old caches/checkpoints (feature version 1) stored
        `max_gap` in frames: it reads as seconds at 30 fps (10 frames -> 1/3 s)."""
        d = dict(d or {})
        if "max_gap" in d and "max_gap_s" not in d:
            d["max_gap_s"] = int(d["max_gap"]) / 30.0
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def gap_frames(self, fps: float) -> int:
        """`max_gap_s` in frames of a video at `fps`, rounded half up (1/3 s: 10 at 30 fps, 40 at 120)."""
        return int(np.floor(self.max_gap_s * float(fps) + 0.5 + 1e-9))

    def feature_names(self) -> list[str]:
        if self.feature_set == "pair":
            return motion.pair_feature_names()
        if self.feature_set == "pair_rich":
            return motion.pair_rich_feature_names()
        if self.motion_points == "raw":
            return motion.motion_feature_names(self.max_mice, [f"p{k:02d}" for k in range(RAW_POINTS)])
        names = motion.motion_feature_names(self.max_mice, CANONICAL)
        return names + [f"slot{m}_present" for m in range(self.max_mice)] + ["is_self"]

    @property
    def num_features(self) -> int:
        return len(self.feature_names())

    def scales(self) -> np.ndarray:
        """Divisor of every feature (float32 [F])."""
        return np.array([_scale_of(n) for n in self.feature_names()], dtype=np.float32)


@dataclass
class VideoFeatures:
    """Everything one video contributes: see docs/contracts.md."""

    video_id: int
    lab_id: str
    pairs: list[tuple[int, int]]
    x: np.ndarray  # float32 [P, T', F]
    labels: np.ndarray | None  # int8 [P, T'] or None without annotations
    allowed: np.ndarray  # bool [P, 38] normalised whitelist, background True
    allowed_raw: np.ndarray  # bool [P, 38] only entries the metric accepts verbatim
    n_frames_orig: int
    fps: float
    plan: ResamplePlan
    counts: dict = field(
        default_factory=dict
    )  # overlap_frames, overlap_pairs, dropped_events, clipped_frames, label_events, unlisted_pairs,
    #    untracked_pairs, untracked_mice (list), remapped_events (fps quirk)
    label_fps: float | None = None  # the lab's label axis where labels were mapped from it (fix_label_fps)

    @property
    def n_frames(self) -> int:
        return self.x.shape[1]

    def to_label_axis(self, events: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        """Intervals [(start, stop, cls)] in the video's own (tracking) frames -> the frame numbers its labels
        and the metric's solution use (features.quirks; unchanged for almost every video)."""
        if self.label_fps is None or self.label_fps == self.fps:
            return list(events)
        return quirks.events_to_label_axis(events, self.lab_id, self.fps)

    def to_original(self, arr: np.ndarray, axis: int = 0) -> np.ndarray:
        """Time on `axis` from resampled frames (T') to the video's own frames (n_frames_orig), exactly:
        e.g. [T'] -> [n_frames_orig]; probs [P, T', 38] with axis=1 -> [P, n_frames_orig, 38]."""
        return to_original(arr, self.plan, axis=axis)


def _get(row, key, default=None):
    try:
        v = row[key]
    except (KeyError, IndexError):
        return default
    return v


def _whitelists(meta_row, file, video):
    beh = _get(meta_row, "behaviors")
    strict = _get(meta_row, "behaviors_strict")
    if beh is None or strict is None:
        _, beh, strict, _, _ = parse_behaviors(_get(meta_row, "behaviors_labeled"), file=file, video=video)
    return [tuple(b) for b in beh], [tuple(b) for b in strict]


def _listed_mice(meta_row) -> set[int] | None:
    """Mice the metadata describes (strain or colour given), or None when the row does not say."""
    listed, known = set(), False
    for m in range(1, 5):
        vals = [_get(meta_row, f"mouse{m}_{f}") for f in ("strain", "color")]
        if any(v is not None for v in vals):
            known = True
        if any(v is not None and not (isinstance(v, float) and np.isnan(v)) and v is not pd.NA for v in vals):
            listed.add(m)
    if not known:
        n = _get(meta_row, "n_mice")
        return set(range(1, int(n) + 1)) if n is not None else None
    return listed


def _labels_for_pair(events: list[tuple[int, int, int]], n_frames: int) -> tuple[np.ndarray, int]:
    """Paint events (start, stop, cls) of one pair: shorter intervals win where different classes overlap.

    Returns (int8 [n_frames], number of frames covered by >= 2 different classes).
    """
    if not events:
        return np.zeros(n_frames, dtype=np.int8), 0
    cover = {}
    for s, e, c in events:
        s, e = max(s, 0), min(e, n_frames)
        if e > s:
            m = cover.setdefault(c, np.zeros(n_frames, dtype=bool))
            m[s:e] = True
    n_classes = np.zeros(n_frames, dtype=np.int16)
    for m in cover.values():
        n_classes += m
    ordered = sorted(events, key=lambda ev: (-(ev[1] - ev[0]), ev[2]))  # longest first, painted over
    return events_to_frames(ordered, n_frames), int((n_classes > 1).sum())


def _mouse_order(agent: int, target: int, mice: list[int], slots: int) -> list[int | None]:
    order = [agent] + ([target] if target != agent else []) + [m for m in mice if m not in (agent, target)]
    order = order[:slots]
    return order + [None] * (slots - len(order))


def _check_row(meta_row, source) -> tuple[int, str, float, float]:
    """(video_id, lab_id, fps, pix_per_cm) of a metadata row; fps and scale must be positive."""
    video = int(_get(meta_row, "video_id"))
    lab = str(_get(meta_row, "lab_id"))
    fps = float(_get(meta_row, "frames_per_second"))
    ppc = float(_get(meta_row, "pix_per_cm_approx"))
    if not (fps > 0 and ppc > 0):
        raise MabeDataError(
            f"frames_per_second {fps} and pix_per_cm_approx {ppc} must be > 0", file=source, video=video
        )
    return video, lab, fps, ppc


def _tracked_pairs(pairs, beh, canon, mouse_pos, meta_row, source, video, untracked: str = "error"):
    """Drop pairs with a whitelisted mouse the metadata does not list and nobody tracked (a real quirk);
    any other whitelisted mouse without a valid point is an error, or with untracked="drop" drops its own
    pairs. Returns (pairs, beh, n unlisted pairs dropped, [untracked mice], n untracked pairs dropped)."""
    needed = sorted({m for p in pairs for m in p})
    listed = _listed_mice(meta_row)
    unlisted, untracked_mice = set(), set()
    for m in needed:
        if m not in mouse_pos or np.isnan(canon[:, mouse_pos[m], :, 0]).all():
            if listed is not None and m not in listed and m not in mouse_pos:
                unlisted.add(
                    m
                )  # real quirk: 3-mouse AdaptableSnail videos whitelist a mouse4 that does not exist
                continue
            if untracked == "drop":
                untracked_mice.add(m)
                continue
            raise MabeDataError(
                f"mouse {m} is whitelisted but has no valid tracked point (all coordinates missing)",
                file=source,
                video=video,
            )
    n_unlisted_pairs = sum(1 for p in pairs if set(p) & unlisted)
    n_untracked_pairs = sum(1 for p in pairs if set(p) & untracked_mice and not set(p) & unlisted)
    gone = unlisted | untracked_mice
    if gone:
        pairs = [p for p in pairs if not set(p) & gone]
        beh = [b for b in beh if not {b[0], b[1]} & gone]
    return pairs, beh, n_unlisted_pairs, sorted(untracked_mice), n_untracked_pairs


def _per_mouse_motion(tracking: Tracking, canon, cm, mouse_pos, fps, ppc, plan: ResamplePlan,
                      settings: FeatureSettings):
    """Motion set: (features [T', 4 * width] of every mouse with a valid point, those mice, point width).
    `cm`: canonical positions already resampled to the plan's rate; raw points are resampled here."""
    valid_mice = [m for m in tracking.mouse_ids if not np.isnan(canon[:, mouse_pos[m], :, 0]).all()]
    if settings.motion_points == "raw":
        # the lab's own points, gaps filled like the canonical ones, never-seen points at 0, 18 slots
        order = np.argsort(np.asarray(tracking.bodyparts))[:RAW_POINTS]  # sorted by name
        raw = fill_gaps(tracking.xy[:, :, order], settings.gap_frames(fps)) / np.float32(ppc)
        raw = resample_positions(np.nan_to_num(raw, nan=0.0), plan)
        pad = RAW_POINTS - raw.shape[2]
        if pad > 0:
            raw = np.concatenate([raw, np.zeros(raw.shape[:2] + (pad, 2), dtype=raw.dtype)], axis=2)
        src, width = raw, RAW_POINTS
    else:
        src, width = cm, C
    per_mouse = {
        m: motion.motion_features(src[:, [mouse_pos[m]]], plan.target_fps) for m in valid_mice
    }  # [T', 4 * width]
    return per_mouse, valid_mice, width


def _motion_pair(a, t, per_mouse, valid_mice, width, n_new, settings: FeatureSettings) -> np.ndarray:
    """Motion-set features of one pair: agent, target, other mice in their slots (zeros where empty)."""
    slots = _mouse_order(a, t, valid_mice, settings.max_mice)
    zeros = np.zeros((n_new, 4 * width))
    blocks = [per_mouse[m] if m is not None else zeros for m in slots]
    # regroup so the layout is all coords, then all speeds, then all accels (as motion_feature_names)
    coords = [b[:, : 2 * width] for b in blocks]
    speeds = [b[:, 2 * width : 3 * width] for b in blocks]
    accels = [b[:, 3 * width :] for b in blocks]
    extra = []
    if settings.motion_points == "canonical":
        present = np.array([m is not None for m in slots], dtype=np.float64)
        extra = [np.broadcast_to(present, (n_new, len(slots))), np.full((n_new, 1), float(a == t))]
    return np.concatenate(coords + speeds + accels + extra, axis=1)


def _pair_matrix(pairs, tracking: Tracking, canon, missing, mouse_pos, fps, ppc, plan: ResamplePlan,
                 settings: FeatureSettings) -> np.ndarray:
    """float32 [P, T', F]: every pair's features from positions resampled to the plan's rate (kinematics at
    that rate), scaled and clipped to [-clip, clip]."""
    cm = resample_positions(canon / np.float32(ppc), plan)  # [T', M, C, 2], low-passed when decimating
    miss = resample_linear(missing.astype(np.float32), plan)  # share of filled neighbours, 0..1
    scales = settings.scales()
    x = np.empty((len(pairs), plan.n_new, settings.num_features), dtype=np.float32)
    if not pairs:
        return x
    if settings.feature_set == "motion":
        per_mouse, valid_mice, width = _per_mouse_motion(tracking, canon, cm, mouse_pos, fps, ppc, plan,
                                                         settings)
    for p, (a, t) in enumerate(pairs):
        if settings.feature_set in PAIR_SETS:
            ia, it = mouse_pos[a], mouse_pos[t]
            fn = motion.pair_features if settings.feature_set == "pair" else motion.pair_rich_features
            f = fn(
                cm[:, ia],
                cm[:, it],
                plan.target_fps,
                agent_missing=miss[:, ia],
                target_missing=miss[:, it],
                is_self=(a == t),
            )
        else:
            f = _motion_pair(a, t, per_mouse, valid_mice, width, plan.n_new, settings)
        f = f / scales
        x[p] = np.clip(
            np.nan_to_num(f, nan=0.0, posinf=settings.clip, neginf=-settings.clip),
            -settings.clip,
            settings.clip,
        )
    return x


def _allowed(pairs, beh, strict) -> tuple[np.ndarray, np.ndarray]:
    """bool [P, 38] masks of the normalised and of the strict whitelist (background always allowed)."""
    allowed = np.zeros((len(pairs), NUM_CLASSES), dtype=bool)
    allowed_raw = np.zeros((len(pairs), NUM_CLASSES), dtype=bool)
    allowed[:, 0] = allowed_raw[:, 0] = True
    row = {pr: i for i, pr in enumerate(pairs)}
    for a, t, act in beh:
        allowed[row[(a, t)], CLASS_OF[act]] = True
    for a, t, act in strict:
        if (a, t) in row:
            allowed_raw[row[(a, t)], CLASS_OF[act]] = True
    return allowed, allowed_raw


def _frame_labels(annotations: pd.DataFrame, pairs, allowed, n_orig: int, plan: ResamplePlan,
                  counts: dict, lab: str | None = None) -> np.ndarray:
    """int8 [P, T'] labels of the whitelisted annotated events (overlap policy: module docstring), their
    frames first mapped onto the tracking axis (features.quirks); updates `counts` (dropped, clipped,
    overlapping, remapped). lab None: frame numbers taken as written."""
    row = {pr: i for i, pr in enumerate(pairs)}
    labels = np.zeros((len(pairs), plan.n_new), dtype=np.int8)
    by_pair: dict[tuple[int, int], list] = {}
    starts, stops = annotations["start_frame"].to_numpy(), annotations["stop_frame"].to_numpy()
    if lab is not None and quirks.label_fps(lab, plan.fps) != plan.fps:
        starts = quirks.label_to_tracking(starts, lab, plan.fps)
        stops = quirks.label_to_tracking(stops, lab, plan.fps)
        counts["remapped_events"] += len(annotations)
    for ag, tg, act, s, e in zip(
        annotations["agent_id"],
        annotations["target_id"],
        annotations["action"],
        starts,
        stops,
    ):
        key = (int(ag), int(tg))
        if key not in row or not allowed[row[key], CLASS_OF[act]]:
            counts["dropped_events"] += 1  # annotated but not whitelisted for this pair: no loss on it
            continue
        counts["clipped_frames"] += max(0, int(e) - max(int(s), n_orig))
        by_pair.setdefault(key, []).append((int(s), int(e), CLASS_OF[act]))
        counts["label_events"] += 1
    for key, events in by_pair.items():
        lab_frames, n_over = _labels_for_pair(events, n_orig)
        counts["overlap_frames"] += n_over
        counts["overlap_pairs"] += n_over > 0
        labels[row[key]] = resample_nearest(lab_frames, plan)
    return labels


def video_features(
    meta_row,
    tracking: Tracking,
    settings: FeatureSettings,
    annotations: pd.DataFrame | None = None,
    *,
    source: str | Path | None = None,
    annotation_source: str | Path | None = None,
    untracked: str = "error",
) -> VideoFeatures:
    """Features, labels and masks of every whitelisted pair of one video (see module docstring).

    meta_row: a row of `features.io.read_metadata` (a raw CSV row also works: the whitelist is parsed).
    source / annotation_source: file names used in error messages (tracking / annotation parquet).
    untracked: a whitelisted, listed mouse without any valid point: "error" (MabeDataError, the cache
    build) or "drop" (its pairs are dropped and counted; offline predict).
    """
    if untracked not in ("error", "drop"):
        raise ValueError(f"untracked must be 'error' or 'drop', got {untracked!r}")
    video, lab, fps, ppc = _check_row(meta_row, source)
    beh, strict = _whitelists(meta_row, source, video)
    pairs = sorted({(a, t) for a, t, _ in beh})
    check_annotations_tracked(annotations, tracking, file=annotation_source or source, video=video)

    n_orig = tracking.n_frames
    plan = make_plan(n_orig, fps, settings.target_fps)
    canon, missing = to_canonical(tracking.xy, tracking.bodyparts, settings.gap_frames(fps))
    mouse_pos = {m: i for i, m in enumerate(tracking.mouse_ids)}
    pairs, beh, n_unlisted_pairs, untracked_mice, n_untracked_pairs = _tracked_pairs(
        pairs, beh, canon, mouse_pos, meta_row, source, video, untracked
    )
    x = _pair_matrix(pairs, tracking, canon, missing, mouse_pos, fps, ppc, plan, settings)
    allowed, allowed_raw = _allowed(pairs, beh, strict)
    counts = {
        "overlap_frames": 0,
        "overlap_pairs": 0,
        "dropped_events": 0,
        "clipped_frames": 0,
        "label_events": 0,
        "unlisted_pairs": n_unlisted_pairs,
        "untracked_pairs": n_untracked_pairs,
        "untracked_mice": untracked_mice,
        "remapped_events": 0,
    }
    labels = None
    if annotations is not None:
        labels = _frame_labels(annotations, pairs, allowed, n_orig, plan, counts,
                               lab if settings.fix_label_fps else None)
    return VideoFeatures(
        video_id=video,
        lab_id=lab,
        pairs=pairs,
        x=x,
        labels=labels,
        allowed=allowed,
        allowed_raw=allowed_raw,
        n_frames_orig=n_orig,
        fps=fps,
        plan=plan,
        counts=counts,
        label_fps=quirks.label_fps(lab, fps) if settings.fix_label_fps else None,
    )


def load_video(root: str | Path, split: str, meta_row, settings: FeatureSettings) -> VideoFeatures:
    """Read one video of a Kaggle-layout folder and compute its features (annotations for split 'train')."""
    video = int(_get(meta_row, "video_id"))
    tracking_path, ann_path = kaggle_paths(root, split, _get(meta_row, "lab_id"), video)
    if not tracking_path.is_file():
        raise MabeDataError(
            "video is listed in the metadata but has no tracking file", file=tracking_path, video=video
        )
    tracking = read_tracking(tracking_path, video)
    annotations = read_annotations(ann_path, video) if ann_path is not None else None
    if split == "train" and annotations is None:
        annotations = pd.DataFrame(
            {"agent_id": [], "target_id": [], "action": [], "start_frame": [], "stop_frame": []}
        )
    return video_features(
        meta_row, tracking, settings, annotations, source=tracking_path, annotation_source=ann_path
    )
