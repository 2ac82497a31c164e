"""Benchmark of offline prediction (ensemble.predict's stages) and a projection for the hidden Kaggle test.

Measured per pair-frame (one (agent, target) pair at one resampled 30 fps frame), on this machine's CPU (and
CUDA when present and asked for):
  1. model inference, our overlapped sliding windows (ensemble.infer.sliding_probs: window 512, stride 384,
     trim 64, batches of 64 windows: the one path of validation, OOF and test) against the former validation
     path measured side by side (`_chunked_logits`: chunks of 8192 frames + 256 context, no averaging).
     Windows cost ~1.33x
     the model work, but a batch of short windows runs an RNN's time steps in parallel, so ours can be faster;
  2. features (features.pipeline.video_features on a synthetic tracking file) per original frame;
  3. post-processing (ensemble.postprocess.video_events) per pair-frame.
Projection: the hidden test is ~200 videos of the 15 "adjective-animal" labs. Pair-frames per video come from
the REAL metadata (features/data: fps x duration resampled to 30 fps, pairs from behaviors_labeled) of those
labs, so the projection uses the real test-lab distribution. Projected time = 200 x mean pair-frames x (5
models x inference + post) + 200 x mean frames x features, on 4 CPU cores (Kaggle's CPU notebook): this
machine's single-core throughput (torch 1 thread, stable on a shared machine) x 4, as videos are independent
and 4 single-thread workers scale linearly. The single-core time is printed too: it is the bound for a
predict that gains nothing from more threads. Kaggle allows 9 h; our target is <= 1 h.

Commands:

    python -m bench.predict_bench            # 20k-frame video, default conv_bilstm (hidden 64)
    python -m bench.predict_bench --quick    # 8k frames (seconds)
    python -m bench.predict_bench --gpu      # add CUDA rows when a GPU is present

`run(quick, gpu=False) -> list[dict]` returns rows {stage, ours, baseline, ratio, target, unit} for the
suite (`python -m bench`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

N_TEST_VIDEOS = 200
N_MODELS = 5
KAGGLE_CORES = 4
TARGET_HOURS = 1.0


def test_lab_distribution() -> dict:
    """Mean frames (at 30 fps) and mean pairs per video over the annotated videos of the 15 test labs."""
    from features.io import parse_behaviors
    from features.synth import annotated_labs, real_metadata

    meta = real_metadata()
    labs = set(annotated_labs(meta, public=False))
    rows = meta[meta["lab_id"].isin(labs) & meta["behaviors_labeled"].notna()]
    frames, pairs = [], []
    for _, r in rows.iterrows():
        _, beh, _, _, _ = parse_behaviors(r["behaviors_labeled"])
        frames.append(float(r["video_duration_sec"]) * 30.0)
        pairs.append(len({(a, t) for a, t, _ in beh}))
    frames, pairs = np.asarray(frames), np.asarray(pairs)
    return {
        "labs": len(labs),
        "videos": len(rows),
        "mean_frames": float(frames.mean()),
        "mean_pairs": float(pairs.mean()),
        "mean_pair_frames": float((frames * pairs).mean()),
    }


def _best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _chunked_logits(model, x, chunk: int = 8192, context: int = 256, device=None):
    """The reference: logits of full sequences [P, T, F] in chunks of `chunk` frames with `context` frames of
    overlap on each side (discarded), no averaging (the trainer's validation path before it moved to
    ensemble.infer's sliding windows)."""
    import torch

    with torch.no_grad():
        P, T, _ = x.shape
        outs = []
        for s in range(0, T, chunk):
            a, b = max(0, s - context), min(T, s + chunk + context)
            xb = x[:, a:b].to(device, torch.float32)
            mask = torch.ones(P, b - a, dtype=torch.bool, device=device)
            outs.append(model(xb, mask).float()[:, s - a: s - a + min(chunk, T - s)].cpu())
        return torch.cat(outs, dim=1)


def _inference_rows(T: int, P: int, repeat: int, device: str) -> tuple[list[dict], float]:
    import torch

    from ensemble.infer import InferSettings, sliding_probs
    from features.pipeline import FeatureSettings
    from models import ModelConfig, build_model

    F = FeatureSettings().num_features
    torch.manual_seed(0)
    model = build_model(ModelConfig(), F).to(device).eval()  # the default: conv_bilstm, hidden 64 (V6 family)
    x = np.random.default_rng(0).normal(size=(P, T, F)).astype(np.float32)
    allowed = np.ones((P, 38), bool)
    s = InferSettings()
    sliding_probs(model, x[:, :1024], allowed, s, device)  # warm-up
    ours = _best_of(lambda: sliding_probs(model, x, allowed, s, device), repeat) / (P * T)
    base = _best_of(lambda: _chunked_logits(model, torch.from_numpy(x), device=device), repeat) / (P * T)
    row = {
        "stage": f"predict: model inference per pair-frame ({device})",
        "ours": ours * 1e6,
        "baseline": base * 1e6,
        "ratio": base / ours,
        "target": None,
        "unit": "us",
        "note": f"sliding {s.window}/{s.stride}/trim {s.trim}, batch {s.batch} vs chunked full sequence; "
        f"{P} pairs x {T} frames",
    }
    return [row], ours


def _features_time(n_frames: int, repeat: int) -> tuple[float, float]:
    """(seconds per original frame of video_features, seconds per pair-frame of video_events)."""
    from ensemble.postprocess import PostprocessConfig, video_events
    from features.io import kaggle_paths, read_metadata, read_tracking
    from features.pipeline import FeatureSettings, video_features
    from features.synth import generate

    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp, n_videos=1, n_frames=n_frames, seed=0, test_videos=1, labs=["TranquilPanther"])
        meta = read_metadata(Path(tmp) / "test.csv")
        row = meta.iloc[0]
        path, _ = kaggle_paths(tmp, "test", row["lab_id"], int(row["video_id"]))
        settings = FeatureSettings()
        holder = {}

        def feats():
            holder["vf"] = video_features(
                row, read_tracking(path, int(row["video_id"])), settings, source=path
            )

        t_feat = _best_of(feats, repeat)
        vf = holder["vf"]
        rng = np.random.default_rng(0)
        probs = rng.dirichlet(np.ones(38) * 0.3, size=(len(vf.pairs), vf.n_frames)).astype(np.float32)
        cfg = PostprocessConfig(smooth_window=9, min_duration=3, gap_fill=3)
        t_post = _best_of(
            lambda: video_events(
                vf.video_id, vf.pairs, probs, vf.allowed_raw, cfg, vf.lab_id, vf.to_original
            ),
            repeat,
        )
        return t_feat / vf.n_frames_orig, t_post / (len(vf.pairs) * vf.n_frames)


