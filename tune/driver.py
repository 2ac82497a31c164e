"""The Ray side of a search: the Tune trial (a driver that launches one Ray Train run; docs/stack.md, "Ray
Tune"), its resources, the searcher (TPE inside a ConcurrencyLimiter), ASHA, the Tuner, and a private local
Ray. `tune.search` puts them together."""
from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from features import storage
from features.errors import MabeDataError
from tune import space as space_mod
from tune.keys import BEST_CKPT, DATA_ERROR, FIRST_KEYS, OBJECTIVE, SCORE
from tune.optuna_ext import optuna_search, tpe_sampler
from tune.search_config import SearchConfig


def train_driver(config: dict, setup: dict) -> None:
    """Tune function trainable. `config` = the searcher's point (dotted TrainConfig keys), `setup` = fixed
    settings from `driver_setup`. Launches a Ray Train run (`tune.ray_train.make_trainer`) whose epochs reach
    Tune via TuneReportCallback, then reports the best checkpoint's path once more (one extra Tune
    iteration)."""
    import ray.tune

    from tune.config import apply_overrides
    from tune.ray_train import make_trainer

    trial_id = ray.tune.get_context().get_trial_id()
    run_name = f"train-{trial_id}"   # same name after a restart => Ray Train resumes this run's checkpoints
    cfg = apply_overrides(setup["base"], config)   # the resolved base (tune.search.base_config) + this point
    gpus = setup["gpus_per_worker"]
    trainer = make_trainer(
        cfg, workers=setup["workers"], use_gpu=gpus > 0, storage_path=setup["experiment_path"], name=run_name,
        max_failures=setup["train_max_failures"], num_to_keep=2, callbacks=[_objective_first_callback()],
        resources_per_worker={"CPU": setup["cpus_per_worker"], **({"GPU": gpus} if gpus > 0 else {})},
        torch_backend=setup["torch_backend"])
    result = trainer.fit()
    last = dict(result.metrics or {})
    if result.metrics is None and not result.best_checkpoints:
        # the workers stopped on bad input: the callback below already told Tune (NoRetryOnDataError)
        raise MabeDataError(f"{run_name}: the Train workers stopped on bad input (its last result has the "
                            "message)")
    best = result.get_best_checkpoint(SCORE, "max") if result.best_checkpoints else None
    last.pop("checkpoint_path", None)
    best_uri = storage.as_uri(best.path, setup["experiment_path"]) if best is not None else ""
    ray.tune.report(_objective_first({**last, BEST_CKPT: best_uri}))


def _objective_first(metrics: dict) -> dict:
    """Same dict, objective first: Tune's live table shows the first 4 metrics of each result."""
    return {**{k: metrics[k] for k in FIRST_KEYS if k in metrics}, **metrics}


def _objective_first_callback():
    """TuneReportCallback (forwards each Train report to Tune) with the objective moved to the front."""
    from ray.tune.integration.ray_train import TuneReportCallback

    class ObjectiveFirst(TuneReportCallback):
        def after_report(self, run_context, metrics, checkpoint):
            errors = [m[DATA_ERROR] for m in metrics if m.get(DATA_ERROR)]
            if errors:  # a worker met bad input (tune.ray_train): tell Tune; the trial fails without retry
                bad = {OBJECTIVE: float("nan"), DATA_ERROR: errors[0]}
                return super().after_report(run_context, [bad], None)
            super().after_report(run_context, [_objective_first(m) for m in metrics], checkpoint)

    return ObjectiveFirst()


def driver_setup(scfg: SearchConfig, base: dict) -> dict:
    """The fixed (non-searched) part every trial gets: the base TrainConfig dict (resolved by the launcher:
    absolute paths, run.out_dir = the scratch folder each Train run adds its name to), resources, storage."""
    return {
        "base": base,
        "experiment_path": scfg.experiment_path(),
        "workers": scfg.workers_per_trial,
        "cpus_per_worker": scfg.cpus_per_worker,
        "gpus_per_worker": scfg.gpus_per_worker(),
        "train_max_failures": scfg.train_max_failures,
        "torch_backend": ONE_WORKER_TORCH_BACKEND,   # read here: the trial runs in another process
    }


