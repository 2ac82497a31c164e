"""ensemble.infer and ensemble.build: windows, flip TTA, checkpoint discovery/selection, OOF cache, tuning.

Real parts only: models from the registry (untrained where training is not the point), checkpoint folders
written by models.checkpoint.save_checkpoint, a tiny synthetic Kaggle set and its feature cache.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ensemble import build as B
from ensemble import experiment as E
from ensemble.infer import (
    InferSettings,
    flip_pair_features,
    flip_permutation,
    kept_range,
    oof_probs,
    sliding_probs,
    video_probs,
    window_starts,
)
from features.labels import NUM_CLASSES
from helpers import make_checkpoint, mirror_scene

# ------------------------------------------------------------------------------------------------ windows


def test_window_starts_hand_computed():
    assert window_starts(1000, 512, 256) == [0, 256, 488]  # last window aligned to the end: 488 + 512 = 1000
    assert window_starts(1024, 512, 256) == [0, 256, 512]
    assert window_starts(300, 512, 256) == [0]  # shorter than a window: one short window
    assert window_starts(512, 512, 256) == [0]


def test_kept_ranges_cover_every_frame():
    for T in (1, 100, 511, 512, 513, 1000, 4097):
        for window, stride, trim in ((512, 256, 64), (64, 32, 16), (128, 128, 0)):
            cover = np.zeros(T, int)
            for s in window_starts(T, window, stride):
                a, b = kept_range(s, min(T, window), T, trim)
                cover[a:b] += 1
            assert cover.min() >= 1, (T, window, stride, trim)
    # window [256, 768) of a 1000-frame video drops 64 frames at both inner edges
    assert kept_range(256, 512, 1000, 64) == (320, 704)
    assert kept_range(0, 512, 1000, 64) == (0, 448)  # the video's start is kept
    assert kept_range(488, 512, 1000, 64) == (552, 1000)  # and its end


def test_infer_settings_refuse_uncovered_frames():
    with pytest.raises(ValueError, match="never be kept"):
        InferSettings(window=128, stride=100, trim=32)


def _tcn(F: int, seed: int = 0):
    from models import ModelConfig, build_model

    torch.manual_seed(seed)
    return build_model(ModelConfig(name="tcn", hidden=8, tcn_layers=3, dropout=0.0), F).eval()


def test_sliding_windows_equal_full_sequence_when_context_fits():
    """A TCN with receptive field 15 (7 frames each side) < trim 16: windows give exactly the full-sequence
    softmax; non-whitelisted classes get probability 0 and every frame sums to 1."""
    rng = np.random.default_rng(0)
    P, T, F = 3, 300, 6
    x = rng.normal(size=(P, T, F)).astype(np.float32)
    allowed = np.zeros((P, NUM_CLASSES), bool)
    allowed[:, [0, 3, 7]] = True
    allowed[1, 12] = True
    model = _tcn(F)
    got = sliding_probs(model, x, allowed, InferSettings(window=64, stride=32, trim=16, batch=5))
    with torch.no_grad():
        logits = model(torch.from_numpy(x), torch.ones(P, T, dtype=torch.bool))
        ref = torch.softmax(
            logits.masked_fill(~torch.from_numpy(allowed)[:, None, :], -torch.inf), -1
        ).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert (got[:, :, ~allowed[0]][0] == 0).all() and got[1, :, 12].max() > 0
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)


# ------------------------------------------------------------------------------------------------ flip TTA


@pytest.mark.parametrize("feature_set", ["pair", "pair_rich"])
def test_flip_equals_features_of_the_mirrored_scene(feature_set):
    """features(mirror(scene)) == flip(features(scene)): the TTA (and training augmentation) transform is the
    exact mirror, for every agent-centred set; the flip list is derived from the names alone."""
    from features import motion
    from features.skeleton import CANONICAL

    rng = np.random.default_rng(1)
    T, C = 200, len(CANONICAL)
    t = np.linspace(0, 4 * np.pi, T)[:, None]
    body = rng.normal(scale=2.0, size=(1, C, 2))
    a = body + np.stack([10 * np.cos(t / 3), 5 * np.sin(t / 2)], -1) + rng.normal(scale=0.05, size=(T, C, 2))
    b = (
        body[:, ::-1]
        + np.stack([3 * np.sin(t / 5), 8 * np.cos(t / 4)], -1)
        + rng.normal(scale=0.05, size=(T, C, 2))
    )
    am = rng.random((T, C)) < 0.1
    tm = rng.random((T, C)) < 0.1
    fn = motion.pair_features if feature_set == "pair" else motion.pair_rich_features
    names = motion.pair_feature_names() if feature_set == "pair" else motion.pair_rich_feature_names()
    f = fn(a, b, 30.0, agent_missing=am, target_missing=tm)
    swap = [
        CANONICAL.index(n.replace("_left", "\0").replace("_right", "_left").replace("\0", "_right"))
        for n in CANONICAL
    ]
    g = fn(mirror_scene(a), mirror_scene(b), 30.0, agent_missing=am[:, swap], target_missing=tm[:, swap])
    flipped = flip_pair_features(f, names)
    hd = names.index("heading_diff")
    keep = np.abs(np.abs(f[:, hd]) - 180) > 1e-3  # +180 and -180 are the same angle
    np.testing.assert_allclose(flipped[keep], g[keep], atol=1e-6)
    np.testing.assert_allclose(flip_pair_features(flipped, names), f)  # a mirror twice is the identity


def test_flip_refuses_the_motion_set():
    from features.pipeline import FeatureSettings

    with pytest.raises(ValueError, match="motion"):
        flip_permutation(FeatureSettings(feature_set="motion").feature_names())


def test_video_probs_tta_is_mean_of_plain_and_mirrored():
    from features import motion

    names = motion.pair_feature_names()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 80, len(names))).astype(np.float32)
    allowed = np.ones((2, NUM_CLASSES), bool)
    m = _tcn(len(names))
    s = InferSettings(window=64, stride=16, trim=8)
    plain = sliding_probs(m, x, allowed, s)
    mirrored = sliding_probs(m, flip_pair_features(x, names), allowed, s)
    got = video_probs([m], x, allowed, InferSettings(window=64, stride=16, trim=8, tta=True), names)
    np.testing.assert_allclose(got, (plain + mirrored) / 2, atol=1e-6)


# ------------------------------------------------------------------------------------------------ discovery


@pytest.fixture(scope="module")
def tiny_cache(synth_small):
    """The session's small synthetic set (tests/conftest.py): 4 training videos, 2-fold cache."""
    return synth_small.root, synth_small.cache