def run(quick: bool = False, gpu: bool = False) -> list[dict]:
    import torch

    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core: stable on a shared box (2 OpenMP threads on 2 busy cores thrash)
    try:
        return _run(quick, gpu)
    finally:
        torch.set_num_threads(old_threads)


def _run(quick: bool, gpu: bool) -> list[dict]:
    import torch

    threads = 1
    T, P, repeat = (8192, 2, 2) if quick else (20_000, 4, 3)
    dist = test_lab_distribution()
    print(
        f"test labs: {dist['labs']} labs, {dist['videos']} annotated train videos: mean "
        f"{dist['mean_frames']:,.0f} frames at 30 fps, {dist['mean_pairs']:.1f} pairs, "
        f"{dist['mean_pair_frames']:,.0f} pair-frames per video"
    )
    rows, t_model = _inference_rows(T, P, repeat, "cpu")
    t_feat, t_post = _features_time(2000 if quick else 6000, repeat)
    rows.append(
        {
            "stage": "predict: features per frame (cpu)",
            "ours": t_feat * 1e6,
            "baseline": None,
            "ratio": None,
            "target": None,
            "unit": "us",
        }
    )
    rows.append(
        {
            "stage": "predict: post-processing per pair-frame (cpu)",
            "ours": t_post * 1e6,
            "baseline": None,
            "ratio": None,
            "target": None,
            "unit": "us",
        }
    )
    per_video = dist["mean_pair_frames"] * (N_MODELS * t_model + t_post) + dist["mean_frames"] * t_feat
    hours_here = N_TEST_VIDEOS * per_video / 3600
    hours_kaggle = hours_here * threads / KAGGLE_CORES
    rows.append(
        {
            "stage": f"predict: projected {N_TEST_VIDEOS} videos, {N_MODELS} models, {KAGGLE_CORES} cores",
            "ours": hours_kaggle,
            "baseline": 9.0,
            "ratio": 9.0 / hours_kaggle,
            "target": f"<= {TARGET_HOURS}",
            "unit": "h",
            "passed": hours_kaggle <= TARGET_HOURS,
            "note": f"{hours_here:.2f} h on one core (1 torch thread) here; baseline = Kaggle's 9 h "
            f"limit; {dist['mean_pair_frames']:,.0f} pair-frames/video (real test-lab metadata)",
        }
    )
    if gpu and torch.cuda.is_available():
        g_rows, t_gpu = _inference_rows(T, P, repeat, "cuda")
        rows.extend(g_rows)
        hours_gpu = (
            N_TEST_VIDEOS
            * (dist["mean_pair_frames"] * (N_MODELS * t_gpu + t_post) + dist["mean_frames"] * t_feat)
            / 3600
        )
        rows.append(
            {
                "stage": f"predict: projected {N_TEST_VIDEOS} videos, {N_MODELS} models, 1 GPU",
                "ours": hours_gpu,
                "baseline": 9.0,
                "ratio": 9.0 / hours_gpu,
                "target": f"<= {TARGET_HOURS}",
                "unit": "h",
            }
        )
    return rows


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m bench.predict_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="8k-frame video, best of 2")
    p.add_argument("--gpu", action="store_true", help="add CUDA rows when a GPU is present")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    rows = run(args.quick, args.gpu)
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else "-"
        base = f"{r['baseline']:.3g}" if r.get("baseline") is not None else "-"
        print(
            f"{r['stage']:<62} ours {r['ours']:>9.3g} {r['unit']:<3} baseline {base:>8} ratio {ratio:>6} "
            f"target {r.get('target') or '-'}" + (f"  ({r['note']})" if r.get("note") else "")
        )
    print(
        f"done in {time.perf_counter() - t0:.1f}s (OMP_NUM_THREADS "
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')})"
    )
    print("next: python -m bench --only predict   (the whole suite table)")
    return rows


if __name__ == "__main__":
    main()
