"""Search efficiency: which searcher finds the best model for a fixed budget of trial-epochs.

    python -m bench.search_bench              # 5 seeds x 5 arms, 32 trials x 3 epochs (~1 h+ on 2 busy cores)
    python -m bench.search_bench --quick      # 1 seed, random vs tpe+asha, 6 trials x 3 epochs
    python -m bench.search_bench --seeds 3 --arms tpe+asha,optuna   # random and the named arms only
    python -m bench.search_bench --first-seed 4 --seeds 1             # seed 4 alone (one more seed)
    python -m bench.search_bench --set run.objective=argmax           # pin any TrainConfig field

The budget is counted in trial-epochs: random search runs `trials` trials to the end (`trials x epochs`), and
every other arm gets exactly that many trial-epochs, spent however it likes (ASHA and Optuna's MedianPruner
stop weak trials early and so start more of them). Every epoch any trial reports is counted in report order,
and the arm stops when the budget is spent.

Arms:

    random          Optuna RandomSampler, every trial runs all epochs (the baseline)
    random+asha     random points, ASHA early stopping: what ASHA alone is worth
    tpe+asha        the default search: `tune.optuna_ext.tpe_sampler` (its TPE_DEFAULTS), the ASHA of
                    `tune.driver.build_scheduler` (tune.scheduler.ReferenceASHA), trials ASHA stopped told to
                    TPE as PRUNED (`tune.optuna_ext.optuna_search`)
    tpe-mv+asha     the same with multivariate=True and constant_liar=True (the other setting of both)
    tpe-uni+asha    the same with multivariate=False and constant_liar=False
    optuna          no Ray: `optuna.create_study(sampler=TPESampler(seed), pruner=MedianPruner(n_warmup_steps=
                    1)).optimize(objective, n_jobs=2)`, the peer a user would pick instead

(tpe+asha is one of tpe-mv+asha / tpe-uni+asha, whichever `tune.optuna_ext` makes the default; the full run
runs the other one.) Every arm trains with the same function (`tune.trainer.train`, in the trial's process:
the bench compares searchers, and Ray Train's fixed start-up per trial, measured by `bench.ray_bench`, would
take most of the wall time), 2 trials at a time, on the same synthetic data and space (batch and window
pinned small, 10 videos x 600 frames, 128 windows per epoch, no warm-up so that ASHA's grace period, which
covers the warm-up, is 1 epoch: rungs at epochs 1 and 2; MedianPruner from step 1 likewise). A table of all
seeds so far is printed after each seed. Printed per arm: mean best score over the seeds, its standard
deviation and min-max, and the seeds it won (ties shared).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PINNED = {
    "optim.batch_size": 32,
    "data.window": 64,
}  # small and fixed: the bench compares searchers, not speed
SAMPLES_PER_EPOCH = 128     # windows per epoch: the box is shared, every trial-epoch counts
DATA = (10, 600)            # synthetic videos x frames
PINNED_WARMUP = 0           # no warm-up: ASHA's grace period covers it with 1 epoch, rungs at epochs 1 and 2
ARMS = ("random", "tpe+asha", "tpe-mv+asha", "tpe-uni+asha", "optuna", "random+asha")


@dataclass
class Arm:
    """What one arm did: every reported score with the trial-epochs spent so far (all trials, report
    order)."""

    name: str
    budget: int
    log: list[tuple[int, float]] = field(default_factory=list)
    trials: int = 0
    seconds: float = 0.0

    def best(self) -> float:
        """Best score reported within the budget."""
        return max((s for spent, s in self.log if spent <= self.budget), default=float("nan"))

    def spent(self) -> int:
        return min(self.budget, max((spent for spent, _ in self.log), default=0))

    def budget_to_reach(self, target: float) -> int | None:
        """Trial-epochs spent when a trial first reported `target` or better; None if never within budget."""
        return budget_to_reach(self.log, target, self.budget)


def budget_to_reach(log: list[tuple[int, float]], target: float, budget: int) -> int | None:
    """First `spent` in `log` (in report order) whose score reaches `target` within `budget`; None if
    never."""
    for spent, score in log:
        if spent > budget:
            return None
        if score >= target - 1e-12:
            return spent
    return None


def budget_stopper(budget: int, log: list, objective: str):
    """A Tune Stopper that appends (trial-epochs spent, score) per report to `log` and stops all trials once
    `budget` trial-epochs are spent. Epochs are read from each result's `epoch` (the trial's own count), so a
    trial's extra final report costs nothing."""
    import ray.tune

    class BudgetStopper(ray.tune.Stopper):
        def __init__(self):
            self.epochs: dict[str, int] = {}

        def __call__(self, trial_id: str, result: dict) -> bool:
            self.epochs[trial_id] = max(self.epochs.get(trial_id, 0), int(result.get("epoch", 0) or 0))
            if result.get(objective) is not None:
                log.append((sum(self.epochs.values()), float(result[objective])))
            return False

        def stop_all(self) -> bool:
            return sum(self.epochs.values()) >= budget

    return BudgetStopper()


