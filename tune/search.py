"""Hyperparameter search: Ray Tune + Optuna (seeded TPE) + ASHA over Ray Train runs of `tune.train`.

Each Tune trial is a small *driver* function that launches one Ray Train `TorchTrainer` (named
`train-<trial_id>`, so a restarted trial resumes its own run from its last checkpoint) and forwards every
epoch's metrics to Tune. The objective is `val/best_score`: the best validation competition score so far.
The seed's V6 configuration is always trial 1, so the final table shows how far the search beat it.

Commands:

    python -m tune.search                      # embedded default: synthetic data in ./data/synth, local Ray,
                                               # small CPU search (~10 min on 2 cores), ranked table at the end
    python -m tune.search --smoke-test         # the same in about a minute
    python -m tune.search --data /kaggle/mabe  # a real Kaggle download (train.csv, train_tracking/, ...)
    python -m tune.search --name my-search --resume          # continue a killed search, same results folder
    python -m tune.search --warm-start experiments/old       # seed TPE with a previous study's trials
    python -m tune.search --set optim.epochs=30 --set data.window=512   # pin any TrainConfig field

On a cluster (see README "Cluster"):

    ray up cluster.yaml
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python -m tune.search --data /mnt/mabe --storage s3://BUCKET/mabe --gpus-per-trial 1 \\
        --optuna-storage postgresql://USER:PASS@HOST/optuna

Outputs, in `<storage>/<name>/` (results files are mirrored locally in ./experiments/<name>/ when the storage
is remote): Tune trial folders, `train-<trial_id>/checkpoint_*` (model.pt, config.json, metrics.json),
`optuna.db` (open with `optuna-dashboard sqlite:///.../optuna.db`), `results.csv`, `search.json`, PNG plots.
Next step: `python -m ensemble.build --experiment <storage>/<name>`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tune import space as space_mod

OBJECTIVE = "val/best_score"   # what Tune, ASHA and Optuna optimise (best validation score so far)
SCORE = "val/score"            # this epoch's validation score (checkpoints are ranked by it)
BEST_CKPT = "best_checkpoint"  # key of the driver's final report: path of the trial's best checkpoint
DEFAULT_GPU_HOUR_COST = 6.00   # USD per GPU-hour: the seed's Modal H100 run, $8.40 for 1.4 h (seed-history.md)


@dataclass
class SearchConfig:
    """Everything `python -m tune.search` needs; printed at start and saved as `search.json`."""

    data: str = ""                    # Kaggle-layout folder; "" = synthetic data in ./data/synth (created once)
    cache: str = ""                   # feature cache folder; "" = <data>/cache (synth) or ./data/cache/<name>
    name: str = ""                    # experiment name; "" = search-<UTC timestamp>
    storage: str = "experiments"      # local folder or s3://... / gs://... (shared storage on a cluster)
    resume: bool = False              # continue <storage>/<name> (finished trials are not run again)
    num_samples: int = 12             # trials, V6 included
    max_concurrent: int = 2           # trials running at once (ConcurrencyLimiter around TPE)
    workers_per_trial: int = 1        # Ray Train workers per trial (DDP)
    cpus_per_worker: float = 1.0      # CPUs reserved by each Train worker
    gpus_per_trial: float = 0.0       # GPUs per trial, split over its workers; fractions share a GPU
    epochs: int = 6                   # epochs per trial (ASHA max_t = epochs + 1: the driver's final report)
    grace_period: int = 2             # ASHA: epochs every trial gets before it can be stopped
    reduction_factor: int = 2         # ASHA: keep the top 1/reduction_factor at each rung
    time_budget: float = 0.0          # seconds for the whole search (0 = no limit)
    seed: int = 0                     # TPE sampler seed
    gpu_hour_cost: float = DEFAULT_GPU_HOUR_COST
    optuna_storage: str = ""          # SQLAlchemy URL; "" = sqlite:///<experiment>/optuna.db
    warm_start: str = ""              # previous experiment folder or Optuna URL: its trials seed TPE
    address: str = ""                 # Ray cluster to join ("" = RAY_ADDRESS, else a private local Ray)
    max_failures: int = 2             # Tune retries of a failed trial (the Train run resumes from its checkpoint)
    train_max_failures: int = 1       # Ray Train restarts of the worker group inside one trial
    smoke_test: bool = False
    space: str = "cpu"                # "cpu" (embedded default, small models) or "full" (cluster)
    overrides: dict = field(default_factory=dict)   # --set key=value on the base TrainConfig (pinned, not searched)
    config_file: str = ""             # base TrainConfig file (YAML/JSON)

    def __post_init__(self):
        checks = [
            (self.num_samples >= 1, "--num-samples must be >= 1"),
            (self.max_concurrent >= 1, "--max-concurrent must be >= 1"),
            (self.workers_per_trial >= 1, "--workers-per-trial must be >= 1"),
            (self.gpus_per_trial >= 0 and self.cpus_per_worker > 0, "GPU/CPU counts must be >= 0"),
            (self.epochs >= 1 and self.grace_period >= 1, "--epochs and grace period must be >= 1"),
            (self.reduction_factor >= 2, "reduction factor must be >= 2"),
            (self.time_budget >= 0 and self.gpu_hour_cost >= 0, "--time-budget/--gpu-hour-cost must be >= 0"),
            (self.space in ("cpu", "full"), f"--space {self.space!r}: 'cpu' or 'full'"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    # derived numbers live here, not in the loop
    def max_t(self) -> int:
        return self.epochs + 1

    def search_space(self) -> dict:
        base = space_mod.SPACE if self.space == "full" else space_mod.CPU_SPACE
        return space_mod.restrict(base, self.overrides)

    def tpe_startup_trials(self) -> int:
        """Random trials before TPE models the results: a third of the trials, between 4 and 10. With 2 random
        trials TPE's "good" group is one trial and it stays near it: bench/search_bench.py, 8 trials x 6 epochs
        under ASHA, 3 seeds, mean best 0.373 with 2 startup trials, 0.498 with 4 (random search: 0.390)."""
        return max(4, min(10, self.num_samples // 3))

    def v6_point(self) -> dict:
        return {k: v for k, v in space_mod.V6_POINT.items() if k in self.search_space()}

    def is_remote_storage(self) -> bool:
        return "://" in self.storage

    def storage_path(self) -> str:
        return self.storage if self.is_remote_storage() else str(Path(self.storage).resolve())

    def experiment_path(self) -> str:
        return f"{self.storage_path().rstrip('/')}/{self.name}"

    def local_dir(self) -> Path:
        """Where results.csv, plots and the default optuna.db go (the experiment itself when it is local)."""
        if self.is_remote_storage():
            return Path("experiments").resolve() / self.name
        return Path(self.experiment_path())

    def scratch_dir(self) -> str:
        """Each Train run's own folder (summary.csv, last/, best/) lives under here; the kept checkpoints are
        in the experiment storage. Local storage: inside the experiment; remote: node-local /tmp."""
        if self.is_remote_storage():
            import tempfile

            return str(Path(tempfile.gettempdir()) / "mabe-tune" / self.name)
        return str(self.local_dir() / "runs")

    def optuna_url(self) -> str:
        return self.optuna_storage or f"sqlite:///{self.local_dir() / 'optuna.db'}"

    def gpus_per_worker(self) -> float:
        return self.gpus_per_trial / self.workers_per_trial


SMOKE = {"num_samples": 2, "max_concurrent": 2, "epochs": 2, "grace_period": 1}
SMOKE_OVERRIDES = {"optim.batch_size": 32, "data.window": 64, "model.hidden": 16}  # pinned, not searched


# --------------------------------------------------------------------------------------------------------
# The Tune trial: a driver that launches one Ray Train run (spec/stack.md §1.5)


def train_driver(config: dict, setup: dict) -> None:
    """Tune function trainable. `config` = the searcher's point (dotted TrainConfig keys), `setup` = fixed
    settings from `driver_setup`. Launches a TorchTrainer whose epochs reach Tune via TuneReportCallback,
    then reports the best checkpoint's path once more (one extra Tune iteration)."""
    import ray.tune
    from ray.train.torch import TorchTrainer

    from tune.config import apply_overrides
    from tune.ray_train import trainer_kwargs

    trial_id = ray.tune.get_context().get_trial_id()
    run_name = f"train-{trial_id}"   # same name after a restart => Ray Train resumes this run's checkpoints
    cfg = apply_overrides(setup["base"], {**config, "run.out_dir": setup["scratch_dir"]})
    gpus = setup["gpus_per_worker"]
    trainer = TorchTrainer(**trainer_kwargs(
        cfg, workers=setup["workers"], use_gpu=gpus > 0, storage_path=setup["experiment_path"], name=run_name,
        max_failures=setup["train_max_failures"], num_to_keep=2, callbacks=[_objective_first_callback()],
        resources_per_worker={"CPU": setup["cpus_per_worker"], **({"GPU": gpus} if gpus > 0 else {})}))
    result = trainer.fit()
    best = result.get_best_checkpoint(SCORE, "max") if result.best_checkpoints else None
    last = dict(result.metrics or {})
    last.pop("checkpoint_path", None)
    ray.tune.report(_objective_first({**last, BEST_CKPT: best.path if best is not None else ""}))


