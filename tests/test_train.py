"""The trainer end to end on small caches: loss, schedule, windows, checkpoints, resume, learning vs
shuffled labels."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from features.labels import NUM_CLASSES
from models.checkpoint import load_model, load_state, save_checkpoint
from tune.config import TrainConfig, load_train_config
from tune.data import (
    IGNORE,
    class_weights,
    epoch_batches,
    gather,
    gather_loop,
    load_pairs,
    open_cache,
    sample_windows,
    select_rows,
)
from tune.train import hard_targets, lr_lambda, masked_loss, train

from helpers import small_cfg, write_cache

@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return write_cache(tmp_path_factory.mktemp("cache") / "c")


# ------------------------------------------------------------------------------------------------ loss
def test_loss_masks_non_allowed_classes_and_ignored_frames():
    allowed = torch.zeros(1, NUM_CLASSES, dtype=torch.bool)
    allowed[0, [0, 5]] = True
    logits = torch.zeros(1, 3, NUM_CLASSES)
    logits[0, :, 9] = 50.0  # a huge logit on a non-allowed class must not matter
    target = torch.tensor([[0, 5, IGNORE]])
    w = torch.ones(NUM_CLASSES)
    # allowed = {0, 5}, equal logits -> p = 1/2 each: loss = ln 2 on both real frames
    assert masked_loss(logits, target, allowed, w).item() == pytest.approx(math.log(2), abs=1e-6)
    # class weight 3 on class 5: weighted mean of two equal losses is still ln 2
    w[5] = 3.0
    assert masked_loss(logits, target, allowed, w).item() == pytest.approx(math.log(2), abs=1e-6)


def test_label_smoothing_spreads_over_allowed_only():
    allowed = torch.zeros(1, NUM_CLASSES, dtype=torch.bool)
    allowed[0, [0, 3, 7, 8]] = True
    q, w = hard_targets(torch.tensor([[3, IGNORE]]), allowed, torch.ones(NUM_CLASSES), 0.2)
    # 0.8 on the label + 0.2 / 4 allowed classes each: 0.85 on class 3, 0.05 on 0, 7, 8, 0 elsewhere
    assert q[0, 0, 3].item() == pytest.approx(0.85)
    assert q[0, 0, [0, 7, 8]].tolist() == pytest.approx([0.05] * 3)
    assert q[0, 0].sum().item() == pytest.approx(1.0) and q[0, 0, 1].item() == 0.0
    assert w.tolist() == [[1.0, 0.0]]


def test_class_weights_v6_equivalent():
    # background 90 %, an action at 3.6 % (sqrt(25) = 5), one at 0.9 % (sqrt(100) = 10 -> cap 8), one unseen
    freq = np.zeros(NUM_CLASSES)
    freq[[0, 1, 2]] = [0.9, 0.036, 0.009]
    freq[3] = 1 - freq.sum()  # 0.055
    w = class_weights(freq, bg_weight=1.0, power=0.5, cap=8.0, n_frames=100_000)
    assert w[0] == 1.0 and w[1] == pytest.approx(5.0) and w[2] == 8.0 and w[4] == 8.0
    assert (class_weights(freq, 0.5, 0.0, 8.0, 100_000)[1:] == 1.0).all()  # power 0: all actions weigh 1


def test_warmup_then_cosine():
    f = lr_lambda(total_steps=110, warmup_steps=10, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1)


# ------------------------------------------------------------------------------------------------ data
def test_windows_and_sharding(cache_dir):
    cache = open_cache(cache_dir)
    train_rows, val_rows = select_rows(cache, 0, [])
    assert set(val_rows["fold"]) == {0} and 0 not in set(train_rows["fold"])
    tab = load_pairs(cache, train_rows)
    assert tab.n_frames == 16 * 400 and tab.x.shape[1] == 8
    # a window past the end of a pair is padded: mask is a prefix, padding has IGNORE labels and zeros
    x, y, mask, allowed = gather(tab, np.array([3]), np.array([380]), 64)
    assert mask[0, :20].all() and not mask[0, 20:].any()
    assert (y[0, 20:] == IGNORE).all() and (x[0, 20:] == 0).all()
    np.testing.assert_array_equal(x[0, :20], tab.pair_x(3)[380:400])
    assert allowed[0, 0] and allowed.shape == (1, NUM_CLASSES)
    # the vectorised gather equals the one-window-at-a-time reference, padding included
    pair, start = sample_windows(tab, 50, 300, 0.5, np.random.default_rng(1))
    start[:3] = [390, 100, 0]
    for a, b in zip(gather(tab, pair, start, 300), gather_loop(tab, pair, start, 300)):
        np.testing.assert_array_equal(a, b)
    # behaviour bias 1: every window contains a behaviour frame
    pair, start = sample_windows(tab, 200, 64, 1.0, np.random.default_rng(0))
    _, y, _, _ = gather(tab, pair, start, 64)
    assert (y > 0).any(axis=1).all()
    # two ranks split the same global batches without overlap
    full = epoch_batches(tab, 64, 64, 16, 0.5, seed=1, epoch=3)
    r0 = epoch_batches(tab, 64, 64, 16, 0.5, seed=1, epoch=3, rank=0, world=2)
    r1 = epoch_batches(tab, 64, 64, 16, 0.5, seed=1, epoch=3, rank=1, world=2)
    assert len(r0) == len(r1) == len(full) == 4 and len(r0[0][0]) == 8
    all_pairs = np.concatenate([b[0] for b in full])
    np.testing.assert_array_equal(np.concatenate([b[0] for b in r0]), all_pairs[0::2])
    np.testing.assert_array_equal(np.concatenate([b[0] for b in r1]), all_pairs[1::2])


def test_shuffled_labels_keep_statistics(cache_dir):
    cache = open_cache(cache_dir)
    rows, _ = select_rows(cache, 0, [])
    a, b = load_pairs(cache, rows), load_pairs(cache, rows, shuffle_labels=True)
    np.testing.assert_array_equal(np.bincount(a.y[a.y >= 0]), np.bincount(b.y[b.y >= 0]))
    assert (a.y != b.y).mean() > 0.2


# ------------------------------------------------------------------------------------------------ checkpoints
def test_checkpoint_is_atomic_and_recovers(tmp_path):
    from models import build_model

    cfg = TrainConfig().replace(**{"model.hidden": 8})
    m = build_model(cfg.model, 4)
    d = tmp_path / "last"
    save_checkpoint(d, m, cfg, {"epoch": 1}, {"epoch": 1})
    # simulate a kill between the two renames: the folder moved to .old, the new one never arrived
    d.rename(tmp_path / ".last.old-999999-1")
    (tmp_path / ".last.tmp-999999-1").mkdir()
    model, _ = load_model(d)
    cfg2 = load_train_config(d)
    assert cfg2.model.hidden == 8 and load_state(d)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["last"]
    # weights round-trip exactly and load with weights_only
    sd = torch.load(d / "model.pt", weights_only=True)
    for k, v in m.state_dict().items():
        torch.testing.assert_close(sd[k], v)


# ------------------------------------------------------------------------------------------------ training
def test_train_writes_checkpoints_and_resumes(cache_dir, tmp_path):
    reports = []
    cfg = small_cfg(cache_dir, tmp_path / "run", **{"optim.epochs": 2})
    out = train(cfg, report=lambda m, d: reports.append((dict(m), d)))
    run = tmp_path / "run"
    for sub in ("last", "best"):
        assert {"model.pt", "config.json", "metrics.json", "state.pt"} <= {
            p.name for p in (run / sub).iterdir()
        }
    assert [m["epoch"] for m, _ in reports] == [1, 2]
    assert reports[-1][1] == str(run / "last")  # the final epoch always checkpoints
    m = reports[-1][0]
    for key in ("train/loss", "val/loss", "val/score", "val/best_score", "lr", "epoch"):
        assert key in m and np.isfinite(m[key])
    assert any(k.startswith("val/f1_") for k in m)
    assert m["val/best_score"] == max(r["val/score"] for r, _ in reports)
    assert len(pd.read_csv(run / "summary.csv")) == 2
    # the checkpoint rebuilds the model alone, with the cache's feature settings and the class list
    model, _ = load_model(run / "best")
    saved = load_train_config(run / "best")
    assert saved.features == {"feature_set": "pair", "target_fps": 30.0} and len(saved.classes) == 38
    assert model(torch.zeros(1, 10, 8), torch.ones(1, 10, dtype=torch.bool)).shape == (1, 10, 38)
    assert out["epochs_run"] == 2 and out["best_score"] == m["val/best_score"]

    # asking for features the cache was not built with is refused, naming the cache
    from features.errors import MabeDataError

    with pytest.raises(MabeDataError, match="target_fps"):
        train(cfg.replace(**{"features.target_fps": 25}))

    # a second run with more epochs continues at epoch 3
    reports2 = []
    out2 = train(cfg.replace(**{"optim.epochs": 4}), report=lambda m, d: reports2.append(m))
    assert [r["epoch"] for r in reports2] == [3, 4] and out2["start_epoch"] == 2
    assert list(pd.read_csv(run / "summary.csv")["epoch"]) == [1, 2, 3, 4]


def test_resume_equals_uninterrupted(cache_dir, tmp_path):
    """2 epochs + resume for 2 more give the same weights as 4 epochs straight (states fully restored).

    Same total schedule in both: epochs=4 from the start; the first run is stopped after epoch 2 by
    raising from `report`, as a kill would."""
    straight = small_cfg(cache_dir, tmp_path / "a", **{"optim.epochs": 4, "run.checkpoint_every": 1})
    train(straight)

    class Stop(Exception):
        pass

    def stop_after_2(m, d):
        if m["epoch"] == 2:
            raise Stop

    interrupted = straight.replace(**{"run.out_dir": str(tmp_path / "b")})
    with pytest.raises(Stop):
        train(interrupted, report=stop_after_2)
    out = train(interrupted)
    assert out["start_epoch"] == 2
    a = torch.load(tmp_path / "a" / "last" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last" / "model.pt", weights_only=True)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_learns_real_labels_not_shuffled(cache_dir, tmp_path):
    kw = {"optim.epochs": 6, "data.samples_per_epoch": 256, "optim.batch_size": 32, "run.patience": 0}
    real = train(small_cfg(cache_dir, tmp_path / "real", **kw))
    shuf = train(small_cfg(cache_dir, tmp_path / "shuf", **kw, **{"data.shuffle_labels": True}))
    print(f"real {real['best_score']:.3f} shuffled {shuf['best_score']:.3f}")
    assert real["best_score"] > 0.5 and real["best_score"] > shuf["best_score"] + 0.2


def test_smoke_cli_on_synthetic_kaggle_layout(tmp_path, capsys):
    """`python -m tune.train --smoke-test`: synthetic Kaggle layout -> feature cache -> 2 epochs ->
    checkpoints;
    a second invocation with more epochs and resume on continues at epoch 3."""
    from tune.train import main

    args = ["--smoke-test", "--config", str(Path(__file__).parents[1] / "tune/configs/smoke.yaml"),
            "--set", f"data.root={tmp_path / 'data'}", "--set", f"data.cache={tmp_path / 'cache'}",
            "--set", f"run.out_dir={tmp_path / 'run'}", "--set", "run.progress=false"]
    out = main(args)
    assert out["epochs_run"] == 2 and (tmp_path / "data" / "train.csv").is_file()
    last = {p.name for p in (tmp_path / "run/last").iterdir()}
    assert {"model.pt", "config.json", "metrics.json", "state.pt"} <= last
    model, _ = load_model(tmp_path / "run" / "best")
    cfg = load_train_config(tmp_path / "run" / "best")
    assert cfg.features["feature_set"] == "pair" and cfg.model.hidden == 16
    printed = capsys.readouterr().out
    assert "parameters" in printed and "next:" in printed
    out2 = main(args + ["--set", "optim.epochs=3", "--set", "run.resume=true"])
    assert out2["start_epoch"] == 2 and out2["epochs_run"] == 3


def test_bench_flop_count_by_hand():
    from bench.train_bench import model_flops_per_frame
    from models import ModelConfig, build_model

    model = build_model(ModelConfig(name="tcn", hidden=4, tcn_layers=1), in_features=2)
    # input linear 2*2*4 = 16, dilated conv k3 2*4*4*3 = 96, 1x1 conv 2*4*4 = 32, head 2*4*38 = 304
    assert model_flops_per_frame(model, 64) == 16 + 96 + 32 + 304
    lstm = build_model(ModelConfig(name="conv_bilstm", hidden=4, conv_layers=0), in_features=2)
    # BiLSTM 2 dirs * 4 gates * 2 * (2 + 4) * 4 = 384, head 2 * 8 * 38 = 608
    assert model_flops_per_frame(lstm, 64) == 384 + 608


def test_cli_help_lists_fields():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "tune.train", "--help"], capture_output=True, text=True,
                         cwd=Path(__file__).parents[1], check=True).stdout
    assert "optim.class_weight_power" in out and "--smoke-test" in out and "--workers" in out


def test_early_stopping_and_mixup(cache_dir, tmp_path):
    # LR ~0: the score cannot improve after epoch 1, so patience 1 stops after epoch 2 (and checkpoints it)
    cfg = small_cfg(cache_dir, tmp_path / "es", **{"optim.epochs": 6, "optim.lr": 1e-12, "run.patience": 1,
                                                   "optim.mixup_alpha": 0.4})
    seen = []
    out = train(cfg, report=lambda m, d: seen.append((m["epoch"], d)))
    assert out["stopped_early"] and out["epochs_run"] == 2 and out["best_epoch"] == 1
    assert seen == [(1, str(tmp_path / "es" / "last")), (2, str(tmp_path / "es" / "last"))]
    assert np.isfinite(out["metrics"]["train/loss"])
    # a finished (early-stopped) run is not restarted by a resume
    again = train(cfg)
    assert again["stopped_early"] and again["start_epoch"] == 2


def test_two_fold_run_checkpoints_mean_resume_and_ensemble(synth_small, tmp_path):
    """data.cv_folds=2: two fold models in lockstep, each a complete checkpoint in last/ and best/ fold<k>/;
    val/score is the mean of the fold scores; a second run resumes both; ensemble.build uses both."""
    import json

    from ensemble import build as B
    from ensemble.infer import InferSettings

    run = tmp_path / "cv"
    cfg = small_cfg(synth_small.cache, run,
                    **{"optim.epochs": 2, "data.cv_folds": 2, "run.checkpoint_every": 1})
    reports = []
    train(cfg, report=lambda m, d: reports.append((dict(m), d)))
    for sub in ("last", "best"):
        for k in (0, 1):
            d = run / sub / f"fold{k}"
            assert {"model.pt", "config.json", "metrics.json", "state.pt"} <= {p.name for p in d.iterdir()}
            assert load_train_config(d).data.val_fold == k
        assert not (run / sub / "model.pt").exists()  # the trial level is no model
    m, ckpt = reports[-1]
    assert ckpt == str(run / "last")
    scores = [json.loads((run / "last" / f"fold{k}" / "metrics.json").read_text())["val/score"]
              for k in (0, 1)]
    print(f"fold scores {scores}, mean {m['val/score']}")
    assert m["val/score"] == pytest.approx(sum(scores) / 2)
    assert [m["val/score_fold0"], m["val/score_fold1"]] == scores and "val/score_argmax" in m
    assert json.loads((run / "last" / "metrics.json").read_text())["val/score"] == m["val/score"]

    # Ray hands over its copy of the last checkpoint (resume_from): a fresh run folder continues both folds
    import shutil

    shutil.copytree(run / "last", tmp_path / "ray-copy")
    out_ray = train(cfg.replace(**{"optim.epochs": 3, "run.out_dir": str(tmp_path / "cv-ray"),
                                   "run.resume": False}), resume_from=tmp_path / "ray-copy")
    assert out_ray["start_epoch"] == 2 and out_ray["epochs_run"] == 3
    ray_last = tmp_path / "cv-ray" / "last"
    epochs = [json.loads((ray_last / f"fold{k}" / "metrics.json").read_text())["epoch"] for k in (0, 1)]
    assert epochs == [3, 3]

    reports2 = []
    out2 = train(cfg.replace(**{"optim.epochs": 3}), report=lambda m, d: reports2.append(m))
    assert [r["epoch"] for r in reports2] == [3] and out2["start_epoch"] == 2
    assert json.loads((run / "last" / "fold1" / "metrics.json").read_text())["epoch"] == 3

    # the trial's two fold models are one candidate trial: top 1 takes both, each predicting its own fold
    s = B.build([run / "best"], tmp_path / "ens", 1, "best-per-trial",
                settings=InferSettings(window=64, stride=32, trim=8), progress=False, log=lambda *a: None)
    assert sorted(m["val_fold"] for m in s["members"]) == [0, 1]
    assert len({m["name"] for m in s["members"]}) == 2