def summarize(best: dict[str, list[float]]) -> list[dict]:
    """Per arm: mean, std and min-max of the best scores over the seeds, and the seeds it won (the highest
    best of that seed; a tie counts for every arm in it)."""
    arms = list(best)
    n = len(next(iter(best.values()), []))
    won = {arm: 0 for arm in arms}
    for i in range(n):
        top = max(best[arm][i] for arm in arms)
        for arm in arms:
            won[arm] += best[arm][i] >= top - 1e-12
    return [{"arm": arm, "mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
             "min": min(v), "max": max(v), "won": won[arm], "seeds": n, "per_seed": v}
            for arm, v in best.items()]


def table(rows: list[dict]) -> str:
    lines = [f"{'arm':<14} {'mean best':>9} {'std':>7} {'min-max':>15} {'seeds won':>10}"]
    for r in sorted(rows, key=lambda r: -r["mean"]):
        lines.append(f"{r['arm']:<14} {r['mean']:9.4f} {r['std']:7.4f} {r['min']:7.4f}-{r['max']:.4f} "
                     f"{r['won']:>6} of {r['seeds']}")
    return "\n".join(lines)


def bench_space() -> dict:
    from tune import space

    return space.restrict(space.CPU_SPACE, {**PINNED, space.WARMUP: PINNED_WARMUP})


def tpe_settings(arm: str) -> dict:
    """multivariate / constant_liar of a TPE arm (tpe+asha: tune.optuna_ext's defaults)."""
    from tune import optuna_ext

    if arm == "tpe-mv+asha":
        return {"multivariate": True, "constant_liar": True}
    if arm == "tpe-uni+asha":
        return {"multivariate": False, "constant_liar": False}
    return dict(optuna_ext.TPE_DEFAULTS)


def _trial_fn(config: dict, base: dict) -> None:
    """The Tune trial of every Ray arm: `tune.trainer.train` in this process, one report per epoch, then the
    driver's final report (with BEST_CKPT, so OptunaSearch tells a finished trial COMPLETE)."""
    import ray.tune

    from tune.config import apply_overrides
    from tune.keys import BEST_CKPT
    from tune.trainer import train

    out_dir = str(Path(base["run"]["out_dir"]) / ray.tune.get_context().get_trial_id())
    cfg = apply_overrides(base, {**config, "run.out_dir": out_dir})
    last: dict = {}

    def report(metrics: dict, _ckpt) -> None:
        last.clear()
        last.update(metrics)
        ray.tune.report(dict(metrics))

    train(cfg, report)
    ray.tune.report({**last, BEST_CKPT: ""})