FIRST_KEYS = (OBJECTIVE, SCORE, "epoch", "train/loss")


def _objective_first(metrics: dict) -> dict:
    """Same dict, objective first: Tune's live table shows the first 4 metrics of each result."""
    return {**{k: metrics[k] for k in FIRST_KEYS if k in metrics}, **metrics}


def _objective_first_callback():
    """TuneReportCallback (forwards each Train report to Tune) with the objective moved to the front."""
    from ray.tune.integration.ray_train import TuneReportCallback

    class ObjectiveFirst(TuneReportCallback):
        def after_report(self, run_context, metrics, checkpoint):
            super().after_report(run_context, [_objective_first(m) for m in metrics], checkpoint)

    return ObjectiveFirst()


def driver_setup(scfg: SearchConfig, base: dict) -> dict:
    """The fixed (non-searched) part every trial gets: base TrainConfig dict, resources, storage."""
    return {
        "base": base,
        "experiment_path": scfg.experiment_path(),
        "scratch_dir": str(scfg.scratch_dir()),
        "workers": scfg.workers_per_trial,
        "cpus_per_worker": scfg.cpus_per_worker,
        "gpus_per_worker": scfg.gpus_per_worker(),
        "train_max_failures": scfg.train_max_failures,
    }


def driver_resources() -> dict:
    """What one trial's driver reserves. It only waits on `trainer.fit()`, so it should take no CPU a Train
    worker could use: where the cluster has the custom TRAIN_DRIVER resource (cluster.yaml's head node, and the
    local Ray that `init_ray` starts) the driver asks for 0.01 of it and nothing else, which also pins drivers to
    the head so a spot preemption never kills one. Elsewhere it asks for CPU 0.01 (CPU 0 raises in Ray 2.60:
    "empty head and zero worker bundles"); note 2 such drivers on 2 CPUs leave 1.98, room for one 1-CPU worker."""
    import ray

    if ray.cluster_resources().get("TRAIN_DRIVER", 0) > 0:
        return {"TRAIN_DRIVER": 0.01}
    return {"CPU": 0.01}


