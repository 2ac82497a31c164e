"""Real-scale benchmark (issue 17): the like-real twin at fraction F through cache, loader and trainer,
measured here and projected to the full training set (45.0 M pair-frames).

    python -m bench --scale                      # F = 0.1 (4.5 M pair-frames), 2 build workers
    python -m bench --scale --fraction 0.02      # smaller
    python -m bench.scale_bench --fraction 0.1 --workers 2 --root /tmp/mabe-scale

Measured here: twin generation and cache build wall time with N workers, cache bytes (float32 and
float16), window gather rate in RAM and from the read-only memmaps (`data.in_memory_gb=0`; the page cache
is warm after the build: cold-disk reads are not measured), the data-wait share of the trainer's step time
with the default model at in_memory_gb=0 and in RAM, and the step time from which the epoch time is derived.
Projections to the full set scale the measured figures by pair-frames (linear: every stage is per
pair-frame) and by cores; GPU figures are "not measured" until `python -m bench --gpu` has run on a GPU.
`run(quick, fraction, workers, root) -> list[dict]` rows for `python -m bench`'s table; the projection table
is printed here.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

# Projection targets (public instance specs): one H100 node = 1 x H100 80GB with 26 vCPUs (the common
# single-GPU cloud shape); p5.48xlarge = 8 x H100 80GB, 192 vCPUs, 2 TiB RAM; the cluster = 4 of them.
TARGETS = {"one H100 node (26 vCPU)": 26, "p5.48xlarge x 4 (768 vCPU, 32 H100)": 4 * 192}
STEPS = 6  # optimiser steps per measured epoch (two epochs; the second, warm one is reported)


def _bytes(cache: Path, suffix: str = ".x.npy") -> int:
    return sum(p.stat().st_size for p in (cache / "videos").glob(f"*{suffix}"))


def _twin(root: Path, fraction: float, workers: int) -> tuple[Path, dict, float | None]:
    """The like-real twin at `fraction` under root (reused when synth.json says it is one); returns (folder,
    marker, generation seconds or None when reused)."""
    from features.synth import generate

    data = root / f"like-real-{fraction:g}"
    marker = data / "synth.json"
    if marker.is_file():
        meta = json.loads(marker.read_text())
        if meta.get("args", {}).get("like_real") == fraction:
            return data, meta, None
    t0 = time.perf_counter()
    generate(data, seed=0, test_videos=2, like_real=fraction, workers=workers)
    return data, json.loads(marker.read_text()), time.perf_counter() - t0


def _build(data: Path, out: Path, workers: int, dtype: str) -> float:
    from features.cache import build_cache

    shutil.rmtree(out, ignore_errors=True)  # a fresh build: its wall time is the figure
    t0 = time.perf_counter()
    build_cache(data, out, workers=workers, progress=False, dtype=dtype)
    return time.perf_counter() - t0


def _gather_rate(table, window: int, batch: int, n_batches: int, workers: int | None) -> float:
    """Windows per second: `gather` in this thread (workers None) or through a Prefetcher."""
    from tune.data import Prefetcher, epoch_batches, gather

    batches = epoch_batches(table, n_batches * batch, window, batch, 0.5, seed=0, epoch=0)
    gather(table, *batches[0], window)  # touch
    t0 = time.perf_counter()
    if workers is None:
        for p, s in batches:
            gather(table, p, s, window)
    else:
        feed = Prefetcher(table, batches, window, workers=workers)
        for _ in feed:
            pass
        feed.close()
    return n_batches * batch / (time.perf_counter() - t0)


def _train(cache: Path, out: Path, in_memory_gb: float, steps: int) -> dict:
    """Two short epochs of the default model and batch on the whole cache (no validation); the second's
    data-wait share and step time."""
    from tune.config import TrainConfig
    from tune.train import train

    cfg = TrainConfig().replace(**{
        "data.cache": str(cache), "run.out_dir": str(out), "optim.epochs": 2, "data.val_fold": -1,
        "data.in_memory_gb": in_memory_gb, "run.progress": False, "run.device": "cpu",
        "data.samples_per_epoch": TrainConfig().optim.batch_size * steps, "run.checkpoint_every": 100})
    seen = []
    train(cfg, report=lambda m, _: seen.append((m, time.perf_counter())))
    m = seen[-1][0]
    step_s = (seen[-1][1] - seen[-2][1]) / steps  # epoch 2, report to report (checkpoint included)
    return {"data_share": float(m["time/data_share"]), "step_s": step_s, "batch": cfg.optim.batch_size,
            "window": cfg.data.window}


def measure(fraction: float = 0.1, workers: int = 2, root: Path | None = None, steps: int = STEPS) -> dict:
    from features.cache import FeatureCache
    from features.synth.like_real import real_totals
    from features.synth.meta import real_metadata
    from tune.data import load_pairs, prefetch_workers

    own = root is None
    root = Path(tempfile.mkdtemp(prefix="mabe-scale-")) if own else Path(root)
    try:
        data, marker, gen_s = _twin(root, fraction, workers)
        r = {"fraction": fraction, "workers": workers, "real": real_totals(real_metadata()),
             "twin": {k: marker[k] for k in ("videos", "frames", "pair_frames")}, "generate_s": gen_s}
        c32, c16 = root / "cache-f32", root / "cache-f16"
        r["build_s"] = {"float32": _build(data, c32, workers, "float32"),
                        "float16": _build(data, c16, workers, "float16")}
        r["bytes"] = {"float32": _bytes(c32), "float16": _bytes(c16), "labels": _bytes(c32, ".y.npy")}
        cache = FeatureCache(c32)
        r["pair_frames"] = int(cache.index["n_frames"].sum())
        r["features"] = cache.num_features
        from tune.config import TrainConfig

        d = TrainConfig()
        window, batch = d.data.window, d.optim.batch_size
        ram, mm = load_pairs(cache, cache.index, 1e9), load_pairs(cache, cache.index, 0)
        auto = prefetch_workers(mm)
        r["loader"] = {
            "window": window, "batch": batch, "auto_workers": auto,
            "ram_1thread": _gather_rate(ram, window, batch, 20, None),
            "memmap_1thread": _gather_rate(mm, window, batch, 20, None),
            "memmap_prefetch": _gather_rate(mm, window, batch, 20, auto),
            "memmap_f16_1thread": _gather_rate(load_pairs(FeatureCache(c16), cache.index, 0), window, batch,
                                               20, None),
        }
        del ram, mm
        r["train"] = {"memmap": _train(c32, root / "run-mm", 0.0, steps),
                      "ram": _train(c32, root / "run-ram", 1e9, steps)}
        return r
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)


def _gb(b: float) -> str:
    return f"{b / 1e9:.2f} GB"


def _hms(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else (f"{s / 60:.1f} min" if s >= 60 else f"{s:.1f} s")


def table(r: dict) -> list[tuple[str, str, str, str]]:
    """(quantity, at F here, full set projection, source) rows."""
    w = r["workers"]
    scale = r["real"]["pair_frames"] / r["pair_frames"]
    lo, tr = r["loader"], r["train"]
    rows = [
        ("twin (videos / frames / pair-frames)",
         f"{r['twin']['videos']} / {r['twin']['frames']:,} / {r['twin']['pair_frames']:,}",
         f"{r['real']['videos']} / {r['real']['frames']:,} / {r['real']['pair_frames']:,}",
         f"measured here; real totals from the packaged train.csv; cached pair-frames {r['pair_frames']:,} "
         f"(30 fps) -> x{scale:.2f}"),
        (f"twin generation ({w} workers)",
         _hms(r["generate_s"]) if r["generate_s"] is not None else "reused",
         _hms(r["generate_s"] * scale) if r["generate_s"] is not None else "-",
         "measured here; full: x pair-frames (same workers)"),
    ]
    for dtype in ("float32", "float16"):
        b = r["bytes"][dtype]
        rows.append((f"cache bytes {dtype} (F={r['features']})", _gb(b), _gb(b * scale),
                     "measured here; full: x pair-frames"))
    rows.append(("label bytes (int8)", _gb(r["bytes"]["labels"]), _gb(r["bytes"]["labels"] * scale),
                 "measured here; full: x pair-frames"))
    b32 = r["build_s"]["float32"]
    rows.append((f"cache build float32 ({w} workers)", _hms(b32), _hms(b32 * scale),
                 "measured here; full: x pair-frames, same workers"))
    rows.append((f"cache build float16 ({w} workers)", _hms(r["build_s"]["float16"]),
                 _hms(r["build_s"]["float16"] * scale), "measured here"))
    for name, cores in TARGETS.items():
        rows.append((f"cache build float32 on {name}", "-", _hms(b32 * scale * w / cores),
                     f"derived: x {w}/{cores} cores (per-video work, no shared state)"))
    rows += [
        (f"gather in RAM, 1 thread (batch {lo['batch']} x {lo['window']})", f"{lo['ram_1thread']:,.0f} win/s",
         "same per thread", "measured here"),
        ("gather memmap (in_memory_gb=0), 1 thread", f"{lo['memmap_1thread']:,.0f} win/s", "same per thread",
         "measured here (page cache warm; cold disk not measured)"),
        (f"gather memmap, Prefetcher {lo['auto_workers']} threads (auto)",
         f"{lo['memmap_prefetch']:,.0f} win/s", "-", "measured here (2 shared cores)"),
        ("gather memmap float16 -> float32, 1 thread", f"{lo['memmap_f16_1thread']:,.0f} win/s",
         "same per thread", "measured here"),
    ]
    for key, label in (("memmap", "in_memory_gb=0"), ("ram", "in RAM")):
        t = tr[key]
        rows.append((f"data-wait share of step time, default model, {label} (cpu)",
                     f"{100 * t['data_share']:.2f} %", "not measured (GPU)",
                     f"measured here: tune.train, 2 epochs x {STEPS} steps, epoch 2; target < 5 % at "
                     f"in_memory_gb=0"))
    t = tr["memmap"]
    steps_epoch = r["pair_frames"] // lo["window"] // lo["batch"] + 1
    rows += [
        ("train step, default model (cpu)", f"{t['step_s']:.2f} s", "not measured (GPU)",
         "measured here (1 process, 2 shared cores)"),
        ("epoch (every frame once), default model (cpu)", _hms(t["step_s"] * steps_epoch),
         _hms(t["step_s"] * steps_epoch * scale),
         f"derived: {steps_epoch:,} steps x step time; full: x pair-frames"),
        ("loader rate a GPU step needs", "-", "not measured",
         f"needs GPU step time (python -m bench --gpu never ran: no GPU lent); the memmap Prefetcher "
         f"gives {lo['memmap_prefetch']:,.0f} win/s here = one {lo['batch']}-window batch per "
         f"{lo['batch'] / lo['memmap_prefetch']:.3f} s"),
        ("epoch on one H100 / on p5.48xlarge x 4", "-", "not measured", "GPU rows: python -m bench --gpu"),
    ]
    return rows


def print_projection(r: dict) -> None:
    rows = table(r)
    cols = ("quantity", f"at F={r['fraction']:g} (here)", "full set (45.0 M pair-frames)", "source")
    widths = [max(len(c), *(len(x[i]) for x in rows)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("-" * (sum(widths) + 6))
    for x in rows:
        print("  ".join(v.ljust(w) for v, w in zip(x, widths)))


def rows_for_bench(r: dict) -> list[dict]:
    lo, tr = r["loader"], r["train"]
    f = f"F={r['fraction']:g}"
    return [
        dict(stage=f"scale {f}: cache build ({r['workers']} workers)", ours=r["build_s"]["float32"],
             unit="s"),
        dict(stage=f"scale {f}: cache bytes float16 vs float32", ours=r["bytes"]["float16"],
             baseline=r["bytes"]["float32"], ratio=r["bytes"]["float16"] / r["bytes"]["float32"],
             target="<= 0.51", unit="bytes"),
        dict(stage=f"scale {f}: gather memmap vs in RAM (1 thread)", ours=lo["memmap_1thread"],
             baseline=lo["ram_1thread"], ratio=lo["memmap_1thread"] / lo["ram_1thread"], unit="windows/s"),
        dict(stage=f"scale {f}: gather memmap, {lo['auto_workers']} prefetch threads",
             ours=lo["memmap_prefetch"], baseline=lo["memmap_1thread"],
             ratio=lo["memmap_prefetch"] / lo["memmap_1thread"], unit="windows/s"),
        dict(stage=f"scale {f}: data-wait share, in_memory_gb=0 (cpu)",
             ours=100 * tr["memmap"]["data_share"], target="< 5", unit="%"),
        dict(stage=f"scale {f}: data-wait share, in RAM (cpu)", ours=100 * tr["ram"]["data_share"],
             target="< 5", unit="%"),
        dict(stage=f"scale {f}: train step, default model (cpu)", ours=tr["memmap"]["step_s"], unit="s"),
    ]


def run(quick: bool = False, fraction: float = 0.1, workers: int = 2, root: Path | None = None) -> list[dict]:
    r = measure(0.01 if quick and fraction == 0.1 else fraction, workers, root, 4 if quick else STEPS)
    print_projection(r)
    return rows_for_bench(r)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.scale_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fraction", type=float, default=0.1, help="like-real twin scale F in (0, 1]")
    p.add_argument("--workers", type=int, default=2, help="processes generating the twin and building caches")
    p.add_argument("--root", type=Path, default=None,
                   help="work folder (kept; a twin already there is reused); default: a temporary one")
    p.add_argument("--json", type=Path, default=None, help="also write the measurements here")
    a = p.parse_args(argv)
    if not 0 < a.fraction <= 1 or a.workers < 1:
        p.error("--fraction must be in (0, 1] and --workers >= 1")
    r = measure(a.fraction, a.workers, a.root)
    print_projection(r)
    if a.json:
        a.json.write_text(json.dumps(r, indent=1, default=float))
    return r


if __name__ == "__main__":
    main()
