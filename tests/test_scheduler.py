"""ASHA in the search: the grace period covers the searched warm-up, the V6 trial is never stopped, and the
report compares against V6 only when V6 trained all its epochs.

Scheduler tests use Ray's real ASHA and real `Trial` objects (stub trials, as Ray's own scheduler tests make
them) fed real result dicts; no Ray session is started.
"""
from __future__ import annotations

import math

import pandas as pd
import pytest

from tune import driver, search
from tune import space as sp
from tune.keys import OBJECTIVE
from tune.results import ranked_report
from tune.search_config import SearchConfig

# ------------------------------------------------------------------------------------------ grace period


@pytest.mark.parametrize("kw, max_warmup, grace", [
    # default CPU space: warm-up up to 5 -> 5 + 1 = 6, which is the last of 6 epochs: no early stopping
    ({}, 5, 7),
    ({"epochs": 12}, 5, 6),                                  # rungs at 6 and 12 of max_t 13
    ({"space": "full", "epochs": 3}, 5, 4),                   # 6 >= 3 epochs: max_t = 4
    ({"overrides": {sp.WARMUP: "1"}}, 1, 2),                 # pinned warm-up 1: 1 + 1 = 2
    ({"overrides": {sp.WARMUP: "0"}}, 0, 2),                 # no warm-up: at least 2
    ({"overrides": {sp.WARMUP: "2.5"}, "epochs": 10}, 2.5, 4),  # ceil(2.5) + 1
    ({"grace_period": 3}, 5, 3),                             # explicit --grace-period wins
    ({"grace_period": 9}, 5, 7),                             # ... at most max_t = 7
])
def test_grace_period_covers_the_longest_warmup(kw, max_warmup, grace):
    scfg = SearchConfig(name="x", **kw)
    assert scfg.max_warmup() == max_warmup and scfg.grace() == grace


def test_grace_period_flag(capsys):
    assert search.parse_args([]).grace_period == 0                        # auto
    assert search.parse_args(["--grace-period", "3"]).grace() == 3
    with pytest.raises(SystemExit):
        search.parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "0 = auto: the longest warm-up the space can draw + 1" in help_text
    # 100 GPU epochs: first rung after the longest warm-up (5) plus one epoch, then every doubling
    rungs = [m for m, _ in driver.build_scheduler(SearchConfig(name="x", epochs=100))._brackets[0]._rungs]
    assert rungs == [96, 48, 24, 12, 6]


# ------------------------------------------------------------------------------------ V6 never stopped


def _trial(trial_id: str, config: dict):
    from ray.tune.experiment import Trial

    return Trial("__fake", config=config, trial_id=trial_id, stub=True)


def _feed(sched, trial, it: int, score: float) -> str:
    return sched.on_trial_result(None, trial, {"training_iteration": it, OBJECTIVE: score})


def test_v6_trial_is_never_stopped_a_twin_with_its_results_is():
    from ray.tune.schedulers import TrialScheduler

    scfg = SearchConfig(name="x", epochs=30)    # grace 6, max_t 31: rungs at 6, 12, 24
    sched = driver.build_scheduler(scfg)
    sched.set_search_properties(OBJECTIVE, "max")
    assert [m for m, _ in sched._brackets[0]._rungs] == [24, 12, 6]
    v6 = _trial("v6", dict(scfg.v6_point()))
    twin = _trial("twin", {**scfg.v6_point(), sp.LR: 1e-3})      # not the V6 point, same results
    good = [_trial(f"g{i}", {**scfg.v6_point(), sp.LR: 2e-3 + i * 1e-4}) for i in range(3)]
    for t in (v6, twin, *good):
        sched.on_trial_add(None, t)
    stopped = set()
    for it in range(1, 32):
        # the good trials reach each rung first: 0.5, 0.6, 0.7 (+ it/1000); V6 and its twin score 0.1
        for i, t in enumerate(good):
            assert _feed(sched, t, it, 0.5 + 0.1 * i + it / 1000) == (
                TrialScheduler.STOP if it == 31 else TrialScheduler.CONTINUE)
        for t in (v6, twin):
            if t.trial_id in stopped:
                continue
            action = _feed(sched, t, it, 0.1)
            if t is v6:
                # at rungs 6, 12, 24 the cutoff (median of 0.5.., 0.6.., 0.7.., 0.1) is ~0.55 > 0.1: plain
                # ASHA stops; V6 continues until the normal end at max_t
                assert action == (TrialScheduler.STOP if it == 31 else TrialScheduler.CONTINUE), it
            elif action == TrialScheduler.STOP:
                stopped.add(t.trial_id)
                assert it == 6                         # the twin: stopped at the first rung
    assert stopped == {"twin"}
    rung6 = dict(sched._brackets[0]._rungs)[6]
    assert rung6["v6"] == 0.1 and rung6["twin"] == 0.1    # V6's results still count in the cutoffs
    assert sched._num_stopped == 1 + 4   # the twin, plus 4 normal ends at max_t (3 good + V6)


