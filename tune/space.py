"""The search space as plain data, converted to Optuna distributions in one place.

A space is a flat dict `{dotted TrainConfig key: spec}` where a spec is one of

    ("loguniform", low, high)     float, sampled on a log scale
    ("uniform", low, high)        float
    ("int", low, high)            integer, both ends included
    ("choice", [v1, v2, ...])     categorical (numbers or strings)

The keys are the same dotted paths that `python -m tune.train --set key=value` accepts, so a sampled point is
applied to a `TrainConfig` exactly like command-line overrides. Models and the training loop never see
Optuna or Tune: `tune.search` turns a space into distributions with `to_optuna` and hands the searcher's
point to `tune.config` as overrides.

`V6_POINT` is the seed's best configuration (docs/history.md, V6: batch 384, LR 4e-4, 3 warm-up epochs,
class weights [1, 5, 8, 8] = background 1, actions min(8, sqrt(f_bg / f_action)); frame-proportional
sampling, no EMA, no augmentation). Every search evaluates it first (restricted to the keys its space
searches), so its table shows how far the search beat the known baseline.

Inspect:  python -m tune.space            (prints both spaces and the V6 point)
"""
from __future__ import annotations

import math
from typing import Any

# Where each searched number lives in TrainConfig (one place to rename if the config moves).
LR = "optim.lr"
WARMUP = "optim.warmup_epochs"
BG_WEIGHT = "optim.bg_weight"          # loss weight of the background class (actions: see FREQ_POWER)
FREQ_POWER = "optim.class_weight_power"  # action weight = min(cap, (f_background / f_action) ** power)
MODEL = "model.name"
HIDDEN = "model.hidden"
DROPOUT = "model.dropout"
WINDOW = "data.window"
BATCH = "optim.batch_size"
LAB_ALPHA = "data.lab_alpha"             # p(lab) ~ frames(lab) ** alpha (1 = frame-proportional, V6)
EMA_DECAY = "optim.ema_decay"            # EMA of the weights for validation and model.pt (0 = off, V6)
AUG_FLIP = "optim.aug_flip"              # probability of a window's left/right mirror (0 = off, V6)
AUG_JITTER = "optim.aug_jitter"          # probability of Gaussian feature jitter (0 = off, V6)
ACTIONS_IN = "model.condition_actions"   # the pair's candidate actions as a model input (off, V6)
LAB_EMB = "model.lab_embedding"          # size of a learned lab embedding input (0 = off, V6)
# The lab-aware knobs (issue 15) are searched on the cluster only: in the embedded CPU default they would
# change its sampled points (and its results) and add per-step work. The feature set is not searched: a
# search trains every trial on one cache (`data.cache`), and the trainer refuses features the cache lacks.
LAB_AWARE = (LAB_ALPHA, EMA_DECAY, AUG_FLIP, AUG_JITTER, ACTIONS_IN, LAB_EMB)

# The full space: what a GPU cluster search explores.
SPACE: dict[str, tuple] = {
    LR: ("loguniform", 1e-4, 3e-3),
    WARMUP: ("int", 0, 5),
    BG_WEIGHT: ("loguniform", 0.1, 2.0),
    FREQ_POWER: ("uniform", 0.0, 1.0),
    MODEL: ("choice", ["conv_bilstm", "tcn", "hybrid"]),
    HIDDEN: ("choice", [64, 128, 256]),
    DROPOUT: ("uniform", 0.0, 0.5),
    WINDOW: ("choice", [128, 256, 512]),
    BATCH: ("choice", [64, 128, 256, 384]),
    LAB_ALPHA: ("uniform", 0.0, 1.0),
    EMA_DECAY: ("choice", [0.0, 0.99, 0.999]),
    AUG_FLIP: ("uniform", 0.0, 0.5),
    AUG_JITTER: ("uniform", 0.0, 0.5),
    ACTIONS_IN: ("choice", [False, True]),
    LAB_EMB: ("choice", [0, 8, 16]),
}

# The embedded CPU default (2 cores, ~7 minutes): same knobs, smaller models and windows.
CPU_SPACE: dict[str, tuple] = {
    **{k: v for k, v in SPACE.items() if k not in LAB_AWARE},
    HIDDEN: ("choice", [16, 32, 64]),
    WINDOW: ("choice", [64, 128, 256]),
    BATCH: ("choice", [16, 32, 64, 384]),
}

