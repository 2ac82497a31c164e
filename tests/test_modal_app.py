"""The Modal fallback, offline: no credentials (HOME = empty tmp dir, MODAL_* unset), no network.

What runs for real: importing the app (App/Image/Volume objects are lazy), our argument handling, the
function body through Modal's own `.local()` (a smoke training into tmp_path) and resume from a run folder.
Only `commit_volume` is replaced (monkeypatch): `Volume.commit()` is only valid inside a Modal container.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ensemble.experiment import best_trial
from features.errors import MabeDataError

pytest.importorskip("modal")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No Modal account: an empty HOME (no ~/.modal.toml) and no MODAL_* variables."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for key in list(os.environ):
        if key.startswith("MODAL_"):
            monkeypatch.delenv(key)
    monkeypatch.delenv("MABE_VOLUME", raising=False)
    return home


@pytest.fixture
def modal_app(offline):
    from tune import modal_app

    return modal_app


def _clean_env(home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_") and k != "MABE_VOLUME"}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), **extra)
    return env


def _python(home: Path, *args: str, **extra_env) -> subprocess.CompletedProcess:
    """A fresh interpreter in the repository with the offline HOME (modal reads its token at import)."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=_clean_env(home, **extra_env), check=False,
                          capture_output=True, text=True, timeout=120)


def test_module_imports_offline_without_credentials(offline):
    # A fresh interpreter, so modal reads its config from the empty HOME (not from an earlier import).
    code = ("import tune.modal_app as m; "
            "print(m.GPU, m.TIMEOUT_S, m.RETRIES, m.VOLUME_NAME, m.VOLUME_MOUNT, type(m.app).__name__)")
    out = _python(offline, "-c", code, MABE_VOLUME="vol-x")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["H100", str(4 * 3600), "2", "vol-x", "/runs", "App"]
    assert list(offline.iterdir()) == []  # nothing written to HOME (no token, no config file)


def test_constants_are_what_the_readme_says(modal_app):
    assert modal_app.GPU == "H100"
    # 100 epochs took the seed 1.4 h on one H100: 4 h per attempt leaves room for a slower config.
    assert modal_app.TIMEOUT_S == 4 * 3600 and modal_app.TIMEOUT_S > 1.4 * 3600 * 2
    assert modal_app.RETRIES == 2
    assert modal_app.VOLUME_NAME == "mabe-tune"  # MABE_VOLUME unset (the module was imported without it)
    assert modal_app.VOLUME_MOUNT == "/runs"
    assert modal_app.PYTHON_VERSION == "3.11"
    assert modal_app.LOCAL_PACKAGES == ("features", "models", "tune", "ensemble")
    pkgs = " ".join(modal_app.IMAGE_PACKAGES)
    for name in ("torch", "numpy", "pandas", "pyarrow", "tqdm", "pyyaml"):
        assert name in pkgs


def test_function_is_wired_to_the_constants(modal_app):
    # modal 1.6 exposes the GPU/volume settings only through a private spec; skip if it moves.
    spec = getattr(modal_app.train_remote, "_spec_", None)
    if spec is None or not hasattr(spec, "gpus"):
        pytest.skip("modal no longer exposes Function._spec_")
    assert spec.gpus == modal_app.GPU
    assert list(spec.volumes) == [modal_app.VOLUME_MOUNT]


def test_image_filter_keeps_sources_and_package_data(modal_app):
    ignore = modal_app._ignore_in_image
    assert not ignore(Path("tune/train.py"))
    assert not ignore(Path("features/data/train_meta.csv.gz"))
    assert not ignore(Path("tune/configs/v6.yaml"))
    assert ignore(Path("tune/__pycache__/train.cpython-311.pyc"))
    assert ignore(Path("features/data/big.npy"))


