"""How hard is the synthetic twin? Two reference scores per difficulty, on the official metric.

1. oracle: the un-noised planted behaviours (what the pose really showed, `VideoResult.planted`) submitted
   against the labels the annotator wrote (train videos, in memory, nothing written). The ceiling of any
   model that sees the pose perfectly but does not know the lab's annotation style; easy is near 1.
   Hard mode adds two more (`features.synth.hard.apply_style`): `oracle_avg_style`, the planted behaviours
   passed through one style averaged over the twin's labs (distance and duration cut-offs, onset lag: what a
   lab-blind pooled model can at best learn), and `oracle_lab_style`, passed through each video's own lab's
   style (what a model that knows the lab can learn). Their difference is what knowing the lab is worth to a
   pose-perfect model on this twin.
2. simple model (`--model`): a per-frame multinomial logistic regression (numpy, full-batch gradient descent,
   background frames subsampled) on the feature cache of the same videos, trained on half of the videos and
   scored on the other half (argmax over the pair's whitelisted classes and background). A floor that a good
   model should clear, while staying well below the oracle.

    python -m bench.synth_calibration                          # oracle, easy and hard, 3 seeds
    python -m bench.synth_calibration --model                  # + the simple model (about a minute per run)
    python -m bench.synth_calibration --difficulty hard --seeds 0 --videos 20 --frames 3000 --model
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ensemble import metric
from features.labels import NUM_CLASSES
from features.quirks import label_fps
from features.synth.hard import DIFFICULTIES, apply_style, average_style, lab_style
from features.synth.meta import DEFAULT_FRAMES, DEFAULT_VIDEOS
from features.synth.write import generate, videos


def _rows(video_id: int, lab: str, raw: str, events) -> list[dict]:
    return [{"video_id": video_id, "agent_id": f"mouse{a}", "target_id": "self" if a == t else f"mouse{t}",
             "action": act, "start_frame": s, "stop_frame": e, "lab_id": lab, "behaviors_labeled": raw}
            for a, t, act, s, e in events]


def _no_overlaps(events) -> list:
    """The metric refuses overlapping predictions of one pair: cut each at the previous one's end."""
    out, end = [], {}
    for a, t, act, s, e in sorted(events, key=lambda r: (r[0], r[1], r[3], r[4])):
        s = max(s, end.get((a, t), 0))
        if e > s:
            out.append((a, t, act, s, e))
            end[(a, t)] = max(end.get((a, t), 0), e)
    return out


def oracle(difficulty: str, seed: int, n_videos: int, n_frames: int,
           lab_contrast: float = 1.0) -> dict[str, float]:
    """Planted episodes scored against the written labels (train videos): {"oracle": score}, and in hard mode
    also through the average and the video's own lab style (module doc)."""
    made = [(row, res) for _, row, res in videos(n_videos, n_frames, seed=seed, test_videos=0,
                                                  difficulty=difficulty, lab_contrast=lab_contrast)
            if res.events]
    hard = difficulty == "hard"
    labs = sorted({res.lab_id for _, res in made}) if hard else []
    styles = {lab: lab_style(lab, seed, lab_contrast) for lab in labs}
    avg = average_style(list(styles.values())) if styles else None
    sol, subs = [], {"oracle": []}
    if hard:
        subs.update(oracle_avg_style=[], oracle_lab_style=[])
    for row, res in made:
        raw = row["behaviors_labeled"]
        sol += _rows(res.video_id, res.lab_id, raw, res.events)
        subs["oracle"] += _rows(res.video_id, res.lab_id, raw, _no_overlaps(res.planted))
        if hard:
            tracked = float(row["frames_per_second"])
            fps = label_fps(res.lab_id, tracked)  # planted frames count on the label axis
            end = int(round(res.n_frames * fps / tracked))
            for key, style in (("oracle_avg_style", avg), ("oracle_lab_style", styles[res.lab_id])):
                styled = apply_style(res.planted, res.planted_dist, style, fps, end)
                subs[key] += _rows(res.video_id, res.lab_id, raw, _no_overlaps(styled))
    solution = pd.DataFrame(sol)
    out = {}
    for key, rows in subs.items():
        submission = pd.DataFrame(rows).drop(columns=["lab_id", "behaviors_labeled"])
        submission.insert(0, "row_id", range(len(submission)))
        out[key] = metric.score(solution, submission)
    return out


