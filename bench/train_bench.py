"""Training throughput benchmark: frames/s, FLOPs per frame, achieved FLOP rate, data-wait share.

    python -m bench.train_bench            # full (~1-2 min on 2 CPU cores)
    python -m bench.train_bench --quick    # a few seconds per stage

Every number is compared with a baseline measured in the same run, never with a constant. CPU rates are
per process CPU-second (time.process_time, 1 torch thread by default) so that other jobs on a shared box do
not distort them; CUDA rates are wall-clock.
- model step alone on pre-made tensors (no data path) vs the full trainer step with our data path;
- our achieved FLOP rate vs a plain fp32 matmul rate on the same device;
- the vectorised window gather vs a per-window Python loop;
- the share of step time the trainer waits for data (target < 5 %), from `tune.train.train` itself.
On CUDA the same rows are added for fp32 and bf16 autocast. The trainer row's target (>= 0.8) says the
full trainer step (data path included) runs at least 80 % as fast as the model step alone.
`run(quick) -> list[dict]` rows {stage, ours, baseline, ratio, target, unit}.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from features.labels import NUM_CLASSES
from models import ModelConfig, build_model

F_DEFAULT = 64
THREADS = 1


def model_flops_per_frame(model: torch.nn.Module, window: int) -> float:
    """Forward multiply-adds x 2 per frame, counted analytically from the layer shapes (LSTM/GRU included,
    which torch's FlopCounterMode does not count); attention counted at sequence length `window`."""
    total = 0.0
    for m in model.modules():
        if isinstance(m, torch.nn.Conv1d):
            total += 2 * m.in_channels * m.out_channels * m.kernel_size[0] / m.groups
        elif isinstance(m, torch.nn.Linear):
            total += 2 * m.in_features * m.out_features
        elif isinstance(m, (torch.nn.LSTM, torch.nn.GRU)):
            gates = 4 if isinstance(m, torch.nn.LSTM) else 3
            dirs = 2 if m.bidirectional else 1
            for layer in range(m.num_layers):
                inp = m.input_size if layer == 0 else m.hidden_size * dirs
                total += dirs * gates * 2 * (inp + m.hidden_size) * m.hidden_size
        elif isinstance(m, torch.nn.MultiheadAttention):
            e = m.embed_dim
            total += 2 * 4 * e * e + 2 * 2 * window * e  # projections + QK^T and AV
    return total


def _clock(device: torch.device):
    """CPU: process CPU seconds (stable on a shared box with 1 thread); CUDA: wall seconds."""
    return time.process_time if device.type == "cpu" else time.perf_counter


def matmul_rate(device: torch.device, dtype=torch.float32, n: int = 1024, seconds: float = 1.0) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    _sync(device)
    clock = _clock(device)
    reps, t0 = 0, clock()
    while clock() - t0 < seconds:
        a @ b
        reps += 1
    _sync(device)
    return 2 * n**3 * reps / (clock() - t0)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_rate(
    model, device, batch: int, window: int, n_features: int, seconds: float, bf16: bool = False
) -> float:
    """Training steps on fixed tensors (no data path): frames per second."""
    from tune.train import masked_loss

    x = torch.randn(batch, window, n_features, device=device)
    mask = torch.ones(batch, window, dtype=torch.bool, device=device)
    y = torch.randint(0, NUM_CLASSES, (batch, window), device=device)
    allowed = torch.ones(batch, NUM_CLASSES, dtype=torch.bool, device=device)
    w = torch.ones(NUM_CLASSES, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x, mask)
        loss = masked_loss(logits, y, allowed, w)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(2):  # warm-up (allocator, thread pool, cuDNN plans)
        step()
    _sync(device)
    clock = _clock(device)
    reps, t0 = 0, clock()
    while clock() - t0 < seconds or reps < 5:
        step()
        reps += 1
    _sync(device)
    return batch * window * reps / (clock() - t0)


def write_random_cache(root: Path, n_videos: int, T: int, F: int, seed: int = 0) -> Path:
    """A feature cache in the features.cache layout with random features and sparse behaviour labels."""
    rng = np.random.default_rng(seed)
    (root / "videos").mkdir(parents=True)
    rows = []
    allowed = np.zeros(NUM_CLASSES, bool)
    allowed[[0, 1, 5, 9]] = True
    for v in range(n_videos):
        y = np.zeros((2, T), np.int8)
        for p in range(2):
            for s in rng.integers(0, T - 50, size=T // 300):
                y[p, s:s + 40] = rng.choice([1, 5, 9])
        np.save(root / "videos" / f"{v}.x.npy", rng.normal(size=(2, T, F)).astype(np.float32))
        np.save(root / "videos" / f"{v}.y.npy", y)
        rows += [
            dict(
                video_id=v,
                lab_id="L",
                agent=a,
                target=t,
                pair=p,
                n_frames=T,
                n_frames_orig=T,
                fps=30.0,
                fold=v % 5,
                split="train",
                file=f"videos/{v}",
                allowed=allowed.tolist(),
                allowed_raw=allowed.tolist(),
            )
            for p, (a, t) in enumerate([(1, 2), (2, 1)])
        ]
    pd.DataFrame(rows).to_parquet(root / "index.parquet")
    (root / "meta.json").write_text(json.dumps({"settings": {}, "feature_names": [f"f{i}" for i in range(F)],
                                                "num_features": F, "n_folds": 5}))
    return root


def gather_rows(quick: bool) -> list[dict]:
    from tune.data import gather, gather_loop, load_pairs, open_cache, sample_windows

    with tempfile.TemporaryDirectory() as d:
        cache = open_cache(write_random_cache(Path(d) / "c", 10, 3000, F_DEFAULT))
        tab = load_pairs(cache, cache.index)
        pair, start = sample_windows(tab, 256, 256, 0.5, np.random.default_rng(0))
        reps = 5 if quick else 20
        gather(tab, pair, start, 256), gather_loop(tab, pair, start, 256)  # first touch of the arrays' pages
        t0 = time.process_time()
        for _ in range(reps):
            gather(tab, pair, start, 256)
        ours = reps * len(pair) / (time.process_time() - t0)
        t0 = time.process_time()
        for _ in range(reps):  # baseline: one window at a time, as a per-item Dataset would
            gather_loop(tab, pair, start, 256)
        base = reps * len(pair) / (time.process_time() - t0)
        for a, b in zip(gather(tab, pair, start, 256), gather_loop(tab, pair, start, 256)):
            np.testing.assert_array_equal(a, b)
    return [dict(stage="window gather (256 x 256 frames)", ours=ours, baseline=base, ratio=ours / base,
                 target="> 1", unit="windows/s")]


def trainer_rows(quick: bool) -> list[dict]:
    """A real `train()` run on a random cache: frames/s and the data-wait share it reports."""
    from tune.config import TrainConfig
    from tune.train import train

    T = 2000 if quick else 6000
    with tempfile.TemporaryDirectory() as d:
        cache = write_random_cache(Path(d) / "c", 10, T, F_DEFAULT)
        cfg = TrainConfig().replace(**{
            "data.cache": str(cache), "run.out_dir": str(Path(d) / "run"), "optim.epochs": 2,
            "optim.batch_size": 64, "data.window": 256, "run.progress": False, "run.device": "cpu",
            "data.samples_per_epoch": 64 * (8 if quick else 30), "run.threads": THREADS,
            "run.checkpoint_every": 100})
        seen = []
        train(cfg, report=lambda m, _: seen.append((m, time.process_time())))
    m = seen[-1][0]  # epoch 2: warm
    # frames per CPU-second of the whole epoch 2 (data path, prefetch thread and validation included)
    ours = cfg.data.samples_per_epoch * cfg.data.window / (seen[-1][1] - seen[-2][1])
    model = build_model(ModelConfig(), F_DEFAULT)
    alone = step_rate(model, torch.device("cpu"), 64, 256, F_DEFAULT, 1.0 if quick else 3.0)
    return [
        dict(
            stage="trainer epoch frames per CPU-s vs model step alone (conv_bilstm h64, 64x256)",
            ours=ours,
            baseline=alone,
            ratio=ours / alone,
            target=">= 0.8",
            unit="frames/s",
        ),
        dict(
            stage="data-wait share of train step time (cpu)",
            ours=100 * m["time/data_share"],
            baseline=None,
            ratio=None,
            target="< 5",
            unit="%",
        ),
    ]


def compute_rows(device: torch.device, quick: bool) -> list[dict]:
    rows = []
    secs = 0.5 if quick else 2.0
    for dtype, bf16, tag in [(torch.float32, False, "fp32")] + (
        [(torch.bfloat16, True, "bf16")] if device.type == "cuda" else []
    ):
        mm = matmul_rate(device, dtype, 1024 if device.type == "cpu" else 4096, secs)
        rows.append(
            dict(
                stage=f"matmul rate ({device.type} {tag}, {torch.get_num_threads()} threads)",
                ours=mm / 1e9,
                baseline=None,
                ratio=None,
                target="",
                unit="GFLOP/s",
            )
        )
        for name in ("conv_bilstm", "tcn", "hybrid"):
            model = build_model(ModelConfig(name=name), F_DEFAULT).to(device)
            fpf = model_flops_per_frame(model, 256)
            batch = 16 if device.type == "cpu" else 384
            fps = step_rate(model, device, batch, 256, F_DEFAULT, secs, bf16=bf16)
            achieved = 3 * fpf * fps  # forward + backward ~ 3x forward
            if tag == "fp32":
                rows.append(
                    dict(
                        stage=f"{name} h64 FLOPs per frame (forward)",
                        ours=fpf,
                        baseline=None,
                        ratio=None,
                        target="",
                        unit="FLOP",
                    )
                )
            rows.append(dict(stage=f"{name} training ({device.type} {tag}, batch {batch}x256)", ours=fps,
                             baseline=None, ratio=None, target="", unit="frames/s"))
            rows.append(dict(stage=f"{name} achieved / matmul rate ({device.type} {tag})",
                             ours=achieved / 1e9, baseline=mm / 1e9, ratio=achieved / mm, target="",
                             unit="GFLOP/s"))
    return rows


def run(quick: bool = False, gpu: bool = True, threads: int = 1) -> list[dict]:
    """All rows; CUDA rows (fp32 and bf16 autocast) when `gpu` and a CUDA device is present.

    CPU rows use `threads` torch threads (default 1: on a shared 2-core box two OpenMP threads made steps
    ~15x slower, so per-core numbers are the stable ones; 0 = torch default)."""
    global THREADS
    THREADS = threads
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    rows = compute_rows(torch.device("cpu"), quick)
    if gpu and torch.cuda.is_available():
        rows += compute_rows(torch.device("cuda"), quick)
    rows += gather_rows(quick)
    rows += trainer_rows(quick)
    return rows


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m bench.train_bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="short timings (CI)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch default)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    rows = run(args.quick, threads=args.threads)
    print(f"{'stage':80s} {'ours':>12s} {'baseline':>12s} {'ratio':>8s} {'target':>12s} unit")
    for r in rows:
        print(f"{r['stage']:80s} {_fmt(r['ours']):>12s} {_fmt(r['baseline']):>12s} {_fmt(r['ratio']):>8s} "
              f"{r['target']:>12s} {r['unit']}")
    print(f"\n{len(rows)} rows in {time.perf_counter() - t0:.1f}s. next: python -m tune.train --smoke-test")
    return rows


if __name__ == "__main__":
    main()