# The seed's V6 configuration (docs/history.md, V6), expressed in this space's numbers.
# Class weights [1, 5, 8, 8]: background 1, actions min(8, sqrt(f_bg / f_action)) (tune/config.py docstring:
# ~5 for an action covering 4 % of frames, the cap 8 for rarer ones). These are TrainConfig's defaults.
V6_POINT: dict[str, Any] = {
    LR: 4e-4,
    WARMUP: 3,
    BG_WEIGHT: 1.0,
    FREQ_POWER: 0.5,
    MODEL: "conv_bilstm",
    HIDDEN: 64,
    DROPOUT: 0.1,
    WINDOW: 256,
    BATCH: 384,
    LAB_ALPHA: 1.0,  # frame-proportional sampling, no EMA, no augmentation: the recipe as V6 ran it
    EMA_DECAY: 0.0,
    AUG_FLIP: 0.0,
    AUG_JITTER: 0.0,
    ACTIONS_IN: False,
    LAB_EMB: 0,
}

KINDS = ("loguniform", "uniform", "int", "choice")


def validate_space(space: dict[str, tuple]) -> None:
    """Raise ValueError naming the key if a spec is malformed (bad kind, empty choice, low >= high...)."""
    if not space:
        raise ValueError("search space is empty")
    for key, spec in space.items():
        if not isinstance(spec, (tuple, list)) or not spec or spec[0] not in KINDS:
            raise ValueError(f"space[{key!r}]: expected (kind, ...) with kind in {KINDS}, got {spec!r}")
        kind = spec[0]
        if kind == "choice":
            if len(spec) != 2 or not isinstance(spec[1], (list, tuple)) or len(spec[1]) == 0:
                raise ValueError(f"space[{key!r}]: choice needs a non-empty list, got {spec!r}")
            if len(set(map(repr, spec[1]))) != len(spec[1]):
                raise ValueError(f"space[{key!r}]: duplicate choices in {spec[1]!r}")
            continue
        if len(spec) != 3:
            raise ValueError(f"space[{key!r}]: {kind} needs (kind, low, high), got {spec!r}")
        low, high = spec[1], spec[2]
        if not low < high:
            raise ValueError(f"space[{key!r}]: low {low} must be < high {high}")
        if kind == "loguniform" and low <= 0:
            raise ValueError(f"space[{key!r}]: loguniform needs low > 0, got {low}")
        if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
            raise ValueError(f"space[{key!r}]: int bounds must be integers, got {low}, {high}")


def contains(space: dict[str, tuple], point: dict[str, Any]) -> list[str]:
    """Problems with `point` in `space` (missing/extra keys, out-of-range values); empty list = inside."""
    problems = [f"missing {k}" for k in space if k not in point]
    problems += [f"unknown {k}" for k in point if k not in space]
    for key, spec in space.items():
        if key not in point:
            continue
        v = point[key]
        if spec[0] == "choice":
            if v not in spec[1]:
                problems.append(f"{key}={v!r} not in {spec[1]!r}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            problems.append(f"{key}={v!r} is not a number")
        elif not spec[1] <= v <= spec[2]:
            problems.append(f"{key}={v!r} outside [{spec[1]}, {spec[2]}]")
        elif spec[0] == "int" and not float(v).is_integer():
            problems.append(f"{key}={v!r} is not an integer")
    return problems


def to_optuna(space: dict[str, tuple]) -> dict:
    """The one conversion to search-library objects: `{key: optuna.distributions.*Distribution}`."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    validate_space(space)
    out = {}
    for key, spec in space.items():
        kind = spec[0]
        if kind == "loguniform":
            out[key] = FloatDistribution(float(spec[1]), float(spec[2]), log=True)
        elif kind == "uniform":
            out[key] = FloatDistribution(float(spec[1]), float(spec[2]))
        elif kind == "int":
            out[key] = IntDistribution(int(spec[1]), int(spec[2]))
        else:
            out[key] = CategoricalDistribution(list(spec[1]))
    return out


def restrict(space: dict[str, tuple], fixed: dict[str, Any]) -> dict[str, tuple]:
    """`space` without the keys in `fixed` (values pinned by the user with `--set` are not searched)."""
    return {k: v for k, v in space.items() if k not in fixed}


def describe(space: dict[str, tuple]) -> str:
    """One line per key, for the start-of-run printout."""
    width = max(map(len, space))
    lines = []
    for key, spec in space.items():
        rng = f"{spec[1]!r}" if spec[0] == "choice" else f"[{spec[1]:g}, {spec[2]:g}]"
        lines.append(f"  {key:<{width}}  {spec[0]:<10} {rng}")
    return "\n".join(lines)


def main() -> None:
    for name, space in (("SPACE (cluster)", SPACE), ("CPU_SPACE (embedded default)", CPU_SPACE)):
        validate_space(space)
        print(f"{name}:\n{describe(space)}")
    print("V6_POINT:", V6_POINT)
    print("next: python -m tune.search --smoke-test")


if __name__ == "__main__":
    main()