def test_image_carries_every_module_and_the_package_data(modal_app):
    # What add_local_python_source(..., ignore=_ignore_in_image) uploads, listed by modal itself (private
    # class in modal 1.6: skip if it moves). The synthetic twin needs features/data/train_meta.csv.gz.
    mount = pytest.importorskip("modal.mount")
    if not hasattr(mount, "_MountedPythonModule"):
        pytest.skip("modal.mount._MountedPythonModule moved")
    for pkg in modal_app.LOCAL_PACKAGES:
        entry = mount._MountedPythonModule(pkg, ignore=modal_app._ignore_in_image)
        remote = {str(r) for _, r in entry.get_files_to_upload()}
        local = {f"/root/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / pkg).rglob("*.py")
                 if "__pycache__" not in p.parts}
        assert local <= remote, f"{pkg}: missing {sorted(local - remote)}"
        assert not any("__pycache__" in r or r.endswith(".pyc") for r in remote)
        if pkg == "features":
            assert "/root/features/data/train_meta.csv.gz" in remote
        if pkg == "tune":
            assert "/root/tune/configs/smoke.yaml" in remote


@pytest.mark.parametrize("name", ["smoke", "v6-pair_1.2", "A"])
def test_run_name_accepted(modal_app, name):
    assert modal_app.check_run_name(name) == name


@pytest.mark.parametrize("name", ["", "..", "a/b", "/abs", "-x", "a b", "x" * 101])
def test_run_name_rejected(modal_app, name):
    from features.errors import MabeDataError

    with pytest.raises(MabeDataError, match="run name"):
        modal_app.check_run_name(name)


def test_place_in_volume_anchors_run_and_relative_data(modal_app, tmp_path):
    cfg = {"data": {"root": "data/synth", "cache": "/abs/cache"}, "run": {"out_dir": "runs/default"}}
    out = modal_app.place_in_volume(cfg, "r1", "/runs")
    assert out["run"]["out_dir"] == "/runs/r1"
    assert out["data"] == {"root": "/runs/data/synth", "cache": "/abs/cache"}
    assert cfg["run"]["out_dir"] == "runs/default"  # the input is not mutated
    # .local() mounts "the Volume" elsewhere: paths written against VOLUME_MOUNT follow it
    cfg = {"data": {"root": "/runs/data/synth", "cache": "data/cache"}}
    out = modal_app.place_in_volume(cfg, "r2", tmp_path)
    assert out["data"] == {"root": str(tmp_path / "data/synth"), "cache": str(tmp_path / "data/cache")}
    assert out["run"]["out_dir"] == str(tmp_path / "r2")


def _write_experiment(exp: Path, rows: list[dict]) -> None:
    """An experiment folder as `python -m tune.search` leaves it: results.csv + checkpoint folders."""
    from tune.config import TrainConfig

    exp.mkdir(parents=True, exist_ok=True)
    for row in rows:
        lr = row.pop("lr", None)
        if lr is not None and row.get("best_checkpoint"):
            ckpt = Path(row["best_checkpoint"])
            ckpt = ckpt if ckpt.is_absolute() else exp / ckpt
            ckpt.mkdir(parents=True)
            cfg = TrainConfig().replace(**{"optim.lr": lr, "run.out_dir": str(ckpt.parent)})
            (ckpt / "config.json").write_text(json.dumps(cfg.to_dict()))
    cols = ["trial", "trial_id", "optim.lr", "best_score", "epochs", "best_checkpoint", "status"]
    with open(exp / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, restval="")
        w.writeheader()
        w.writerows(rows)


