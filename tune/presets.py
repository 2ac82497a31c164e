"""The one place for smoke-test sizes and presets (`--smoke-test` of tune.search, tune.train, tune.modal_app).

- `SYNTH_SIZES`: (videos, frames per video) of the synthetic Kaggle twin: "smoke" for every --smoke-test,
  "search" for the embedded default search (`python -m tune.search` without --data).
- `SYNTH_DIFFICULTY`: the twin's `features.synth --difficulty` per preset: the embedded search uses the hard
  twin (lab annotation styles, look-alikes: a score there says something), every --smoke-test the easy one
  (mechanics only, fast, its numbers reproducible).
- `SEARCH_SMOKE`: SearchConfig fields of `python -m tune.search --smoke-test` (explicit flags still win).
- `SEARCH_SMOKE_OVERRIDES`: TrainConfig fields pinned for every trial of a smoke search (not searched).
- `TRAIN_SMOKE`: TrainConfig overrides of `python -m tune.train --smoke-test` (data under data/smoke).
- `modal_smoke_overrides()`: TRAIN_SMOKE without its run.* keys (on Modal the run folder is the Volume's).
"""
from __future__ import annotations

SYNTH_SIZES = {"smoke": (6, 900), "search": (16, 2400)}
SYNTH_DIFFICULTY = {"smoke": "easy", "search": "hard"}

SEARCH_SMOKE = {"num_samples": 2, "max_concurrent": 2, "epochs": 2, "grace_period": 1}
SEARCH_SMOKE_OVERRIDES = {"optim.batch_size": 32, "data.window": 64, "model.hidden": 16}

TRAIN_SMOKE = {"data.root": "data/smoke", "data.cache": "data/smoke/cache", "run.out_dir": "runs/smoke",
               "optim.epochs": "2", "run.resume": "false", "run.threads": "1"}


def modal_smoke_overrides() -> dict:
    """`python -m tune.train --smoke-test`'s overrides without its run.* keys: on Modal the run folder is the
    Volume's and a re-run with the same name resumes."""
    return {k: v for k, v in TRAIN_SMOKE.items() if not k.startswith("run.")}
