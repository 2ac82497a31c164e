"""One inference path: the trainer's validation (`val/score`), the OOF set (ensemble.build) and the test
predictions (ensemble.predict) run the same sliding windows with the same settings, derived from the training
window; the derivation and the window coverage checked by hand on tiny inputs.

Real parts: a model trained by tune.trainer on the session's small synthetic set, ensemble.build on its
checkpoint, ensemble.export's bundle loaded by ensemble.predict.Ensemble from the raw tracking file.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import small_cfg

from ensemble.infer import InferSettings, kept_range, settings_for, sliding_probs, window_starts
from features.labels import NUM_CLASSES


def _triple(s: InferSettings) -> tuple[int, int, int]:
    return s.window, s.stride, s.trim


def test_settings_derived_from_the_training_window_by_hand():
    # window = 2 x training window, trim = window // 8, stride = window - 2 * trim
    assert _triple(InferSettings.for_window(256)) == (512, 384, 64) == _triple(InferSettings())
    assert _triple(InferSettings.for_window(32)) == (64, 48, 8)
    assert _triple(InferSettings.for_config({"data": {"window": 8}})) == (16, 12, 2)
    assert _triple(InferSettings.for_config({})) == (512, 384, 64)  # data.window's default, 256
    # data.infer_window (saved in config.json) overrides the derived window; stride / trim follow it
    assert _triple(InferSettings.for_config({"data": {"window": 64, "infer_window": 40}})) == (40, 30, 5)
    # ensemble.build's overrides: a dict (None = derived) or a whole InferSettings
    cfg = {"data": {"window": 32}}
    assert _triple(settings_for(cfg, None)) == (64, 48, 8)
    derived = settings_for(cfg, {"window": None, "stride": None, "trim": None, "tta": True})
    assert _triple(derived) == (64, 48, 8) and derived.tta is True
    assert _triple(settings_for(cfg, {"window": 100, "trim": 10})) == (100, 80, 10)
    fixed = InferSettings(window=20, stride=10, trim=5)
    assert settings_for(cfg, fixed) is fixed
    with pytest.raises(ValueError, match="never be kept"):
        settings_for(cfg, {"stride": 60})  # 60 > 64 - 2 * 8: a gap between kept parts


class _Position(torch.nn.Module):
    """logit of class 1 = 0.25 x the frame's position inside its window, every other class 0."""

    def forward(self, x, mask):
        B, W, _ = x.shape
        out = torch.zeros(B, W, NUM_CLASSES)
        out[:, :, 1] = 0.25 * torch.arange(W, dtype=torch.float32)
        return out


def test_windows_cover_every_frame_inner_edges_trimmed_by_hand():
    """T = 30 frames, window 16, stride 12, trim 2 (= derive(16)): windows start at 0, 12 and 14 (the last one
    aligned to the end); kept frames [0, 14), [14, 26), [16, 30): the sequence's own ends are kept, inner
    edges lose 2 frames; frames 16..25 are seen by two windows and averaged, every other frame by one."""
    s = InferSettings.derive(16, batch=2)
    assert _triple(s) == (16, 12, 2)
    assert window_starts(30, 16, 12) == [0, 12, 14]
    assert [kept_range(st, 16, 30, 2) for st in (0, 12, 14)] == [(0, 14), (14, 26), (16, 30)]
    assert window_starts(40, 16, 12) == [0, 12, 24]  # here the kept parts tile exactly
    assert [kept_range(st, 16, 40, 2) for st in (0, 12, 24)] == [(0, 14), (14, 26), (26, 40)]

    allowed = np.zeros((1, NUM_CLASSES), bool)
    allowed[0, 1] = True  # background (always allowed) and class 1: p1 = sigmoid(0.25 x position)
    p1 = sliding_probs(_Position(), np.zeros((1, 30, 3), np.float32), allowed, s)[0, :, 1]

    def sig(pos):
        return 1.0 / (1.0 + np.exp(-0.25 * pos))

    expected = np.empty(30)
    expected[0:14] = sig(np.arange(0, 14))  # window 0 only (its positions 14, 15 are trimmed)
    expected[14:16] = sig(np.arange(2, 4))  # window 12 only (positions 0, 1 trimmed)
    expected[16:26] = (sig(np.arange(4, 14)) + sig(np.arange(2, 12))) / 2  # windows 12 and 14, averaged
    expected[26:30] = sig(np.arange(12, 16))  # window 14 only, up to the sequence's end (not trimmed)
    np.testing.assert_allclose(p1, expected, rtol=1e-6)
    assert p1[0] == pytest.approx(0.5) and p1[13] == pytest.approx(sig(13))  # frame 12: window 0, not 12's 0
    # a video shorter than the window: one window, nothing trimmed
    short = sliding_probs(_Position(), np.zeros((1, 10, 3), np.float32), allowed, s)[0, :, 1]
    np.testing.assert_allclose(short, sig(np.arange(10)), rtol=1e-6)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_small):
    """A conv_bilstm trained 1 epoch on windows of 32 frames (-> inference 64/48/8 on 400-frame videos), its
    one-member ensemble (default settings: derived from the checkpoint) and the exported bundle."""
    from ensemble.build import build
    from ensemble.export import export
    from tune.trainer import train

    base = tmp_path_factory.mktemp("infer-path")
    cfg = small_cfg(synth_small.cache, base / "run", **{"optim.epochs": 1, "data.window": 32,
                                                         "model.hidden": 8})
    train(cfg)
    build([base / "run" / "best"], base / "ens", 1, tune_post=False, progress=False, log=lambda *a: None)
    export(base / "ens", base / "bundle", wheel=False, log=lambda *a: None)
    return base, synth_small