def test_from_experiment_takes_the_best_trial(modal_app, tmp_path):
    exp = tmp_path / "exp"
    _write_experiment(exp, [
        {"trial": 1, "trial_id": "a_00000", "best_score": "0.31", "best_checkpoint": str(exp / "t1" / "best"),
         "lr": 4e-4},
        {"trial": 2, "trial_id": "a_00001", "best_score": "0.45", "best_checkpoint": "t2/best", "lr": 7e-4},
        {"trial": 3, "trial_id": "a_00002", "best_score": "nan", "best_checkpoint": "", "status": "ERROR"},
        {"trial": 4, "trial_id": "a_00003", "best_score": "0.90", "best_checkpoint": ""},  # none kept
    ])
    config, row = best_trial(exp)
    assert row["trial"] == "2" and config["optim"]["lr"] == 7e-4  # relative path taken inside the experiment

    # what the search set for its trials: not what a standalone 100-epoch run wants
    search_run = {"seed": 3, "threads": 1, "patience": 0, "progress": False, "device": "cpu"}
    trial_cfg = exp / "t2/best/config.json"
    trial_cfg.write_text(json.dumps({**config, "run": {**config["run"], **search_run}}))
    args = modal_app.build_parser().parse_args(
        ["--from-experiment", str(exp), "--set", "optim.epochs=100", "--set", "run.patience=20",
         "--run-name", "best100"])
    cfg, name = modal_app.resolve(args)
    assert name == "best100"
    assert cfg["optim"]["lr"] == 7e-4 and cfg["optim"]["epochs"] == 100  # best trial's config < --set
    # run.*: the trial's seed, defaults for the rest, then --set
    assert cfg["run"]["seed"] == 3 and cfg["run"]["patience"] == 20
    assert (cfg["run"]["threads"], cfg["run"]["progress"], cfg["run"]["device"]) == (0, True, "auto")


def test_from_experiment_reads_a_checkpoint_on_uri_storage(modal_app, tmp_path):
    # Ray storage on s3:// or gs:// leaves URIs in results.csv; file:// goes through the same pyarrow.fs path.
    exp = tmp_path / "exp"
    _write_experiment(exp, [{"trial": 1, "best_score": "0.5", "best_checkpoint": str(exp / "t1" / "best"),
                             "lr": 2e-4}])
    uri = (exp / "t1" / "best").as_uri()
    assert uri.startswith("file:///")
    _write_experiment(exp, [{"trial": 1, "best_score": "0.5", "best_checkpoint": uri}])
    config, _ = best_trial(exp)
    assert config["optim"]["lr"] == 2e-4
    _write_experiment(exp, [{"trial": 1, "best_score": "0.5", "best_checkpoint": uri + "-gone"}])
    with pytest.raises(MabeDataError, match="no readable config.json"):
        best_trial(exp)


@pytest.mark.parametrize("problem", ["no_results", "no_config", "no_scores"])
def test_from_experiment_errors_name_the_file(modal_app, tmp_path, problem):
    from features.errors import MabeDataError

    exp = tmp_path / "exp"
    if problem == "no_results":
        exp.mkdir()
        match = "results.csv"
    elif problem == "no_config":
        _write_experiment(exp, [{"trial": 1, "best_score": "0.2", "best_checkpoint": "t1/best"}])
        match = "config.json"
    else:
        _write_experiment(exp, [{"trial": 1, "best_score": "", "best_checkpoint": "t1/best"}])
        match = "no trial with a finite best_score"
    with pytest.raises(MabeDataError, match=match) as err:
        best_trial(exp)
    assert str(exp) in str(err.value)


def test_config_file_and_overrides(modal_app, tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"optim": {"lr": 1e-3, "epochs": 7}, "model": {"name": "tcn"}}))
    args = modal_app.build_parser().parse_args(["--config", str(f), "--set", "optim.epochs=9"])
    cfg, name = modal_app.resolve(args)
    assert (cfg["optim"]["lr"], cfg["optim"]["epochs"], cfg["model"]["name"]) == (1e-3, 9, "tcn")
    assert name.startswith("tcn-")  # default run name: <model>-<UTC time>


def test_bad_override_is_a_data_error(modal_app):
    from features.errors import MabeDataError

    args = modal_app.build_parser().parse_args(["--set", "optim.nope=1"])
    with pytest.raises(MabeDataError, match="unknown field"):
        modal_app.resolve(args)


def test_cli_dry_run_and_error_line(offline, tmp_path):
    out = _python(offline, "-m", "tune.modal_app", "--dry-run", "--set", "optim.epochs=3", "--run-name", "r1")
    assert out.returncode == 0, out.stderr
    assert "run 'r1'" in out.stdout and '"epochs": 3' in out.stdout
    assert "next: modal run -m tune.modal_app -- --set optim.epochs=3 --run-name r1" in out.stdout

    missing = str(tmp_path / "missing")
    bad = _python(offline, "-m", "tune.modal_app", "--dry-run", "--from-experiment", missing)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1
    assert "results.csv" in bad.stderr and missing in bad.stderr


