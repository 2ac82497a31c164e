"""End to end: synthetic Kaggle data -> 2-trial Ray Tune search -> ensemble.build -> ensemble.export ->
ensemble.predict in a SEPARATE virtual environment without Ray, Optuna or Modal -> a valid submission that
scores at least as well as the best single checkpoint with untuned (default) post-processing.

The venv (tests/helpers.py predict_venv: torch==2.13.0 CPU, numpy, pandas, pyarrow) is built once and kept in
the pytest cache (`.pytest_cache/d/mabe-predict-venv`); only the bundle's wheel is reinstalled per run.

    python -m pytest -q -m slow tests/test_e2e.py
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
from helpers import predict_venv, venv_env

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.ray
def test_search_build_export_predict_offline(ray_local, synth_set, tmp_path, request, capsys):
    from ensemble.build import build
    from ensemble.export import export
    from ensemble.infer import InferSettings
    from ensemble.metric import score
    from ensemble.predict import predict
    from ensemble.submission import validate
    from tune import search

    # 1. data: synthetic Kaggle layout + its feature cache + ground truth of the test videos
    # (tests/conftest.py's synth_set runs features.synth.generate + features.cache.build_cache)
    root = synth_set(8, 900, seed=0, test_videos=4, n_folds=4).root

    # 2. a real 2-trial search (Tune + Optuna + ASHA + Ray Train running tune.train)
    argv = [
        "--data",
        str(root),
        "--cache",
        str(root / "cache"),
        "--storage",
        str(tmp_path / "exp"),
        "--name",
        "e2e",
        "--num-samples",
        "2",
        "--max-concurrent",
        "2",
        "--epochs",
        "4",
        "--grace-period",
        "5",
        "--set",
        "optim.batch_size=16",
        "--set",
        "data.window=64",
        "--set",
        "model.hidden=16",
        "--set",
        "run.checkpoint_every=1",
    ]
    assert search.main(argv) == 0
    exp = tmp_path / "exp" / "e2e"
    assert (exp / "results.csv").is_file()

    # 3. build: rank, OOF, tune. Tuning never lowers the OOF score.
    settings = InferSettings(window=128, stride=64, trim=16)
    ens = build([exp], tmp_path / "ens", top_k=2, settings=settings, progress=False)
    oof = ens["oof"]
    assert len(ens["members"]) == 2
    assert oof["tuned"] >= oof["raw_ensemble"] - 1e-12
    # the best single checkpoint, untuned (default threshold 0.5), for the comparison on the test videos
    single = build([exp], tmp_path / "single", top_k=1, settings=settings, tune_post=False, progress=False)
    assert single["members"][0]["sha256"] == ens["members"][0]["sha256"]

    # 4. export
    bundle = tmp_path / "bundle"
    export(tmp_path / "ens", bundle)
    wheel = next(bundle.glob("mabe_tune-*.whl"))

    # 5. the bundle's notebook script in a clean venv (no Ray/Optuna/Modal), on a Kaggle-like input folder: it
    #    checks the wheel against the manifest, installs it (pip --no-index --no-deps), writes the submission
    py = predict_venv(request)
    env = venv_env()
    kaggle_input = tmp_path / "input"
    kaggle_input.mkdir()
    (kaggle_input / "mabe-tune-bundle").symlink_to(bundle)
    (kaggle_input / "MABe-mouse-behavior-detection").symlink_to(root)
    nb_out = tmp_path / "working" / "submission.csv"
    nb_out.parent.mkdir()
    nb_env = {**env, "MABE_KAGGLE_INPUT": str(kaggle_input), "MABE_KAGGLE_OUT": str(nb_out)}
    r = subprocess.run(
        [str(py), str(bundle / "notebook_predict.py")],
        capture_output=True,
        text=True,
        env=nb_env,
        cwd=tmp_path,
        check=False,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "submission written" in r.stdout and nb_out.is_file()
    probe = subprocess.run(
        check=False,
        args=[
            str(py),
            "-c",
            "import importlib.util as u, ensemble.predict as p; "
            "print([m for m in ('ray','optuna','modal') if u.find_spec(m)], p.__file__)",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.startswith("[]") and "site-packages" in probe.stdout  # the wheel, not the checkout

    def venv_predict(out, *extra):  # `python -m ensemble.predict` on the bundle, in the clean venv
        return subprocess.run(
            [
                str(py),
                "-m",
                "ensemble.predict",
                "--bundle",
                str(bundle),
                "--data",
                str(root),
                "--out",
                str(out),
                *extra,
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            check=False,
        )

    out = tmp_path / "submission.csv"
    r = venv_predict(out, "--device", "cpu")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[ensemble.predict]" in r.stdout and "next:" in r.stdout
    sub = pd.read_csv(out)
    assert validate(sub, root / "test.csv") == []
    pd.testing.assert_frame_equal(sub, pd.read_csv(nb_out))  # the notebook wrote the same submission
    solution = pd.read_csv(root / "test_solution.csv")
    ours = score(solution, sub)

    export(tmp_path / "single", tmp_path / "single-bundle", wheel=False)
    predict(tmp_path / "single-bundle", root, tmp_path / "single.csv", progress=False)
    baseline = score(solution, pd.read_csv(tmp_path / "single.csv"))
    with capsys.disabled():
        print(
            f"\n[e2e] wheel {wheel.name}; OOF best single {oof['best_single_score']:.4f}, raw ensemble "
            f"{oof['raw_ensemble']:.4f}, tuned {oof['tuned']:.4f}; TEST ensemble+tuned {ours:.4f} vs best "
            f"single untuned {baseline:.4f}"
        )
    assert ours >= baseline

    # 6. tampering with one bundle file: the venv predict refuses, naming the file
    victim = bundle / "thresholds.json"
    victim.write_text(victim.read_text().replace("0.", "0.0", 1))
    r = venv_predict(tmp_path / "tampered.csv")
    assert r.returncode == 2 and "thresholds.json" in r.stderr and "sha256" in r.stderr
    assert not (tmp_path / "tampered.csv").exists()