def test_discover_ranks_dedupes_and_names_trials(tiny_cache, tmp_path):
    _, cache = tiny_cache
    exp = tmp_path / "exp"
    a1 = make_checkpoint(exp / "train-aaaa1111" / "checkpoint_000001", cache, 0.30, seed=1, epoch=1)
    make_checkpoint(exp / "train-aaaa1111" / "checkpoint_000002", cache, 0.40, seed=2, epoch=2)
    make_checkpoint(exp / "train-bbbb2222" / "checkpoint_000001", cache, 0.35, name="conv_bilstm", seed=3)
    # the local run folder holds a copy of trial a's first checkpoint: counted once, Ray's copy kept
    shutil.copytree(a1, exp / "runs" / "train-aaaa1111" / "best")
    (exp / "train-cccc3333" / "checkpoint_000001.tmp-123").mkdir(parents=True)  # half-written: ignored
    (exp / "results.csv").write_text(
        "trial,trial_id,best_score,status\n1,aaaa1111,0.4,TERMINATED\n2,bbbb2222,0.35,ERROR\n"
    )
    cands = E.discover([exp])
    assert [c.status for c in cands] == ["TERMINATED", "ERROR", "TERMINATED"]  # Ray's results, when present
    assert [(c.trial, c.score) for c in cands] == [
        ("train-aaaa1111", 0.40),
        ("train-bbbb2222", 0.35),
        ("train-aaaa1111", 0.30),
    ]
    assert cands[2].path.name == "checkpoint_000001"
    # a plain run folder of python -m tune.train: the trial is the run's name
    run = tmp_path / "runs" / "v6"
    make_checkpoint(run / "best", cache, 0.2)
    (c,) = E.discover([run / "best"])
    assert c.trial == "v6" and c.score == 0.2


def _cand(trial, score, model="tcn", fold=0):
    return E.Candidate(
        path=Path(f"/x/{trial}/{score}"),
        trial=trial,
        score=score,
        epoch=1,
        model=model,
        val_fold=fold,
        sha256=f"{trial}{score}",
    )


