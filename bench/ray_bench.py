"""Ray overhead: the same training run plain (`tune.train.train`) and as Tune trials over Ray Train.

    python -m bench.ray_bench              # 12 synthetic videos, 4 epochs
    python -m bench.ray_bench --quick      # 6 videos, 2 epochs
    python -m bench.ray_bench --baseline   # before issue 17: no actor reuse, preemption watcher on, one
                                           # worker through TorchTrainer
    python -m bench.ray_bench --torch-backend   # only the last: one worker through TorchTrainer

Both runs use the same TrainConfig, data, seed and thread count, one after the other in one process. The
difference in wall time is Ray's cost: `ray.init`, the Tune driver, the Train controller and worker actors,
the gloo process group and the per-epoch report/checkpoint copies. Most of it is a fixed start-up cost, so
the table also projects its share of a 5-minute trial (target <= 5 %), and splits the trial's wall time into
phases read from Ray's own task events (State API), so the cost has a name:

    trial actor        Tune starts the trial's actor (a new Python process), or resets the actor a finished
                       trial left (`tune.driver.REUSE_ACTORS`; the second trial shows it)
    controller         the trial imports torch + Ray Train (once per actor), Ray Train starts its controller
                       actor (which starts an autoscaling-coordinator actor)
    worker group       placement group, sync actor, the worker actor, a DatasetManager actor (created even
                       without Ray Data), the preemption watcher actor (off on the private local Ray:
                       `tune.driver.local_train_env`), the gloo process group
    training           the worker's loop, until the controller's next health-check poll sees it finish and the
                       worker is shut down (compare with the plain run)
    teardown           placement group released, controller result back to the trial, trial result to Tune
"""
from __future__ import annotations

import argparse
import fnmatch
import os
import tempfile
import time
from pathlib import Path

TRIAL_S = 300.0  # "a 5-minute trial"


def _config(root: Path, cache: Path, out: Path, epochs: int) -> dict:
    from tune.config import load_config

    return load_config(None, {
        "data.root": str(root), "data.cache": str(cache), "run.out_dir": str(out), "optim.epochs": epochs,
        "run.progress": False, "run.resume": False, "run.threads": 1, "run.patience": 0,
        "run.checkpoint_every": 1, "model.hidden": 32, "data.window": 128, "optim.batch_size": 32,
    }).to_dict()


PHASES = (  # (phase, the task events that end it, any of them); a trial starts when Tune starts it
    # a reused actor's methods carry the trainable's name (`train_driver.reset`)
    ("trial actor", (("ImplicitFunc.__init__", "FINISHED"), ("*.reset", "FINISHED"))),
    ("controller", (("TrainController.__init__", "FINISHED"),)),
    ("worker group", (("RayTrainWorker.run_train_fn", "RUNNING"),)),
    ("training", (("RayTrainWorker.shutdown", "FINISHED"),)),
)
SLACK_S = 5.0   # how far before a trial's start its first event may lie (see phases)
TRIALS = 2   # one after the other: the second shows what a reused trial actor saves (driver.REUSE_ACTORS)


def task_events() -> list[tuple[float, str, str]]:
    """(epoch seconds, task name, state) of every task event this Ray kept, in time order. Needs the State
    API (the dashboard that `tune.driver.init_ray` starts)."""
    import ray
    from ray.util.state import list_tasks

    out = []
    # this Ray's own address: other Ray instances on the machine make the default lookup fail
    for task in list_tasks(address=ray.get_runtime_context().gcs_address, detail=True, limit=10_000,
                           raise_on_missing_output=False):
        for ev in task.events or []:
            out.append((ev["created_ms"] / 1000.0, task.name, ev["state"]))
    return sorted(out)


def phases(events: list[tuple[float, str, str]], start: float, end: float) -> list[tuple[str, float]]:
    """Seconds per phase of the one trial that ran from `start` to `end` (epoch seconds), from `events`
    (`task_events`); [] when an event is missing."""
    out, prev = [], start
    for i, (phase, ends) in enumerate(PHASES):
        # a reused actor's reset may finish just before Tune reports the trial started: a phase of 0 s. Only
        # that first phase looks back; a later one looking back would find the trial before's events (its
        # worker's shutdown ends a few tenths of a second before this trial starts)
        lo = start - SLACK_S if i == 0 else prev
        t = next((t for t, name, state in events if lo <= t <= end
                  and any(fnmatch.fnmatchcase(name, n) and state == st for n, st in ends)), None)
        if t is None:
            return []
        t = max(t, prev)
        out.append((phase, t - prev))
        prev = t
    out.append(("teardown", end - prev))
    return out


def trial_clock():
    """A Tune callback that keeps (start, end) epoch seconds of each trial, in start order."""
    from ray.tune import Callback

    class Clock(Callback):
        def __init__(self):
            self.start: dict[str, float] = {}
            self.end: dict[str, float] = {}

        def on_trial_start(self, iteration, trials, trial, **info):
            self.start.setdefault(trial.trial_id, time.time())

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.end[trial.trial_id] = time.time()

        def spans(self) -> list[tuple[float, float]]:
            return sorted((self.start[t], self.end[t]) for t in self.start if t in self.end)

    return Clock()


