"""Hyperparameter search: Ray Tune + Optuna (seeded TPE) + ASHA over Ray Train runs of `tune.train`.

Each Tune trial is a small *driver* function that launches one Ray Train `TorchTrainer` (named
`train-<trial_id>`, so a restarted trial resumes its own run from its last checkpoint) and forwards every
epoch's metrics to Tune. The objective is `val/best_score`: the best validation competition score so far.
The seed's V6 configuration is always trial 1, so the final table shows how far the search beat it.

Commands:

    python -m tune.search                      # embedded default: hard twin (data/synth-hard), local Ray,
                                               # small CPU search (~7 min on 2 cores), ranked table
    python -m tune.search --smoke-test         # the same in about a minute
    python -m tune.search --data /kaggle/mabe  # a real Kaggle download (train.csv, train_tracking/, ...)
    python -m tune.search --name my-search --resume          # continue a killed search, same results folder
    python -m tune.search --warm-start experiments/old       # seed TPE with a previous study's trials
    python -m tune.search --set optim.epochs=30 --set data.window=512   # pin any TrainConfig field

The console shows Tune's progress table, the trials' lines and ours; Ray's internal log lines stay in its log
files (/tmp/ray/session_latest/logs) and one line at the end says how many (README "Search").

On a cluster (see README "Cluster"):

    ray up cluster.yaml
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python -m tune.search --data s3://BUCKET/mabe --storage s3://BUCKET/experiments --gpus-per-trial 1
    # the same from any folder of a machine that can reach the head: --address HEAD:6379
    # Postgres study: OPTUNA_STORAGE=postgresql://USER:PASS@HOST/optuna in the job's environment

Outputs, in `<storage>/<name>/` (results files are mirrored locally in ./experiments/<name>/ when the storage
is remote): Tune trial folders, `train-<trial_id>/checkpoint_*` (model.pt, config.json, metrics.json),
`optuna.db` (open with `optuna-dashboard sqlite:///.../optuna.db`; uploaded after every trial), `results.csv`,
`search.json`, PNG plots. A remote --storage also gets the feature cache once, at
`<storage>/caches/<fingerprint>/`, which every Train worker stages node-locally.
Next step: `python -m ensemble.build --experiment <storage>/<name>`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from filelock import Timeout

from features import cli, files, storage
from features.errors import MabeDataError
from tune import results
from tune import space as space_mod
from tune.config import TrainConfig, load_config, parse_set_args
from tune.keys import DATA_ERROR
from tune.driver import build_tuner, init_ray, quiet_ray_console, restore_tuner, train_driver
from tune.optuna_ext import warm_start_trials
from tune.prepare import prepare_search_data, search_data_paths
from tune.presets import SEARCH_SMOKE, SEARCH_SMOKE_OVERRIDES
from tune.search_config import SearchConfig


def base_config(scfg: SearchConfig, data_root: str, cache: str) -> TrainConfig:
    """The TrainConfig every trial starts from (defaults < --config < --set < search point), resolved once:
    absolute data paths, the run folder under the experiment's scratch folder (each Train run adds its
    name)."""
    overrides = {"data.root": data_root, "data.cache": cache, "optim.epochs": scfg.epochs,
                 "run.progress": False, "run.resume": True, "run.patience": 0,
                 "run.threads": max(1, int(scfg.cpus_per_worker)),
                 **({"data.cv_folds": scfg.cv_folds} if scfg.cv_folds != 1 else {}),
                 **scfg.overrides, "run.out_dir": scfg.scratch_dir()}
    return load_config(scfg.config_file or None, overrides)


def run_search(scfg: SearchConfig, trainable: Callable = train_driver, base: dict | None = None, *,
               checked: bool = False) -> dict:
    """Run (or resume) the search under the experiment's lock; see `_run_search`."""
    if checked:
        return _run_search(scfg, trainable, base, checked=True)
    with experiment_lock(scfg):
        return _run_search(scfg, trainable, base)