def test_select_strategies():
    cands = [
        _cand("t1", 0.9, "tcn", 0),
        _cand("t1", 0.8, "tcn", 0),
        _cand("t2", 0.7, "tcn", 1),
        _cand("t3", 0.6, "conv_bilstm", 0),
        _cand("t4", 0.5, "hybrid", 2),
        _cand("t5", 0.4, "tcn", 3),
    ]
    best = B.select(cands, 3, "best-per-trial")
    assert [(c.trial, c.score) for c in best] == [("t1", 0.9), ("t2", 0.7), ("t3", 0.6)]
    folds = B.select(cands, 3, "per-fold")
    assert [(c.trial, c.val_fold) for c in folds] == [("t1", 0), ("t2", 1), ("t4", 2)]
    diverse = B.select(cands, 4, "diverse")
    assert [c.trial for c in diverse] == [
        "t1",
        "t3",
        "t4",
        "t2",
    ]  # one per model type first, then the next best
    with pytest.raises(ValueError):
        B.select(cands, 2, "random")


def test_select_takes_a_trials_fold_models_together():
    """Trial a trained fold models on folds 0 and 1 (best 0.5 and 0.3: mean 0.4), b one model (0.45): b ranks
    first, and a brings both its folds' best checkpoints."""
    cands = [_cand("a", 0.5, fold=0), _cand("b", 0.45), _cand("a", 0.35, fold=0), _cand("a", 0.3, fold=1)]
    assert [(c.trial, c.score) for c in B.select(cands, 1)] == [("b", 0.45)]
    for strategy in ("best-per-trial", "diverse"):
        got = B.select(cands, 2, strategy)
        assert [(c.trial, c.score) for c in got] == [("b", 0.45), ("a", 0.5), ("a", 0.3)]


def test_average_oof_hand_computed():
    a = {1: np.full((1, 2, NUM_CLASSES), 0.2, np.float32), 2: np.full((1, 2, NUM_CLASSES), 0.6, np.float32)}
    b = {1: np.full((1, 2, NUM_CLASSES), 0.4, np.float32)}
    avg = B.average_oof({"a": a, "b": b})
    np.testing.assert_allclose(avg[1], 0.3)  # both members validated video 1
    np.testing.assert_allclose(avg[2], 0.6)  # only a did video 2


# ------------------------------------------------------------------------------------------------ build


