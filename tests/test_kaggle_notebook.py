"""The Kaggle notebook, emulated with real parts: an exported bundle "uploaded" the way the Kaggle client does
it, read-only inputs, a clean venv that has only the Kaggle image's basics, and the bundle's own notebook
script.

What `kaggle datasets create -p DIR` / `kaggle datasets version -p DIR` keep (kaggle-api,
KaggleApi.upload_files, checked against kaggle 1.8.3 and 2.2.5): every top-level FILE of DIR except the
client's metadata files (dataset-metadata.json, datapackage.json, kernel-metadata.json, model-metadata.json,
model-instance-metadata.json, dataset-cover-image.{png,jpg,jpeg,webp}); sub-folders are skipped unless
--dir-mode zip/tar. This test encodes that list itself (not the exporter's copy of it), so the two are
checked against each other.

Flow: synthetic data + two registry checkpoints -> ensemble.build -> ensemble.export -> the dataset id
changed in dataset-metadata.json (as export's hint asks) -> upload emulation into kaggle/input/<new slug>/
and the test side of the data into kaggle/input/<competition>/ (both chmod -w; the tests run as root in CI,
so each input tree is also fingerprinted and must be unchanged afterwards) -> `python
<bundle>/notebook_predict.py` in the venv, working folder kaggle/working/ -> submission.csv validated and
scored against the ground truth: equal (1e-6) to the same bundle's local ensemble.predict. Then: one weight
byte flipped -> the notebook fails naming the file; every test video unreadable -> predict falls back to a
placeholder (exit 3) -> the notebook fails and says so.

    python -m pytest -q tests/test_kaggle_notebook.py
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from helpers import make_bundle, predict_venv, venv_env

pytestmark = pytest.mark.slow  # ~1.5 min on 2 shared cores (bundle export with its wheel, 3 notebook runs)

COMPETITION = "MABe-mouse-behavior-detection"
KAGGLE_CLIENT_SKIPS = frozenset(
    {
        "dataset-metadata.json",
        "datapackage.json",
        "kernel-metadata.json",
        "model-metadata.json",
        "model-instance-metadata.json",
        *(f"dataset-cover-image{ext}" for ext in (".png", ".jpg", ".jpeg", ".webp")),
    }
)


def kaggle_upload(bundle: Path, dest: Path) -> list[str]:
    """What the dataset ends up holding: the top-level files the Kaggle client sends (dir-mode skip)."""
    dest.mkdir(parents=True)
    kept = []
    for p in sorted(bundle.iterdir()):
        if p.is_file() and p.name not in KAGGLE_CLIENT_SKIPS:
            shutil.copy2(p, dest / p.name)
            kept.append(p.name)
    return kept


def competition_input(data: Path, dest: Path, tracking: bool = True) -> None:
    """The competition's input folder, test side only (the ground truth is not on Kaggle)."""
    dest.mkdir(parents=True)
    for name in ("test.csv", "sample_submission.csv"):
        if (data / name).is_file():
            shutil.copy2(data / name, dest / name)
    if tracking:
        shutil.copytree(data / "test_tracking", dest / "test_tracking")
    else:  # every video's tracking file missing
        (dest / "test_tracking").mkdir()


def set_writable(root: Path, writable: bool) -> None:
    for p in [root, *root.rglob("*")]:
        mode = p.stat().st_mode
        bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
        os.chmod(p, (mode | stat.S_IWUSR) if writable else (mode & ~bits))


def fingerprint(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, synth_small):
    """Two registry checkpoints on the small synthetic set -> tuned ensemble -> exported bundle."""
    base = tmp_path_factory.mktemp("kaggle-bundle")
    root = synth_small.root
    return make_bundle(base, root / "cache", "conv_bilstm", dataset_id="someone/mabe-tune-bundle"), root


def run_notebook(py: Path, kaggle: Path, slug: str):
    working = kaggle / "working"
    working.mkdir(exist_ok=True)
    env = venv_env(MABE_KAGGLE_INPUT=str(kaggle / "input"), MABE_KAGGLE_OUT=str(working / "submission.csv"))
    script = kaggle / "input" / slug / "notebook_predict.py"
    return subprocess.run([str(py), str(script)], cwd=working, env=env, capture_output=True, text=True,
                          check=False)


def test_bundle_survives_kaggle_upload_and_runs_in_the_notebook(exported, tmp_path, request):
    from ensemble.metric import score
    from ensemble.predict import predict, verify_bundle
    from ensemble.submission import validate

    bundle, data = exported
    solution = pd.read_csv(data / "test_solution.csv")
    local = tmp_path / "local.csv"
    predict(bundle, data, local, progress=False, log=lambda *a: None)
    local_score = score(solution, pd.read_csv(local))

    # the dataset id changed after export, as export's hint asks: nothing may depend on it
    meta_file = bundle / "dataset-metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["id"] = "another-user/renamed-mabe-bundle"
    meta_file.write_text(json.dumps(meta, indent=2))
    verify_bundle(bundle)  # the local bundle still verifies
    slug = meta["id"].split("/")[1]

    kaggle = tmp_path / "kaggle"
    kept = kaggle_upload(bundle, kaggle / "input" / slug)
    assert "dataset-metadata.json" not in kept and "manifest.json" in kept
    manifest = json.loads((bundle / "manifest.json").read_text())
    # the manifest covers exactly the files Kaggle keeps
    assert set(manifest["files"]) == set(kept) - {"manifest.json"}
    competition_input(data, kaggle / "input" / COMPETITION)
    for d in (kaggle / "input" / slug, kaggle / "input" / COMPETITION):
        set_writable(d, False)
    before = fingerprint(kaggle / "input")

    py = predict_venv(request)
    r = run_notebook(py, kaggle, slug)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "submission written" in out
    sub_path = kaggle / "working" / "submission.csv"
    sub = pd.read_csv(sub_path)
    assert validate(sub, data / "test.csv") == []
    assert score(solution, sub) == pytest.approx(local_score, abs=1e-6)
    assert fingerprint(kaggle / "input") == before  # nothing written into the read-only inputs

    # one weight file altered after upload: the notebook fails (non-zero exit), naming the file
    sub_path.unlink()
    victim = kaggle / "input" / slug / "model-1.pt"
    set_writable(victim, True)
    weights = bytearray(victim.read_bytes())
    weights[len(weights) // 2] ^= 0xFF
    victim.write_bytes(bytes(weights))
    set_writable(victim, False)
    r = run_notebook(py, kaggle, slug)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    failure = r.stderr.strip().splitlines()[-1]  # the exception that fails the notebook names the file
    assert failure.startswith("SubmissionFailed") and "exit status 2" in failure, out[-3000:]
    assert "model-1.pt" in failure and "sha256" in failure
    assert not sub_path.exists()


def test_notebook_fails_loudly_on_a_placeholder_submission(exported, tmp_path, request):
    """Every test video unreadable: predict writes a placeholder row, exits 3; the notebook must fail."""
    bundle, data = exported
    kaggle = tmp_path / "kaggle"
    kaggle_upload(bundle, kaggle / "input" / "mabe-tune-bundle")
    competition_input(data, kaggle / "input" / COMPETITION, tracking=False)
    r = run_notebook(predict_venv(request), kaggle, "mabe-tune-bundle")
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    failure = r.stderr.strip().splitlines()[-1]
    assert failure.startswith("SubmissionFailed: PLACEHOLDER SUBMISSION"), out[-3000:]
    assert "status 3" in failure