def _run_search(scfg: SearchConfig, trainable: Callable = train_driver, base: dict | None = None, *,
                checked: bool = False) -> dict:
    """Run (or resume) the search and write its results; returns the summary dict (also `search.json`).
    `base`: the resolved TrainConfig dict every trial starts from (`base_config`); `checked`: the caller has
    already run `check_experiment` (main does, before data preparation)."""
    exp = scfg.experiment_path()
    local = scfg.local_dir()
    base = base or {}
    t0 = time.time()
    if not checked:
        check_experiment(scfg)
    local.mkdir(parents=True, exist_ok=True)
    if files.owner(local) is None:
        files.claim(local, EXPERIMENT)
    if scfg.resume:
        print(f"resuming {exp}")
        _fetch_study(exp, local)
        tuner = restore_tuner(scfg, trainable, base)
    else:
        warm = warm_start_trials(_warm_source(scfg), scfg.search_space()) if scfg.warm_start else []
        if warm:
            print(f"warm start: {len(warm)} trials from {scfg.warm_start} "
                  f"({sum(steps is not None for _, _, steps in warm)} of them stopped early)")
        tuner = build_tuner(scfg, trainable, base, warm)
    grid = tuner.fit()
    left = unfinished_trials(grid, scfg)
    if left:  # Tune stops on the first Ctrl-C (SIGINT) and returns normally: not a finished search
        raise Interrupted(f"interrupted with {left} trial(s) unfinished; Tune saved the state: continue "
                          f"with --name {scfg.name} --storage {scfg.storage} --resume (finished trials are "
                          "not run again)")
    wall = time.time() - t0
    table = results.collect(grid, scfg)
    summary = results.write_all(table, grid, scfg, wall_s=wall)
    summary["data_errors"] = [str(r.metrics[DATA_ERROR]) for r in grid if (r.metrics or {}).get(DATA_ERROR)]
    files.write_text(local / "search.json", json.dumps({"search": scfg.public(), "summary": summary},
                                                       indent=2, default=str))
    if scfg.is_remote_storage():
        storage.upload_file(local / "search.json", storage.join(exp, "search.json"))
        if (local / "optuna.db").is_file() and not scfg.optuna_url_given():
            storage.upload_file(local / "optuna.db", storage.join(exp, "optuna.db"))
    return summary


def _fetch_study(exp: str, local) -> None:
    """--resume of a remote experiment: its optuna.db (uploaded after every trial) into the local folder."""
    if storage.is_remote(exp) and storage.exists(storage.join(exp, "optuna.db")):
        storage.download_file(storage.join(exp, "optuna.db"), local / "optuna.db")


def _warm_source(scfg: SearchConfig) -> str:
    """--warm-start as warm_start_trials takes it: a remote experiment's optuna.db is downloaded first."""
    src = scfg.warm_start
    if not storage.is_remote(src):
        return src
    name = src.rstrip("/").rsplit("/", 1)[-1]
    dst = scfg.local_dir().parent / ".warm-start" / name
    storage.download_file(storage.join(src, "optuna.db"), dst / "optuna.db")
    return str(dst)


EXPERIMENT = "experiment"  # ownership marker kind of an experiment folder (features.files.claim)


class Interrupted(Exception):
    """The search was stopped (Ctrl-C) before every trial finished; nothing was written as results."""


def unfinished_trials(grid, scfg: SearchConfig) -> int:
    """Trials an interrupted `Tuner.fit` left unfinished, as Tune saved them for a restore (the live objects
    say TERMINATED after Tune's clean-up, the saved state keeps PENDING/RUNNING), plus those never started
    (only without a time budget, which ends a search on purpose, and not on --resume, whose flags need not
    repeat --num-samples)."""
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(scfg.experiment_path()).trials
    left = sum(t.status not in ("TERMINATED", "ERROR") for t in trials)
    if not scfg.time_budget and not scfg.resume:
        left = max(left, scfg.num_samples - len(grid))
    return left


def check_experiment(scfg: SearchConfig) -> None:
    """A fresh search needs a new name (Ray would silently resume an old one); --resume needs an old one;
    a local folder of that name that is not an experiment of ours is never written into (MabeDataError)."""
    import ray.tune

    exists = ray.tune.Tuner.can_restore(scfg.experiment_path())
    if scfg.resume and not exists:
        raise MabeDataError(f"--resume: no experiment to resume at {scfg.experiment_path()} (check --name "
                            f"{scfg.name} and --storage)")
    if exists and not scfg.resume:
        raise MabeDataError(f"experiment {scfg.experiment_path()} exists: add --resume, or pick a new --name")
    if not exists:
        files.check_replaceable(scfg.local_dir(), EXPERIMENT, flag=f"--name {scfg.name}: folder",
                                force_flag=None)


