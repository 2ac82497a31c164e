"""The one shim over private Ray internals (Ray 2.60). Everything here reads a field or module that Ray does
not document; if an upgrade breaks it, this file is the only place to fix.

- `optuna_trial(searcher, trial_id)`: the `optuna.trial.Trial` behind a Tune trial of Ray's `OptunaSearch`
  (private `_ot_trials`), to report the intermediate value that made ASHA stop it (tune/optuna_ext.py).
- `already_completed(searcher, trial_id)`: whether `OptunaSearch` has already told Optuna the trial finished
  (private `_completed_trials`).
- `uncount_stop(asha)`: take back one stop from ASHA's `num_stopped` (private `_num_stopped`, shown in its
  debug string) when `tune.scheduler.ReferenceASHA` turns ASHA's STOP into CONTINUE.
- `quiet_train_report_log()`: Ray Train V2 logs each report (the whole metrics dict) at INFO through a logger
  named after its *file* (`ray.train.v2._internal.execution.context`), which `LoggingConfig` does not reach;
  our one-line epoch summary says the same. Best effort: a missing module is ignored.
"""
from __future__ import annotations

import logging


def optuna_trial(searcher, trial_id: str):
    return searcher._ot_trials[trial_id]


def already_completed(searcher, trial_id: str) -> bool:
    return trial_id in searcher._completed_trials


def uncount_stop(asha) -> None:
    asha._num_stopped -= 1


def quiet_train_report_log() -> None:
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)
