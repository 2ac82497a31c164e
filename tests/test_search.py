"""tune.search: CLI parsing, and the real Tuner + OptunaSearch + ASHA machinery on a local Ray.

Fast tests use a real but trivial Tune function trainable (same signature as `tune.search.train_driver`);
the end-to-end tests run the real driver (Ray Train + tune.train) on a tiny synthetic set.
"""
from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from helpers import kill_under, terminated_trials

from features.errors import MabeDataError
from tune import keys, optuna_ext, search
from tune import space as sp

# ------------------------------------------------------------------------------------------------ CLI


def test_parse_args_defaults_and_smoke():
    s = search.parse_args([])
    assert (s.num_samples, s.max_concurrent, s.epochs, s.space, s.gpus_per_trial) == (8, 2, 6, "cpu", 0.0)
    assert s.name.startswith("search-") and s.max_t() == 7
    assert s.optuna_url() == f"sqlite:///{s.local_dir() / 'optuna.db'}"
    smoke = search.parse_args(["--smoke-test", "--name", "x"])
    assert (smoke.num_samples, smoke.epochs, smoke.smoke_test) == (2, 2, True)
    g = search.parse_args(["--gpus-per-trial", "0.5", "--workers-per-trial", "2", "--set", "optim.lr=1e-3",
                           "--storage", "s3://bucket/mabe", "--name", "n"])
    assert g.space == "full" and g.gpus_per_worker() == 0.25
    assert sp.LR not in g.search_space() and sp.LR not in g.v6_point()
    assert g.experiment_path() == "s3://bucket/mabe/n" and g.local_dir().name == "n"
    assert (s.fold_labs, s.cv_folds) == ("test", 1)
    cv = search.parse_args(["--cv-folds", "3", "--fold-labs", "all", "--name", "cv"])
    assert (cv.fold_labs, cv.cv_folds) == ("all", 3)
    assert search.base_config(cv, "data/x", "data/x/cache").data.cv_folds == 3
    assert search.base_config(s, "data/x", "data/x/cache").data.cv_folds == 1


@pytest.mark.parametrize("n, startup", [(2, 4), (8, 4), (12, 4), (18, 6), (30, 10), (200, 10)])
def test_tpe_models_results_after_a_third_of_the_trials(n, startup):
    # Optuna's default (10 random trials first) would leave TPE 2 proposals in the 12-trial default search.
    scfg = search.SearchConfig(name="x", num_samples=n)
    assert scfg.tpe_startup_trials() == startup
    sampler = optuna_ext.tpe_sampler(scfg)
    assert sampler._n_startup_trials == startup  # optuna 5 keeps the argument under this name


def test_trials_stopped_early_reach_optuna_as_pruned():
    # ASHA-stopped trials never make the driver's final report (BEST_CKPT): TPE must not rank their short-run
    # scores among full-length ones. Real OptunaSearch + in-memory Optuna study; no Ray session needed.
    import optuna

    searcher = optuna_ext.optuna_search(space=sp.to_optuna({"optim.lr": ("loguniform", 1e-4, 1e-2)}),
                                    metric=keys.OBJECTIVE, mode="max",
                                    sampler=optuna.samplers.RandomSampler(seed=0))
    for tid in ("full", "stopped", "broken", "silent", "first"):
        assert searcher.suggest(tid) is not None
    searcher.on_trial_result("stopped", {keys.OBJECTIVE: 0.2, "training_iteration": 2})
    searcher.on_trial_complete(
        "full", {keys.OBJECTIVE: 0.3, keys.BEST_CKPT: "/ckpt", "training_iteration": 7}
    )
    searcher.on_trial_complete("stopped", {keys.OBJECTIVE: 0.2, "training_iteration": 2})
    searcher.on_trial_complete("broken", None, error=True)
    searcher.on_trial_complete("silent", None)
    # stopped at its first result: Tune passes that result to on_trial_complete only, never to on_trial_result
    searcher.on_trial_complete("first", {keys.OBJECTIVE: 0.05, "training_iteration": 1})
    trials = {t.number: t for t in searcher._ot_study.trials}   # suggest order: full, stopped, broken, silent
    S = optuna.trial.TrialState
    assert [trials[i].state for i in range(5)] == [S.COMPLETE, S.PRUNED, S.FAIL, S.PRUNED, S.PRUNED]
    assert trials[4].value == 0.05 and trials[4].intermediate_values == {1: 0.05}
    assert trials[0].value == 0.3
    # Optuna files a pruned trial under its last intermediate value; TPE ranks it after every COMPLETE trial
    assert trials[1].value == 0.2 and trials[1].intermediate_values == {2: 0.2}



