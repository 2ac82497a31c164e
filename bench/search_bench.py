"""Search efficiency: TPE + ASHA (what `python -m tune.search` runs) against random search, same budget.

    python -m bench.search_bench            # 3 seeds x 4 arms, budget 8 trials x 6 epochs (~25 min on 2
    cores)
    python -m bench.search_bench --quick    # 1 seed, random vs TPE + ASHA, budget 4 trials x 4 epochs
    python -m bench.search_bench --arms tpe+asha   # random and the named arms only

The budget is counted in trial-epochs: random search runs `trials` trials to the end (`trials x epochs`), and
every other arm gets exactly that many trial-epochs, spent however its scheduler likes (ASHA stops weak trials
early and so starts more of them). A Tune `Stopper` counts every epoch any trial reports, in the order Tune
sees them, and stops the experiment when the budget is spent; the same log gives the budget an arm had spent
when one of its trials first reached random search's best score (target: <= 1/3 of the budget).

Four arms separate the two ideas (the full run; `--quick` runs only the first and the last):

    random          Optuna RandomSampler, every trial runs all epochs (the baseline)
    random+asha     random points, ASHA early stopping: what ASHA alone is worth
    tpe             TPE (`tune.optuna_ext.tpe_sampler`), no early stopping: what TPE alone is worth
    tpe+asha        the product (`tune.driver.build_scheduler`: grace `SearchConfig.grace()`, which covers
                    the longest warm-up, reduction 2, `--epochs` 6; trials ASHA stopped are told to TPE as
                    PRUNED, `tune.optuna_ext.optuna_search`)

All arms run the real machinery (Tuner + OptunaSearch + Ray Train trials, 2 at a time) on the same synthetic
data, the same space (batch and window pinned small: the bench compares searchers, not speed) and the same
seed; no arm is handed the V6 point (the product evaluates it first), so the searchers themselves are
compared.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PINNED = {
    "optim.batch_size": 32,
    "data.window": 64,
}  # small and fixed: the bench compares searchers, not speed
ARMS = ("random", "random+asha", "tpe", "tpe+asha")


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


def _search(arm: str, seed: int, trials: int, epochs: int, base: dict, storage: Path) -> Arm:
    import optuna
    import ray.tune
    from ray.tune.search import ConcurrencyLimiter

    from tune import driver, keys, optuna_ext, search, space

    budget = trials * epochs
    scfg = search.SearchConfig(
        name=f"{arm.replace('+', '-')}-{seed}",
        storage=str(storage),
        num_samples=trials,
        epochs=epochs,
        seed=seed,
        overrides=dict(PINNED),
    )
    # TPE models results after a third of `trials` (the product's rule for a search of that many trials).
    random = optuna.samplers.RandomSampler(seed=seed)
    sampler = optuna_ext.tpe_sampler(scfg) if arm.startswith("tpe") else random
    searcher = ConcurrencyLimiter(optuna_ext.optuna_search(
        space=space.to_optuna(scfg.search_space()), metric=keys.OBJECTIVE, mode="max", sampler=sampler),
        max_concurrent=scfg.max_concurrent)
    out = Arm(arm, budget)
    setup = driver.driver_setup(scfg, {**base, "run": {**base["run"], "out_dir": scfg.scratch_dir()}})
    tuner = ray.tune.Tuner(
        driver.make_trainable(driver.train_driver, setup),
        tune_config=ray.tune.TuneConfig(
            metric=keys.OBJECTIVE, mode="max", search_alg=searcher,
            scheduler=driver.build_scheduler(scfg) if arm.endswith("asha") else None,
            num_samples=budget),  # the budget stopper ends the search; every trial costs >= 1 trial-epoch
        run_config=ray.tune.RunConfig(name=scfg.name, storage_path=str(storage), verbose=0,
                                      stop=budget_stopper(budget, out.log, keys.OBJECTIVE)))
    t0 = time.perf_counter()
    grid = tuner.fit()
    out.seconds = time.perf_counter() - t0
    out.trials = len(grid)
    return out


def run(quick: bool = False, arms: tuple[str, ...] | None = None) -> list[dict]:
    import ray

    from tune import driver
    from tune.config import load_config
    from tune.prepare import smoke_data

    seeds, trials, epochs = ([0], 4, 4) if quick else ([0, 1, 2], 8, 6)
    if arms:
        arms = ("random", *[a for a in arms if a != "random"])
    else:
        arms = ("random", "tpe+asha") if quick else ARMS
    rows, reached = [], {arm: [] for arm in arms[1:]}
    best: dict[str, list[float]] = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory(prefix="mabe-search-bench-") as tmp:
        tmp = Path(tmp)
        smoke_data(str(tmp / "synth"), str(tmp / "cache"), n_videos=8 if quick else 12,
                   n_frames=900 if quick else 1500)
        base = load_config(
            None,
            {
                "data.root": str(tmp / "synth"),
                "data.cache": str(tmp / "cache"),
                "optim.epochs": epochs,
                "run.progress": False,
                "run.resume": True,
                "run.patience": 0,
                "run.threads": 1,
                **PINNED,
            },
        ).to_dict()
        if ray.is_initialized():
            ray.shutdown()
        # exactly the product's local Ray (TRAIN_DRIVER resource, dashboard for the cleaner)
        driver.init_ray()
        try:
            for seed in seeds:
                done = {arm: _search(arm, seed, trials, epochs, base, tmp / "exp") for arm in arms}
                target = done["random"].best()
                for arm, res in done.items():
                    best[arm].append(res.best())
                    need = None if arm == "random" else res.budget_to_reach(target)
                    frac = need / res.budget if need is not None else None
                    note = (
                        f"seed {seed} {arm}: best {res.best():.4f}, {res.trials} trials, {res.spent()} of "
                        f"{res.budget} trial-epochs, {res.seconds:.0f} s"
                        + (
                            f"; found its best after {res.budget_to_reach(target)} trial-epochs"
                            if arm == "random"
                            else f"; reached random's best {target:.4f} after "
                            + (f"{need} trial-epochs ({frac:.2f} of the budget)" if need else "never")
                        )
                    )
                    print(note, flush=True)
                    if arm == "random":
                        continue
                    reached[arm].append(frac)
                    rows.append(
                        {
                            "stage": f"search: {arm} budget to reach random's best (seed {seed})",
                            "ours": frac,
                            "unit": "fraction of the budget",
                            "target": "<= 0.3334" if arm == "tpe+asha" else None,
                            **({"passed": frac is not None and frac <= 1 / 3} if arm == "tpe+asha" else {}),
                            "note": note,
                        }
                    )
        finally:
            ray.shutdown()
    for arm in arms:
        mean = sum(best[arm]) / len(best[arm])
        hits = "" if arm == "random" else (
            f"; reached random's best in {sum(f is not None for f in reached[arm])} of {len(seeds)} seeds, "
            f"within 1/3 of the budget in {sum(f is not None and f <= 1 / 3 for f in reached[arm])}")
        random_mean = sum(best['random']) / len(seeds)
        vs_random = {} if arm == "random" else {"baseline": random_mean,
                                                "ratio": mean / max(random_mean, 1e-9)}
        rows.append({"stage": f"search: {arm} mean best score ({len(seeds)} seeds, same budget)",
                     "ours": mean, **vs_random,
                     "unit": "val/best_score", "target": None,
                     "note": "per seed " + ", ".join(f"{b:.4f}" for b in best[arm]) + hits})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.search_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--arms", type=lambda v: tuple(v.split(",")), default=None,
                   help=f"comma-separated subset of {','.join(ARMS)} "
                        "(random always runs: it sets the target)")
    args = p.parse_args(argv)
    if args.arms and not set(args.arms) <= set(ARMS):
        p.error(f"--arms: unknown {sorted(set(args.arms) - set(ARMS))}; choose from {','.join(ARMS)}")
    for row in run(args.quick, args.arms):
        print(row)


if __name__ == "__main__":
    main()