def test_build_oof_cache_and_tuning(tiny_cache, tmp_path, capsys):
    _, cache = tiny_cache
    exp = tmp_path / "exp"
    make_checkpoint(exp / "train-aaaa1111" / "checkpoint_000001", cache, 0.30, seed=1, fold=0)
    make_checkpoint(
        exp / "train-bbbb2222" / "checkpoint_000001", cache, 0.20, name="conv_bilstm", seed=2, fold=1
    )
    out = tmp_path / "ens"
    s = B.main(
        [
            "--experiment",
            str(exp),
            "--out",
            str(out),
            "--top-k",
            "2",
            "--strategy",
            "per-fold",
            "--window",
            "64",
            "--stride",
            "32",
            "--trim",
            "8",
            "--threshold-scope",
            "auto",
        ]
    )
    printed = capsys.readouterr().out
    assert "best single" in printed and "raw ensemble" in printed
    assert "next: python -m ensemble.export" in printed
    oof = s["oof"]
    assert ("verified" in printed) == (oof["threshold_scope"]["chosen"] in ("lab", "action"))  # tuned scopes
    assert oof["tuned"] >= oof["raw_ensemble"] - 1e-12  # tuning never makes the OOF score worse
    # the headline: cross-fitted over the members' folds (0 and 1), in-sample beside it
    scope = oof["threshold_scope"]
    assert set(scope["crossfit"]) == {"lab", "action", "none", "argmax"}
    assert scope["crossfit"][scope["chosen"]] == max(scope["crossfit"].values()) == oof["crossfit"]
    assert (f"cross-fitted OOF score {oof['crossfit']:.4f}: threshold scope {scope['chosen']}, tuned on "
            "other folds") in printed
    assert f"in-sample tuned OOF {oof['in_sample']:.4f}: tuned and scored on the same videos" in printed
    assert oof["in_sample"] == oof["tuned"] and oof["crossfit_groups"]["n"] == 2
    assert "cache folds [0, 1]" in oof["crossfit_groups"]["how"]
    # flip TTA (the default --tta auto, pair features): both OOF sets scored, the better one kept
    flip = oof["tta"]
    assert flip["chosen"] == (flip["on"] > flip["off"]) and oof["crossfit"] == max(flip["on"], flip["off"])
    assert f"flip TTA {'on' if flip['chosen'] else 'off'}" in printed
    assert all(m["infer"]["tta"] == flip["chosen"] for m in s["members"])
    assert sorted(m["val_fold"] for m in s["members"]) == [0, 1]
    # both folds validated by a different member: every labelled video is in the OOF set
    info = json.loads((out / "ensemble.json").read_text())
    assert info["oof"]["n_items"] == 20 and info["infer"]["window"] == 64
    for m in info["members"]:
        assert {p.name for p in (out / "members" / m["name"]).iterdir()} == {
            "model.pt",
            "config.json",
            "metrics.json",
        }
    from ensemble.postprocess import PostprocessConfig

    PostprocessConfig.from_dict(json.loads((out / "thresholds.json").read_text()))
    # a second build re-uses the cached OOF probabilities (same key) instead of re-running the models
    npz = sorted((out / "oof").glob("*.npz"))
    stamps = [p.stat().st_mtime_ns for p in npz]
    s2 = B.build(
        [exp],
        out,
        2,
        "per-fold",
        settings=InferSettings(window=64, stride=32, trim=8),
        progress=False,
        log=lambda *a: None,
        tta="auto",
        threshold_scope="auto",
    )
    assert len(npz) == 4  # 2 members x (plain, .tta)
    assert [p.stat().st_mtime_ns for p in npz] == stamps
    assert s2["oof"]["tuned"] == pytest.approx(oof["tuned"])
    assert s2["oof"]["crossfit"] == pytest.approx(oof["crossfit"])
    # the default scope: per (lab, action) alone. With auto's TTA choice forced (the same OOF probabilities,
    # recomputed) and the same groups, its cross-fitted score is the "lab" entry of auto's table
    s3 = B.build(
        [exp],
        out,
        2,
        "per-fold",
        settings=InferSettings(window=64, stride=32, trim=8),
        progress=False,
        log=lambda *a: None,
        tta="on" if flip["chosen"] else "off",
    )
    assert s3["oof"]["threshold_scope"] == {"chosen": "lab", "crossfit": {"lab": s3["oof"]["crossfit"]}}
    assert s3["oof"]["crossfit"] == pytest.approx(scope["crossfit"]["lab"])


def test_crossfit_groups_folds_or_dealt(tiny_cache):
    """OOF videos from 2 cache folds: the folds are the groups; from one fold: 2 groups dealt by video."""
    from features.cache import FeatureCache

    cache = FeatureCache(tiny_cache[1])
    idx = cache.index[cache.index["fold"] >= 0].drop_duplicates("video_id")
    fold_of = dict(zip(idx["video_id"].astype(int), idx["fold"].astype(int)))
    groups, how = B.crossfit_groups(cache, list(fold_of))
    assert groups == fold_of and how == f"cache folds {sorted(set(fold_of.values()))}"
    one_fold = [v for v, f in fold_of.items() if f == 0]
    groups, how = B.crossfit_groups(cache, one_fold, n_groups=2, seed=0)
    assert sorted(groups) == sorted(one_fold) and "2 groups dealt by video" in how
    assert len(set(groups.values())) == min(2, len(one_fold))


def test_oof_cache_invalidated_by_other_settings(tiny_cache, tmp_path):
    from features.cache import FeatureCache

    _, cache = tiny_cache
    ck = make_checkpoint(tmp_path / "c", cache, 0.1)
    fc = FeatureCache(cache)
    f = tmp_path / "oof.npz"
    p1 = oof_probs(ck, fc, InferSettings(window=64, stride=32, trim=8), f)
    assert sorted(p1) == [1511521645, 1879882068] or len(p1) >= 1
    again = oof_probs(ck, fc, InferSettings(window=64, stride=32, trim=8), f)
    for v in p1:
        np.testing.assert_array_equal(p1[v], again[v])
    other = oof_probs(ck, fc, InferSettings(window=128, stride=64, trim=16), f)
    with np.load(f) as z:
        assert '"window": 128' in str(z["key"])
    assert set(other) == set(p1)


def test_build_cli_errors(tmp_path, capsys):
    import subprocess
    import sys

    r = subprocess.run(
        check=False,
        args=[sys.executable, "-m", "ensemble.build", "--experiment", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert r.returncode == 2 and "does not exist" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="no checkpoint folder"):
        B.build([tmp_path / "empty"], tmp_path / "out")
