"""Ray overhead: the same training run plain (`tune.train.train`) and as one Tune trial over Ray Train.

    python -m bench.ray_bench            # 12 synthetic videos, 4 epochs
    python -m bench.ray_bench --quick    # 6 videos, 2 epochs

Both runs use the same TrainConfig, data, seed and thread count, one after the other in one process. The
difference in wall time is Ray's cost: `ray.init`, the Tune driver, the Train controller and worker actors,
the gloo process group and the per-epoch report/checkpoint copies. Most of it is a fixed start-up cost, so
the table also projects its share of a 5-minute trial (target <= 5 %), and splits the trial's wall time into
phases read from Ray's own task events (State API), so the cost has a name:

    trial actor        Tune starts the trial's actor (a new Python process)
    controller         the trial imports torch + Ray Train, Ray Train starts its controller actor (which
    starts
                       an autoscaling-coordinator actor)
    worker group       placement group, sync actor, the worker actor, a DatasetManager actor (created even
                       without Ray Data), the gloo process group
    training           the worker's loop, until the controller's next health-check poll sees it finish and the
                       worker is shut down (compare with the plain run)
    teardown           placement group released, controller result back to the trial, trial result to Tune
"""
from __future__ import annotations

import argparse
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


PHASES = (  # (phase, the task event that ends it); the first phase starts when tuner.fit() is called
    ("trial actor", "ImplicitFunc.__init__", "FINISHED"),
    ("controller", "TrainController.__init__", "FINISHED"),
    ("worker group", "RayTrainWorker.run_train_fn", "RUNNING"),
    ("training", "RayTrainWorker.shutdown", "FINISHED"),
)


def phases(fit_start: float, fit_end: float) -> list[tuple[str, float]]:
    """Seconds per phase of the one trial that ran since `fit_start` (epoch seconds), from Ray's task events.
    Needs the State API (the dashboard that `tune.driver.init_ray` starts); [] when an event is missing."""
    import ray
    from ray.util.state import list_tasks

    events: dict[tuple[str, str], float] = {}
    # this Ray's own address: other Ray instances on the machine make the default lookup fail
    for task in list_tasks(address=ray.get_runtime_context().gcs_address, detail=True, limit=10_000,
                           raise_on_missing_output=False):
        for ev in task.events or []:
            t = ev["created_ms"] / 1000.0
            if t >= fit_start:
                key = (task.name, ev["state"])
                events[key] = min(t, events.get(key, t))
    out, prev = [], fit_start
    for phase, name, state in PHASES:
        t = events.get((name, state))
        if t is None:
            return []
        out.append((phase, t - prev))
        prev = t
    out.append(("teardown", fit_end - prev))
    return out


def run(quick: bool = False) -> list[dict]:
    import ray
    import ray.tune

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
        driver.init_ray()
        init_s = time.perf_counter() - t0
        try:
            scfg = search.SearchConfig(name="ray-bench", storage=str(tmp / "exp"), num_samples=1,
                                       epochs=epochs)
            setup = driver.driver_setup(scfg, {**base, "run": {**base["run"], "out_dir": str(tmp / "ray")}})
            tuner = ray.tune.Tuner(
                driver.make_trainable(driver.train_driver, setup),
                tune_config=ray.tune.TuneConfig(num_samples=1),
                run_config=ray.tune.RunConfig(name="ray-bench", storage_path=str(tmp / "exp"), verbose=0))
            t0, wall0 = time.perf_counter(), time.time()
            grid = tuner.fit()
            trial_s = time.perf_counter() - t0
            split = phases(wall0, time.time())
        finally:
            ray.shutdown()
        res = grid[0]
        if res.error:
            raise RuntimeError(f"Tune trial failed: {res.error}")
        ray_score = res.metrics.get(keys.OBJECTIVE)

    overhead = trial_s - plain_s
    share = 100.0 * max(overhead, 0.0) / TRIAL_S
    note = (
        f"plain {plain_s:.1f} s vs Tune trial {trial_s:.1f} s for {epochs} epochs "
        f"(+ ray.init {init_s:.1f} s, paid once per search); best val/score plain {plain['best_score']:.4f}, "
        f"Ray {ray_score:.4f}; share "
        f"projects the fixed overhead onto a {TRIAL_S:.0f} s trial"
    )
    print(note)
    if split:
        print("trial phases: " + ", ".join(f"{name} {sec:.1f} s" for name, sec in split))
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
    args = p.parse_args(argv)
    for row in run(args.quick):
        print(row)


if __name__ == "__main__":
    main()