# --------------------------------------------------------------------------------------------------------
# Searcher, scheduler, tuner


def warm_start_trials(source: str, space: dict) -> list[tuple[dict, float, list[float] | None]]:
    """COMPLETE and PRUNED trials (params inside `space`, finite value) of previous studies at `source`: an
    experiment folder (its optuna.db) or an Optuna storage URL. Returned as (point, value, intermediate) for
    add_evaluated_point: intermediate is None for a COMPLETE trial; for a PRUNED one its reported values
    indexed by step (Ray numbers them from 0), so the stop step and value keep their meaning to TPE."""
    import math

    import optuna

    url = source if "://" in source else f"sqlite:///{Path(source).resolve() / 'optuna.db'}"
    if "://" not in source and not (Path(source) / "optuna.db").exists():
        raise FileNotFoundError(f"--warm-start {source}: no optuna.db in that folder")
    storage = optuna.storages.RDBStorage(url)
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    out = []
    for study_name in optuna.study.get_all_study_names(storage):
        study = optuna.load_study(study_name=study_name, storage=storage)
        for t in study.get_trials(deepcopy=False, states=states):
            point = {k: t.params[k] for k in space if k in t.params}
            if t.value is None or not math.isfinite(t.value) or space_mod.contains(space, point):
                continue
            steps = t.intermediate_values
            if t.state == optuna.trial.TrialState.COMPLETE:
                out.append((point, float(t.value), None))
            else:
                first = steps[min(steps)] if steps else None
                out.append((point, float(t.value), [steps.get(i, first) for i in range(max(steps, default=-1) + 1)]))
    return out


