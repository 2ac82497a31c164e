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
