"""The search bench's budget accounting (bench/search_bench.py), by hand."""
from __future__ import annotations

import pytest

pytest.importorskip("ray")

from bench.search_bench import Arm, budget_stopper, budget_to_reach  # noqa: E402


def test_budget_stopper_counts_each_trials_epochs_once_and_stops_at_the_budget():
    log: list = []
    stop = budget_stopper(5, log, "val/best_score")
    reports = [("a", 1, 0.1), ("b", 1, 0.2), ("a", 2, 0.3), ("a", 2, 0.3),  # a's extra final report: no epoch
               ("b", 2, 0.25), ("c", 1, 0.5)]
    spent_after = []
    for trial, epoch, score in reports:
        assert stop(trial, {"epoch": epoch, "val/best_score": score}) is False
        spent_after.append(stop.stop_all())
    assert log == [(1, 0.1), (2, 0.2), (3, 0.3), (3, 0.3), (4, 0.25), (5, 0.5)]
    assert spent_after == [False, False, False, False, False, True]
    stop("d", {"epoch": 0})              # a result without the objective is counted, not logged
    assert len(log) == 6


def test_budget_to_reach_is_the_spend_at_the_first_report_that_reaches_the_target():
    log = [(1, 0.1), (2, 0.4), (3, 0.35), (4, 0.5), (7, 0.6)]
    assert budget_to_reach(log, 0.4, 6) == 2
    assert budget_to_reach(log, 0.45, 6) == 4
    assert budget_to_reach(log, 0.55, 6) is None   # reached only after the budget was spent
    assert budget_to_reach(log, 0.55, 7) == 7
    arm = Arm("tpe+asha", 6, log)
    assert arm.best() == 0.5 and arm.spent() == 6 and arm.budget_to_reach(0.5) == 4


def test_summarize_counts_seeds_won_with_ties_and_the_spread():
    from bench.search_bench import summarize

    rows = {r["arm"]: r for r in summarize({"random": [0.3, 0.5, 0.4], "tpe": [0.4, 0.5, 0.2]})}
    assert rows["random"]["won"] == 2 and rows["tpe"]["won"] == 2    # seed 1 is a tie: both win it
    assert rows["tpe"]["min"] == 0.2 and rows["tpe"]["max"] == 0.5
    assert abs(rows["random"]["mean"] - 0.4) < 1e-12 and abs(rows["random"]["std"] - 0.1) < 1e-12


def test_ray_bench_phases_of_a_reused_trial_end_at_the_actor_reset():
    from bench.ray_bench import phases

    events = [(10.0, "ImplicitFunc.__init__", "FINISHED"), (12.0, "TrainController.__init__", "FINISHED"),
              (13.0, "RayTrainWorker.run_train_fn", "RUNNING"), (20.0, "RayTrainWorker.shutdown", "FINISHED"),
              # trial 2, same actor
              (21.5, "train_driver.reset", "FINISHED"), (22.0, "TrainController.__init__", "FINISHED"),
              (23.0, "RayTrainWorker.run_train_fn", "RUNNING"), (30.0, "RayTrainWorker.shutdown", "FINISHED")]
    assert phases(events, 9.0, 21.0) == [("trial actor", 1.0), ("controller", 2.0), ("worker group", 1.0),
                                         ("training", 7.0), ("teardown", 1.0)]
    assert [p for p, _ in phases(events, 21.0, 31.0)][0] == "trial actor"
    assert phases(events, 21.0, 31.0)[0][1] == 0.5
    assert phases(events[:3], 9.0, 21.0) == []     # a missing event: no split
    # trial 2 starting 0.5 s after trial 1's worker shut down: its phases are its own events, not trial 1's
    # shutdown at 20.0 (only the actor's reset may come before the trial's start)
    events[4] = (20.3, "train_driver.reset", "FINISHED")
    assert phases(events, 20.5, 31.0) == [("trial actor", 0.0), ("controller", 1.5), ("worker group", 1.0),
                                          ("training", 7.0), ("teardown", 1.0)]