def driver_resources() -> dict:
    """What one trial's driver reserves. It only waits on `trainer.fit()`, so it should take no CPU a Train
    worker could use: where the cluster has the custom TRAIN_DRIVER resource (cluster.yaml's head node, and
    the local Ray that `init_ray` starts) the driver asks for 0.01 of it and nothing else, which also pins
    drivers to the head so a spot preemption never kills one. Elsewhere it asks for CPU 0.01 (CPU 0 raises in
    Ray 2.60: "empty head and zero worker bundles"); note 2 such drivers on 2 CPUs leave 1.98, room for one
    1-CPU worker."""
    import ray

    if ray.cluster_resources().get("TRAIN_DRIVER", 0) > 0:
        return {"TRAIN_DRIVER": 0.01}
    return {"CPU": 0.01}


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
    """ASHA over Tune iterations (one per epoch, then the driver's final report at max_t), grace period
    `scfg.grace()` (covers the longest warm-up by default); the V6 trial and trials past their last epoch are
    never stopped (tune/scheduler.py)."""
    from tune.scheduler import ReferenceASHA

    return ReferenceASHA(time_attr="training_iteration", max_t=scfg.max_t(), grace_period=scfg.grace(),
                         reduction_factor=scfg.reduction_factor, reference=scfg.v6_point(),
                         last_epoch=scfg.epochs)


def make_trainable(trainable: Callable, setup: dict):
    import ray.tune

    res = driver_resources()
    print(f"trial driver resources: {res}; each Train worker: CPU {setup['cpus_per_worker']}"
          + (f", GPU {setup['gpus_per_worker']}" if setup["gpus_per_worker"] else ""))
    return ray.tune.with_resources(ray.tune.with_parameters(trainable, setup=setup), res)


def search_callbacks(scfg: SearchConfig) -> list:
    """Tune callbacks of the search: no retry of a trial that failed on bad input, and (remote storage with
    the default sqlite study) the study uploaded next to the results after every trial."""
    from ray.tune import Callback

    class NoRetryOnDataError(Callback):
        """A trial whose Train workers reported DATA_ERROR fails at once: Tune's retries are for crashes, and
        bad input fails the same way every time (the trial's last result keeps the one-line error)."""

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get(DATA_ERROR):
                trial.max_failures = 0
                print(f"trial {trial.trial_id}: data error (not retried): {result[DATA_ERROR]}", flush=True)

    class UploadStudy(Callback):
        """Copy the local optuna.db to `<experiment>/optuna.db` after every finished or failed trial."""

        def _upload(self):
            db = scfg.local_dir() / "optuna.db"
            if db.is_file():
                storage.upload_file(db, storage.join(scfg.experiment_path(), "optuna.db"))

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._upload()

        def on_trial_error(self, iteration, trials, trial, **info):
            self._upload()

    out = [NoRetryOnDataError()]
    if scfg.is_remote_storage() and not scfg.optuna_url_given():
        out.append(UploadStudy())
    return out


REUSE_ACTORS = True
# a one-worker trial through TorchTrainer (its process group and torch import in the controller) instead of
# DataParallelTrainer (tune.ray_train.make_trainer); `python -m bench.ray_bench --baseline` sets it
ONE_WORKER_TORCH_BACKEND = False


def reuse_actors(scfg: SearchConfig) -> bool:
    """Whether a finished trial hands its actor (a process with torch and Ray Train imported) to the next
    trial (`python -m bench.ray_bench`, second trial). Only when ASHA can stop no trial (grace period = max_t,
    as in the 6-epoch CPU default): a stopped trial's driver is still inside `trainer.fit()`, its Train run
    going on, and Tune would hand that actor to the next trial, whose reset then fails (Tune waits 2 s for the
    old thread) and errors the new trial; without reuse, Tune kills the actor and the Train run with it."""
    return REUSE_ACTORS and scfg.grace() >= scfg.max_t()


def build_tuner(scfg: SearchConfig, trainable: Callable, base: dict, warm=()):
    import ray.tune

    setup = driver_setup(scfg, base)
    return ray.tune.Tuner(
        make_trainable(trainable, setup),
        tune_config=ray.tune.TuneConfig(
            metric=OBJECTIVE, mode="max", search_alg=build_searcher(scfg, warm),
            scheduler=build_scheduler(scfg), num_samples=scfg.num_samples,
            time_budget_s=scfg.time_budget or None,
            reuse_actors=reuse_actors(scfg)),
        run_config=ray.tune.RunConfig(
            name=scfg.name, storage_path=scfg.storage_path(),
            failure_config=ray.tune.FailureConfig(max_failures=scfg.max_failures),
            callbacks=search_callbacks(scfg),
            verbose=1),  # Tune's own progress table (trial status, objective) stays on screen
    )