def run(quick: bool = False, baseline: bool = False, torch_backend: bool = False) -> list[dict]:
    import ray
    import ray.tune
    from optuna.distributions import CategoricalDistribution
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from tune import driver, keys, search
    from tune.config import TrainConfig
    from tune.prepare import smoke_data
    from tune.trainer import train

    n_videos, n_frames, epochs = (6, 900, 2) if quick else (12, 2000, 4)
    with tempfile.TemporaryDirectory(prefix="mabe-ray-bench-") as tmp:
        tmp = Path(tmp)
        root, cache = tmp / "synth", tmp / "cache"
        smoke_data(str(root), str(cache), n_videos=n_videos, n_frames=n_frames)

        base = _config(root, cache, tmp / "plain", epochs)
        t0 = time.perf_counter()
        plain = train(TrainConfig.from_dict(base))
        plain_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        if ray.is_initialized():
            ray.shutdown()
        # exactly the product's local Ray (TRAIN_DRIVER resource, dashboard for the cleaner)
        if baseline:   # before issue 17: a new actor per trial, preemption watcher on, TorchTrainer
            driver.REUSE_ACTORS = False
            os.environ[driver.PREEMPTION_WATCHER_ENV] = "1"
        driver.ONE_WORKER_TORCH_BACKEND = baseline or torch_backend
        driver.init_ray()
        init_s = time.perf_counter() - t0
        try:
            scfg = search.SearchConfig(name="ray-bench", storage=str(tmp / "exp"), num_samples=1,
                                       epochs=epochs)
            setup = driver.driver_setup(scfg, {**base, "run": {**base["run"], "out_dir": str(tmp / "ray")}})
            clock = trial_clock()
            tuner = ray.tune.Tuner(
                driver.make_trainable(driver.train_driver, setup),
                # one trial at a time through a searcher, as in a search (Tune caches a finished trial's
                # actor only while the searcher may still propose trials), the same point each time
                tune_config=ray.tune.TuneConfig(
                    num_samples=TRIALS, reuse_actors=driver.REUSE_ACTORS,   # no ASHA here
                    search_alg=ConcurrencyLimiter(OptunaSearch(
                        space={"run.seed": CategoricalDistribution([base["run"]["seed"]])},
                        metric=keys.OBJECTIVE, mode="max"), max_concurrent=1)),
                run_config=ray.tune.RunConfig(name="ray-bench", storage_path=str(tmp / "exp"), verbose=0,
                                              callbacks=[clock]))
            t0, wall0 = time.perf_counter(), time.time()
            grid = tuner.fit()
            fit_s = time.perf_counter() - t0
            events = task_events()
        finally:
            ray.shutdown()
        for res in grid:
            if res.error:
                raise RuntimeError(f"Tune trial failed: {res.error}")
        ray_score = grid[0].metrics.get(keys.OBJECTIVE)
    spans = clock.spans()
    # trial 1 from tuner.fit() (Tune's own start-up included, as in a search's first trial); trial 2 from the
    # moment Tune saw trial 1 complete
    windows = [(wall0, spans[0][1])] + [(spans[i - 1][1], spans[i][1]) for i in range(1, len(spans))]
    walls = [b - a for a, b in windows]
    splits = [phases(events, a, b) for a, b in windows]
    trial_s = walls[0]

    overhead = trial_s - plain_s
    share = 100.0 * max(overhead, 0.0) / TRIAL_S
    later = walls[1:] or walls
    later_share = 100.0 * max(later[-1] - plain_s, 0.0) / TRIAL_S
    note = (
        f"plain {plain_s:.1f} s vs Tune trial {trial_s:.1f} s for {epochs} epochs "
        f"(+ ray.init {init_s:.1f} s, paid once per search); best val/score plain {plain['best_score']:.4f}, "
        f"Ray {ray_score:.4f}; share "
        f"projects the fixed overhead onto a {TRIAL_S:.0f} s trial; {len(walls)} trials in {fit_s:.1f} s: "
        + ", ".join(f"trial {i + 1} {w:.1f} s" for i, w in enumerate(walls))
        + f" (reuse_actors={driver.REUSE_ACTORS})"
    )
    print(note)
    for i, split in enumerate(splits):
        if split:
            print(f"trial {i + 1} phases: " + ", ".join(f"{name} {sec:.1f} s" for name, sec in split))
        else:   # name what was there, so a renamed Ray task can be found
            a, b = windows[i]
            seen = sorted({(name, state) for t, name, state in events if a - SLACK_S <= t <= b})
            print(f"trial {i + 1} phases: an event is missing; task events in its window: {seen}")
    split = splits[0]
    return [
        {"stage": "ray: ray.init (once per search)", "ours": init_s, "unit": "s", "target": None},
        {
            "stage": "ray: trial wall vs plain train",
            "ours": trial_s,
            "baseline": plain_s,
            "ratio": trial_s / plain_s,
            "unit": "s",
            "target": None,
        },
        {
            "stage": "ray: overhead share of a 5-min trial",
            "ours": share,
            "unit": "%",
            "target": "<= 5",
            "note": note,
        },
        {
            "stage": "ray: overhead share of a 5-min trial, a later trial",
            "ours": later_share,
            "unit": "%",
            "target": "<= 5",
        },
    ] + [
        {
            "stage": f"ray: trial phase: {name}",
            "ours": sec,
            "unit": "s",
            "target": None,
            **({"baseline": plain_s, "ratio": sec / plain_s} if name == "training" else {}),
        }
        for name, sec in split
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.ray_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--baseline", action="store_true",
                   help="the settings before issue 17: no actor reuse, Ray Train's preemption watcher on, "
                        "a one-worker trial through TorchTrainer (not DataParallelTrainer)")
    p.add_argument("--torch-backend", action="store_true",
                   help="the one-worker Train run through TorchTrainer (a gloo process group, torch "
                        "imported in the controller), as before issue 17; the rest as today")
    args = p.parse_args(argv)
    for row in run(args.quick, args.baseline, args.torch_backend):
        print(row)


if __name__ == "__main__":
    main()
