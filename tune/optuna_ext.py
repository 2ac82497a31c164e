"""Optuna pieces of the search: Ray's `OptunaSearch` with early-stopped trials told as PRUNED, the seeded TPE
sampler, and warm starts from previous studies. Private Ray fields go through tune/ray_compat.py."""
from __future__ import annotations

import math
from pathlib import Path

from tune import ray_compat
from tune import space as space_mod
from tune.keys import BEST_CKPT, DATA_ERROR
from tune.search_config import SearchConfig


def warm_start_trials(source: str, space: dict) -> list[tuple[dict, float, list[float] | None]]:
    """COMPLETE and PRUNED trials (params inside `space`, finite value) of previous studies at `source`: an
    experiment folder (its optuna.db) or an Optuna storage URL. Returned as (point, value, intermediate) for
    add_evaluated_point: intermediate is None for a COMPLETE trial; for a PRUNED one its reported values
    indexed by step (Ray numbers them from 0), so the stop step and value keep their meaning to TPE."""
    import optuna

    url = source if "://" in source else f"sqlite:///{Path(source).resolve() / 'optuna.db'}"
    if "://" not in source and not (Path(source) / "optuna.db").exists():
        raise FileNotFoundError(f"--warm-start {source}: no optuna.db in that folder")
    storage = optuna.storages.RDBStorage(url)
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    out = []
    for study_name in optuna.study.get_all_study_names(storage):
        study = optuna.load_study(study_name=study_name, storage=storage)
        for t in study.get_trials(deepcopy=False, states=states):
            point = {k: t.params[k] for k in space if k in t.params}
            if t.value is None or not math.isfinite(t.value) or space_mod.contains(space, point):
                continue
            steps = t.intermediate_values
            if t.state == optuna.trial.TrialState.COMPLETE:
                out.append((point, float(t.value), None))
            else:
                first = steps[min(steps)] if steps else None
                values = [steps.get(i, first) for i in range(max(steps, default=-1) + 1)]
                out.append((point, float(t.value), values))
    return out


# TPE's settings in every search. bench/search_bench.py (32 trials x 3 epochs, 5 seeds, ASHA) gave mean best
# 0.1148 with both on and 0.1157 with both off, 1 seed won each, std 0.031 / 0.040: no difference, so Optuna's
# defaults stay (random + ASHA 0.1282 +- 0.030, random 0.1149: ASHA helps, the sampler is not resolved).
TPE_DEFAULTS = {"multivariate": False, "constant_liar": False}


def tpe_sampler(scfg: SearchConfig, **settings):
    """Seeded TPE with `TPE_DEFAULTS` (`settings` override them). Optuna samples the first `n_startup_trials`
    (default 10) at random, which for a 12-trial search would leave TPE two proposals (the 8-trial default:
    none): start it after a third of the trials (4..10)."""
    import optuna

    return optuna.samplers.TPESampler(seed=scfg.seed, n_startup_trials=scfg.tpe_startup_trials(),
                                      **{**TPE_DEFAULTS, **settings})


def optuna_search(**kwargs):
    """Ray's `OptunaSearch(**kwargs)`, except that a trial ASHA stopped early is told to Optuna as PRUNED.

    Ray tells every finished trial as COMPLETE with its last value, so TPE compared 2-epoch scores of
    stopped trials with full-length ones and modelled "short" rather than "good" (bench/search_bench.py,
    3 seeds: TPE + ASHA averaged below random search and below either idea alone). Optuna's TPE ranks PRUNED
    trials after every COMPLETE one (the deepest step, then its value, first), which is what an early stop
    means. A trial that ran to the end made the driver's final report (with `BEST_CKPT`); one that did not
    was stopped (by ASHA, or by the end of the search)."""
    from ray.tune.search.optuna import OptunaSearch

    class StoppedAsPruned(OptunaSearch):
        def __init__(self, **kw):
            super().__init__(**kw)
            self._reported: set[tuple[str, int]] = set()    # (trial id, step) told to Optuna

        def on_trial_result(self, trial_id: str, result: dict):
            if result.get(DATA_ERROR):  # the driver's bad-input report: no score (the trial fails next)
                return
            super().on_trial_result(trial_id, result)
            self._reported.add((trial_id, result.get("training_iteration")))

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
            if error or not result or BEST_CKPT in result or ray_compat.already_completed(self, trial_id):
                return super().on_trial_complete(trial_id, result=result, error=error)
            # Tune hands the result that made ASHA stop the trial to on_trial_complete only: record it as the
            # last intermediate value (unless that step was reported: Optuna would warn), then tell PRUNED
            step = result.get("training_iteration")
            if result.get(self.metric) is not None and step is not None and \
                    (trial_id, step) not in self._reported:
                ray_compat.optuna_trial(self, trial_id).report(result[self.metric], step)
            super().on_trial_complete(trial_id, result=None, error=False)   # no value, no error: PRUNED

    return StoppedAsPruned(**kwargs)
