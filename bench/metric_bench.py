"""Benchmark of the competition metric and of threshold tuning, against baselines measured in the same run.

1. `ensemble.metric.score` (interval sweep) vs `set_based_score` below: a straightforward set-of-frames
   implementation of the same rules (docs/mabe.md), on a realistic submission (200 videos x ~20k frames,
   2-4 mice, sparse intervals). Both scores must be identical; target ratio >= 20x.
2. `ensemble.metric.score_frames` on the same data as frame arrays (the per-epoch validation path).
3. `ensemble.thresholds.tune` on a realistic out-of-fold set (seconds to a minute), against the time of
   one exact `score_frames` evaluation (so the printed ratio says how many full evaluations tuning costs).

Commands:

    python -m bench.metric_bench            # full size (~1 minute)
    python -m bench.metric_bench --quick    # smaller (a few seconds), what CI runs

`run(quick) -> list[dict]` returns rows {stage, ours, baseline, ratio, target, unit} for the bench suite.
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import numpy as np
import pandas as pd

from features.labels import CLASS_OF, NUM_CLASSES

PAIR_POOL = ("sniff", "attack", "approach", "chase", "mount", "sniffgenital", "escape")
SELF_POOL = ("rear", "selfgroom", "dig")


# --------------------------------------------------------------------------------------------------------
# Baseline: the rules written as directly as possible, with Python sets of frames
# --------------------------------------------------------------------------------------------------------

def set_based_score(solution: pd.DataFrame, submission: pd.DataFrame, beta: float = 1.0) -> float:
    """The official rules with one Python set of frames per key (the reference and the bench baseline)."""
    if len(solution) == 0 or len(submission) == 0:
        raise ValueError("Missing solution or submission data")
    for col in ("video_id", "agent_id", "target_id", "action", "start_frame", "stop_frame"):
        if col not in solution.columns:
            raise ValueError(f"Solution is missing column {col}")
        if col not in submission.columns:
            raise ValueError(f"Submission is missing column {col}")
    assert (solution["start_frame"] <= solution["stop_frame"]).all()
    assert (submission["start_frame"] <= submission["stop_frame"]).all()
    submission = submission[submission["video_id"].isin(set(solution["video_id"]))]

    lab_scores = {}
    for lab in solution["lab_id"].unique():
        lab_sol = solution[solution["lab_id"] == lab]
        lab_sub = submission[submission["video_id"].isin(set(lab_sol["video_id"]))]
        label_frames: dict[tuple, set] = defaultdict(set)
        pred_frames: dict[tuple, set] = defaultdict(set)
        for r in lab_sol.itertuples(index=False):
            label_frames[(r.video_id, str(r.agent_id), str(r.target_id), str(r.action))].update(
                range(r.start_frame, r.stop_frame))
        for video in lab_sol["video_id"].unique():
            active = set(json.loads(lab_sol.loc[lab_sol["video_id"] == video, "behaviors_labeled"].iloc[0]))
            pair_frames: dict[tuple, set] = defaultdict(set)
            for r in lab_sub[lab_sub["video_id"] == video].itertuples(index=False):
                if f"{r.agent_id},{r.target_id},{r.action}" not in active:
                    continue
                key = (video, str(r.agent_id), str(r.target_id), str(r.action))
                new = set(range(r.start_frame, r.stop_frame)) - pred_frames[key]
                pair = (str(r.agent_id), str(r.target_id))
                if pair_frames[pair] & new:
                    raise ValueError("Multiple predictions for the same frame from one agent/target pair")
                pred_frames[key] |= new
                pair_frames[pair] |= new
        tps, fps, fns = defaultdict(int), defaultdict(int), defaultdict(int)
        for key, pred in pred_frames.items():
            label = label_frames[key]  # inserts an empty set: predicted actions join the action set
            tps[key[3]] += len(pred & label)
            fns[key[3]] += len(label - pred)
            fps[key[3]] += len(pred - label)
        actions = set()
        for key, label in label_frames.items():
            actions.add(key[3])
            if key not in pred_frames:
                fns[key[3]] += len(label)
        fs = []
        b2 = beta * beta
        for a in sorted(actions):
            tp, fp, fn = tps[a], fps[a], fns[a]
            fs.append(0.0 if tp + fn + fp == 0 else (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp))
        lab_scores[str(lab)] = sum(fs) / len(fs)
    return sum(lab_scores[lab] for lab in sorted(lab_scores)) / len(lab_scores)


# --------------------------------------------------------------------------------------------------------
# Realistic synthetic data
# --------------------------------------------------------------------------------------------------------

def _runs(rng, n_frames: int, classes: list[int], n_events: int, mean_len: float) -> np.ndarray:
    """Frame labels with `n_events` sparse intervals of the given classes (non-overlapping by
    construction)."""
    out = np.zeros(n_frames, dtype=np.int8)
    if not classes:
        return out
    starts = np.sort(rng.integers(0, n_frames, n_events))
    lengths = np.maximum(1, rng.exponential(mean_len, n_events).astype(int))
    for s, ln, c in zip(starts, lengths, rng.choice(classes, n_events)):
        out[s:s + ln] = c
    return out


def make_pairs(n_videos: int, n_frames: int, seed: int = 0, n_labs: int = 10, noise: float = 0.3):
    """Random labelled videos as PairFrames-like tuples with predictions that are noisy copies of labels.

    Returns a list of (lab, video, agent, target, labels int8[T], preds int8[T], allowed bool[38]).
    """
    rng = np.random.default_rng(seed)
    out = []
    for v in range(n_videos):
        lab = f"Lab{v % n_labs:02d}"
        T = int(n_frames * rng.uniform(0.8, 1.2))
        n_mice = int(rng.integers(2, 5))
        lab_rng = np.random.default_rng(v % n_labs)
        pair_actions = [CLASS_OF[a] for a in lab_rng.choice(PAIR_POOL, 4, replace=False)]
        self_actions = [CLASS_OF[a] for a in lab_rng.choice(SELF_POOL, 2, replace=False)]
        for agent in range(1, n_mice + 1):
            for target in range(1, n_mice + 1):
                classes = self_actions if target == agent else pair_actions
                allowed = np.zeros(NUM_CLASSES, dtype=bool)
                allowed[0] = True
                allowed[classes] = True
                labels = _runs(rng, T, classes, max(1, T // 600), 45.0)
                preds = labels.copy()
                shift = int(rng.integers(-10, 11))
                preds = np.roll(preds, shift)
                flip = rng.random(T) < noise / 50
                preds[flip] = 0
                extra = _runs(rng, T, classes + [CLASS_OF["chase"]], max(1, T // 3000), 30.0)
                preds = np.where(preds == 0, extra, preds).astype(np.int8)
                out.append((lab, 1000 + v, agent, target, labels, preds, allowed))
    return out


def make_oof(n_videos: int, n_frames: int, seed: int = 0, n_labs: int = 10, n_actions: int = 10):
    """Out-of-fold items for threshold tuning: one pair per video, `n_actions` whitelisted actions per lab,
    probabilities like a sigmoid model's: logits N(-5, 1.5) for absent classes, N(0.5, 1.5) for the
    labelled one, so most frames of most classes have small probabilities."""
    from ensemble.thresholds import OOFItem
    from features.labels import PAIR_ACTIONS

    rng = np.random.default_rng(seed + 1)
    items = []
    for v in range(n_videos):
        lab = f"Lab{v % n_labs:02d}"
        lab_rng = np.random.default_rng(v % n_labs)
        classes = [CLASS_OF[a] for a in lab_rng.choice(PAIR_ACTIONS, n_actions, replace=False)]
        allowed = np.zeros(NUM_CLASSES, dtype=bool)
        allowed[[0, *classes]] = True
        T = int(n_frames * rng.uniform(0.8, 1.2))
        labels = _runs(rng, T, classes, max(1, T // 600), 45.0)
        logits = rng.normal(-5.0, 1.5, (T, NUM_CLASSES)).astype(np.float32)
        logits[np.arange(T), labels] += 5.5
        probs = 1.0 / (1.0 + np.exp(-logits))
        items.append(OOFItem(lab, 1000 + v, 1, 2, probs, labels, allowed))
    return items


def _timed(fn, *args, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return out, best


def run(quick: bool = False) -> list[dict]:
    """Time the metric paths and threshold tuning; rows {stage, ours, baseline, ratio, target, unit}."""
    from ensemble.metric import PairFrames, pairs_to_solution, pairs_to_submission, score, score_frames

    n_videos, n_frames = (50, 10_000) if quick else (200, 20_000)
    raw = make_pairs(n_videos, n_frames)
    pairs = [PairFrames(*r) for r in raw]
    solution, submission = pairs_to_solution(pairs), pairs_to_submission(pairs)
    print(f"data: {n_videos} videos, {len(pairs)} pairs, {sum(p.labels.size for p in pairs):,} pair-frames, "
          f"{len(solution):,} label rows, {len(submission):,} submission rows")

    ours, t_ours = _timed(score, solution, submission, repeat=3)
    base, t_base = _timed(set_based_score, solution, submission)
    fast, t_fast = _timed(score_frames, pairs, repeat=3)
    if not (ours == base == fast):
        raise SystemExit(f"scores differ: score {ours!r}, set-based {base!r}, score_frames {fast!r}")
    print(f"score = {ours:.6f} (identical in all three implementations)")
    rows = [
        {"stage": "metric.score vs set-of-frames", "ours": t_ours, "baseline": t_base,
         "ratio": t_base / t_ours, "target": ">= 20", "unit": "s",
         "note": f"{n_videos} videos x ~{n_frames} frames; identical score {ours:.6f} in all three"},
        {"stage": "metric.score_frames vs set-of-frames", "ours": t_fast, "baseline": t_base,
         "ratio": t_base / t_fast, "target": None, "unit": "s"},
    ]

    from ensemble.thresholds import tune
    n_oof_videos, n_oof_frames = (20, 5_000) if quick else (300, 20_000)
    oof = make_oof(n_oof_videos, n_oof_frames)
    print(f"oof: {n_oof_videos} videos, {len(oof)} pairs, {sum(i.labels.size for i in oof):,} pair-frames")
    result, t_tune = _timed(tune, oof)
    from ensemble.thresholds import evaluate
    _, t_eval = _timed(evaluate, oof, result.config)
    print("tuning steps: " + ", ".join(f"{k} {v:.4f}" for k, v in result.steps.items()))
    # Baseline: the same search re-scoring one lab exactly per candidate threshold (too slow to run at this
    # size, so: the measured time of one exact evaluation / number of labs x candidates scored).
    n_labs = len({i.lab_id for i in oof})
    brute = t_eval / n_labs * result.candidates
    print(
        f"tune: {t_tune:.1f}s; one exact evaluation {t_eval:.2f}s; {result.candidates:,} candidate "
        f"thresholds scored -> brute force ~{brute:,.0f}s (estimate)"
    )
    rows.append({"stage": "thresholds.tune wall time", "ours": t_tune, "baseline": None, "ratio": None,
                 "target": "<= 60", "unit": "s",
                 "note": f"{n_oof_videos} videos x ~{n_oof_frames} frames x 10 actions; "
                         f"OOF score {result.steps['defaults']:.4f} -> {result.steps['verified']:.4f}"})
    rows.append({"stage": "thresholds.tune vs brute force (est.)", "ours": t_tune, "baseline": brute,
                 "ratio": brute / t_tune, "target": None, "unit": "s",
                 "note": "baseline estimated: one exact per-lab evaluation per candidate threshold"})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.metric_bench",
        description="Time the metric (vs a set-of-frames baseline) and threshold "
        "tuning on realistic synthetic data, in one run.",
    )
    parser.add_argument("--quick", action="store_true", help="small data (a few seconds)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    rows = run(args.quick)
    print(f"\n{'stage':<42} {'ours':>9} {'baseline':>10} {'ratio':>8} {'target':>7}")
    for r in rows:
        base = "-" if r["baseline"] is None else f"{r['baseline']:.3f}s"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.1f}x"
        print(f"{r['stage']:<42} {r['ours']:>8.3f}s {base:>10} {ratio:>8} {r['target'] or '':>7}")
    print(f"\ntotal {time.perf_counter() - t0:.1f}s; next: python -m pytest -q tests/test_metric.py")


if __name__ == "__main__":
    main()