def tpe_sampler(scfg: SearchConfig):
    """Seeded TPE. Optuna samples the first `n_startup_trials` (default 10) at random, which for a 12-trial
    search would leave TPE two proposals: start it after a third of the trials (4..10)."""
    import optuna

    return optuna.samplers.TPESampler(seed=scfg.seed, n_startup_trials=scfg.tpe_startup_trials())


def optuna_search(**kwargs):
    """Ray's `OptunaSearch(**kwargs)`, except that a trial ASHA stopped early is told to Optuna as PRUNED.

    Ray tells every finished trial as COMPLETE with its last value, so TPE compared 2-epoch scores of
    stopped trials with full-length ones and modelled "short" rather than "good" (bench/search_bench.py,
    3 seeds: TPE + ASHA averaged below random search and below either idea alone). Optuna's TPE ranks PRUNED
    trials after every COMPLETE one (the deepest step, then its value, first), which is what an early stop
    means. A trial that ran to the end made the driver's final report (with `BEST_CKPT`); one that did not
    was stopped (by ASHA, or by the end of the search)."""
    from ray.tune.search.optuna import OptunaSearch

    class StoppedAsPruned(OptunaSearch):
        def __init__(self, **kw):
            super().__init__(**kw)
            self._reported: set[tuple[str, int]] = set()    # (trial id, step) told to Optuna

        def on_trial_result(self, trial_id: str, result: dict):
            super().on_trial_result(trial_id, result)
            self._reported.add((trial_id, result.get("training_iteration")))

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
            if error or not result or BEST_CKPT in result or trial_id in self._completed_trials:
                return super().on_trial_complete(trial_id, result=result, error=error)
            # Tune hands the result that made ASHA stop the trial to on_trial_complete only: record it as the
            # last intermediate value (unless that step was reported: Optuna would warn), then tell PRUNED
            step = result.get("training_iteration")
            if result.get(self.metric) is not None and step is not None and \
                    (trial_id, step) not in self._reported:
                self._ot_trials[trial_id].report(result[self.metric], step)
            super().on_trial_complete(trial_id, result=None, error=False)   # no value, no error: PRUNED

    return StoppedAsPruned(**kwargs)


def build_searcher(scfg: SearchConfig, warm: list[tuple[dict, float, list[float] | None]] = ()):
    """OptunaSearch (seeded TPE, study in a real database, early-stopped trials PRUNED) inside a
    ConcurrencyLimiter; V6 evaluated first."""
    import optuna
    from ray.tune.search import ConcurrencyLimiter

    space = scfg.search_space()
    # Ray's OptunaSearch wants a BaseStorage instance (not a URL); it calls create_study(load_if_exists=True).
    storage = optuna.storages.RDBStorage(scfg.optuna_url())
    searcher = optuna_search(
        space=space_mod.to_optuna(space), metric=OBJECTIVE, mode="max",
        points_to_evaluate=[scfg.v6_point()],          # enqueued: the first trial is the V6 baseline
        sampler=tpe_sampler(scfg),
        study_name=scfg.name, storage=storage)
    for point, value, steps in warm:  # old trials, COMPLETE or PRUNED, in the new study: TPE starts informed
        searcher.add_evaluated_point(point, value, pruned=steps is not None, intermediate_values=steps)
    return ConcurrencyLimiter(searcher, max_concurrent=scfg.max_concurrent)