# ------------------------------------------------------------------------- the function body via .local()
RUN = "smoke-run"


class CommitRecorder:
    """Stands in for `commit_volume` (only valid inside a Modal container): at each commit it records the
    epoch of the checkpoint that is complete on disk at that moment (None = no checkpoint yet)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.seen: list[int | None] = []

    def __call__(self) -> None:
        last = self.run_dir / "last"
        if not (last / "model.pt").is_file():
            self.seen.append(None)
            return
        assert {"model.pt", "config.json", "metrics.json", "state.pt"} <= {p.name for p in last.iterdir()}
        self.seen.append(json.loads((last / "metrics.json").read_text())["epoch"])


def _smoke_args(modal_app, *extra: str):
    argv = ["--config", str(ROOT / "tune/configs/smoke.yaml"), "--smoke-test", "--run-name", RUN,
            "--set", "run.progress=false", "--set", "run.threads=1", *extra]
    return modal_app.resolve(modal_app.build_parser().parse_args(argv))


def _summary_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def _expected_checkpoint_epochs(rows: list[dict], every: int, last_epoch: int, best_before: float = -1.0):
    """Epochs that must write a checkpoint, from summary.csv alone: a new best val/score, every `every`
    epochs, the last epoch (tune.train's rule)."""
    out, best = [], best_before
    for r in rows:
        e, score = int(r["epoch"]), float(r["val/score"])
        if score > best or e % every == 0 or e == last_epoch:
            out.append(e)
        best = max(best, score)
    return out


def test_local_smoke_run_commits_once_per_checkpoint(modal_app, tmp_path, monkeypatch):
    root = tmp_path / "volume"
    rec = CommitRecorder(root / RUN)
    monkeypatch.setattr(modal_app, "commit_volume", rec)
    cfg, name = _smoke_args(modal_app, "--set", "optim.epochs=4", "--set", "run.checkpoint_every=3")
    with pytest.warns(UserWarning, match="executing locally"):  # Modal's own .local(), volumes not mounted
        out = modal_app.train_remote.local(cfg, name, root=str(root), smoke_test=True)

    run_dir = root / RUN
    assert Path(out["run_dir"]) == run_dir.resolve() and out["start_epoch"] == 0 and out["epochs_run"] == 4
    assert (root / "data/smoke/cache/index.parquet").is_file()  # the smoke data went into the "Volume"
    rows = _summary_rows(run_dir)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    ckpt_epochs = [e for e, _ in out["checkpoints"]]
    assert ckpt_epochs == _expected_checkpoint_epochs(rows, every=3, last_epoch=4)
    assert {1, 3, 4} <= set(ckpt_epochs)  # first epoch is always a new best; every 3; the last
    assert all(Path(d) == run_dir.resolve() / "last" for _, d in out["checkpoints"])
    # commits: the freshly built data, then one per checkpoint report (seen complete on disk), then the end
    assert rec.seen == [None, *ckpt_epochs, 4]
    assert out["commits"] == len(rec.seen) == len(ckpt_epochs) + 2
    saved = json.loads((run_dir / "best" / "config.json").read_text())
    assert Path(saved["run"]["out_dir"]).resolve() == run_dir.resolve() and saved["optim"]["epochs"] == 4


def test_rerun_after_a_crash_resumes_from_the_last_committed_checkpoint(modal_app, tmp_path, monkeypatch):
    root = tmp_path / "volume"
    rec = CommitRecorder(root / RUN)
    monkeypatch.setattr(modal_app, "commit_volume", rec)
    marker = tmp_path / "failed-once"
    cfg, name = _smoke_args(modal_app, "--set", "optim.epochs=3", "--set", "run.checkpoint_every=1",
                            "--set", f"run.fail_once_marker={marker}")
    # attempt 1: the container "dies" right after epoch 1's checkpoint was written and committed
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="simulated worker failure"):
        modal_app.train_remote.local(cfg, name, root=str(root), smoke_test=True)
    assert rec.seen == [None, 1]

    # attempt 2 (what Modal's retry or a re-run with the same --run-name does): continues at epoch 2
    rec.seen.clear()
    with pytest.warns(UserWarning):
        out = modal_app.train_remote.local(cfg, name, root=str(root), smoke_test=True)
    assert out["start_epoch"] == 1 and out["epochs_run"] == 3
    assert [e for e, _ in out["checkpoints"]] == [2, 3]  # checkpoint_every=1: every epoch
    assert rec.seen == [2, 3, 3]  # data already in the Volume: no data commit this time
    assert [int(r["epoch"]) for r in _summary_rows(root / RUN)] == [1, 2, 3]  # epoch 1 kept, not redone

    # a later re-run with more epochs picks up at epoch 3
    rec.seen.clear()
    cfg5 = modal_app._apply(cfg, {"optim.epochs": "4"}).to_dict()
    with pytest.warns(UserWarning):
        out = modal_app.train_remote.local(cfg5, name, root=str(root), smoke_test=True)
    assert (out["start_epoch"], out["epochs_run"], rec.seen) == (3, 4, [4, 4])


