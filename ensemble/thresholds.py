"""Tune post-processing on out-of-fold probabilities to maximise the competition metric.

`tune(items)` starts from a config (default: `PostprocessConfig()`) and improves it in four recorded steps:

1. defaults: the exact score of the starting config;
2. thresholds: per (lab, action), coordinate ascent. For one action with the others fixed, a frame goes to
   the action iff its threshold <= u = p - max(best other margin, 0), so one histogram of u over the
   threshold grid gives the lab's TP/FP/FN for every threshold at once (including the frames the action
   steals from the others' argmax). Repeated over the lab's actions until nothing improves;
3. smoothing: each window of a small grid, thresholds re-tuned for one round from the current ones;
4. minimum duration (with gap filling): a small grid, exact evaluation.

A step's change is kept only if it raises the exact score, so the result is never below the start (the
final config is re-scored through the real post-processing path, `evaluate`). A per-action fallback
threshold (median over labs of the tuned values) covers labs that were not in the out-of-fold set.

`crossfit(items, groups)` is the score of the tuning *procedure* on videos it did not see: for each group of
videos, `tune` on the other groups' items and decide that group's frames with the result; then all groups are
scored together (per-lab pooling over every video, as the metric does), not averaged per group. The score of
`tune` on the same items it was tuned on (in-sample) is optimistic; the cross-fitted one is not fitted.
Imports only numpy (and pandas through ensemble.metric).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from ensemble.metric import PairFrames, aggregate, score_frames
from ensemble.postprocess import PostprocessConfig, drop_short, fill_gaps, frame_decisions, smooth
from features.errors import MabeDataError
from features.labels import ACTIONS, BACKGROUND, NUM_CLASSES

OFF = 2.0  # a threshold no probability reaches: the action is never predicted in that lab


@dataclass
class OOFItem:
    """Out-of-fold predictions of one (agent, target) pair: probs float[T, 38], labels int[T], and the raw
    whitelist (what the metric accepts) allowed_raw bool[38]. target == agent is a self pair."""

    lab_id: str
    video_id: int
    agent: int
    target: int
    probs: np.ndarray
    labels: np.ndarray
    allowed_raw: np.ndarray

    def __post_init__(self):
        self.probs = np.asarray(self.probs)
        self.labels = np.asarray(self.labels)
        self.allowed_raw = np.asarray(self.allowed_raw, dtype=bool)
        where = f"pair (agent {self.agent}, target {self.target})"
        bad_shape = self.probs.ndim != 2 or self.probs.shape != (self.labels.size, NUM_CLASSES)
        if bad_shape or self.labels.ndim != 1:
            raise MabeDataError(f"{where}: probs must be float[T, {NUM_CLASSES}] and labels int[T], got "
                                f"{self.probs.shape} and {self.labels.shape}", video=self.video_id)
        if self.allowed_raw.shape != (NUM_CLASSES,):
            raise MabeDataError(f"{where}: allowed_raw must be bool[{NUM_CLASSES}]", video=self.video_id)
        if not np.isfinite(self.probs).all():
            raise MabeDataError(f"{where}: probs contain NaN or inf", video=self.video_id)
        if self.probs.size and (self.probs.min() < 0 or self.probs.max() > 1):
            raise MabeDataError(f"{where}: probs must be probabilities in [0, 1]", video=self.video_id)
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= NUM_CLASSES):
            raise MabeDataError(f"{where}: labels must be class ids 0..{NUM_CLASSES - 1}",
                                video=self.video_id)


@dataclass
class TuneGrid:
    """The small grids searched. Thresholds are the candidates per (lab, action) (plus the current value
    and OFF = never predict)."""

    thresholds: tuple[float, ...] = tuple(np.round(np.arange(0.05, 0.951, 0.025), 4))
    windows: tuple[int, ...] = (1, 3, 5, 9, 15, 25)
    min_durations: tuple[int, ...] = (1, 2, 3, 5, 9)
    gap_fills: tuple[int, ...] = (0, 3)
    rounds: int = 3


@dataclass
class TuneResult:
    config: PostprocessConfig
    steps: dict[str, float] = field(default_factory=dict)  # defaults, thresholds, smoothing, min_duration
    candidates: int = 0  # (lab, action, threshold) settings scored by the sweeps

    def summary(self) -> str:
        lines = [f"  {name:<13} {value:.5f}" for name, value in self.steps.items()]
        c = self.config
        n_thr = sum(len(d) for d in c.thresholds.values())
        lines.append(f"  -> smooth_window {c.smooth_window}, min_duration {c.min_duration}, gap_fill "
                     f"{c.gap_fill}, {n_thr} (lab, action) thresholds, {len(c.action_thresholds)} fallbacks "
                     f"({self.candidates:,} candidate thresholds scored)")
        return "\n".join(lines)


def evaluate(items: list[OOFItem], cfg: PostprocessConfig, beta: float = 1.0) -> float:
    """The exact OOF score of `cfg`: the real post-processing per pair, then the frame metric."""
    pairs = [PairFrames(it.lab_id, it.video_id, it.agent, it.target, it.labels,
                        frame_decisions(it.probs, it.allowed_raw, cfg, it.lab_id), it.allowed_raw)
             for it in items]
    return score_frames(pairs, beta)


# --------------------------------------------------------------------------------------------------------
# One lab's frames as dense arrays
# --------------------------------------------------------------------------------------------------------

@dataclass
class _Lab:
    """One lab's scored frames as dense arrays, with the current decisions and their counts cached."""

    lab: str
    classes: np.ndarray  # int64[K] global class ids allowed somewhere in the lab (sorted)
    labels: np.ndarray  # int64[N]
    probs: np.ndarray  # float32[K, N] class-major, -inf where the pair does not allow the class
    bounds: np.ndarray  # int64[n_items + 1] item offsets in N
    thr: np.ndarray  # float64[K] current thresholds
    pred: np.ndarray = None  # int64[N] current decisions (global class ids)
    counts: np.ndarray = None  # int64[3, 38] tp, n_pred, n_label of `pred`

    def __post_init__(self):
        self.pred = self.decide()
        self.counts = _counts(self.labels, self.pred)

    def decide(self, rows: np.ndarray | None = None, skip: int = -1):
        """Decisions with the current thresholds (same rule as postprocess: argmax of p - thr among
        classes with p >= thr, ties to the lower class id) on `rows` (all if None).

        With skip = k, column k is left out and (best other margin, its global class or 0) is returned.
        """
        n = self.labels.size if rows is None else rows.size
        best = np.full(n, -np.inf)
        arg = np.zeros(n, dtype=np.int64)
        for k in range(self.classes.size):
            if k == skip:
                continue
            p = self.probs[k] if rows is None else self.probs[k, rows]
            m = p.astype(np.float64) - self.thr[k]
            better = m > best  # strict: ties keep the earlier (lower) class
            best = np.where(better, m, best)
            arg = np.where(better, self.classes[k], arg)
        cls = np.where(best >= 0, arg, BACKGROUND)
        return (best, cls) if skip >= 0 else cls

    def set_threshold(self, k: int, value: float) -> None:
        """Change one threshold and update the cached decisions where they can change."""
        low = min(self.thr[k], value)
        self.thr[k] = value
        rows = np.flatnonzero(self.probs[k] >= low)
        if rows.size:
            old = self.pred[rows]
            new = self.decide(rows)
            self.pred[rows] = new
            lab = self.labels[rows]
            self.counts += _counts(lab, new) - _counts(lab, old)