def build_scheduler(scfg: SearchConfig):
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="training_iteration", max_t=scfg.max_t(),
                         grace_period=min(scfg.grace_period, scfg.max_t()),
                         reduction_factor=scfg.reduction_factor)


def make_trainable(trainable: Callable, setup: dict):
    import ray.tune

    res = driver_resources()
    print(f"trial driver resources: {res}; each Train worker: CPU {setup['cpus_per_worker']}"
          + (f", GPU {setup['gpus_per_worker']}" if setup["gpus_per_worker"] else ""))
    return ray.tune.with_resources(ray.tune.with_parameters(trainable, setup=setup), res)


def build_tuner(scfg: SearchConfig, trainable: Callable, base: dict, warm=()):
    import ray.tune

    setup = driver_setup(scfg, base)
    return ray.tune.Tuner(
        make_trainable(trainable, setup),
        tune_config=ray.tune.TuneConfig(
            metric=OBJECTIVE, mode="max", search_alg=build_searcher(scfg, warm),
            scheduler=build_scheduler(scfg), num_samples=scfg.num_samples,
            time_budget_s=scfg.time_budget or None),
        run_config=ray.tune.RunConfig(
            name=scfg.name, storage_path=scfg.storage_path(),
            failure_config=ray.tune.FailureConfig(max_failures=scfg.max_failures),
            verbose=1),  # Tune's own progress table (trial status, objective) stays on screen
    )


def restore_tuner(scfg: SearchConfig, trainable: Callable, base: dict):
    """Continue <storage>/<name>: finished trials stay finished, unfinished and errored ones run again (their
    Train runs resume from their last checkpoint, because the run name is the trial id)."""
    import ray.tune

    return ray.tune.Tuner.restore(scfg.experiment_path(), make_trainable(trainable, driver_setup(scfg, base)),
                                  resume_unfinished=True, resume_errored=True)


# --------------------------------------------------------------------------------------------------------
# Data, Ray, the whole run


def prepare_data(scfg: SearchConfig, feature_settings: dict | None = None) -> tuple[str, str]:
    """(data root, feature cache), both absolute. Without --data: generate the synthetic Kaggle twin once in
    ./data/synth and build its cache in ./data/synth/cache; later runs reuse both."""
    if scfg.data:
        root = Path(scfg.data).resolve()
        if not (root / "train.csv").exists():
            from features.errors import MabeDataError

            raise MabeDataError("no train.csv: --data must be a Kaggle-layout folder", file=root / "train.csv")
        cache = Path(scfg.cache or Path("data/cache") / root.name).resolve()
    else:
        root = Path("data/synth-smoke" if scfg.smoke_test else "data/synth").resolve()
        cache = Path(scfg.cache or root / "cache").resolve()
        if not (root / "train.csv").exists():
            from features.synth import generate

            n_videos, n_frames = (6, 900) if scfg.smoke_test else (16, 3600)
            print(f"generating synthetic data: {n_videos} videos x {n_frames} frames -> {root}")
            generate(root, n_videos=n_videos, n_frames=n_frames, seed=0)
    if not (cache / "index.parquet").exists():
        from features.cache import build_cache
        from features.pipeline import FeatureSettings

        settings = FeatureSettings.from_dict(feature_settings or {})
        print(f"building feature cache -> {cache}")
        build_cache(root, cache, settings, workers=max(1, (os.cpu_count() or 1)), n_folds=5, seed=0)
    return str(root), str(cache)