def check_warm_start(scfg: SearchConfig) -> None:
    """--warm-start: an Optuna URL, or an experiment folder with its optuna.db (checked before Ray starts)."""
    src = scfg.warm_start
    if src and "://" not in src and not (Path(src) / "optuna.db").is_file():
        what = "has no optuna.db (not a tune.search experiment)" if Path(src).exists() else "does not exist"
        raise MabeDataError(f"--warm-start {src} {what}; give a previous experiment folder or an Optuna URL")


@contextmanager
def experiment_lock(scfg: SearchConfig):
    """One search per experiment name at a time: a second one stops with one line (MabeDataError)."""
    lk = files.lock(scfg.local_dir())
    try:
        lk.acquire(timeout=0)
    except Timeout:
        raise MabeDataError(f"--name {scfg.name}: another tune.search is running experiment "
                            f"{scfg.experiment_path()} (lock {lk.lock_file}); wait for it or pick a new "
                            f"--name") from None
    try:
        yield
    finally:
        lk.release()



# --------------------------------------------------------------------------------------------------------
# CLI: flags and defaults from SearchConfig (features.cli); --smoke-test presets from tune/presets.py

FLAGS = ["data", "cache", "name", "storage", "resume", "num_samples", "max_concurrent", "workers_per_trial",
         "cpus_per_worker", "gpus_per_trial", "epochs", "grace_period", "time_budget", "seed",
         "gpu_hour_cost",
         "optuna_storage", "warm_start", "address", "max_failures", "space", "config_file", "smoke_test",
         "strict_data", "fold_labs", "cv_folds"]


def build_parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(
        prog="python -m tune.search", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Ray Tune + Optuna TPE + ASHA search over Ray Train runs. With no arguments: synthetic "
                    "data, local Ray, a ~7 minute CPU search. Objective: val/best_score (validation "
                    "competition score after thresholds tuned on the validation fold, run.objective; the "
                    "mean over --cv-folds folds; best so far). Trial 1 is always the seed's V6 "
                    "configuration.",
        epilog=__doc__.split("Commands:")[1].split("Outputs,")[0])
    cli.add_flags(p, SearchConfig, only=FLAGS, rename={"config_file": "config"},
                  choices={"fold_labs": ("test", "all")})
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="pin a TrainConfig field for every trial (removed from the search space)")
    return p


def parse_args(argv: list[str] | None = None) -> SearchConfig:
    """Explicit flag > --smoke-test preset > SearchConfig default; derived defaults: name, space."""
    a = build_parser().parse_args(argv)
    typed = cli.given(a, SearchConfig, FLAGS)
    smoke = bool(typed.get("smoke_test"))
    kw = {**(SEARCH_SMOKE if smoke else {}), **typed}
    kw.setdefault("name", "")
    kw["name"] = kw["name"] or "search-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    kw.setdefault("space", "full" if kw.get("gpus_per_trial", 0.0) > 0 else "cpu")
    kw["overrides"] = {**(SEARCH_SMOKE_OVERRIDES if smoke else {}), **parse_set_args(a.set)}
    return SearchConfig(**kw)


def main(argv: list[str] | None = None) -> int:
    from features.errors import cli_guard

    with cli_guard("python -m tune.search"):
        try:  # every user error before minutes of data preparation and Ray start
            scfg = parse_args(argv)
            base = base_config(scfg, *search_data_paths(scfg))
        except (ValueError, FileNotFoundError) as exc:
            raise MabeDataError(str(exc)) from None
        check_warm_start(scfg)
        if scfg.data and not storage.is_remote(scfg.data) and not (Path(scfg.data) / "train.csv").is_file():
            raise MabeDataError(f"--data {scfg.data}: no train.csv there (not a Kaggle-layout folder)")
        with experiment_lock(scfg):
            check_experiment(scfg)
            print("search:", json.dumps(scfg.public(), default=str))
            print("space:\n" + space_mod.describe(scfg.search_space()))
            base = prepare_search_data(scfg, base)   # bad input stops here (exit 2), before Ray starts
            try:
                with quiet_ray_console():   # Ray's internal lines stay in its log files (tune.driver)
                    init_ray(scfg.address)
                    summary = run_search(scfg, train_driver, base.to_dict(), checked=True)
            except Interrupted as exc:
                print(f"python -m tune.search: {exc}", file=sys.stderr)
                return 130  # the shell's code for Ctrl-C
        print(summary["report"])
        if summary["data_errors"]:   # every trial failed on bad input: say it in one line, exit 2
            raise MabeDataError(summary["data_errors"][0])
        print(f"\nnext: python -m ensemble.build --experiment {scfg.experiment_path()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