@pytest.mark.parametrize("argv", [["--num-samples", "0"], ["--epochs", "-1"], ["--set", "optim.lr"]])
def test_bad_arguments_exit_non_zero(argv, capsys):
    with pytest.raises(SystemExit) as e:  # cli_guard: one line on stderr, exit 2
        search.main(argv)
    assert e.value.code == 2
    assert "error" in capsys.readouterr().err


def test_help_explains(capsys):
    with pytest.raises(SystemExit) as e:
        search.parse_args(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--smoke-test" in out and "--warm-start" in out and "ray job submit" in out


# ------------------------------------------------------------------------------ Tune machinery, trivial trial


def _make_trivial(epochs_key="optim.epochs"):
    """A real Tune function trainable with the driver's signature: a closed-form 'score' per epoch that peaks
    near lr = 1e-3, so TPE has something to find; writes a checkpoint folder and reports it at the end."""

    def trivial(config, setup):
        import os

        import ray.tune

        lr = config[sp.LR]
        target = 1.0 - abs(math.log10(lr) + 3.0) / 3.0          # 1 at lr=1e-3, 0.5 at 1e-4.5
        best = -1.0
        epochs = setup["base"]["optim"]["epochs"]
        for epoch in range(1, epochs + 1):
            score = target * epoch / epochs
            best = max(best, score)
            ray.tune.report({"val/score": score, "val/best_score": best, "epoch": epoch,
                             "val/f1_attack": score / 2, "val/f1_sniff": score})
        trial_id = ray.tune.get_context().get_trial_id()
        ckpt = os.path.join(setup["experiment_path"], f"train-{trial_id}", "checkpoint_best")
        os.makedirs(ckpt, exist_ok=True)
        with open(os.path.join(ckpt, "metrics.json"), "w") as f:
            json.dump({"val/score": best}, f)
        ray.tune.report(
            {"val/score": score, "val/best_score": best, "epoch": epochs, "best_checkpoint": ckpt}
        )

    return trivial


def _scfg(tmp_path, name, **kw):
    kw.setdefault("num_samples", 4)
    kw.setdefault("max_concurrent", 2)
    kw.setdefault("epochs", 3)
    kw.setdefault("grace_period", 1)
    return search.SearchConfig(name=name, storage=str(tmp_path / "exp"), **kw)


def _study_trials(db, name):
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT t.number, t.state, v.value FROM trials t JOIN studies s USING(study_id) "
            "LEFT JOIN trial_values v USING(trial_id) WHERE s.study_name = ? ORDER BY t.number",
            (name,),
        ).fetchall()
        params = con.execute("SELECT t.number, p.param_name, p.param_value FROM trial_params p JOIN trials t "
                             "USING(trial_id) JOIN studies s USING(study_id) WHERE s.study_name = ?",
                             (name,)).fetchall()
    finally:
        con.close()
    return rows, params