def test_cli_without_an_account_says_modal_setup(offline):
    out = _python(offline, "-m", "tune.modal_app", "--smoke-test", "--run-name", "s")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "Token missing" in out.stderr and "`modal setup`" in out.stderr


def test_modal_run_finds_the_entrypoint_and_stops_at_the_missing_token(offline):
    # `modal run -m tune.modal_app` imports the module and its local entrypoint, then needs an account.
    out = _python(offline, "-m", "modal", "run", "-m", "tune.modal_app", "--", "--smoke-test")
    assert out.returncode != 0
    assert "Token missing" in out.stdout + out.stderr


@pytest.mark.parametrize("held, smoke, fails", [
    (set(), False, True),                                  # empty Volume: stop before paying for a GPU
    ({"data/synth/cache/index.parquet"}, False, False),    # the cache is there
    ({"data/synth/train.csv"}, False, False),              # the container can build the cache
    (set(), True, False),                                  # --smoke-test generates its own data
    (None, False, False),                                  # cannot check (no account): the container decides
])
def test_preflight_checks_the_volume_for_data(modal_app, monkeypatch, held, smoke, fails):
    from features.errors import MabeDataError
    from tune.config import TrainConfig

    monkeypatch.setattr(modal_app, "volume_has", lambda path: None if held is None else path in held)
    cfg = TrainConfig().to_dict()  # data.root = data/synth, data.cache = data/synth/cache
    assert cfg["data"]["cache"] == "data/synth/cache"
    if fails:
        upload = "`modal volume put mabe-tune <local cache dir> data/synth/cache`"
        with pytest.raises(MabeDataError, match=upload):
            modal_app.preflight(cfg, smoke)
    else:
        modal_app.preflight(cfg, smoke)


def test_volume_has_is_unknown_without_an_account(offline):
    # A fresh interpreter: modal reads its token at import, and this must never reach a real account.
    code = "import tune.modal_app as m; print(m.volume_has('data/synth-cache/index.parquet'))"
    out = _python(offline, "-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"


@pytest.mark.parametrize("path, inside", [
    ("data/cache", "data/cache"), ("/runs/data/cache", "data/cache"), ("/home/me/cache", None),
    ("/runsx/cache", None),
])
def test_in_volume(modal_app, path, inside):
    assert modal_app.in_volume(path) == inside


def test_a_local_absolute_cache_is_refused_before_launch(modal_app, tmp_path):
    # e.g. the best trial of a local Ray search recorded data.cache=/home/me/data/cache
    exp = tmp_path / "exp"
    _write_experiment(exp, [{"trial": 1, "best_score": "0.5", "best_checkpoint": "t1/best", "lr": 1e-3}])
    cfg_file = exp / "t1/best/config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["data"]["cache"] = "/home/me/data/cache"
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(MabeDataError, match="modal volume put mabe-tune /home/me/data/cache data/cache"):
        modal_app.launch(["--from-experiment", str(exp), "--dry-run"])
    out = modal_app.launch(["--from-experiment", str(exp), "--dry-run", "--set", "data.cache=data/cache"])
    assert out is None  # dry run: nothing launched
