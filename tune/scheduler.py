"""ASHA for the search: Ray's `ASHAScheduler`, except that it never stops the reference trial (the seed's V6
point, so "best vs V6" compares against a V6 that trained every epoch) and never stops a trial that has
trained all its epochs (only the driver's final report is left: stopping then saves nothing and would only
mark a fully trained trial as stopped, PRUNED to Optuna). Its results still count in every rung's cutoff.

Imported by `tune.driver.build_scheduler` only when a search starts (Ray is imported here).
"""
from __future__ import annotations

import math

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from tune import ray_compat


def same_point(config: dict, point: dict) -> bool:
    """True if `config` holds every key of `point` with the same value (floats compared to 1e-9 relative, the
    round trip through Optuna's storage)."""
    if not point:
        return False
    for key, want in point.items():
        got = config.get(key)
        if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
            if not math.isclose(got, want, rel_tol=1e-9):
                return False
        elif got != want:
            return False
    return True


class ReferenceASHA(ASHAScheduler):
    """`ASHAScheduler(time_attr, max_t, grace_period, reduction_factor, ...)` plus `reference`: the point
    (searched keys only) whose trial always runs to completion, and `last_epoch`: the `time_attr` value of a
    trial's last training epoch, from which on a STOP would save nothing (None = no such rule)."""

    def __init__(self, *, time_attr: str, max_t: int, reference: dict, last_epoch: int | None = None, **asha):
        super().__init__(time_attr=time_attr, max_t=max_t, **asha)
        self.progress_key, self.end = time_attr, max_t
        self.reference = dict(reference)
        self.last_epoch = last_epoch

    def is_reference(self, trial) -> bool:
        return same_point(trial.config or {}, self.reference)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)  # records the result in its rung
        progress = result.get(self.progress_key, 0)
        if action != TrialScheduler.STOP or progress >= self.end:
            return action      # continue, or the normal end at max_t
        if (self.last_epoch is not None and progress >= self.last_epoch) or self.is_reference(trial):
            ray_compat.uncount_stop(self)
            return TrialScheduler.CONTINUE
        return action
