"""ensemble.export and ensemble.predict: bundle contents and checksums, offline predict on the synthetic test
split, tampering refused, bad videos skipped, never an empty submission, no Ray/Optuna/Modal on the path.

Real parts: registry models saved by tune.checkpoint, a tiny synthetic Kaggle set, the real wheel build.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = ("ray", "optuna", "modal", "matplotlib", "yaml")


def _ckpt(d: Path, cache: Path, score: float, name: str, fold: int, seed: int):
    from features.cache import FeatureCache
    from features.labels import ACTIONS
    from models import ModelConfig, build_model  # noqa: F401
    from tune.checkpoint import save_checkpoint
    from tune.config import TrainConfig

    fc = FeatureCache(cache)
    cfg = TrainConfig.from_dict({"data": {"cache": str(cache), "val_fold": fold},
                                 "model": {"name": name, "hidden": 8, "tcn_layers": 2, "conv_layers": 1},
                                 "features": fc.settings.to_dict(), "classes": ["background", *ACTIONS]})
    torch.manual_seed(seed)
    return save_checkpoint(d, build_model(cfg.model, fc.num_features), cfg, {"val/score": score, "epoch": 1})


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """synthetic data + cache -> 2 checkpoints -> ensemble (tuned) -> exported bundle."""
    from ensemble.build import build
    from ensemble.export import export
    from ensemble.infer import InferSettings
    from features.cache import build_cache
    from features.synth import generate

    base = tmp_path_factory.mktemp("bundle")
    root = base / "synth"
    generate(root, n_videos=4, n_frames=400, seed=2, test_videos=3)
    build_cache(root, root / "cache", n_folds=2, progress=False)
    _ckpt(base / "exp" / "train-a" / "checkpoint_1", root / "cache", 0.3, "tcn", 0, 1)
    _ckpt(base / "exp" / "train-b" / "checkpoint_1", root / "cache", 0.2, "conv_bilstm", 1, 2)
    build([base / "exp"], base / "ens", 2, "per-fold", settings=InferSettings(window=64, stride=32, trim=8),
          progress=False, log=lambda *a: None)
    export(base / "ens", base / "bundle", dataset_id="someone/mabe-test", log=lambda *a: None)
    return base / "bundle", root


def test_bundle_contents_and_manifest(bundle):
    from ensemble.infer import sha256_file

    b, _ = bundle
    manifest = json.loads((b / "manifest.json").read_text())
    on_disk = {p.name for p in b.iterdir()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk  # every file is checksummed, the bundle is flat
    for name, digest in manifest["files"].items():
        assert sha256_file(b / name) == digest
    assert {"model-0.pt", "model-1.pt", "config-0.json", "config-1.json", "thresholds.json", "ensemble.json",
            "notebook_predict.py", "dataset-metadata.json"} <= on_disk
    for i in (0, 1):
        sd = torch.load(b / f"model-{i}.pt", weights_only=True)
        assert "x_mean" in sd
    assert manifest["versions"]["torch"] == torch.__version__.split("+")[0] or manifest["versions"]["torch"]
    assert {"best_single_score", "raw_ensemble", "tuned"} <= set(manifest["oof"])
    meta = json.loads((b / "dataset-metadata.json").read_text())
    assert meta["id"] == "someone/mabe-test" and meta["title"] and meta["licenses"]
    (wheel,) = [n for n in on_disk if n.endswith(".whl")]
    assert manifest["wheel"] == wheel and wheel.startswith("mabe_tune-")
    names = zipfile.ZipFile(b / wheel).namelist()
    assert "ensemble/predict.py" in names and "features/pipeline.py" in names and "features/data/train.csv.gz" in \
        names or any(n.startswith("features/data/") for n in names)
    nb = (b / "notebook_predict.py").read_text()
    compile(nb, "notebook_predict.py", "exec")
    assert "--no-index" in nb and "--find-links" in nb and "/kaggle/working/submission.csv" in nb


def test_predict_writes_a_valid_submission(bundle, tmp_path):
    from ensemble.metric import score
    from ensemble.predict import predict
    from ensemble.submission import validate

    b, data = bundle
    out = tmp_path / "submission.csv"
    s = predict(b, data, out, progress=False, log=lambda *a: None)
    sub = pd.read_csv(out)
    assert validate(sub, data / "test.csv") == []
    test = pd.read_csv(data / "test.csv")
    assert s["videos"] == len(test) and s["skipped"] == [] and s["rows"] == len(sub) >= 1
    assert s["frames"] > 0
    value = score(pd.read_csv(data / "test_solution.csv"), sub)
    assert 0.0 <= value <= 1.0
    assert not list(tmp_path.glob("*.tmp-*"))  # atomic write left nothing behind


def _run(args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "ensemble.predict", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env={**__import__("os").environ, "TQDM_DISABLE": "1"})


@pytest.mark.parametrize("victim", ["thresholds.json", "model-1.pt"])
def test_tampered_bundle_is_refused_naming_the_file(bundle, tmp_path, victim):
    b, data = bundle
    bad = tmp_path / "bundle"
    shutil.copytree(b, bad)
    with open(bad / victim, "ab") as f:
        f.write(b" ")
    out = tmp_path / "submission.csv"
    r = _run(["--bundle", bad, "--data", data, "--out", out])
    assert r.returncode == 2
    assert victim in r.stderr and "sha256" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
    (bad / victim).unlink()
    r = _run(["--bundle", bad, "--data", data, "--out", out])
    assert r.returncode == 2 and victim in r.stderr and "missing" in r.stderr


def test_bad_video_is_skipped_with_a_warning(bundle, tmp_path):
    b, data = bundle
    d = tmp_path / "data"
    shutil.copytree(data, d, ignore=shutil.ignore_patterns("cache", "train_*"))
    test = pd.read_csv(d / "test.csv")
    victim = sorted((d / "test_tracking").rglob("*.parquet"))[0]
    victim.write_bytes(b"this is not parquet")
    out = tmp_path / "submission.csv"
    r = _run(["--bundle", b, "--data", d, "--out", out])
    assert r.returncode == 0, r.stderr
    assert f"skipping video {victim.stem}" in r.stderr and str(victim) in r.stderr
    sub = pd.read_csv(out)
    assert int(victim.stem) not in set(sub["video_id"])
    assert f"skipped 1 video(s): {victim.stem}" in r.stdout and "next:" in r.stdout
    assert len(test) == 3


def test_nothing_predicted_writes_a_harmless_placeholder(bundle, tmp_path):
    from ensemble.submission import validate

    b, data = bundle
    d = tmp_path / "data"
    shutil.copytree(data, d, ignore=shutil.ignore_patterns("cache", "train_*", "test_tracking"))
    out = tmp_path / "submission.csv"
    r = _run(["--bundle", b, "--data", d, "--out", out])
    assert r.returncode == 3
    assert r.stderr.count("skipping video") == 3 and "placeholder" in r.stderr
    sub = pd.read_csv(out)
    assert len(sub) == 1 and validate(sub, d / "test.csv") == []
    row = sub.iloc[0]
    assert row.start_frame == row.stop_frame == 0
    whitelist = json.loads(pd.read_csv(d / "test.csv").set_index("video_id").loc[row.video_id, "behaviors_labeled"])
    assert f"{row.agent_id},{row.target_id},{row.action}" not in whitelist  # the metric ignores it


def test_predict_and_build_run_without_ray_optuna_modal(bundle, tmp_path):
    """Import blocker for the forbidden packages, then the real predict: it must not need them."""
    b, data = bundle
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {FORBIDDEN!r}:
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Block())
import ensemble.build, ensemble.export, ensemble.infer, ensemble.notebook
from ensemble.predict import main
rc = main(['--bundle', {str(b)!r}, '--data', {str(data)!r}, '--out', {str(tmp_path / 's.csv')!r}, '--no-progress',
           '--limit', '1'])
print('loaded', sorted(m for m in {FORBIDDEN!r} if m in sys.modules), 'rc', rc)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "loaded [] rc 0" in r.stdout


def test_help_states_the_policies():
    r = _run(["--help"])
    assert r.returncode == 0 and "skipped" in r.stdout and "placeholder" in r.stdout and "manifest" in r.stdout
    r = subprocess.run([sys.executable, "-m", "ensemble.export", "--help"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "kaggle datasets create" in r.stdout
    r = subprocess.run([sys.executable, "-m", "ensemble.build", "--help"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "best-per-trial" in r.stdout and "diverse" in r.stdout


def test_export_refuses_a_broken_member(bundle, tmp_path):
    from ensemble.export import export
    from features.errors import MabeDataError

    b, _ = bundle
    ens = b.parent / "ens"
    broken = tmp_path / "ens"
    shutil.copytree(ens, broken)
    member = sorted((broken / "members").iterdir())[0]
    torch.save({"x_mean": torch.zeros(3)}, member / "model.pt")  # wrong shapes: cannot rebuild
    with pytest.raises(MabeDataError, match="does not load"):
        export(broken, tmp_path / "bundle", wheel=False, log=lambda *a: None)
    assert not (tmp_path / "bundle").exists() and not list(tmp_path.glob(".bundle.tmp-*"))
    np.testing.assert_equal(True, True)