def _fit_softmax(x: np.ndarray, y: np.ndarray, steps: int = 300, lr: float = 0.5, l2: float = 1e-4):
    w = np.zeros((x.shape[1], NUM_CLASSES), np.float32)
    b = np.zeros(NUM_CLASSES, np.float32)
    onehot = np.eye(NUM_CLASSES, dtype=np.float32)[y]
    for _ in range(steps):
        z = x @ w + b
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(x)
        w -= lr * (x.T @ g + l2 * w)
        b -= lr * g.sum(0)
    return w, b


def simple_model(difficulty: str, seed: int, n_videos: int, n_frames: int,
                 lab_contrast: float = 1.0) -> float:
    """Logistic regression on the cache features: train on even videos, score on odd ones."""
    from features.cache import FeatureCache, build_cache
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synth"
        generate(root, n_videos=n_videos, n_frames=n_frames, seed=seed, test_videos=0, difficulty=difficulty,
                 lab_contrast=lab_contrast)
        build_cache(root, root / "cache", n_folds=2, progress=False)
        cache = FeatureCache(root / "cache")
        vids = sorted(cache.video_ids)
        train, test = vids[::2], vids[1::2]
        rng = np.random.default_rng(seed)
        xs, ys = [], []
        for v in train:
            x, y = np.asarray(cache.x(v)), np.asarray(cache.y(v))
            x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1).astype(np.int64)
            keep = (y > 0) | (rng.random(y.size) < 0.2)
            xs.append(x[keep])
            ys.append(y[keep])
        x, y = np.nan_to_num(np.concatenate(xs)), np.concatenate(ys)
        mu, sd = x.mean(0), x.std(0) + 1e-6
        w, b = _fit_softmax((x - mu) / sd, y)
        b[0] += np.log(5.0)  # undo the background subsampling (prior correction)
        pairs = []
        lab_of = dict(zip(cache.index["video_id"], cache.index["lab_id"]))
        for v in test:
            x, y = np.nan_to_num(np.asarray(cache.x(v))), np.asarray(cache.y(v)).astype(np.int64)
            allowed, raw = cache.allowed(v), cache.allowed(v, raw=True)
            for k, (a, t) in enumerate(cache.pairs(v)):
                z = ((x[k] - mu) / sd) @ w + b
                z[:, 1:][:, ~allowed[k, 1:]] = -np.inf
                pairs.append(metric.PairFrames(str(lab_of[v]), int(v), a, t, y[k],
                                               z.argmax(1).astype(np.int64), raw[k]))
        return metric.score_frames(pairs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.synth_calibration", description=__doc__.split("\n")[0])
    p.add_argument("--difficulty", choices=DIFFICULTIES + ("both",), default="both")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--videos", type=int, default=DEFAULT_VIDEOS)
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                   help="mean frames per video (the same for both difficulties, so only the style differs)")
    p.add_argument("--lab-contrast", type=float, default=1.0,
                   help="hard: the spread between labs' styles (features.synth --lab-contrast; default 1)")
    p.add_argument("--model", action="store_true", help="also fit and score the simple model")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = p.parse_args(argv)
    diffs = DIFFICULTIES if args.difficulty == "both" else (args.difficulty,)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    out: dict = {}
    for d in diffs:
        o = [oracle(d, s, args.videos, args.frames, args.lab_contrast) for s in seeds]
        out[d] = {k: [r[k] for r in o] for k in o[0]}
        if args.model:
            out[d]["simple_model"] = [simple_model(d, s, args.videos, args.frames, args.lab_contrast)
                                      for s in seeds]
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"synthetic twin calibration: {args.videos} videos x ~{args.frames} frames, seeds {seeds}"
          + (f", lab contrast {args.lab_contrast:g}" if args.lab_contrast != 1.0 else ""))
    for d, r in out.items():
        for k, v in r.items():
            print(f"  {d:5s} {k:16s} mean {np.mean(v):.3f}  ({', '.join(f'{x:.3f}' for x in v)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
