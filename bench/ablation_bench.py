"""Which lab-aware parts earn their place? Issue 15's ablation, run through the whole product on the hard
synthetic twin with the honest protocol: each arm trains one fixed configuration (a 1-trial `tune.search` with
every searched key pinned), then `ensemble.build` (cross-fitted OOF) -> `ensemble.export` ->
`ensemble.predict` -> the official metric on the twin's held-out test videos (`bench.validate_bench.run_seed`,
the same command lines as README). Arms, each on the same data per seed:

    all on            lab-balanced sampling + lab/action conditioning + EMA and augmentation + pair_rich
    no sampling       data.lab_alpha = 1 (frame-proportional windows)
    no conditioning   no lab embedding, no candidate-action input (a pooled model)
    no recipe         no EMA, no augmentation
    no rich features  feature_set pair (79 values) instead of pair_rich (214)
    all off           the pooled baseline: all four off (only with --arms)

and, only with --arms, "all on" with its conditioning replaced: "lab embedding only", "action mask only",
"lab bias" (model.lab_bias), "lab film" (model.lab_film), "lab bias+film", "lab bias+film x30" (the per-lab
rows at 30x the learning rate, optim.lab_lr_mult).

One row per arm: held-out test score per seed, mean and spread, the change against "all on", the
cross-fitted OOF score beside it. `--unseen-lab LAB` trains every arm without LAB's videos (`data.labs`) and
adds the held-out score of LAB's test videos alone: a lab-conditioned model meets LAB through its learned
"unknown lab" embedding, a pooled one as any other lab. Every step's log is kept under W/<arm>/seed<S>/ when
--work is given.

    python -m bench.ablation_bench --jobs 2          # 3 seeds x 5 arms at the defaults (~45 min on 2 cores)
    python -m bench.ablation_bench --seeds 0 --epochs 2 --videos 6 --frames 900     # a quick look
    python -m bench.ablation_bench --unseen-lab DeliriousFly --arms "all on" "no conditioning"
    python -m bench.ablation_bench --lab-contrast 3 --arms "no conditioning" "lab embedding only"
                                   # a twin whose labs' annotation styles lie further apart
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from bench.validate_bench import run_seed
from ensemble import metric
from features.synth.meta import DEFAULT_LABS
from features.cli import ArgumentParser, check_range

# The fixed configuration every arm trains: a small TCN that trains in a few minutes on 2 cores; the
# lab-aware keys are set per arm below. Every searched key but model.dropout is pinned, and a 1-trial search's
# only trial is the seed's V6 point on the keys left (dropout 0.1): one configuration in every arm and seed.
BASE = {"model.name": "tcn", "model.hidden": 64, "data.window": 128,
        "optim.batch_size": 64, "optim.lr": 1e-3, "optim.warmup_epochs": 1, "optim.bg_weight": 1.0,
        "optim.class_weight_power": 0.5}
PARTS = {
    "sampling": ({"data.lab_alpha": 0.5}, {"data.lab_alpha": 1.0}),
    "conditioning": ({"model.lab_embedding": 8, "model.condition_actions": "true"},
                     {"model.lab_embedding": 0, "model.condition_actions": "false"}),
    "recipe": ({"optim.ema_decay": 0.99, "optim.aug_flip": 0.5, "optim.aug_jitter": 0.3},
               {"optim.ema_decay": 0.0, "optim.aug_flip": 0.0, "optim.aug_jitter": 0.0}),
    "rich features": ({"features.feature_set": "pair_rich"}, {"features.feature_set": "pair"}),
}

# the conditioning part split and redone: "all on" with only its conditioning pins changed (only with --arms)
VARIANTS = {
    "lab embedding only": {"model.lab_embedding": 8, "model.condition_actions": "false"},
    "action mask only": {"model.lab_embedding": 0, "model.condition_actions": "true"},
    "lab bias": {"model.lab_embedding": 0, "model.condition_actions": "false", "model.lab_bias": "true"},
    "lab film": {"model.lab_embedding": 0, "model.condition_actions": "false", "model.lab_film": "true"},
    "lab bias+film": {"model.lab_embedding": 0, "model.condition_actions": "false", "model.lab_bias": "true",
                      "model.lab_film": "true"},
    "lab bias+film x30": {"model.lab_embedding": 0, "model.condition_actions": "false",
                          "model.lab_bias": "true", "model.lab_film": "true", "optim.lab_lr_mult": 30.0},
}


def arms() -> dict[str, dict]:
    """{arm name: the --set pins of that arm}: all on, each part off alone, all off, the VARIANTS."""
    def pins(off: set[str]) -> dict:
        out = dict(BASE)
        for part, (on_, off_) in PARTS.items():
            out.update(off_ if part in off else on_)
        return out

    out = {"all on": pins(set())}
    out.update({f"no {part}": pins({part}) for part in PARTS})
    out["all off"] = pins(set(PARTS))
    out.update({name: {**out["all on"], **v} for name, v in VARIANTS.items()})
    return out


DEFAULT_ARMS = ["all on", *(f"no {part}" for part in PARTS)]  # "all off" on request (--arms)


def main(argv=None) -> dict:
    p = ArgumentParser(prog="python -m bench.ablation_bench",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Ablation of the lab-aware parts on the hard twin: held-out "
                       "test score of each part switched off alone vs all on.",
                       epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--videos", type=int, default=16, help="training videos of the twin (default 16)")
    p.add_argument("--frames", type=int, default=2400, help="mean frames per video (default 2400)")
    p.add_argument("--test-videos", type=int, default=15, help="held-out test videos (default 15)")
    p.add_argument("--epochs", type=int, default=6, help="training epochs of every arm (default 6)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="data and training seeds")
    p.add_argument("--arms", nargs="+", default=DEFAULT_ARMS,
                   help=f"arms to run, names as printed (default: {', '.join(DEFAULT_ARMS)}; also 'all off', "
                   f"{', '.join(repr(v) for v in VARIANTS)})")
    p.add_argument("--threads", type=int, default=1, help="torch threads of build and predict (default 1)")
    p.add_argument("--jobs", type=int, default=1, help="arms run at once (default 1; each its own processes)")
    p.add_argument("--unseen-lab", default="", help="train without this lab's videos; score its test videos "
                   f"alone too (the twin's labs: {', '.join(DEFAULT_LABS)})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="pinned in every arm after the arm's own pins (repeatable), e.g. "
                        "model.lab_dropout=0.3")
    p.add_argument("--lab-contrast", type=float, default=1.0,
                   help="the twin's spread between labs' annotation styles (features.synth --lab-contrast; "
                        "default 1)")
    p.add_argument("--work", default="", help="working folder, kept (default: a temporary one, removed)")
    a = p.parse_args(argv)
    check_range(p, a, {"--videos": 1, "--test-videos": 1, "--frames": 1, "--epochs": 1, "--threads": 0,
                       "--jobs": 1, "--lab-contrast": 0})
    todo = arms()
    unknown = [x for x in a.arms if x not in todo]
    if unknown:
        p.error(f"unknown arm(s) {unknown}: choose from {list(todo)}")
    todo = {k: todo[k] for k in a.arms}
    if a.unseen_lab:
        if a.unseen_lab not in DEFAULT_LABS:
            p.error(f"--unseen-lab {a.unseen_lab}: not a lab of the hard twin ({', '.join(DEFAULT_LABS)})")
        seen = json.dumps([lab for lab in DEFAULT_LABS if lab != a.unseen_lab], separators=(",", ":"))
        todo = {k: {**v, "data.labs": seen} for k, v in todo.items()}
    work = Path(a.work or tempfile.mkdtemp(prefix="ablation-bench-")).resolve()
    results: dict[str, dict[int, dict]] = {name: {} for name in todo}

    def one(seed: int, name: str) -> None:
        ns = argparse.Namespace(
            difficulty="hard", videos=a.videos, frames=a.frames, test_videos=a.test_videos, trials=1,
            epochs=a.epochs, set=[f"{k}={v}" for k, v in todo[name].items()] + a.set,
            search_arg=[], build_arg=[],
            synth_arg=[f"--lab-contrast={a.lab_contrast:g}"] if a.lab_contrast != 1.0 else [],
            top_k=1, threads=a.threads)
        print(f"{name}, seed {seed}: started", flush=True)
        arm_dir = work / name.replace(" ", "_")
        row = run_seed(seed, ns, arm_dir)
        if a.unseen_lab:
            data = arm_dir / f"seed{seed}" / "data"
            counts = metric.interval_counts(pd.read_csv(data / "test_solution.csv"),
                                            pd.read_csv(arm_dir / f"seed{seed}" / "submission.csv"))
            row["unseen"] = metric.lab_scores(counts).get(a.unseen_lab, float("nan"))
        results[name][seed] = row
        print(f"{name}, seed {seed}: held-out {row['held_out']:.4f} cross-fitted {row['crossfit']:.4f}",
              flush=True)

    try:
        with ThreadPoolExecutor(a.jobs) as pool:   # each run is subprocesses: threads only wait
            for f in [pool.submit(one, seed, name) for seed in a.seeds for name in todo]:
                f.result()
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nablation_bench: hard twin, {a.videos} train + {a.test_videos} test videos x {a.frames} frames, "
          f"{a.epochs} epochs, seeds {' '.join(map(str, a.seeds))}"
          + (f", lab contrast {a.lab_contrast:g}" if a.lab_contrast != 1.0 else ""))
    if a.unseen_lab:
        print(f"trained without {a.unseen_lab}; 'unseen lab' = the held-out score of its test videos alone")
    print(table(results, a.seeds))
    if a.work:
        (work / "ablation.json").write_text(json.dumps(
            {k: {str(s): r for s, r in v.items()} for k, v in results.items()}, indent=1))
    return results


def table(results: dict[str, dict[int, dict]], seeds: list[int]) -> str:
    """The README table: held-out per seed, mean +- sd, the change against "all on", the cross-fitted mean."""
    unseen = any("unseen" in r for rows in results.values() for r in rows.values())
    w = max(16, *(len(name) + 1 for name in results))
    head = (f"{'arm':<{w}}" + "".join(f"{'seed ' + str(s):>9}" for s in seeds)
            + f"{'mean':>8}{'sd':>7}{'vs all on':>10}{'cross-fitted':>13}"
            + (f"{'unseen lab':>11}" if unseen else ""))
    lines = [head]
    ref = statistics.mean(r["held_out"] for r in results["all on"].values()) if "all on" in results else None
    for name, rows in results.items():
        held = [rows[s]["held_out"] for s in seeds if s in rows]
        mean = statistics.mean(held)
        sd = statistics.stdev(held) if len(held) > 1 else 0.0
        delta = f"{mean - ref:+10.4f}" if ref is not None and name != "all on" else f"{'':>10}"
        cf = statistics.mean(rows[s]["crossfit"] for s in seeds if s in rows)
        extra = f"{statistics.mean(rows[s]['unseen'] for s in seeds if s in rows):>11.4f}" if unseen else ""
        held_cols = "".join(f"{rows[s]['held_out']:>9.4f}" if s in rows else f"{'':>9}" for s in seeds)
        lines.append(f"{name:<{w}}{held_cols}{mean:>8.4f}{sd:>7.4f}{delta}{cf:>13.4f}{extra}")
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    main()