def init_ray(address: str = "") -> None:
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS", "")
    if address:
        ray.init(address=address)
        return
    # A private local Ray, never an unrelated `ray start` cluster on this machine. Two things keep Ray Train's
    # PlacementGroupCleaner working, which frees the CPUs/GPUs of a trial that ASHA stopped: the dashboard (it
    # serves the State API the cleaner asks) and RAY_ADDRESS in every worker (else, when another Ray runs on
    # the same machine, the cleaner's address lookup fails with "Found multiple active Ray instances" and the
    # stopped trial's workers stay reserved, so later trials time out waiting for a worker group).
    port = _free_port()
    os.environ["RAY_GCS_SERVER_PORT"] = str(port)  # read by the node that ray.init starts
    try:
        ray.init(address="local", num_cpus=os.cpu_count(), resources={"TRAIN_DRIVER": 4},
                 include_dashboard=True, dashboard_host="127.0.0.1",
                 runtime_env={"env_vars": {"RAY_ADDRESS": f"127.0.0.1:{port}"}})
    finally:
        os.environ.pop("RAY_GCS_SERVER_PORT", None)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_config(scfg: SearchConfig, data_root: str, cache: str) -> dict:
    """The TrainConfig every trial starts from (defaults < --config < --set < search point)."""
    from tune.config import load_config

    overrides = {"data.root": data_root, "data.cache": cache, "optim.epochs": scfg.epochs,
                 "run.progress": False, "run.resume": True, "run.patience": 0,
                 "run.threads": max(1, int(scfg.cpus_per_worker)),
                 **scfg.overrides}
    return load_config(scfg.config_file or None, overrides).to_dict()


def run_search(scfg: SearchConfig, trainable: Callable = train_driver, base: dict | None = None) -> dict:
    """Run (or resume) the search and write its results; returns the summary dict (also `search.json`)."""
    from tune import results as results_mod

    exp = scfg.experiment_path()
    local = scfg.local_dir()
    local.mkdir(parents=True, exist_ok=True)
    if base is None:
        base = {}
    import ray.tune

    t0 = time.time()
    check_experiment(scfg)
    if scfg.resume:
        print(f"resuming {exp}")
        tuner = restore_tuner(scfg, trainable, base)
    else:
        warm = warm_start_trials(scfg.warm_start, scfg.search_space()) if scfg.warm_start else []
        if warm:
            print(f"warm start: {len(warm)} trials from {scfg.warm_start} "
                  f"({sum(steps is not None for _, _, steps in warm)} of them stopped early)")
        tuner = build_tuner(scfg, trainable, base, warm)
    grid = tuner.fit()
    wall = time.time() - t0
    table = results_mod.collect(grid, scfg)
    summary = results_mod.write_all(table, grid, scfg, wall_s=wall)
    _atomic_write(local / "search.json", json.dumps({"search": asdict(scfg), "summary": summary}, indent=2,
                                                    default=str))
    return summary


def check_experiment(scfg: SearchConfig) -> None:
    """A fresh search needs a new name (Ray would silently resume an old one); --resume needs an old one."""
    import ray.tune

    exists = ray.tune.Tuner.can_restore(scfg.experiment_path())
    if scfg.resume and not exists:
        raise SystemExit(f"python -m tune.search: error: --resume: no experiment to resume at "
                         f"{scfg.experiment_path()}")
    if exists and not scfg.resume:
        raise SystemExit(f"python -m tune.search: error: experiment {scfg.experiment_path()} exists: add "
                         "--resume, or pick a new --name")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------------
# CLI


