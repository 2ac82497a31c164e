"""The search space is plain data; one function turns it into Optuna distributions."""
from __future__ import annotations

import math

import pytest

from tune import config
from tune import space as sp


def test_builtin_spaces_are_valid_and_contain_v6():
    assert set(sp.V6_POINT) == set(sp.SPACE)
    for s in (sp.SPACE, sp.CPU_SPACE):
        sp.validate_space(s)
        assert sp.contains(s, {k: v for k, v in sp.V6_POINT.items() if k in s}) == []
    # the lab-aware knobs: searched on the cluster, off (V6) in trial 1, not in the CPU default
    assert not set(sp.LAB_AWARE) & set(sp.CPU_SPACE) and set(sp.LAB_AWARE) <= set(sp.SPACE)
    assert [sp.V6_POINT[k] for k in sp.LAB_AWARE] == [1.0, 0.0, 0.0, 0.0, False, 0]
    assert config.TrainConfig().replace(**{k: sp.V6_POINT[k] for k in sp.LAB_AWARE}) == config.TrainConfig()
    # the knobs are all searched
    for key in (sp.LR, sp.WARMUP, sp.BG_WEIGHT, sp.FREQ_POWER, sp.MODEL, sp.HIDDEN, sp.DROPOUT, sp.WINDOW,
                sp.BATCH):
        assert key in sp.SPACE
    # V6 numbers from the seed history: batch 384, LR 4e-4, 3 warm-up epochs
    assert (sp.V6_POINT[sp.BATCH], sp.V6_POINT[sp.LR], sp.V6_POINT[sp.WARMUP]) == (384, 4e-4, 3)


def test_to_optuna_kinds_and_bounds():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    d = sp.to_optuna({"a": ("loguniform", 1e-4, 1e-2), "b": ("uniform", 0, 1), "c": ("int", 0, 5),
                      "d": ("choice", ["x", "y"])})
    assert isinstance(d["a"], FloatDistribution) and d["a"].log and (d["a"].low, d["a"].high) == (1e-4, 1e-2)
    assert isinstance(d["b"], FloatDistribution) and not d["b"].log
    assert isinstance(d["c"], IntDistribution) and (d["c"].low, d["c"].high) == (0, 5)
    assert isinstance(d["d"], CategoricalDistribution) and d["d"].choices == ("x", "y")
    # the V6 point is a legal Optuna point of the converted full space
    dists = sp.to_optuna(sp.SPACE)
    for key, value in sp.V6_POINT.items():
        assert dists[key]._contains(dists[key].to_internal_repr(value))


@pytest.mark.parametrize("bad", [
    {"a": ("normal", 0, 1)},
    {"a": ("uniform", 1, 1)},
    {"a": ("loguniform", 0, 1)},
    {"a": ("int", 0.5, 3)},
    {"a": ("choice", [])},
    {"a": ("choice", [1, 1])},
    {"a": ("uniform", 0)},
    {},
])
def test_validate_rejects(bad):
    with pytest.raises(ValueError):
        sp.validate_space(bad)


def test_contains_reports_each_problem():
    space = {"lr": ("loguniform", 1e-4, 1e-2), "n": ("int", 1, 3), "m": ("choice", ["a", "b"])}
    assert sp.contains(space, {"lr": 1e-3, "n": 2, "m": "a"}) == []
    problems = sp.contains(space, {"lr": 1.0, "n": 2.5, "z": 1})
    assert problems == ["missing m", "unknown z", "lr=1.0 outside [0.0001, 0.01]", "n=2.5 is not an integer"]
    assert sp.contains(space, {"lr": math.nan, "n": 1, "m": "c"}) == ["lr=nan is not a number",
                                                                     "m='c' not in ['a', 'b']"]


def test_restrict_and_describe():
    s = sp.restrict(sp.SPACE, {sp.MODEL: "tcn"})
    assert sp.MODEL not in s and len(s) == len(sp.SPACE) - 1
    text = sp.describe({"optim.lr": ("loguniform", 1e-4, 3e-3)})
    assert text == "  optim.lr  loguniform [0.0001, 0.003]"


def test_space_keys_are_trainconfig_overrides_and_v6_is_the_default():
    cfg = config.TrainConfig()
    d = cfg.to_dict()
    for key, value in sp.V6_POINT.items():
        section, name = key.split(".")
        assert d[section][name] == value, key   # V6 = TrainConfig's defaults (the V6 recipe)
    # a sampled point applies as --set overrides
    out = cfg.replace(**{sp.LR: 1e-3, sp.MODEL: "tcn", sp.BATCH: 64})
    assert (out.optim.lr, out.model.name, out.optim.batch_size) == (1e-3, "tcn", 64)