@pytest.mark.ray
def test_search_machinery_trivial_trainable(ray_local, tmp_path):
    scfg = _scfg(tmp_path, "trivial", gpus_per_trial=0.5, gpu_hour_cost=4.0)
    base = {"optim": {"epochs": 3}}
    summary = search.run_search(scfg, _make_trivial(), base)
    exp = tmp_path / "exp" / "trivial"
    table = pd.read_csv(exp / "results.csv")
    assert len(table) == 4 and list(table["trial"]) == [1, 2, 3, 4]
    # trial 1 is the V6 point
    first = table.iloc[0]
    for key, value in scfg.v6_point().items():  # V6_POINT restricted to the CPU space's keys
        assert first[key] == value, key
    # V6: lr 4e-4 -> target = 1 - |log10(4e-4) + 3| / 3 = 1 - 0.39794/3 = 0.867353, reached at epoch 3 of 3;
    # ASHA (grace 1 here) never stops the V6 trial, so it trains all 3 epochs
    assert first["epochs"] == 3 and first["status"] == "TERMINATED"
    assert first["best_score"] == pytest.approx(0.867353, abs=1e-6)
    assert summary["v6_score"] == pytest.approx(first["best_score"])
    assert summary["best_score"] == table["best_score"].max()
    # ASHA may stop trials: every row has a status, the finished ones name their checkpoint
    assert set(table["status"]) <= {"TERMINATED", "STOPPED"}
    done = table[table["status"] == "TERMINATED"]
    assert len(done) >= 1 and all(p.endswith("checkpoint_best") for p in done["best_checkpoint"])
    # GPU-hours = trial wall time x GPUs per trial; cost = GPU-hours x price
    assert table["gpu_hours"].to_numpy() == pytest.approx(table["wall_s"].to_numpy() / 3600 * 0.5)
    assert table["cost_usd"].to_numpy() == pytest.approx(table["gpu_hours"].to_numpy() * 4.0)
    assert summary["cost_usd"] == pytest.approx(table["cost_usd"].sum())
    for png in ("optimization_history.png", "parallel_coordinates.png", "per_action_f1.png"):
        assert (exp / png).stat().st_size > 1000
    assert "best vs V6: " in summary["report"]
    # the Optuna study file holds the same trials: 4, V6 first; trials that ran to the end are COMPLETE,
    # ASHA-stopped ones PRUNED (so TPE ranks them after every full-length trial)
    rows, params = _study_trials(exp / "optuna.db", "trivial")
    assert [r[0] for r in rows] == [0, 1, 2, 3]
    state_of = {"TERMINATED": "COMPLETE", "STOPPED": "PRUNED"}
    assert sorted(r[1] for r in rows) == sorted(table["status"].map(state_of))
    lr_by_number = {n: v for n, k, v in params if k == sp.LR}
    assert lr_by_number[0] == pytest.approx(4e-4)
    assert sorted(lr_by_number.values()) == pytest.approx(sorted(table[sp.LR]))
    # TERMINATED trials told Optuna their best score; ASHA-stopped ones their score at the stop step
    for _, r in done.iterrows():
        n = next(k for k, v in lr_by_number.items() if v == pytest.approx(r[sp.LR]))
        assert {x[0]: x[2] for x in rows}[n] == pytest.approx(r["best_score"])

    # `python -m tune.results` rewrites the table from the folder alone, here at another price
    from tune import results

    assert results.main(["--experiment", str(exp), "--gpu-hour-cost", "8"]) == 0
    again = pd.read_csv(exp / "results.csv")
    assert again["trial"].tolist() == table["trial"].tolist()
    assert again["cost_usd"].to_numpy() == pytest.approx(table["cost_usd"].to_numpy() * 2)

    # warm start: a second search gets the first study's COMPLETE trials as evaluated points
    warm = optuna_ext.warm_start_trials(str(exp), scfg.search_space())
    assert len(warm) == 4 and warm[0][0][sp.LR] == pytest.approx(4e-4)
    stopped = table[table["status"] == "STOPPED"]
    assert sum(steps is not None for _, _, steps in warm) == len(stopped)
    # a pruned trial's steps end at its stop step, with the value it was filed under
    for _, value, steps in warm:
        assert steps is None or (steps[-1] == pytest.approx(value) and 1 <= len(steps) - 1 <= 3)
    scfg2 = _scfg(tmp_path, "trivial-warm", num_samples=2, warm_start=str(exp))
    search.run_search(scfg2, _make_trivial(), base)
    rows2, _ = _study_trials(tmp_path / "exp" / "trivial-warm" / "optuna.db", "trivial-warm")
    assert len(rows2) == 4 + 2   # 4 added from the old study, then V6 and one TPE trial
    # an existing experiment is never silently overwritten
    with pytest.raises(MabeDataError, match="--resume"):
        search.run_search(scfg2, _make_trivial(), base)


# ------------------------------------------------------------------ real driver: Ray Train + tune.train


@pytest.fixture(scope="module")
def tiny_data(synth_set):
    """A tiny synthetic Kaggle-layout set and its feature cache (session-wide), shared by the end-to-end
    tests."""
    d = synth_set(6, 600, seed=0)
    return d.root, d.cache


def _e2e_args(data, storage, name, *extra):
    root, cache = data
    return ["--data", str(root), "--cache", str(cache), "--storage", str(storage), "--name", name,
            "--set", "optim.batch_size=16", "--set", "data.window=64", "--set", "model.hidden=16",
            "--set", "run.checkpoint_every=1", *extra]


