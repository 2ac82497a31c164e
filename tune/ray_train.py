"""Ray Train (V2, Ray 2.60; docs/stack.md, "Ray Train V2"): the same `tune.trainer.train` on N DDP workers,
with fault tolerance.

Commands:
    python -m tune.train --smoke-test --workers 2                 # 2 CPU workers (gloo), local Ray
    python -m tune.train --config tune/configs/v6.yaml --workers 8 --gpu --name v6-a --storage s3://bucket/runs
    # same --name + --storage again = resume that run from its latest checkpoint

Pieces:
- `train_loop_per_worker(config_dict)`: the worker loop. `config_dict` is `TrainConfig.to_dict()` (nested).
  Every rank calls `ray.train.report(metrics, checkpoint=...)` once per epoch (a barrier); rank 0 attaches
  the checkpoint folder it just wrote. On (re)start it resumes from `ray.train.get_checkpoint()`.
  The local run folder is `<run.out_dir>/<experiment name>` (summary.csv, last/, best/); Ray's storage
  holds the kept checkpoints.
- `make_trainer(cfg, workers, ...)`: the Ray Train trainer of a run: `TorchTrainer` (a gloo/NCCL process
  group) for 2+ workers; for one worker Ray Train's `DataParallelTrainer` without the torch backend
  (nothing to synchronise, and its controller then skips importing torch).
- `run_ray_train(cfg, workers, ...)`: builds and fits that trainer -> `ray.train.Result`.
  `FailureConfig(max_failures)` restarts the worker group from the latest checkpoint;
  `CheckpointConfig(num_to_keep, "val/score", "max")` keeps the best N.
A Ray Tune trial (tune/driver.py) builds its own with `make_trainer(..., name=f"train-{trial_id}",
callbacks=[TuneReportCallback()])`.
"""
from __future__ import annotations

import os
from pathlib import Path

from features.errors import MabeDataError
from tune import ray_compat
from tune.config import TrainConfig
from tune.keys import DATA_ERROR


# Ray Train's controller polls its workers every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (default 2 s) and only sees
# that training ended, and the last report, at a poll: `python -m bench.ray_bench` measured 5.0 s from the
# worker loop's end to `fit()` returning at 2 s, 1.5 s at 0.5 s, 0.85 s at 0.2 s. A poll is one small actor
# call, and a poll that takes longer than the interval is simply waited on in the next round (a worker is
# declared dead only after RAY_TRAIN_WORKER_HEALTH_CHECK_TIMEOUT_S, 600 s), so 0.5 s is safe.
HEALTH_CHECK_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
HEALTH_CHECK_INTERVAL_S = "0.5"


def train_loop_per_worker(config_dict: dict) -> None:
    """Ray Train worker: the launcher's resolved TrainConfig dict, deserialized once with this run's folder
    (`<run.out_dir>/<experiment name>`) and resume off (resume only from what Ray hands over: the local folder
    may belong to an older attempt); resume from Ray's checkpoint, report every epoch."""
    import ray.train
    import ray.train.torch

    from tune.trainer import train  # here, not at the top: the Tune trial and the controller need no torch

    ray_compat.quiet_train_report_log()
    ctx = ray.train.get_context()
    run = {**config_dict.get("run", {}), "resume": False,
           "out_dir": str(Path(config_dict["run"]["out_dir"]) / ctx.get_experiment_name())}
    cfg = TrainConfig.from_dict({**config_dict, "run": run})

    def report(metrics: dict, checkpoint_dir: str | None) -> None:
        ckpt = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=ckpt)

    device = ray.train.torch.get_device()
    kw = dict(device=device, wrap_model=ray.train.torch.prepare_model if ctx.get_world_size() > 1 else None)
    checkpoint = ray.train.get_checkpoint()
    try:
        if checkpoint is None:
            train(cfg, report, **kw)
        else:
            with checkpoint.as_directory() as d:
                train(cfg, report, resume_from=d, **kw)
    except MabeDataError as exc:
        # Bad input fails the same way on every attempt: report it (every rank reads the same data, so every
        # rank gets here) instead of raising, so Ray Train does not restart the worker group; the Tune
        # driver turns the report into the trial's one-line error (tune.driver).
        print(f"data error: {exc}", flush=True)
        ray.train.report({DATA_ERROR: str(exc)})


