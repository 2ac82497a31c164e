"""The lab-aware training options wired into the trainer: lab-balanced sampling, per-lab class weights,
feature-space augmentation, a model conditioned on the candidate actions and its lab (embedding, per-lab
logit bias and input FiLM), and the weights' EMA (model.pt = EMA weights, the resume state keeps the raw ones;
a resumed run equals an uninterrupted one)."""
from __future__ import annotations

import json

import pytest
import torch

from helpers import LABS, small_cfg, write_cache
from models.checkpoint import load_state
from tune.config import apply_overrides
from tune.trainer import param_groups, train

LAB_AWARE = {"data.lab_alpha": 0.0, "optim.per_lab_class_weights": True, "optim.ema_decay": 0.9,
             "optim.aug_jitter": 0.5, "optim.aug_stretch": 0.5, "model.condition_actions": True,
             "model.lab_embedding": 4, "model.lab_bias": True, "model.lab_film": True,
             "optim.lab_lr_mult": 10.0}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return write_cache(tmp_path_factory.mktemp("labcache") / "c", n_videos=6, T=300)


@pytest.mark.parametrize("cv_folds", [1, 2])
def test_lab_aware_run_resumes_exactly_and_saves_ema_weights(cache_dir, tmp_path, cv_folds):
    straight = small_cfg(cache_dir, tmp_path / "a", **{"optim.epochs": 3, "run.checkpoint_every": 1,
                                                       "data.cv_folds": cv_folds, **LAB_AWARE})
    assert train(straight)["epochs_run"] == 3
    # the same run killed after its first checkpoint (the trainer's test hook), then resumed
    interrupted = straight.replace(**{"run.out_dir": str(tmp_path / "b"),
                                      "run.fail_once_marker": str(tmp_path / "failed-once")})
    with pytest.raises(RuntimeError, match="simulated"):
        train(interrupted)
    assert train(interrupted)["start_epoch"] == 1
    subs = [""] if cv_folds == 1 else [f"fold{k}" for k in range(cv_folds)]  # one checkpoint per fold model
    for sub in subs:
        a, b = (tmp_path / d / "last" / sub for d in ("a", "b"))
        ema_a, ema_b = (torch.load(d / "model.pt", weights_only=True) for d in (a, b))
        raw_a, raw_b = (load_state(d)["raw_model"] for d in (a, b))
        assert load_state(a)["ema"]["updates"] == load_state(b)["ema"]["updates"] > 0
        assert json.loads((a / "config.json").read_text())["model"]["labs"] == sorted(LABS)  # embedding rows
        assert any(not torch.equal(ema_a[k], raw_a[k]) for k in ema_a)  # model.pt: EMA, not raw
        assert ema_a["lab_bias"].shape == (len(LABS) + 1, 38) and ema_a["lab_bias"].abs().sum() > 0  # learned
        assert ema_a["lab_film"].shape[0] == len(LABS) + 1 and ema_a["lab_film"].abs().sum() > 0
        for k in ema_a:
            torch.testing.assert_close(ema_a[k], ema_b[k], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(raw_a[k], raw_b[k], rtol=1e-5, atol=1e-6)


def test_mirror_and_part_dropout_need_named_pair_features(cache_dir, tmp_path, synth_small):
    # this cache's columns are f0..f7: no mirror can be derived from them, and the run says so at start
    with pytest.raises(ValueError, match="pair"):
        train(small_cfg(cache_dir, tmp_path / "x", **{"optim.aug_flip": 0.5}))
    # on a real pair cache both run
    cfg = small_cfg(synth_small.cache, tmp_path / "y", **{"optim.epochs": 1, "optim.aug_flip": 0.5,
                                                          "optim.aug_part_dropout": 0.5})
    assert train(cfg)["epochs_run"] == 1


def test_lab_lr_mult_puts_the_per_lab_rows_in_their_own_group():
    """optim.lab_lr_mult = 1 (the default): one group, as before; else the lab rows alone at lr x mult."""
    from models import build_model

    cfg = apply_overrides({}, {"model.name": "tcn", "model.lab_embedding": 4, "model.lab_bias": True,
                               "model.lab_film": True, "model.labs": '["LabA"]'})
    model = build_model(cfg.model, in_features=8)
    one = param_groups(model, cfg.optim)
    assert len(one) == 1 and len(one[0]["params"]) == len(list(model.parameters()))
    o = cfg.replace(**{"optim.lab_lr_mult": 30.0}).optim
    rest, lab = param_groups(model, o)
    rows = (model.lab_emb.weight, model.lab_bias, model.lab_film)
    assert {id(p) for p in lab["params"]} == {id(p) for p in rows}
    assert lab["lr"] == o.effective_lr() * 30.0 and "lr" not in rest
    assert len(rest["params"]) + 3 == len(list(model.parameters()))