@pytest.mark.slow
@pytest.mark.ray
def test_real_search_three_trials(ray_local, tiny_data, tmp_path, capsys):
    """3 trials through Tuner + OptunaSearch + ASHA + TorchTrainer(tune.train) on a local Ray. One trial's
    Train worker fails once after its first checkpoint (run.fail_once_marker) and resumes from it."""
    marker = tmp_path / "failed-once"
    argv = _e2e_args(tiny_data, tmp_path / "exp", "e2e", "--num-samples", "3", "--max-concurrent", "2",
                     "--epochs", "2", "--grace-period", "3", "--set", f"run.fail_once_marker={marker}")
    assert search.main(argv) == 0
    out = capsys.readouterr().out
    exp = tmp_path / "exp" / "e2e"
    table = pd.read_csv(exp / "results.csv")
    assert table["trial"].tolist() == [1, 2, 3]
    assert (table["status"] == "TERMINATED").all() and (table["epochs"] == 2).all()
    scfg = search.parse_args(argv)
    for key, value in scfg.v6_point().items():          # trial 1 = V6 (the values that are searched here)
        assert table.loc[0, key] == value, key
    for ckpt in table["best_checkpoint"]:                # checkpoints rebuild their model alone
        assert {"model.pt", "config.json", "metrics.json"} <= {p.name for p in Path(ckpt).iterdir()}
        assert str(ckpt).startswith(str(exp / "train-"))
    for png in ("optimization_history.png", "parallel_coordinates.png", "per_action_f1.png"):
        assert (exp / png).is_file()
    rows, _ = _study_trials(exp / "optuna.db", "e2e")     # the study file holds the same 3 trials
    assert len(rows) == 3 and all(r[1] == "COMPLETE" for r in rows)
    assert sorted(r[2] for r in rows) == pytest.approx(sorted(table["best_score"]))
    # the failing trial was retried from its checkpoint: its restarted worker resumed after epoch 1
    # (tune.train reports start_epoch = epochs already done when it started)
    assert marker.is_file()
    starts = [(json.loads(line).get("epoch"), json.loads(line).get("start_epoch"))
              for p in exp.glob("*/result.json") for line in p.read_text().splitlines() if line.strip()]
    assert (2, 1) in starts
    assert "best vs V6: " in out and f"next: python -m ensemble.build --experiment {exp}" in out


@pytest.mark.slow
@pytest.mark.ray
def test_kill_and_resume(tiny_data, tmp_path):
    """Kill the search driver (SIGKILL) after its first trial finished; `--resume` finishes the search without
    running the finished trial again."""
    import os
    import signal
    import subprocess
    import sys
    import tempfile
    import time

    ray_tmp = Path(tempfile.mkdtemp(prefix="rkr", dir="/tmp"))  # short: Ray's unix socket paths
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=str(ray_tmp), RAY_AUTH_MODE="disabled", TQDM_DISABLE="1",
               TUNE_GLOBAL_CHECKPOINT_S="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    argv = _e2e_args(tiny_data, tmp_path / "exp", "kr", "--num-samples", "2", "--max-concurrent", "1",
                     "--epochs", "1", "--grace-period", "2")
    exp = tmp_path / "exp" / "kr"
    cmd = [sys.executable, "-m", "tune.search", *argv]
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 300
        while terminated_trials(exp) < 1:
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.time() < deadline, "first trial did not finish in time"
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        log.close()
        kill_under(str(ray_tmp))
    assert not (exp / "results.csv").exists()  # it really died mid-search
    first_done = {p.parent.name: len(p.read_text().splitlines()) for p in exp.glob("*/result.json")}
    done = subprocess.run([*cmd, "--resume"], check=False, env=env, capture_output=True, text=True,
                          timeout=600)
    kill_under(str(ray_tmp))
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "resuming" in done.stdout
    table = pd.read_csv(exp / "results.csv")
    assert table["trial"].tolist() == [1, 2] and (table["status"] == "TERMINATED").all()
    # the trial that had finished before the kill reported nothing more (1 epoch + the driver's final report)
    after = {p.parent.name: len(p.read_text().splitlines()) for p in exp.glob("*/result.json")}
    finished_before = [name for name, n in first_done.items() if n == 2]
    assert finished_before and all(after[name] == 2 for name in finished_before)
    assert len(after) == 2 and all(n == 2 for n in after.values())
    rows, _ = _study_trials(exp / "optuna.db", "kr")
    assert sum(r[1] == "COMPLETE" for r in rows) == 2


def test_resume_without_experiment_is_an_error(tmp_path):
    scfg = _scfg(tmp_path, "nothing-here", resume=True)
    with pytest.raises(MabeDataError, match="no experiment to resume"):
        search.run_search(scfg, _make_trivial(), {"optim": {"epochs": 1}})


@pytest.mark.ray
def test_tune_level_retry_of_a_failed_driver(ray_local, tmp_path):
    """A trial whose driver raises once is restarted by Tune (FailureConfig(max_failures)) and finishes."""
    marker = tmp_path / "driver-failed-once"
    trivial = _make_trivial()

    def flaky(config, setup):
        import os

        if not os.path.exists(setup["base"]["marker"]):
            open(setup["base"]["marker"], "w").close()
            raise RuntimeError("simulated driver crash")
        trivial(config, setup)

    scfg = _scfg(tmp_path, "flaky", num_samples=1, max_concurrent=1, epochs=2, max_failures=1)
    summary = search.run_search(scfg, flaky, {"optim": {"epochs": 2}, "marker": str(marker)})
    table = pd.read_csv(tmp_path / "exp" / "flaky" / "results.csv")
    assert marker.is_file() and table["status"].tolist() == ["TERMINATED"] and table["epochs"].tolist() == [2]
    assert summary["status_counts"] == {"TERMINATED": 1}