def _ray_arm(arm: str, seed: int, trials: int, epochs: int, base: dict, storage: Path) -> Arm:
    import optuna
    import ray.tune
    from ray.tune.search import ConcurrencyLimiter

    from tune import driver, keys, optuna_ext, search, space

    budget = trials * epochs
    scfg = search.SearchConfig(name=f"{arm.replace('+', '-')}-{seed}", storage=str(storage),
                               num_samples=trials, epochs=epochs, seed=seed, grace_period=1,
                               overrides={**PINNED, "optim.warmup_epochs": PINNED_WARMUP})
    sampler = (optuna_ext.tpe_sampler(scfg, **tpe_settings(arm)) if arm.startswith("tpe")
               else optuna.samplers.RandomSampler(seed=seed))
    searcher = ConcurrencyLimiter(optuna_ext.optuna_search(
        space=space.to_optuna(bench_space()), metric=keys.OBJECTIVE, mode="max", sampler=sampler),
        max_concurrent=scfg.max_concurrent)
    out = Arm(arm, budget)
    trial_base = {**base, "run": {**base["run"], "out_dir": str(storage / scfg.name / "runs")}}
    tuner = ray.tune.Tuner(
        ray.tune.with_resources(ray.tune.with_parameters(_trial_fn, base=trial_base), {"CPU": 1}),
        tune_config=ray.tune.TuneConfig(
            metric=keys.OBJECTIVE, mode="max", search_alg=searcher, reuse_actors=True,
            scheduler=driver.build_scheduler(scfg) if arm.endswith("asha") else None,
            num_samples=budget),  # the budget stopper ends the search; every trial costs >= 1 trial-epoch
        run_config=ray.tune.RunConfig(name=scfg.name, storage_path=str(storage), verbose=0,
                                      stop=budget_stopper(budget, out.log, keys.OBJECTIVE)))
    t0 = time.perf_counter()
    grid = tuner.fit()
    out.seconds = time.perf_counter() - t0
    out.trials = len(grid)
    return out


def suggest(trial, key: str, dist):
    """`trial.suggest_*` for one of `tune.space.to_optuna`'s distributions."""
    import optuna.distributions as d

    if isinstance(dist, d.CategoricalDistribution):
        return trial.suggest_categorical(key, dist.choices)
    if isinstance(dist, d.IntDistribution):
        return trial.suggest_int(key, dist.low, dist.high, log=dist.log)
    return trial.suggest_float(key, dist.low, dist.high, log=dist.log)


