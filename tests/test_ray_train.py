"""Ray Train V2 on CPU: 2-worker DDP run whose checkpoint loads back; a worker failure restarts from
checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.checkpoint import load_model, load_metrics
from tune.config import TrainConfig, load_train_config

pytest.importorskip("ray")

from helpers import small_cfg, write_cache  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return write_cache(tmp_path_factory.mktemp("raycache") / "c", n_videos=5, T=300)


@pytest.mark.slow
@pytest.mark.ray
def test_two_worker_ddp_run_checkpoint_loads(ray_local, cache_dir, tmp_path):
    from tune.ray_train import run_ray_train

    cfg = small_cfg(cache_dir, tmp_path / "local", **{"optim.epochs": 2, "run.checkpoint_every": 1})
    res = run_ray_train(cfg, workers=2, storage_path=str(tmp_path / "ray"), name="ddp2", num_to_keep=1)
    assert res.error is None
    assert res.metrics["epoch"] == 2 and res.metrics["val/best_score"] >= res.metrics["val/score"] - 1e-12
    best = res.get_best_checkpoint("val/score", "max")
    assert len(res.best_checkpoints) == 1  # num_to_keep
    with best.as_directory() as d:
        model, _ = load_model(d)
        saved = load_train_config(d)
        assert isinstance(saved, TrainConfig) and saved.model.name == "conv_bilstm"
        assert load_metrics(d)["val/score"] == res.metrics["val/best_score"]
    # rank 0's local run folder has the per-epoch summary
    assert (tmp_path / "local" / "ddp2" / "summary.csv").read_text().count("\n") == 3


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("cv_folds", [1, 2])
def test_worker_failure_restarts_from_checkpoint(ray_local, cache_dir, tmp_path, cv_folds):
    from tune.ray_train import run_ray_train

    marker = tmp_path / "failed-once"
    cfg = small_cfg(cache_dir, tmp_path / "local", **{"optim.epochs": 3, "run.checkpoint_every": 1,
                                                      "run.fail_once_marker": str(marker),
                                                      "data.cv_folds": cv_folds})
    res = run_ray_train(cfg, workers=1, storage_path=str(tmp_path / "ray"), name="failonce", max_failures=1)
    assert res.error is None and marker.exists()
    # the first attempt died right after reporting epoch 1; the restart resumed there (every fold model)
    assert res.metrics["epoch"] == 3 and res.metrics["start_epoch"] == 1
    if cv_folds == 2:
        assert {"val/score_fold0", "val/score_fold1"} <= set(res.metrics)
        for k in (0, 1):
            assert load_metrics(Path(res.checkpoint.path) / f"fold{k}")["epoch"] == 3


def test_trainer_kwargs_make_local_paths_absolute(tmp_path, monkeypatch):
    # Ray workers run in their own working directory: a relative data.cache would point nowhere there.
    from tune.ray_train import trainer_kwargs

    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig().replace(**{"data.root": "data/synth", "data.cache": "data/synth/cache",
                                   "run.out_dir": "runs/x"})
    sent = trainer_kwargs(cfg, workers=1)["train_loop_config"]
    assert sent["data"]["root"] == str(tmp_path / "data" / "synth")
    assert sent["data"]["cache"] == str(tmp_path / "data" / "synth" / "cache")
    assert sent["run"]["out_dir"] == str(tmp_path / "runs" / "x")
    remote = trainer_kwargs(cfg.replace(**{"data.cache": "s3://bucket/cache"}), workers=1)[
        "train_loop_config"
    ]
    assert remote["data"]["cache"] == "s3://bucket/cache"


def test_trainer_kwargs_shorten_the_health_check_unless_the_user_set_it(monkeypatch):
    # The controller sees the end of training only at a health-check poll (Ray's default: every 2 s).
    from tune.ray_train import HEALTH_CHECK_ENV, trainer_kwargs

    monkeypatch.delenv(HEALTH_CHECK_ENV, raising=False)
    trainer_kwargs(TrainConfig(), workers=1)
    assert os.environ[HEALTH_CHECK_ENV] == "0.5"
    monkeypatch.setenv(HEALTH_CHECK_ENV, "3")
    trainer_kwargs(TrainConfig(), workers=1)
    assert os.environ[HEALTH_CHECK_ENV] == "3"


def test_one_worker_runs_without_the_torch_backend():
    # one worker has nothing to synchronise: no TorchConfig (its controller would import torch for it)
    from ray.train.torch import TorchTrainer
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    from tune.ray_train import make_trainer

    one = make_trainer(TrainConfig(), workers=1)
    assert type(one) is DataParallelTrainer and one.scaling_config.num_workers == 1
    assert type(make_trainer(TrainConfig(), workers=2)) is TorchTrainer
    assert type(make_trainer(TrainConfig(), workers=1, torch_backend=True)) is TorchTrainer


def test_a_one_worker_trial_process_does_not_import_torch():
    # a Tune trial only builds and fits the trainer: torch (2-3 s of a fresh process's start) is the worker's
    code = ("import sys\n"
            "from tune.config import TrainConfig\n"
            "import ray.tune.integration.ray_train, tune.driver\n"
            "from tune.ray_train import make_trainer\n"
            "make_trainer(TrainConfig(), workers=1)\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.split() == ["False"], out.stdout + out.stderr