def trainer_kwargs(cfg: TrainConfig, workers: int = 1, use_gpu: bool = False, storage_path: str | None = None,
                   name: str | None = None, max_failures: int = 0, num_to_keep: int | None = 2,
                   callbacks=None, resources_per_worker: dict | None = None,
                   torch_backend: bool = True) -> dict:
    """Keyword arguments of Ray Train's trainer for `cfg`; `torch_config` only with `torch_backend`
    (TorchTrainer; importing it imports torch).

    Also sets the Train controller's health-check interval (see `HEALTH_CHECK_INTERVAL_S`) in this process,
    unless the user set it: `TorchTrainer.fit` hands that variable on to the controller it starts."""
    os.environ.setdefault(HEALTH_CHECK_ENV, HEALTH_CHECK_INTERVAL_S)
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig

    remote = storage_path is None or "://" in str(storage_path)
    storage = storage_path if remote else str(Path(storage_path).resolve())
    args = dict(
        train_loop_per_worker=train_loop_per_worker,
        # Workers run in their own working directory: every local path must be absolute (a no-op when the
        # launcher resolved them already).
        train_loop_config=cfg.with_absolute_paths().to_dict(),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                     resources_per_worker=resources_per_worker),
        run_config=RunConfig(
            name=name, storage_path=storage, callbacks=callbacks,
            # Train V2 patches print() in workers to tee into its logger, which doubles every line on the
            # console; our epoch lines are plain prints, so keep print as it is.
            worker_runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}},
            # Train V2 logs every report (the whole metrics dict) and checkpoint copy at INFO; our one-line
            # epoch summary says the same, so only its warnings reach the console.
            logging_config=LoggingConfig(log_level="WARNING"),
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=num_to_keep,
                                               checkpoint_score_attribute="val/score",
                                               checkpoint_score_order="max")),
    )
    if torch_backend:
        from ray.train.torch import TorchConfig

        args["torch_config"] = TorchConfig(backend="nccl" if use_gpu else "gloo")
    return args


def make_trainer(cfg: TrainConfig, workers: int = 1, torch_backend: bool = False, **kw):
    """The Ray Train trainer of `cfg` on `workers` workers; `kw` as `trainer_kwargs`.

    One worker has no gradients to synchronise: Ray Train's plain DataParallelTrainer runs the same loop with
    the same controller, reports, checkpoints and restarts, minus TorchConfig's process group. Neither the
    process that builds it (a Tune trial) nor its controller then imports torch (about 2-3 s of a process's
    start here; `python -m bench.ray_bench` measures the phases).
    `torch_backend=True`: TorchTrainer for one worker too."""
    if workers == 1 and not torch_backend:
        from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

        return DataParallelTrainer(**trainer_kwargs(cfg, workers, torch_backend=False, **kw))
    from ray.train.torch import TorchTrainer

    return TorchTrainer(**trainer_kwargs(cfg, workers, **kw))


def run_ray_train(cfg: TrainConfig, workers: int = 1, use_gpu: bool = False, storage_path: str | None = None,
                  name: str | None = None, max_failures: int = 0, num_to_keep: int | None = 2, callbacks=None,
                  resources_per_worker: dict | None = None):
    """Fit the trainer running `train` on `workers` workers (`make_trainer`) -> ray.train.Result.

    Same (storage_path, name) as an earlier run = Ray resumes that run (a fresh run needs a new name).
    Starts a local Ray (`ray.init()`) if none is running.
    """
    import ray

    if not ray.is_initialized() and workers > 0:  # RAY_ADDRESS joins a cluster; else a private local Ray
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False)
    return make_trainer(cfg, workers, use_gpu=use_gpu, storage_path=storage_path, name=name,
                        max_failures=max_failures, num_to_keep=num_to_keep, callbacks=callbacks,
                        resources_per_worker=resources_per_worker).fit()
