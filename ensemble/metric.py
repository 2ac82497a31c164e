"""The competition metric (official "MABe F Beta", docs/mabe.md, Metric), two ways with identical results.

1. `score(solution, submission)`: the official rules on Kaggle-format DataFrames, vectorised as an interval
   sweep (one sorted array of interval boundaries per key, coverage counted with cumsum) instead of Python
   sets of frames.
2. `score_frames(pairs)`: the same rules on per-pair frame arrays (`PairFrames`), what the trainer calls
   every epoch. `frame_counts` gives the pooled (lab, action) -> (tp, fp, fn) counts and `per_action_f1`
   the per-action F1 for logging.

Both paths reduce to the same `(lab, action) -> (tp, fp, fn)` table and share `aggregate`, so they agree
exactly (tests/test_metric_property.py checks this on random inputs).

Commands:

    python -m ensemble.metric --solution solution.csv --submission submission.csv
    python -m ensemble.metric --solution solution.csv --submission submission.csv --beta 1.0

Imports numpy, pandas, features and ensemble.submission only (runs in the offline Kaggle notebook).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.submission import OVERLAP_PROBLEM, overlaps
from features.errors import MabeDataError, cli_guard
from features.io import SUBMISSION_COLUMNS
from features.labels import ACTIONS, NUM_CLASSES, frames_to_events

REQUIRED_COLUMNS = SUBMISSION_COLUMNS[1:]  # every column but row_id
SOLUTION_EXTRA_COLUMNS = ("lab_id", "behaviors_labeled")

Counts = dict[tuple[str, str], tuple[int, int, int]]


# --------------------------------------------------------------------------------------------------------
# Shared reduction: (lab, action) -> (tp, fp, fn)  ->  score
# --------------------------------------------------------------------------------------------------------

def fbeta(tp: int, fp: int, fn: int, beta: float = 1.0) -> float:
    """F_beta = (1+b^2) TP / ((1+b^2) TP + b^2 FN + FP); 0 when TP + FN + FP == 0 (official rule 4e)."""
    if tp + fn + fp == 0:
        return 0.0
    b2 = beta * beta
    return (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp)


def lab_scores(counts: Counts, beta: float = 1.0) -> dict[str, float]:
    """Per lab: unweighted mean of F over the lab's action set (the actions that appear in `counts`).

    Labs and actions are visited in sorted order so both metric paths sum in the same order.
    """
    by_lab: dict[str, list[float]] = {}
    for (lab, action) in sorted(counts):
        tp, fp, fn = counts[(lab, action)]
        by_lab.setdefault(lab, []).append(fbeta(tp, fp, fn, beta))
    return {lab: sum(fs) / len(fs) for lab, fs in by_lab.items()}


def aggregate(counts: Counts, beta: float = 1.0) -> float:
    """Final score: mean over labs of the lab score (0.0 when `counts` is empty)."""
    per_lab = lab_scores(counts, beta)
    if not per_lab:
        return 0.0
    return sum(per_lab[lab] for lab in sorted(per_lab)) / len(per_lab)


def per_action_f1(counts: Counts, beta: float = 1.0) -> dict[str, float]:
    """F per action with TP/FP/FN pooled across labs (for logging `val/f1_<action>`; not the score)."""
    pooled: dict[str, list[int]] = {}
    for (_, action), (tp, fp, fn) in counts.items():
        acc = pooled.setdefault(action, [0, 0, 0])
        acc[0] += tp
        acc[1] += fp
        acc[2] += fn
    return {a: fbeta(*pooled[a], beta=beta) for a in sorted(pooled)}


# --------------------------------------------------------------------------------------------------------
# Fast path: frame arrays per (agent, target) pair
# --------------------------------------------------------------------------------------------------------

@dataclass
class PairFrames:
    """One (agent, target) pair of one video as frame arrays.

    labels: int[T] ground-truth class per frame (0 = background, 1..37 = ACTIONS);
    preds: int[T] predicted class per frame (predictions of non-allowed classes are ignored, as the metric
    ignores non-whitelisted rows); allowed: bool[38] the *raw* whitelist of this pair (what the official
    metric accepts). target == agent means a self pair (target `self` at the Kaggle boundary).
    """

    lab_id: str
    video_id: int
    agent: int
    target: int
    labels: np.ndarray
    preds: np.ndarray
    allowed: np.ndarray

    def __post_init__(self):
        self.labels = np.asarray(self.labels)
        self.preds = np.asarray(self.preds)
        self.allowed = np.asarray(self.allowed, dtype=bool)
        where = f"pair (agent {self.agent}, target {self.target})"
        if self.labels.ndim != 1 or self.preds.shape != self.labels.shape:
            raise MabeDataError(f"{where}: labels {self.labels.shape} and preds {self.preds.shape} must be "
                                "1-D arrays of equal length", video=self.video_id)
        if self.allowed.shape != (NUM_CLASSES,):
            raise MabeDataError(f"{where}: allowed must be bool[{NUM_CLASSES}], got {self.allowed.shape}",
                                video=self.video_id)
        for name, arr in (("labels", self.labels), ("preds", self.preds)):
            if arr.size and (arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() >= NUM_CLASSES):
                raise MabeDataError(f"{where}: {name} must be integer class ids in 0..{NUM_CLASSES - 1}",
                                    video=self.video_id)


def frame_counts(pairs: list[PairFrames]) -> Counts:
    """Pooled (lab, action) -> (tp, fp, fn) over frame arrays, with the official rules.

    - a video with no labelled frame in any pair is absent from the solution: its predictions are dropped;
    - predictions of classes not in `allowed` are ignored (not FP); labels of any class count (FN);
    - the lab's action set = actions labelled in the lab + allowed actions predicted in the lab.
    """
    seen: set[tuple[int, int, int]] = set()
    labelled_videos: set[int] = set()
    for p in pairs:
        key = (p.video_id, p.agent, p.target)
        if key in seen:
            raise MabeDataError(f"pair (agent {p.agent}, target {p.target}) given twice", video=p.video_id)
        seen.add(key)
        if p.labels.size and p.labels.any():
            labelled_videos.add(p.video_id)

    acc: dict[str, np.ndarray] = {}  # lab -> int64[4, 38]: tp, fp, fn, present
    for p in pairs:
        if p.video_id not in labelled_videos:
            continue
        labels = p.labels.astype(np.int64, copy=False)
        kept = np.where(p.allowed[p.preds], p.preds, 0).astype(np.int64, copy=False)
        n_label = np.bincount(labels, minlength=NUM_CLASSES)
        n_pred = np.bincount(kept, minlength=NUM_CLASSES)
        tp = np.bincount(labels[labels == kept], minlength=NUM_CLASSES)
        a = acc.setdefault(p.lab_id, np.zeros((4, NUM_CLASSES), dtype=np.int64))
        a[0] += tp
        a[1] += n_pred - tp
        a[2] += n_label - tp
        a[3] += (n_label > 0) | (n_pred > 0)

    counts: Counts = {}
    for lab, a in acc.items():
        for cls in np.flatnonzero(a[3, 1:] > 0) + 1:
            counts[(lab, ACTIONS[cls - 1])] = (int(a[0, cls]), int(a[1, cls]), int(a[2, cls]))
    return counts


def score_frames(pairs: list[PairFrames], beta: float = 1.0) -> float:
    """The competition score on frame arrays; equals `score(pairs_to_solution(p), pairs_to_submission(p))`.

    Where `score` raises because the submission is empty (nothing predicted), this returns the value every
    lab gets without predictions: 0.0. No labelled frame at all also gives 0.0.
    """
    return aggregate(frame_counts(pairs), beta)


# --------------------------------------------------------------------------------------------------------
# Official path: Kaggle-format DataFrames
# --------------------------------------------------------------------------------------------------------

def _mouse(i: int) -> str:
    return f"mouse{int(i)}"


def _check_inputs(solution: pd.DataFrame, submission: pd.DataFrame, allow_empty: bool = False) -> None:
    if not allow_empty and (len(solution) == 0 or len(submission) == 0):
        raise MabeDataError("Missing solution or submission data")
    for col in REQUIRED_COLUMNS:
        if col not in solution.columns:
            raise MabeDataError(f"Solution is missing column {col}")
        if col not in submission.columns:
            raise MabeDataError(f"Submission is missing column {col}")
    for col in SOLUTION_EXTRA_COLUMNS:
        if col not in solution.columns:
            raise MabeDataError(f"Solution is missing column {col}")
    for name, df in (("solution", solution), ("submission", submission)):
        for col in ("start_frame", "stop_frame"):
            if len(df) and not pd.api.types.is_integer_dtype(df[col]):
                raise MabeDataError(f"{name} column {col} must be integers, got dtype {df[col].dtype}")
        if not (df["start_frame"].to_numpy() <= df["stop_frame"].to_numpy()).all():
            bad = df.loc[~(df["start_frame"] <= df["stop_frame"])].iloc[0]
            # The official metric asserts here; keep the exception type, add where.
            raise AssertionError(f"{name}: start_frame > stop_frame in video {bad['video_id']} "
                                 f"({bad['start_frame']} > {bad['stop_frame']})")
    sol_int = pd.api.types.is_integer_dtype(solution["video_id"])
    sub_int = pd.api.types.is_integer_dtype(submission["video_id"])
    if sol_int != sub_int:
        raise MabeDataError(f"video_id dtypes differ: solution {solution['video_id'].dtype}, "
                            f"submission {submission['video_id'].dtype} (both must be integers)")


def _whitelists(solution: pd.DataFrame) -> tuple[dict, dict]:
    """video -> set of raw whitelist strings ("agent,target,action", as written), and video -> lab."""
    if len(solution) == 0:
        return {}, {}
    first = solution.drop_duplicates("video_id")
    whitelist: dict = {}
    for video, raw in zip(first["video_id"].tolist(), first["behaviors_labeled"].tolist()):
        try:
            entries = json.loads(raw)
        except (TypeError, ValueError) as exc:
            raise MabeDataError(f"behaviors_labeled is not a JSON list ({exc})", video=video) from None
        if not isinstance(entries, list):
            raise MabeDataError("behaviors_labeled is not a JSON list", video=video)
        whitelist[video] = {e for e in entries if isinstance(e, str)}
    lab_codes, _ = pd.factorize(solution["lab_id"])
    video_codes, _ = pd.factorize(solution["video_id"])
    first_lab = np.full(video_codes.max() + 1, -1)
    first_lab[video_codes[::-1]] = lab_codes[::-1]
    mismatch = np.flatnonzero(first_lab[video_codes] != lab_codes)
    if mismatch.size:
        video = solution["video_id"].iloc[mismatch[0]]
        raise MabeDataError("video belongs to more than one lab_id in the solution", video=video)
    video_lab = dict(zip(first["video_id"].tolist(), first["lab_id"].astype(str).tolist()))
    return whitelist, video_lab


def _codes(sol_col: pd.Series, sub_col: pd.Series, as_str: bool = True):
    """Shared integer codes for one column of solution and submission (values compared as str, as the
    official key strings do). Returns (sol codes, sub codes, names)."""
    ids: dict = {}
    out = []
    for col in (sol_col, sub_col):
        codes, uniques = pd.factorize(col, use_na_sentinel=False)
        mapping = np.array([ids.setdefault(str(u) if as_str else u, len(ids)) for u in uniques],
                           dtype=np.int64)
        out.append(mapping[codes] if codes.size else np.zeros(0, np.int64))
    names = list(ids)
    return out[0], out[1], names


def _sorted_events(group: np.ndarray, start: np.ndarray, stop: np.ndarray, flag: np.ndarray):
    """Interval boundaries sorted by (group, position, kind) with one np.sort of packed int64 codes.

    kind bit 0 = is_start (so at one position stops sort before starts), bit 1 = flag.
    Returns group, pos, is_start, flag of the sorted events.
    """
    offset = min(int(start.min(initial=0)), 0)  # negative frames are legal ranges for the official code
    start, stop = start - offset, stop - offset
    span = int(stop.max(initial=0)) + 1
    base = (group.astype(np.int64) * span)
    code = np.concatenate([((base + start) << 2) | (flag.astype(np.int64) << 1) | 1,
                           ((base + stop) << 2) | (flag.astype(np.int64) << 1)])
    code.sort()
    gp = code >> 2
    g = gp // span
    return g, gp - g * span + offset, (code & 1).astype(bool), ((code >> 1) & 1).astype(bool)


def _sweep(key: np.ndarray, start: np.ndarray, stop: np.ndarray, is_pred: np.ndarray, n_keys: int):
    """Interval sweep per key: frames covered by labels / predictions (overlaps of one key merge).

    Returns tp, fp, fn per key (int64[n_keys]). Each interval becomes a +1 event at start and -1 at stop;
    events sorted by (key, position); the
    running sums say whether the stretch up to the next event is labelled / predicted.
    """
    keep = stop > start
    k, pos, is_start, pred = _sorted_events(key[keep], start[keep], stop[keep], is_pred[keep])
    if k.size == 0:
        zero = np.zeros(n_keys, dtype=np.int64)
        return zero, zero.copy(), zero.copy()
    step = np.where(is_start, 1, -1)
    covered_l = np.cumsum(np.where(pred, 0, step))[:-1] > 0
    covered_p = np.cumsum(np.where(pred, step, 0))[:-1] > 0
    seg_key = k[:-1]
    seg_len = np.where(k[1:] == seg_key, np.diff(pos), 0)
    tp = np.bincount(seg_key, weights=seg_len * (covered_l & covered_p), minlength=n_keys)
    fn = np.bincount(seg_key, weights=seg_len * (covered_l & ~covered_p), minlength=n_keys)
    fp = np.bincount(seg_key, weights=seg_len * (covered_p & ~covered_l), minlength=n_keys)
    return tp.astype(np.int64), fp.astype(np.int64), fn.astype(np.int64)


def interval_counts(solution: pd.DataFrame, submission: pd.DataFrame) -> Counts:
    """Pooled (lab, action) -> (tp, fp, fn) with the official rules (docs/mabe.md, Metric)."""
    _check_inputs(solution, submission)
    whitelist, video_lab = _whitelists(solution)
    sub = submission.loc[submission["video_id"].isin(video_lab.keys())]

    # one int64 code per (video, agent, target, action) for solution and submission rows
    cv = _codes(solution["video_id"], sub["video_id"], as_str=False)
    parts = [cv] + [_codes(solution[c], sub[c]) for c in ("agent_id", "target_id", "action")]
    sizes = [max(len(names), 1) for _, _, names in parts]

    sol_code, sub_code = _pack([p[0] for p in parts], sizes), _pack([p[1] for p in parts], sizes)

    # whitelist filter on the raw strings, checked once per distinct (video, agent, target, action)
    uniq, inverse = np.unique(sub_code, return_inverse=True)
    uv, ua, ut, uact = _unpack_arrays(uniq, sizes)
    ok = np.array([f"{parts[1][2][a]},{parts[2][2][t]},{parts[3][2][x]}" in whitelist[parts[0][2][i]]
                   for i, a, t, x in zip(uv.tolist(), ua.tolist(), ut.tolist(), uact.tolist())], dtype=bool)
    kept = ok[inverse.reshape(-1)] if ok.size else np.zeros(len(sub), dtype=bool)
    bad = overlaps(sub.loc[kept])  # the official error: two actions on one frame of a whitelisted pair
    if len(bad):
        r = bad.iloc[0]
        raise MabeDataError(f"{OVERLAP_PROBLEM} (agent {r['agent_id']}, target {r['target_id']}, "
                            f"frame {r['start_frame']})", video=r["video_id"])

    all_code = np.concatenate([sol_code, sub_code[kept]])
    keys, key_of_row = np.unique(all_code, return_inverse=True)
    key_of_row = key_of_row.reshape(-1)
    is_pred = np.zeros(all_code.size, dtype=bool)
    is_pred[len(solution):] = True
    start, stop = (np.concatenate([solution[c].to_numpy(np.int64), sub[c].to_numpy(np.int64)[kept]])
                   for c in ("start_frame", "stop_frame"))
    tp, fp, fn = _sweep(key_of_row, start, stop, is_pred, keys.size)
    v, _, _, act = _unpack_arrays(keys, sizes)

    # pool keys per (lab, action); the official code takes the action as the last "_"-separated token
    video_names, action_names = parts[0][2], parts[3][2]
    lab_names = sorted({video_lab[x] for x in video_names})
    lab_of_video = np.array([lab_names.index(video_lab[x]) for x in video_names], dtype=np.int64)
    act_names = sorted({a.split("_")[-1] for a in action_names})
    act_of_action = np.array([act_names.index(a.split("_")[-1]) for a in action_names], dtype=np.int64)
    cell = lab_of_video[v] * len(act_names) + act_of_action[act]
    cells, cell_of_key = np.unique(cell, return_inverse=True)
    sums = [np.bincount(cell_of_key.reshape(-1), weights=x, minlength=cells.size).astype(np.int64)
            for x in (tp, fp, fn)]
    return {(lab_names[c // len(act_names)], act_names[c % len(act_names)]): (int(a), int(b), int(d))
            for c, a, b, d in zip(cells.tolist(), *(x.tolist() for x in sums))}


def _pack(columns: list[np.ndarray], sizes: list[int]) -> np.ndarray:
    """Mixed-radix code of several small-integer columns (one int64 per row)."""
    if np.prod([float(x) for x in sizes]) >= 2.0**62:
        raise MabeDataError("too many distinct ids to index (more than 2**62 keys)")
    code = np.zeros(columns[0].size, dtype=np.int64)
    for col, size in zip(columns, sizes):
        code = code * size + col
    return code


def _unpack_arrays(code: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    out = []
    for size in reversed(sizes):
        code, r = np.divmod(code, size)
        out.append(r)
    return out[::-1]


def score(solution: pd.DataFrame, submission: pd.DataFrame, beta: float = 1.0) -> float:
    """The official MABe F-beta score (docs/mabe.md, Metric): mean over labs of the mean over actions of F."""
    return aggregate(interval_counts(solution, submission), beta)


# --------------------------------------------------------------------------------------------------------
# PairFrames <-> Kaggle DataFrames
# --------------------------------------------------------------------------------------------------------

def _target_str(agent: int, target: int) -> str:
    return "self" if target == agent else _mouse(target)


def pairs_to_solution(pairs: list[PairFrames]) -> pd.DataFrame:
    """Ground-truth DataFrame (official solution columns) from the pairs' labels.

    behaviors_labeled of a video = JSON list of "mouseA,<mouseB|self>,action" for every allowed class of
    every pair of that video. Videos without any labelled frame have no rows (as on Kaggle).
    """
    whitelist: dict[int, list[str]] = {}
    for p in pairs:
        tgt = _target_str(p.agent, p.target)
        whitelist.setdefault(p.video_id, []).extend(
            f"{_mouse(p.agent)},{tgt},{ACTIONS[c - 1]}" for c in np.flatnonzero(p.allowed[1:]) + 1)
    rows = []
    for p in pairs:
        tgt = _target_str(p.agent, p.target)
        wl = json.dumps(sorted(set(whitelist[p.video_id])))
        for start, stop, cls in frames_to_events(p.labels):
            rows.append((p.video_id, _mouse(p.agent), tgt, ACTIONS[cls - 1], start, stop, p.lab_id, wl))
    return pd.DataFrame(rows, columns=list(REQUIRED_COLUMNS + SOLUTION_EXTRA_COLUMNS)).astype(
        {"video_id": np.int64, "start_frame": np.int64, "stop_frame": np.int64})


def pairs_to_submission(pairs: list[PairFrames]) -> pd.DataFrame:
    """Submission DataFrame (official column order, `row_id` = 0..n-1) from the pairs' predictions.

    Every predicted run is written, allowed or not (the metric ignores the non-whitelisted ones).
    """
    rows = []
    for p in pairs:
        tgt = _target_str(p.agent, p.target)
        for start, stop, cls in frames_to_events(p.preds):
            rows.append((p.video_id, _mouse(p.agent), tgt, ACTIONS[cls - 1], start, stop))
    df = pd.DataFrame(rows, columns=list(REQUIRED_COLUMNS))
    df.insert(0, "row_id", np.arange(len(df), dtype=np.int64))
    return df.astype({"video_id": np.int64, "start_frame": np.int64, "stop_frame": np.int64})


def _parse_mouse(token: str, video) -> int:
    if not (isinstance(token, str) and token.startswith("mouse") and token[5:].isdigit()):
        raise MabeDataError(f"mouse id {token!r} is not of the form mouseN", video=video)
    return int(token[5:])


def dataframes_to_pairs(solution: pd.DataFrame, submission: pd.DataFrame | None = None,
                        n_frames: dict[int, int] | None = None) -> list[PairFrames]:
    """Frame arrays per pair from Kaggle DataFrames (the inverse of `pairs_to_solution`/`_submission`).

    Pairs = every pair in a video's raw whitelist or in its label rows; malformed whitelist entries are not
    allowed anything (raw rule). Non-whitelisted and unknown-video submission rows are dropped (the metric
    ignores them). `n_frames[video]` defaults to the largest stop_frame seen for the video. Raises
    MabeDataError if labels of different actions overlap in one pair (a frame array holds one class) or if
    predictions do (the official overlap error). Not representable, so scores may differ from `score`:
    zero-length rows (officially they still add their action to the lab's action set, with an F = 0 term).
    """
    sub = submission if submission is not None else pd.DataFrame(columns=list(REQUIRED_COLUMNS))
    _check_inputs(solution, sub, allow_empty=True)
    whitelist, video_lab = _whitelists(solution)
    allowed: dict[tuple[int, int, int], np.ndarray] = {}
    for video, entry in ((v, e) for v, entries in whitelist.items() for e in sorted(entries)):
        parts = entry.split(",")
        if len(parts) != 3 or parts[2] not in ACTIONS:
            continue
        try:
            agent = _parse_mouse(parts[0], video)
            target = agent if parts[1] == "self" else _parse_mouse(parts[1], video)
        except MabeDataError:
            continue  # malformed entry: never matches a submission row, so allows nothing
        mask = allowed.setdefault((video, agent, target), np.eye(1, NUM_CLASSES, 0, dtype=bool)[0])
        mask[ACTIONS.index(parts[2]) + 1] = True

    sub = sub.loc[sub["video_id"].isin(video_lab.keys())]
    triple = (sub["agent_id"].astype(str) + "," + sub["target_id"].astype(str) + ","
              + sub["action"].astype(str))
    sub = sub.loc[[t in whitelist[v] for v, t in zip(sub["video_id"].tolist(), triple.tolist())]]

    length: dict[int, int] = {}
    for df in (solution, sub):
        for video, stop in df.groupby("video_id")["stop_frame"].max().items():
            length[video] = max(length.get(video, 0), int(stop))
    if n_frames:
        length.update({int(v): int(n) for v, n in n_frames.items()})

    def rows(df):
        for r in df.itertuples(index=False):
            agent = _parse_mouse(r.agent_id, r.video_id)
            target = agent if r.target_id == "self" else _parse_mouse(r.target_id, r.video_id)
            if r.target_id != "self" and target == agent:
                raise MabeDataError(f"target {r.target_id} equals agent; self-directed rows use 'self'",
                                    video=r.video_id)
            if r.action not in ACTIONS:
                raise MabeDataError(f"unknown action {r.action!r}", video=r.video_id)
            cls = ACTIONS.index(r.action) + 1
            yield (r.video_id, agent, target), cls, int(r.start_frame), int(r.stop_frame)

    arrays: dict[tuple[int, int, int], list[np.ndarray]] = {}

    def arr(key, which):
        if key not in arrays:
            t = length[key[0]]
            arrays[key] = [np.zeros(t, np.int64), np.zeros(t, np.int64)]
        return arrays[key][which]

    for key in allowed:
        arr(key, 0)
    checks = ((0, solution, "labels of different actions overlap"), (1, sub, OVERLAP_PROBLEM))
    for which, df, problem in checks:
        for key, cls, start, stop in rows(df):
            a = arr(key, which)
            seg = a[start:stop]
            if ((seg != 0) & (seg != cls)).any():
                where = f"agent {_mouse(key[1])}, target {_target_str(key[1], key[2])}"
                raise MabeDataError(f"{problem} ({where})",
                                    video=key[0])
            seg[:] = cls

    out = []
    for key in sorted(arrays):
        video, agent, target = key
        mask = allowed.get(key, np.eye(1, NUM_CLASSES, 0, dtype=bool)[0])
        labels, preds = arrays[key]
        out.append(PairFrames(video_lab[video], int(video), agent, target, labels, preds, mask))
    return out


# --------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------

def format_table(counts: Counts, beta: float = 1.0) -> str:
    """Per-lab, per-action TP / FP / FN / F table plus each lab's score."""
    per_lab = lab_scores(counts, beta)
    width = max([len(lab) for lab, _ in counts] + [3])
    lines = [f"{'lab':<{width}}  {'action':<16} {'TP':>10} {'FP':>10} {'FN':>10} {'F':>7}"]
    for lab in sorted(per_lab):
        for (lb, action) in sorted(counts):
            if lb != lab:
                continue
            tp, fp, fn = counts[(lb, action)]
            f = fbeta(tp, fp, fn, beta)
            lines.append(f"{lab:<{width}}  {action:<16} {tp:>10} {fp:>10} {fn:>10} {f:>7.4f}")
        lines.append(f"{lab:<{width}}  {'(lab mean)':<16} {'':>10} {'':>10} {'':>10} {per_lab[lab]:>7.4f}")
    return "\n".join(lines)


def _read_csv(path: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise MabeDataError(f"cannot read CSV ({exc})", file=path) from None


def main(argv: list[str] | None = None) -> float:
    from features.cli import ArgumentParser

    parser = ArgumentParser(
        prog="python -m ensemble.metric",
        description="Score a MABe submission with the official metric (docs/mabe.md, Metric): "
                    "F-beta per action "
                    "with frames pooled over a lab's videos, averaged over actions, then over labs. Prints "
                    "the score and a per-lab, per-action TP/FP/FN/F table.")
    parser.add_argument("--solution", required=True,
                        help="ground truth CSV: video_id, agent_id, target_id, action, start_frame, "
                             "stop_frame, "
                             "lab_id, behaviors_labeled (e.g. test_solution.csv from features.synth)")
    parser.add_argument("--submission", required=True,
                        help="submission CSV (row_id, video_id, ... stop_frame)")
    parser.add_argument("--beta", type=float, default=1.0, help="F-beta's beta (competition: 1.0)")
    args = parser.parse_args(argv)
    if not (args.beta > 0 and math.isfinite(args.beta)):
        parser.error(f"argument --beta: must be > 0 (got {args.beta})")
    solution, submission = _read_csv(args.solution), _read_csv(args.submission)
    try:
        counts = interval_counts(solution, submission)
    except AssertionError as exc:
        raise MabeDataError(str(exc), file=f"{args.solution} / {args.submission}") from None
    except MabeDataError as exc:
        raise MabeDataError(exc.problem, file=f"{args.solution} / {args.submission}",
                            video=exc.video) from None
    result = aggregate(counts, args.beta)
    print(format_table(counts, args.beta))
    print(f"\nscore = {result:.6f}  ({len(lab_scores(counts))} labs, {len(counts)} lab-action terms, "
          f"{len(submission)} submission rows)")
    if not math.isfinite(result):
        raise MabeDataError("score is not finite")
    print(f"next: python -m ensemble.submission --submission {Path(args.submission)} --test-csv <test.csv>")
    return result


if __name__ == "__main__":
    with cli_guard("python -m ensemble.metric"):
        main()