def test_val_score_oof_and_predict_give_the_same_probabilities(trained):
    from ensemble.build import argmax_score, oof_items
    from ensemble.infer import oof_probs
    from ensemble.predict import Ensemble
    from features.cache import FeatureCache
    from features.io import read_tracking
    from models.checkpoint import load_metrics, load_model
    from tune.config import load_train_config
    from tune.data import load_pairs, select_rows
    from tune.trainer import evaluate, validation_probs

    base, synth = trained
    best = base / "run" / "best"
    cfg = load_train_config(best)
    settings = InferSettings.for_config(cfg.to_dict())
    assert _triple(settings) == (64, 48, 8)
    info = json.loads((base / "ens" / "ensemble.json").read_text())
    assert info["members"][0]["infer"] == settings.to_dict() == info["infer"]  # recorded for predict

    # 1. the trainer's validation: the checkpoint's val/score is evaluate() on these probabilities
    model, _ = load_model(best)
    cache = FeatureCache(synth.cache)
    _, val_rows = select_rows(cache, cfg.data.val_fold)
    va = load_pairs(cache, val_rows)
    trainer = {}
    for grp, probs in validation_probs(model, va, settings):  # model in eval mode (load_model)
        for k, i in enumerate(grp):
            trainer[(int(va.video_id[i]), int(va.agent[i]), int(va.target[i]))] = probs[k]
    weight = torch.ones(NUM_CLASSES)  # (val/loss only)
    val = evaluate(model, va, weight, "cpu", settings, objective=cfg.run.objective)
    assert val["val/score"] == pytest.approx(load_metrics(best)["val/score"], abs=1e-12)

    # 2. the OOF set of ensemble.build (stored as float16: the same values rounded)
    oof = oof_probs(best, cache)  # default settings: the checkpoint's own
    assert sorted(oof) == sorted({v for v, _, _ in trainer}) and len(oof) >= 1
    for v, probs in oof.items():
        for p, (a, t) in enumerate(cache.pairs(v)):
            np.testing.assert_array_equal(probs[p], trainer[(v, a, t)].astype(np.float16).astype(np.float32))
    # the build's argmax OOF score of this single member is the trainer's val/score_argmax (up to the few
    # near-tie frames whose argmax the float16 storage flips: 0.004127 vs 0.004122 here)
    assert argmax_score(oof_items(cache, oof)) == pytest.approx(load_metrics(best)["val/score_argmax"],
                                                                abs=1e-3)

    # 3. ensemble.predict: features from the raw tracking file, the member's settings from ensemble.json
    ens = Ensemble(base / "bundle")
    meta = pd.read_csv(synth.root / "train.csv").set_index("video_id")
    for v in oof:
        row = meta.loc[v]
        path = synth.root / "train_tracking" / row.lab_id / f"{v}.parquet"
        vf, probs = ens.video_probs(row.to_dict() | {"video_id": v}, read_tracking(path, v))
        assert len(vf.pairs) == len(cache.pairs(v))
        for p, (a, t) in enumerate(vf.pairs):
            np.testing.assert_allclose(probs[p], trainer[(v, a, t)], atol=1e-5)