def parse_args(argv: list[str] | None = None) -> SearchConfig:
    d = SearchConfig.__dataclass_fields__
    p = argparse.ArgumentParser(
        prog="python -m tune.search", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Ray Tune + Optuna TPE + ASHA search over Ray Train runs. With no arguments: synthetic data, "
                    "local Ray, a ~10 minute CPU search. Objective: val/best_score (validation competition "
                    "score, best so far). Trial 1 is always the seed's V6 configuration.",
        epilog=__doc__.split("Commands:")[1].split("Outputs,")[0])
    p.add_argument("--data", default="", help="Kaggle-layout data folder (default: synthetic ./data/synth)")
    p.add_argument("--cache", default="", help="feature cache folder (default: <data>/cache for synthetic data, "
                                               "./data/cache/<data name> otherwise)")
    p.add_argument("--name", default="", help="experiment name (default: search-<UTC time>); reuse with --resume")
    p.add_argument("--storage", default=d["storage"].default,
                   help="results root: a local folder or s3://bucket/path, gs://... (needed for multi-node)")
    p.add_argument("--resume", action="store_true", help="continue <storage>/<name> after a crash or kill")
    p.add_argument("--num-samples", type=int, default=None, help="trials, V6 included (default 12; smoke 2)")
    p.add_argument("--max-concurrent", type=int, default=None, help="trials at once (default 2)")
    p.add_argument("--workers-per-trial", type=int, default=1, help="Ray Train workers (DDP) per trial")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs per Train worker")
    p.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help="GPUs per trial (0.25 = four trials share a GPU); split across its workers")
    p.add_argument("--epochs", type=int, default=None, help="epochs per trial (default 6; smoke 2)")
    p.add_argument("--grace-period", type=int, default=None, help="ASHA: epochs before a trial may be stopped")
    p.add_argument("--time-budget", type=float, default=0.0, help="seconds for the whole search (0 = none)")
    p.add_argument("--seed", type=int, default=0, help="TPE sampler seed")
    p.add_argument("--gpu-hour-cost", type=float, default=DEFAULT_GPU_HOUR_COST,
                   help=f"USD per GPU-hour for the cost column (default {DEFAULT_GPU_HOUR_COST:.2f}: the seed's "
                        "Modal H100, $8.40 for 1.4 h)")
    p.add_argument("--optuna-storage", default="",
                   help="Optuna database URL (default sqlite:///<experiment>/optuna.db; a cluster: postgresql://...)")
    p.add_argument("--warm-start", default="", help="previous experiment folder or Optuna URL: seed TPE with its "
                                                    "trials (early-stopped ones as pruned)")
    p.add_argument("--address", default="", help="Ray cluster address (default: $RAY_ADDRESS, else local Ray)")
    p.add_argument("--max-failures", type=int, default=2, help="Tune retries per trial")
    p.add_argument("--space", choices=("cpu", "full"), default=None,
                   help="search space: 'cpu' small models (default without GPUs) or 'full'")
    p.add_argument("--config", default="", help="base TrainConfig file (YAML or JSON)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="pin a TrainConfig field for every trial (removed from the search space)")
    p.add_argument("--smoke-test", action="store_true", help="tiny synthetic data, 2 trials x 2 epochs (~1 min)")
    a = p.parse_args(argv)
    from tune.config import parse_set_args

    smoke = SMOKE if a.smoke_test else {}

    def pick(value, key, default):  # explicit flag > smoke-test preset > default (0 is a value, not "unset")
        return value if value is not None else smoke.get(key, default)

    name = a.name or "search-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return SearchConfig(
        data=a.data, cache=a.cache, name=name, storage=a.storage, resume=a.resume,
        num_samples=pick(a.num_samples, "num_samples", 12),
        max_concurrent=pick(a.max_concurrent, "max_concurrent", 2),
        workers_per_trial=a.workers_per_trial, cpus_per_worker=a.cpus_per_worker,
        gpus_per_trial=a.gpus_per_trial, epochs=pick(a.epochs, "epochs", 6),
        grace_period=pick(a.grace_period, "grace_period", 2), time_budget=a.time_budget, seed=a.seed,
        gpu_hour_cost=a.gpu_hour_cost, optuna_storage=a.optuna_storage, warm_start=a.warm_start,
        address=a.address, max_failures=a.max_failures, smoke_test=a.smoke_test,
        space=a.space or ("full" if a.gpus_per_trial > 0 else "cpu"),
        overrides={**(SMOKE_OVERRIDES if a.smoke_test else {}), **parse_set_args(a.set)},
        config_file=a.config)


def main(argv: list[str] | None = None) -> int:
    from features.errors import cli_guard

    with cli_guard("python -m tune.search"):
        try:
            scfg = parse_args(argv)
        except ValueError as exc:
            print(f"python -m tune.search: error: {exc}", file=sys.stderr)
            return 2
        print("search:", json.dumps({k: v for k, v in asdict(scfg).items()}, default=str))
        print("space:\n" + space_mod.describe(scfg.search_space()))
        check_experiment(scfg)  # before minutes of data preparation and Ray start
        from tune.config import load_config

        feat = load_config(scfg.config_file or None, scfg.overrides).features
        data_root, cache = prepare_data(scfg, feat)
        base = base_config(scfg, data_root, cache)
        init_ray(scfg.address)
        summary = run_search(scfg, train_driver, base)
        print(summary["report"])
        print(f"\nnext: python -m ensemble.build --experiment {scfg.experiment_path()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