def restore_tuner(scfg: SearchConfig, trainable: Callable, base: dict):
    """Continue <storage>/<name>: finished trials stay finished, unfinished and errored ones run again (their
    Train runs resume from their last checkpoint, because the run name is the trial id)."""
    import ray.tune

    return ray.tune.Tuner.restore(scfg.experiment_path(), make_trainable(trainable, driver_setup(scfg, base)),
                                  resume_unfinished=True, resume_errored=True)


JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"   # set by Ray for a `ray job submit` entrypoint (runtime env inside)
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def init_ray(address: str = "") -> None:
    import ray

    if ray.is_initialized():
        return
    if address and JOB_ENV not in os.environ and (PROJECT_ROOT / "pyproject.toml").is_file():
        # `--address HOST:PORT` from any folder = the same command under `ray job submit --working-dir .`: the
        # project's code travels to every worker as the job's working_dir (.gitignore'd folders stay behind;
        # an installed, non-checkout copy relies on the nodes' own install)
        ray.init(address=address, runtime_env={"working_dir": str(PROJECT_ROOT), "excludes": [".git/"]})
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
    port = free_port()
    os.environ["RAY_GCS_SERVER_PORT"] = str(port)  # read by the node that ray.init starts
    try:
        ray.init(address="local", num_cpus=os.cpu_count(), resources={"TRAIN_DRIVER": 4},
                 include_dashboard=True, dashboard_host="127.0.0.1",
                 runtime_env={"env_vars": {"RAY_ADDRESS": f"127.0.0.1:{port}", **local_train_env()}})
    finally:
        os.environ.pop("RAY_GCS_SERVER_PORT", None)


def local_train_env() -> dict:
    """Ray Train settings for a private one-machine Ray (every trial actor inherits them; Ray Train hands
    them on to its controller and workers): no preemption watcher. A single machine has no spot node to
    drain, and the watcher is one more actor per trial whose kill logs an error-level `core_worker.cc ...
    PreemptionWatcher ... max_restarts > 0` line on the console. A value the user set wins. On a cluster
    (`--address`, RAY_ADDRESS) the watcher stays on: it is what saves a trial on a preempted spot node."""
    return {PREEMPTION_WATCHER_ENV: os.environ.get(PREEMPTION_WATCHER_ENV, "0")}


PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Ray's internal lines that reach the console of a search, dropped there (Ray's own log files under
# /tmp/ray/session_*/logs keep them): a worker's C++ log line at error or warning level (e.g. `core_worker.cc:
# ... PreemptionWatcher ... max_restarts > 0`, logged when Ray Train creates an actor with restarts),
# everything Ray Train's controller actor prints (Ray's code only, e.g. the traceback of its request to the
# autoscaling coordinator timing out on a busy machine), and the raylet's warning that many worker processes
# were started (`... which is 4x the maximum expected startup concurrency ...`: each trial starts several
# actors, one process each, on 2 CPUs).
RAY_INTERNAL_LINES = re.compile(
    r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [EWF] \d+ \d+\] \w+\.cc:\d+:"
    r"|the maximum expected startup concurrency"
    r"|^\S*\(TrainController pid=\d+")


class LineFilter(io.TextIOBase):
    """A text stream that forwards whole lines to `stream` except those `drop` matches; counts what it
    dropped. Thread-safe (Ray's log thread and the main thread both print)."""

    def __init__(self, stream, drop: re.Pattern):
        self.stream, self.drop, self.dropped = stream, drop, 0
        self._buf = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._buf += text
            *lines, self._buf = self._buf.split("\n")
            keep = [ln for ln in lines if not self.drop.search(ln)]
            self.dropped += len(lines) - len(keep)
            if keep:
                self.stream.write("\n".join(keep) + "\n")
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._buf and not self.drop.search(self._buf):
                self.stream.write(self._buf)
                self._buf = ""
            self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self):
        return getattr(self.stream, "encoding", "utf-8")


@contextlib.contextmanager
def quiet_ray_console():
    """Inside: stdout and stderr without Ray's internal lines (`RAY_INTERNAL_LINES`); Ray prints the
    workers' output and its own warnings through `sys.stdout`/`sys.stderr`, so our lines and Tune's table
    pass untouched. Prints one line saying how many it dropped and where they are."""
    out, err = LineFilter(sys.stdout, RAY_INTERNAL_LINES), LineFilter(sys.stderr, RAY_INTERNAL_LINES)
    sys.stdout, sys.stderr = out, err
    try:
        yield
    finally:
        out.flush()
        err.flush()
        sys.stdout, sys.stderr = out.stream, err.stream
        if out.dropped + err.dropped:
            print(f"({out.dropped + err.dropped} internal Ray log lines not shown: they are in Ray's log "
                  "files, /tmp/ray/session_latest/logs)")
