"""The lab-aware training options wired into the trainer: lab-balanced sampling, per-lab class weights,
feature-space augmentation, a model conditioned on the candidate actions and the weights' EMA (model.pt =
EMA weights, the resume state keeps the raw ones, and a resumed run equals an uninterrupted one)."""
from __future__ import annotations

import pytest
import torch

from helpers import small_cfg, write_cache
from models.checkpoint import load_state
from tune.trainer import train

LAB_AWARE = {"data.lab_alpha": 0.0, "optim.per_lab_class_weights": True, "optim.ema_decay": 0.9,
             "optim.aug_jitter": 0.5, "optim.aug_stretch": 0.5, "model.condition_actions": True}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return write_cache(tmp_path_factory.mktemp("labcache") / "c", n_videos=6, T=300)


def test_lab_aware_run_resumes_exactly_and_saves_ema_weights(cache_dir, tmp_path):
    straight = small_cfg(cache_dir, tmp_path / "a", **{"optim.epochs": 4, "run.checkpoint_every": 1,
                                                       **LAB_AWARE})
    assert train(straight)["epochs_run"] == 4
    # the same run killed after its first checkpoint (the trainer's test hook), then resumed
    interrupted = straight.replace(**{"run.out_dir": str(tmp_path / "b"),
                                      "run.fail_once_marker": str(tmp_path / "failed-once")})
    with pytest.raises(RuntimeError, match="simulated"):
        train(interrupted)
    assert train(interrupted)["start_epoch"] == 1
    for d in ("a", "b"):
        last = tmp_path / d / "last"
        ema = torch.load(last / "model.pt", weights_only=True)
        raw = load_state(last)["raw_model"]
        assert load_state(last)["ema"]["updates"] > 0
        assert any(not torch.equal(ema[k], raw[k]) for k in ema)  # model.pt: EMA, not raw
    a = torch.load(tmp_path / "a" / "last" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last" / "model.pt", weights_only=True)
    ra, rb = (load_state(tmp_path / d / "last")["raw_model"] for d in ("a", "b"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ra[k], rb[k], rtol=1e-5, atol=1e-6)


def test_mirror_and_part_dropout_need_named_pair_features(cache_dir, tmp_path, synth_small):
    # this cache's columns are f0..f7: no mirror can be derived from them, and the run says so at start
    with pytest.raises(ValueError, match="pair"):
        train(small_cfg(cache_dir, tmp_path / "x", **{"optim.aug_flip": 0.5}))
    # on a real pair cache both run
    cfg = small_cfg(synth_small.cache, tmp_path / "y", **{"optim.epochs": 1, "optim.aug_flip": 0.5,
                                                          "optim.aug_part_dropout": 0.5})
    assert train(cfg)["epochs_run"] == 1