def test_v6_matches_optunas_first_suggestion(tmp_path):
    # the V6 trial's config is what OptunaSearch returns for the enqueued point, after its database round trip
    from tune.scheduler import same_point

    scfg = SearchConfig(name="x", storage=str(tmp_path), num_samples=3)
    scfg.local_dir().mkdir(parents=True)
    searcher = driver.build_searcher(scfg)
    first, second = searcher.suggest("t1"), searcher.suggest("t2")
    assert same_point(first, scfg.v6_point()) and not same_point(second, scfg.v6_point())
    assert not same_point(first, {})


def test_no_stop_after_the_last_epoch():
    # explicit grace 4 of 8 epochs: rungs 4 and 8 (max_t 9). A stop at 8 would save no training: continue
    from ray.tune.schedulers import TrialScheduler

    scfg = SearchConfig(name="x", epochs=8, grace_period=4)
    sched = driver.build_scheduler(scfg)
    sched.set_search_properties(OBJECTIVE, "max")
    a, b = _trial("a", {sp.LR: 1e-3}), _trial("b", {sp.LR: 2e-3})
    for t in (a, b):
        sched.on_trial_add(None, t)
    for it in range(1, 9):
        assert _feed(sched, a, it, 0.9) == TrialScheduler.CONTINUE
        assert _feed(sched, b, it, 0.9 if it < 8 else 0.2) == TrialScheduler.CONTINUE   # worst at rung 8
    assert _feed(sched, b, 9, 0.2) == TrialScheduler.STOP       # the normal end at max_t


# ------------------------------------------------------------------------------------ report vs V6


def _table(v6_status: str, v6_error: str = "") -> pd.DataFrame:
    rows = [(1, 0.30 if v6_status != "ERROR" else math.nan, 2 if v6_status != "TERMINATED" else 6,
             v6_status, v6_error),
            (2, 0.50, 6, "TERMINATED", ""), (3, 0.20, 2, "STOPPED", "")]
    return pd.DataFrame([{"trial": t, "trial_id": f"id{t}", sp.LR: 1e-3, "best_score": s, "epochs": e,
                          "wall_s": 10.0, "gpu_hours": 0.0, "cost_usd": 0.0, "best_checkpoint": "",
                          "status": st, "error": err} for t, s, e, st, err in rows])


def test_report_compares_only_a_v6_that_finished():
    done = ranked_report(_table("TERMINATED"), [sp.LR])
    assert "best vs V6: +0.200 (trial 2: 0.5000, V6 trial 1: 0.3000)" in done
    stopped = ranked_report(_table("STOPPED"), [sp.LR])
    assert ("best vs V6: not compared, the V6 trial (trial 1) was STOPPED after 2 epochs" in stopped
            and "+0." not in stopped)
    failed = ranked_report(_table("ERROR", "RuntimeError: boom"), [sp.LR])
    assert "best vs V6: not compared, the V6 trial (trial 1) failed: RuntimeError: boom" in failed
