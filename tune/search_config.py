"""`SearchConfig`: everything `python -m tune.search` needs, with the help text of each flag.

The CLI's flags and their defaults come from these fields (`features.cli.add_flags`), so a default lives here
only. Printed at start and saved as `search.json` (which `python -m tune.results` reads back).
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from features.storage import mask_url
from tune import space as space_mod
from tune.config import help_field as _h
from tune.keys import DEFAULT_GPU_HOUR_COST

OPTUNA_ENV = "OPTUNA_STORAGE"   # the Optuna database URL from the environment (keeps a password off the CLI)


@dataclass
class SearchConfig:
    """Everything `python -m tune.search` needs; printed at start and saved as `search.json`."""

    data: str = _h("", "Kaggle-layout data folder (\"\" = the hard synthetic twin in ./data/synth-hard, "
                       "created once)")
    cache: str = _h("", "feature cache folder (\"\" = <data>/cache for synthetic data, "
                        "./data/cache/<data name> otherwise)")
    name: str = _h("", "experiment name (\"\" = search-<UTC time>); reuse with --resume")
    storage: str = _h("experiments", "results root: a local folder or s3://bucket/path, gs://... (needed for "
                                     "multi-node)")
    resume: bool = _h(False, "continue <storage>/<name> after a crash or kill (finished trials are not run "
                             "again)")
    num_samples: int = _h(8, "trials, V6 included (smoke test: 2)")
    max_concurrent: int = _h(2, "trials running at once (ConcurrencyLimiter around TPE)")
    workers_per_trial: int = _h(1, "Ray Train workers (DDP) per trial")
    cpus_per_worker: float = _h(1.0, "CPUs reserved by each Train worker")
    gpus_per_trial: float = _h(0.0, "GPUs per trial (0.25 = four trials share a GPU); split across its "
                                    "workers")
    epochs: int = _h(6, "epochs per trial (ASHA max_t = epochs + 1: the driver's final report; smoke "
                        "test: 2)")
    grace_period: int = _h(0, "ASHA: epochs every trial gets before it can be stopped; 0 = auto: the "
                              "longest warm-up the space can draw + 1 (at least 2), so no rung compares "
                              "trials mid-warm-up; no early stopping when that reaches --epochs")
    reduction_factor: int = _h(2, "ASHA: keep the top 1/reduction_factor at each rung")
    time_budget: float = _h(0.0, "seconds for the whole search (0 = no limit)")
    seed: int = _h(0, "TPE sampler seed")
    gpu_hour_cost: float = _h(DEFAULT_GPU_HOUR_COST, "USD per GPU-hour for the cost column (the seed's Modal "
                                                     "H100: $8.40 for 1.4 h)")
    optuna_storage: str = _h("", "Optuna database URL (\"\" = $OPTUNA_STORAGE, else sqlite:///<experiment>/"
                                 "optuna.db, uploaded to a remote --storage after every trial); the password "
                                 "is better given by $OPTUNA_STORAGE or $PGPASSWORD: URLs are printed masked")
    warm_start: str = _h("", "previous experiment folder or Optuna URL: seed TPE with its trials "
                             "(early-stopped ones as pruned)")
    address: str = _h("", "Ray cluster address (\"\" = $RAY_ADDRESS, else a private local Ray)")
    max_failures: int = _h(2, "Tune retries per trial (the Train run resumes from its checkpoint)")
    train_max_failures: int = _h(1, "Ray Train restarts of the worker group inside one trial")
    smoke_test: bool = _h(False, "tiny synthetic data, 2 trials x 2 epochs (~1 min)")
    strict_data: bool = _h(False, "stop the cache build (exit 2, one line) at the first bad video instead of "
                                  "skipping it (a skipped video is listed in the cache's meta.json)")
    fold_labs: str = _h("test", "labs the cache's validation folds are dealt over: 'test' (the hidden test's "
                                "15 labs + test.csv's; other labs always train) or 'all' (features.build "
                                "--fold-labs)")
    cv_folds: int = _h(1, "validation folds per trial (data.cv_folds): K > 1 trains K models in lockstep, "
                          "one per fold, and the objective is their mean val/score")
    space: str = _h("cpu", "search space: 'cpu' small models (the default without GPUs) or 'full' (the "
                           "default with --gpus-per-trial > 0)")
    overrides: dict = field(default_factory=dict, metadata={
        "help": "--set key=value on the base TrainConfig (pinned for every trial, removed from the space)"})
    config_file: str = _h("", "base TrainConfig file (YAML or JSON)")

    def __post_init__(self):
        checks = [
            (self.num_samples >= 1, "--num-samples must be >= 1"),
            (self.max_concurrent >= 1, "--max-concurrent must be >= 1"),
            (self.workers_per_trial >= 1, "--workers-per-trial must be >= 1"),
            (self.gpus_per_trial >= 0 and self.cpus_per_worker > 0, "GPU/CPU counts must be >= 0"),
            (self.epochs >= 1 and self.grace_period >= 0, "--epochs must be >= 1, --grace-period >= 0"),
            (self.reduction_factor >= 2, "reduction factor must be >= 2"),
            (self.time_budget >= 0 and self.gpu_hour_cost >= 0, "--time-budget/--gpu-hour-cost must be >= 0"),
            (self.space in ("cpu", "full"), f"--space {self.space!r}: 'cpu' or 'full'"),
            (self.fold_labs in ("test", "all"), f"--fold-labs {self.fold_labs!r}: 'test' or 'all'"),
            (self.cv_folds >= 1, "--cv-folds must be >= 1"),
            (bool(self.search_space()), f"--set pins every key of the {self.space!r} search space: nothing "
                                        "left to search (train one configuration with python -m tune.train)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    # derived numbers live here, not in the loop
    def max_t(self) -> int:
        return self.epochs + 1

    def max_warmup(self) -> float:
        """The longest warm-up (epochs) a trial can get: the space's upper bound when the warm-up is searched,
        else the fixed value (--set, else --config, else TrainConfig's default)."""
        spec = self.search_space().get(space_mod.WARMUP)
        if spec is not None:
            return float(max(spec[1]) if spec[0] == "choice" else spec[2])
        from tune.config import load_config

        return float(load_config(self.config_file or None, self.overrides).optim.warmup_epochs)

    def grace(self) -> int:
        """ASHA's grace period in Tune iterations (one per epoch; the driver's final report is iteration
        max_t). An explicit --grace-period is used as given (at most max_t). Auto (0): every trial has
        finished its warm-up and trained one epoch at full rate before the first rung, else rungs compare
        trials mid-warm-up and favour short warm-ups: ceil(longest warm-up) + 1, at least 2. A first rung at
        or after the last epoch could save no training (only the final report is left) and would only mark
        fully trained trials as stopped, so then the grace period is max_t: no early stopping."""
        if self.grace_period:
            return min(self.grace_period, self.max_t())
        grace = max(2, math.ceil(self.max_warmup()) + 1)
        return grace if grace < self.epochs else self.max_t()

    def search_space(self) -> dict:
        base = space_mod.SPACE if self.space == "full" else space_mod.CPU_SPACE
        return space_mod.restrict(base, self.overrides)

    def tpe_startup_trials(self) -> int:
        """Random trials before TPE models the results: a third of the trials, between 4 and 10. With 2
        random trials TPE's "good" group is one trial and it stays near it: bench/search_bench.py, 8 trials x
        6 epochs under ASHA, 3 seeds, mean best 0.373 with 2 startup trials, 0.498 with 4 (random search:
        0.390)."""
        return max(4, min(10, self.num_samples // 3))

    def v6_point(self) -> dict:
        return {k: v for k, v in space_mod.V6_POINT.items() if k in self.search_space()}

    def is_remote_storage(self) -> bool:
        return "://" in self.storage

    def storage_path(self) -> str:
        return self.storage if self.is_remote_storage() else str(Path(self.storage).resolve())

    def experiment_path(self) -> str:
        return f"{self.storage_path().rstrip('/')}/{self.name}"

    def local_dir(self) -> Path:
        """Where results.csv, plots and the default optuna.db go (the experiment itself when it is local)."""
        if self.is_remote_storage():
            return Path("experiments").resolve() / self.name
        return Path(self.experiment_path())

    def scratch_dir(self) -> str:
        """Each Train run's own folder (summary.csv, last/, best/) lives under here; the kept checkpoints are
        in the experiment storage. Local storage: inside the experiment; remote: node-local /tmp."""
        if self.is_remote_storage():
            return str(Path(tempfile.gettempdir()) / "mabe-tune" / self.name)
        return str(self.local_dir() / "runs")

    def optuna_url_given(self) -> str:
        """--optuna-storage, else $OPTUNA_STORAGE, else "" (the study is the experiment's optuna.db)."""
        return self.optuna_storage or os.environ.get(OPTUNA_ENV, "")

    def optuna_url(self) -> str:
        return self.optuna_url_given() or f"sqlite:///{self.local_dir() / 'optuna.db'}"

    def public(self) -> dict:
        """The fields as a dict for prints and search.json: database URLs with their password masked."""
        d = asdict(self)
        d["optuna_storage"] = mask_url(self.optuna_storage)
        d["warm_start"] = mask_url(self.warm_start)
        return d

    def gpus_per_worker(self) -> float:
        return self.gpus_per_trial / self.workers_per_trial