def _counts(labels: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """int64[3, 38]: tp, n_pred, n_label per class (class 0 included, ignored later)."""
    tp = np.bincount(labels[pred == labels], minlength=NUM_CLASSES)
    return np.stack([tp, np.bincount(pred, minlength=NUM_CLASSES),
                     np.bincount(labels, minlength=NUM_CLASSES)])


def _counts_dict(lab: str, c: np.ndarray) -> dict:
    """(lab, action) -> (tp, fp, fn) for the lab's action set, as ensemble.metric.frame_counts gives it."""
    out = {}
    for cls in np.flatnonzero((c[1, 1:] > 0) | (c[2, 1:] > 0)) + 1:
        tp, n_pred, n_label = (int(v) for v in c[:, cls])
        out[(lab, ACTIONS[cls - 1])] = (tp, n_pred - tp, n_label - tp)
    return out


def _prepare(items: list[OOFItem], window: int, start: PostprocessConfig) -> list[_Lab]:
    """Dense per-lab arrays of the items the metric scores (videos with at least one labelled frame)."""
    labelled = {it.video_id for it in items if it.labels.any()}
    by_lab: dict[str, list[OOFItem]] = {}
    for it in items:
        if it.video_id in labelled:
            by_lab.setdefault(str(it.lab_id), []).append(it)
    labs = []
    for lab in sorted(by_lab):
        group = by_lab[lab]
        union = np.zeros(NUM_CLASSES, dtype=bool)
        for it in group:
            union |= it.allowed_raw
        union[BACKGROUND] = False
        classes = np.flatnonzero(union)
        bounds = np.concatenate(([0], np.cumsum([it.labels.size for it in group]))).astype(np.int64)
        probs = np.empty((classes.size, bounds[-1]), dtype=np.float32)
        for it, s, e in zip(group, bounds[:-1], bounds[1:]):
            p = smooth(it.probs[:, classes], window).astype(np.float32, copy=False)
            probs[:, s:e] = np.where(it.allowed_raw[classes][None, :], p, -np.inf).T
        labs.append(_Lab(lab=lab, classes=classes.astype(np.int64),
                         labels=np.concatenate([it.labels.astype(np.int64) for it in group]), probs=probs,
                         bounds=bounds, thr=start.threshold_vector(lab)[classes].astype(np.float64)))
    return labs


# --------------------------------------------------------------------------------------------------------
# The threshold sweep
# --------------------------------------------------------------------------------------------------------

def _sweep_scores(L: _Lab, k: int, grid: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """The lab's score for every candidate threshold of column k, the others fixed: (candidates, scores).

    Candidates = grid + the current threshold + OFF. Only frames with p_k >= the lowest candidate can
    change; the rest keep their cached decisions. Exact except for exact ties of two margins.
    """
    cls_a = L.classes[k]
    cand = np.unique(np.concatenate([grid, [L.thr[k], OFF]]))
    G = cand.size
    rows = np.flatnonzero(L.probs[k] >= cand[0])
    labels = L.labels[rows]
    other_m, other = L.decide(rows, skip=k)
    u = L.probs[k, rows].astype(np.float64) - np.maximum(other_m, 0.0)
    j = np.searchsorted(cand, u, side="right")  # the action wins at candidate i iff i < j

    def above(hist):  # hist[G+1, ...] -> wins at each candidate i: sum of hist[k] for k > i
        return np.cumsum(hist[::-1], axis=0)[::-1][1:]

    tp_a = above(np.bincount(j[labels == cls_a], minlength=G + 1))
    pred_a = above(np.bincount(j, minlength=G + 1))
    stolen = other != BACKGROUND
    idx = j[stolen] * NUM_CLASSES + other[stolen]
    hit = labels[stolen] == other[stolen]
    lost_tp = above(np.bincount(idx, weights=hit, minlength=(G + 1) * NUM_CLASSES)
                    .reshape(G + 1, NUM_CLASSES))
    lost_pred = above(np.bincount(idx, minlength=(G + 1) * NUM_CLASSES).reshape(G + 1, NUM_CLASSES))

    # counts when the action never wins: cached counts with these rows re-decided without it
    base = L.counts - _counts(labels, L.pred[rows]) + _counts(labels, other)
    tp = base[0][None, :] - lost_tp
    n_pred = base[1][None, :] - lost_pred
    tp[:, cls_a] = tp_a
    n_pred[:, cls_a] = pred_a
    n_label = np.broadcast_to(base[2][None, :], tp.shape)
    fn = n_label - tp
    fp = n_pred - tp
    b2 = beta * beta
    denom = (1 + b2) * tp + b2 * fn + fp
    f = np.where(denom > 0, (1 + b2) * tp / np.where(denom > 0, denom, 1), 0.0)
    in_set = (n_label > 0) | (n_pred > 0)
    in_set[:, BACKGROUND] = False
    n_set = in_set.sum(axis=1)
    return cand, np.where(n_set > 0, (f * in_set).sum(axis=1) / np.maximum(n_set, 1), 0.0)


def _sweep_action(L: _Lab, k: int, grid: np.ndarray, beta: float, stats: dict | None = None
                  ) -> tuple[float, float]:
    """Best threshold of column k with the other thresholds fixed: (threshold, lab score); ties keep the
    current threshold."""
    current = L.thr[k]
    cand, scores = _sweep_scores(L, k, grid, beta)
    if stats is not None:
        stats["candidates"] = stats.get("candidates", 0) + cand.size
    cur = int(np.flatnonzero(cand == current)[0])
    best = int(np.argmax(scores))
    if scores[best] <= scores[cur] + 1e-12:
        return current, float(scores[cur])
    return float(cand[best]), float(scores[best])


def _ascent(labs: list[_Lab], grid: np.ndarray, rounds: int, beta: float, stats: dict | None = None) -> None:
    for L in labs:
        for _ in range(rounds):
            changed = False
            for k in range(L.classes.size):
                thr, _ = _sweep_action(L, k, grid, beta, stats)
                if thr != L.thr[k]:
                    L.set_threshold(k, thr)
                    changed = True
            if not changed:
                break


def _post(L: _Lab, min_duration: int, gap_fill: int) -> np.ndarray:
    if min_duration <= 1 and gap_fill <= 0:
        return L.pred
    out = np.empty_like(L.pred)
    for s, e in zip(L.bounds[:-1], L.bounds[1:]):
        out[s:e] = drop_short(fill_gaps(L.pred[s:e], gap_fill), min_duration)
    return out


def _score(labs: list[_Lab], beta: float, min_duration: int = 1, gap_fill: int = 0) -> float:
    """Exact score of the current thresholds (equals `evaluate` of the corresponding config)."""
    counts = {}
    for L in labs:
        plain = min_duration <= 1 and gap_fill <= 0
        c = L.counts if plain else _counts(L.labels, _post(L, min_duration, gap_fill))
        counts.update(_counts_dict(L.lab, c))
    return aggregate(counts, beta)


def _config(labs: list[_Lab], start: PostprocessConfig, **changes) -> PostprocessConfig:
    thresholds = {L.lab: {ACTIONS[c - 1]: float(t) for c, t in zip(L.classes, L.thr)} for L in labs}
    per_action: dict[str, list[float]] = {}
    for d in thresholds.values():
        for a, t in d.items():
            if t < OFF:
                per_action.setdefault(a, []).append(t)
    fallback = dict(start.action_thresholds)
    fallback.update({a: float(np.median(v)) for a, v in per_action.items()})
    return replace(start, thresholds={**start.thresholds, **thresholds}, action_thresholds=fallback,
                   **changes)


@dataclass
class CrossFitResult:
    score: float  # the official metric over all groups' held-out decisions together
    configs: dict[int, PostprocessConfig]  # group -> the config tuned on the other groups
    seconds: float = 0.0


def crossfit(items: list[OOFItem], groups: dict[int, int], start: PostprocessConfig | None = None,
             grid: TuneGrid | None = None, beta: float = 1.0, tune_post: bool = True,
             scope: str = "lab") -> CrossFitResult:
    """Cross-fitted score of tuning (see the module doc). groups: video_id -> group (every item's video must
    have one); each group's items are decided with `tune(scope=scope)` of the other groups' items (`start`
    when there are none, or with tune_post=False), then every decision is scored together."""
    t0 = time.perf_counter()
    start = start or PostprocessConfig()
    missing = {it.video_id for it in items} - set(groups)
    if missing:
        raise ValueError(f"crossfit: videos without a group: {sorted(missing)[:5]}")
    pairs, configs = [], {}
    for g in sorted({groups[it.video_id] for it in items}):
        fit = [it for it in items if groups[it.video_id] != g]
        cfg = tune(fit, start, grid, beta, scope).config if tune_post and fit else start
        configs[g] = cfg
        pairs += [PairFrames(it.lab_id, it.video_id, it.agent, it.target, it.labels,
                             frame_decisions(it.probs, it.allowed_raw, cfg, it.lab_id), it.allowed_raw)
                  for it in items if groups[it.video_id] == g]
    return CrossFitResult(score_frames(pairs, beta), configs, time.perf_counter() - t0)


SCOPES = ("lab", "action", "none", "argmax")
ARGMAX = PostprocessConfig(default_threshold=0.0, argmax=True)  # scope "argmax": the trainer's rule


def tune(items: list[OOFItem], start: PostprocessConfig | None = None, grid: TuneGrid | None = None,
         beta: float = 1.0, scope: str = "lab") -> TuneResult:
    """Thresholds, smoothing window and minimum duration that maximise the OOF metric (see module doc).

    scope: "lab" = a threshold per (lab, action); "action" = one threshold per action for every lab (the labs
    pooled while tuning: fewer values, less to overfit when each lab has few videos; written as the config's
    per-action thresholds); "none" = the starting config as it is (nothing tuned); "argmax" = `ARGMAX`, the
    trainer's argmax rule (an action wins a frame when its probability beats the background's), untuned."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    start = start or PostprocessConfig()
    if scope in ("none", "argmax"):
        cfg = start if scope == "none" else ARGMAX
        return TuneResult(cfg, {"defaults": evaluate(items, cfg, beta)})
    if scope == "action":
        return _tune_pooled(items, start, grid, beta)
    grid = grid or TuneGrid()
    thr_grid = np.asarray(sorted(grid.thresholds), dtype=np.float64)
    steps: dict[str, float] = {}
    base = evaluate(items, start, beta)
    steps["defaults"] = base

    # 2. thresholds at the starting window
    labs = _prepare(items, start.smooth_window, start)
    stats: dict = {}
    _ascent(labs, thr_grid, grid.rounds, beta, stats)
    cfg = _config(labs, start)
    s = _score(labs, beta, start.min_duration, start.gap_fill)
    if s > base:
        best, best_cfg, best_labs = s, cfg, labs
    else:
        best, best_cfg, best_labs = base, start, _prepare(items, start.smooth_window, start)
    steps["thresholds"] = best

    # 3. smoothing window, thresholds re-tuned for one round from the current ones
    for window in grid.windows:
        if window == best_cfg.smooth_window:
            continue
        labs = _prepare(items, window, best_cfg)
        _ascent(labs, thr_grid, 1, beta, stats)
        s = _score(labs, beta, best_cfg.min_duration, best_cfg.gap_fill)
        if s > best:
            best, best_labs = s, labs
            best_cfg = _config(labs, best_cfg, smooth_window=window)
    steps["smoothing"] = best

    # 4. minimum duration and gap filling
    for md in grid.min_durations:
        for gf in grid.gap_fills:
            if (md, gf) == (best_cfg.min_duration, best_cfg.gap_fill):
                continue
            s = _score(best_labs, beta, md, gf)
            if s > best:
                best = s
                best_cfg = replace(best_cfg, min_duration=md, gap_fill=gf)
    steps["min_duration"] = best

    # verify through the real post-processing path; never return worse than the start
    final = evaluate(items, best_cfg, beta)
    if final < base:
        best_cfg, final = start, base
    steps["verified"] = final
    return TuneResult(best_cfg, steps, stats.get("candidates", 0))


POOLED = "*"  # the one pseudo-lab of scope "action"


def _tune_pooled(items: list[OOFItem], start: PostprocessConfig, grid: TuneGrid | None,
                 beta: float) -> TuneResult:
    """`tune` with every item in one pseudo-lab; its per-(lab, action) thresholds become per-action ones, and
    the result is scored (and verified against the start) on the real labs."""
    pooled = [replace(it, lab_id=POOLED) for it in items]
    res = tune(pooled, start, grid, beta, "lab")
    cfg = res.config
    per_action = {**start.action_thresholds, **cfg.thresholds.get(POOLED, {})}
    cfg = replace(cfg, thresholds={k: v for k, v in cfg.thresholds.items() if k != POOLED},
                  action_thresholds=per_action)
    base, final = evaluate(items, start, beta), evaluate(items, cfg, beta)
    if final < base:
        cfg, final = start, base
    return TuneResult(cfg, {"defaults": base, "pooled (tuning objective)": res.steps["verified"],
                            "verified": final}, res.candidates)