def _optuna_arm(seed: int, trials: int, epochs: int, base: dict, storage: Path) -> Arm:
    """Plain Optuna, no Ray: TPE (Optuna's defaults) + MedianPruner not before the grace period, 2 threads,
    the same trainer and the same trial-epoch budget."""
    import optuna

    from tune import space
    from tune.config import apply_overrides
    from tune.keys import OBJECTIVE
    from tune.trainer import train

    budget = trials * epochs
    out = Arm("optuna", budget)
    lock = threading.Lock()
    spent = [0]
    dists = space.to_optuna(bench_space())
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_warmup_steps=1))

    class Spent(Exception):
        """The budget ran out during this trial."""

    def objective(trial: optuna.Trial) -> float:
        point = {k: suggest(trial, k, d) for k, d in dists.items()}
        out_dir = str(storage / f"optuna-{seed}" / str(trial.number))
        cfg = apply_overrides(base, {**point, "run.out_dir": out_dir})
        best = [float("nan")]

        def report(metrics: dict, _ckpt) -> None:
            with lock:
                if spent[0] >= budget:
                    raise Spent
                spent[0] += 1
                out.log.append((spent[0], float(metrics[OBJECTIVE])))
                if spent[0] >= budget:
                    study.stop()
            best[0] = float(metrics[OBJECTIVE])
            trial.report(best[0], int(metrics["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned

        try:
            train(cfg, report)
        except Spent:
            raise optuna.TrialPruned from None
        return best[0]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.perf_counter()
    quiet, sys.stdout = sys.stdout, open("/dev/null", "w")  # noqa: SIM115 - the trainer's own lines
    try:
        study.optimize(objective, n_trials=budget, n_jobs=2, catch=())
    finally:
        sys.stdout.close()
        sys.stdout = quiet
    out.seconds = time.perf_counter() - t0
    out.trials = len(study.trials)
    return out


def run(quick: bool = False, arms: tuple[str, ...] | None = None, seeds: int | None = None,
        first_seed: int = 0, pins: dict | None = None) -> list[dict]:
    import ray

    from tune import driver, optuna_ext
    from tune.config import load_config
    from tune.prepare import smoke_data

    n_seeds, trials, epochs = (1, 6, 3) if quick else (5, 32, 3)
    n_seeds = seeds or n_seeds
    if arms:
        arms = ("random", *[a for a in arms if a != "random"])
    elif quick:
        arms = ("random", "tpe+asha")
    else:   # the default's twin (tpe-mv+asha or tpe-uni+asha) is tpe+asha itself: run it once
        twin = "tpe-mv+asha" if optuna_ext.TPE_DEFAULTS["multivariate"] else "tpe-uni+asha"
        arms = tuple(a for a in ARMS if a != twin)
    best: dict[str, list[float]] = {arm: [] for arm in arms}
    reached: dict[str, list[float | None]] = {arm: [] for arm in arms}
    print(f"search bench: {n_seeds} seeds x arms {', '.join(arms)}; {trials} trials x {epochs} epochs = "
          f"{trials * epochs} trial-epochs per arm; TPE default {optuna_ext.TPE_DEFAULTS}", flush=True)
    with tempfile.TemporaryDirectory(prefix="mabe-search-bench-") as tmp:
        tmp = Path(tmp)
        smoke_data(str(tmp / "synth"), str(tmp / "cache"), n_videos=DATA[0], n_frames=DATA[1])
        base = load_config(None, {
            "data.root": str(tmp / "synth"), "data.cache": str(tmp / "cache"), "optim.epochs": epochs,
            "optim.warmup_epochs": PINNED_WARMUP,
            "run.progress": False, "run.resume": False, "run.patience": 0, "run.threads": 1,
            "run.checkpoint_every": 1000, "data.samples_per_epoch": SAMPLES_PER_EPOCH, **PINNED,
            **(pins or {})}).to_dict()
        if ray.is_initialized():
            ray.shutdown()
        driver.init_ray()
        try:
            for seed in range(first_seed, first_seed + n_seeds):
                target = None
                for arm in arms:   # random first: it sets the target; each arm's line as soon as it is done
                    res = (_optuna_arm(seed, trials, epochs, base, tmp / "exp") if arm == "optuna"
                           else _ray_arm(arm, seed, trials, epochs, base, tmp / "exp"))
                    target = res.best() if target is None else target
                    best[arm].append(res.best())
                    need = res.budget_to_reach(target)
                    reached[arm].append(None if need is None else need / res.budget)
                    print(f"seed {seed} {arm}: best {res.best():.4f}, {res.trials} trials, {res.spent()} of "
                          f"{res.budget} trial-epochs, {res.seconds:.0f} s; reached random's best "
                          f"{target:.4f} after " + (f"{need} trial-epochs" if need else "never"), flush=True)
                print(f"after {seed - first_seed + 1} seed(s):\n" + table(summarize(best)), flush=True)
        finally:
            ray.shutdown()
    rows = summarize(best)
    print(table(rows), flush=True)
    random_mean = statistics.fmean(best["random"])
    out = []
    for r in rows:   # bench/__main__'s row format
        fr = [f for f in reached[r["arm"]] if f is not None]
        out.append({
            "stage": f"search: {r['arm']} best ({r['seeds']} seeds, {trials}x{epochs} trial-epochs)",
            "ours": r["mean"], **({} if r["arm"] == "random" else
                                  {"baseline": random_mean, "ratio": r["mean"] / max(random_mean, 1e-9)}),
            "unit": "val/best_score", "target": None,
            "note": f"std {r['std']:.4f}, min-max {r['min']:.4f}-{r['max']:.4f}, won {r['won']} of "
                    f"{r['seeds']} seeds; reached random's best in {len(fr)} seeds"
                    + (f" (median {statistics.median(fr):.2f} of the budget)" if fr else "")
                    + "; per seed " + ", ".join(f"{b:.4f}" for b in r["per_seed"])})
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.search_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5; --quick 1)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="seeds first-seed, first-seed + 1, ... (default 0): one more seed of an earlier run "
                        "is --first-seed N --seeds 1")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="pin a TrainConfig field in every arm's trials (e.g. run.objective=argmax: the "
                        "objective of the runs before the threshold-tuned one)")
    p.add_argument("--arms", type=lambda v: tuple(v.split(",")), default=None,
                   help=f"comma-separated subset of {','.join(ARMS)} "
                        "(random always runs: it sets the target)")
    args = p.parse_args(argv)
    if args.arms and not set(args.arms) <= set(ARMS):
        p.error(f"--arms: unknown {sorted(set(args.arms) - set(ARMS))}; choose from {','.join(ARMS)}")
    if args.seeds is not None and args.seeds < 1:
        p.error("--seeds must be >= 1")
    if args.first_seed < 0:
        p.error("--first-seed must be >= 0")
    from tune.config import parse_set_args

    for row in run(args.quick, args.arms, args.seeds, args.first_seed, parse_set_args(args.set)):
        print(row)


if __name__ == "__main__":
    main()
