"""Helpers shared by several test modules (plain functions; fixtures live in conftest.py).

Import as `from helpers import ...` (pytest puts tests/ on sys.path, as for conftest.py).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from features.labels import CLASS_OF, NUM_CLASSES

LABS = {"LabA": ["sniff", "approach"], "LabB": ["attack", "chase", "sniff"]}


def write_cache(root: Path, n_videos=10, T=400, F=8, n_folds=5, seed=0) -> Path:
    """A feature cache in the features.cache layout whose features carry the label (plus noise).

    Each class has a fixed random signature vector; a frame's features are the signature of its label
    smoothed over time plus unit noise, so a temporal model can learn it and shuffled labels cannot.
    """
    rng = np.random.default_rng(seed)
    sig = rng.normal(0, 1.5, size=(NUM_CLASSES, F)).astype(np.float32)
    sig[0] = 0
    (root / "videos").mkdir(parents=True)
    rows = []
    for v in range(n_videos):
        lab = list(LABS)[v % 2]
        acts = LABS[lab]
        vid = 1000 + v
        xs, ys = [], []
        for p, (agent, target) in enumerate([(1, 2), (2, 1)]):
            y = np.zeros(T, np.int8)
            t = int(rng.integers(0, 30))
            while t < T:
                n = int(rng.integers(20, 60))
                y[t:t + n] = CLASS_OF[acts[int(rng.integers(len(acts)))]]
                t += n + int(rng.integers(30, 90))
            kernel = np.ones(5, np.float32) / 5
            clean = np.stack([np.convolve(sig[y][:, f], kernel, mode="same") for f in range(F)], axis=1)
            xs.append(clean + rng.normal(0, 1.0, size=(T, F)).astype(np.float32) + 3.0)
            ys.append(y)
            allowed = np.zeros(NUM_CLASSES, bool)
            allowed[0] = True
            allowed[[CLASS_OF[a] for a in acts]] = True
            raw = allowed.copy()
            if v == 1:
                raw[CLASS_OF["attack"]] = (
                    False  # a malformed raw whitelist entry: the metric ignores attack here
                )
            rows.append(dict(video_id=vid, lab_id=lab, agent=agent, target=target, pair=p, n_frames=T,
                             n_frames_orig=T, fps=30.0, fold=v % n_folds, split="train", file=f"videos/{vid}",
                             allowed=allowed.tolist(), allowed_raw=raw.tolist()))
        np.save(root / "videos" / f"{vid}.x.npy", np.stack(xs))
        np.save(root / "videos" / f"{vid}.y.npy", np.stack(ys))
    pd.DataFrame(rows).to_parquet(root / "index.parquet")
    (root / "meta.json").write_text(json.dumps({
        "settings": {"feature_set": "pair", "target_fps": 30.0}, "feature_names": [f"f{i}" for i in range(F)],
        "num_features": F, "n_folds": n_folds, "seed": seed, "split": "train"}))
    return root


def small_cfg(cache_dir, out_dir, **kw):
    """A TrainConfig for a few seconds of CPU training on `write_cache`'s cache."""
    from tune.config import TrainConfig

    base = {
        "data.cache": str(cache_dir),
        "run.out_dir": str(out_dir),
        "optim.epochs": 3,
        "optim.batch_size": 16,
        "data.window": 64,
        "model.hidden": 16,
        "model.conv_layers": 1,
        "optim.warmup_epochs": 1,
        "optim.lr": 3e-3,
        "optim.lr_scaling": "none",
        "run.checkpoint_every": 2,
        "run.progress": False,
        "run.threads": 1,
    }
    base.update(kw)
    return TrainConfig().replace(**base)


def make_checkpoint(
    d: Path, cache: Path, score: float, name: str = "tcn", fold: int = 0, seed: int = 0, epoch: int = 1
):
    """A real checkpoint folder (untrained model, input stats from nothing) with a chosen val/score."""
    import torch

    from features.cache import FeatureCache
    from features.labels import ACTIONS
    from models import build_model
    from models.checkpoint import save_checkpoint
    from tune.config import TrainConfig

    fc = FeatureCache(cache)
    cfg = TrainConfig.from_dict(
        {
            "data": {"cache": str(cache), "val_fold": fold},
            "model": {"name": name, "hidden": 8, "tcn_layers": 2, "conv_layers": 1},
            "features": fc.settings.to_dict(),
            "classes": ["background", *ACTIONS],
        }
    )
    torch.manual_seed(seed)
    model = build_model(cfg.model, fc.num_features)
    return save_checkpoint(d, model, cfg, {"val/score": score, "epoch": epoch})


def kill_under(tmpdir: str) -> None:
    """SIGKILL leftover processes whose command line names our private Ray temp dir (only ours)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if tmpdir in cmd:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


# The offline (Kaggle-like) environment: only these, no Ray/Optuna/Modal/tqdm; the project wheel comes from
# the bundle (pip install --no-index --no-deps). torch's own dependencies (filelock, fsspec, ...) come too.
PREDICT_VENV_PACKAGES = ("torch==2.13.0", "numpy", "pandas", "pyarrow")


def predict_venv(request) -> Path:
    """A venv with only PREDICT_VENV_PACKAGES (+ pip); returns its python. The packages are installed once,
    into a base venv kept in the pytest cache (`.pytest_cache/d/mabe-predict-venv`, built under a file lock);
    each pytest-xdist worker gets its own small venv on top of it (a .pth file puts the base's site-packages
    after its own), so two workers never install or remove the project wheel in one venv. Any mabe-tune a
    previous run installed is removed, so the caller installs the wheel it means to test."""
    from filelock import FileLock

    def purelib(python: Path) -> str:
        code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
        return done.stdout.strip()

    def uninstall(python: Path) -> None:  # the wheel of an earlier run
        subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "-q", "mabe-tune"], capture_output=True,
                       env=venv_env(), check=False)

    root = Path(request.config.cache.mkdir("mabe-predict-venv"))
    base = root / "venv" / "bin" / "python"
    marker = root / "ready.json"
    wanted = json.dumps(list(PREDICT_VENV_PACKAGES))
    with FileLock(str(root / "build.lock")):
        if not (base.is_file() and marker.is_file() and marker.read_text() == wanted):
            shutil.rmtree(root / "venv", ignore_errors=True)
            marker.unlink(missing_ok=True)
            subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
            r = subprocess.run([str(base), "-m", "pip", "install", "-q", *PREDICT_VENV_PACKAGES],
                               capture_output=True, text=True, check=False)
            assert r.returncode == 0, r.stderr[-3000:]
            marker.write_text(wanted)
        layer = root / f"worker-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
        py = layer / "bin" / "python"
        made = layer / "base.json"
        if not (py.is_file() and made.is_file() and made.read_text() == wanted):
            uninstall(base)  # a base from before the layers, when the tests installed the wheel into it
            shutil.rmtree(layer, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(layer)], check=True)
            Path(purelib(py), "predict_venv_base.pth").write_text(purelib(base) + "\n")
            made.write_text(wanted)
    uninstall(py)
    return py


def venv_env(**extra) -> dict:
    """This process's environment less PYTHONPATH/VIRTUAL_ENV (the checkout must not leak into the venv)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TQDM_DISABLE"] = "1"
    env.update(extra)
    return env


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (for `ray start`)."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def ray_bin() -> str | None:
    """The `ray` CLI of this Python environment."""
    return shutil.which("ray", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))


def submit_job(client, attempts: int = 30, **kw) -> str:
    """`JobSubmissionClient.submit_job`, retried while a freshly started head's job agent is not up yet
    ("No available agent to submit job": Ray's own answer for that state; any other error is raised)."""
    for i in range(attempts):
        try:
            return client.submit_job(**kw)
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or i == attempts - 1:
                raise
            time.sleep(2)
    raise AssertionError("unreachable")


def terminated_trials(exp: Path) -> int:
    """TERMINATED trials in Tune's saved experiment state (what a restore will see)."""
    return len(terminated_logdirs(exp))


def terminated_logdirs(exp: Path) -> set[str]:
    """Folder names (under `exp`) of the TERMINATED trials in Tune's saved experiment state; of several state
    files, the one with the most."""
    best: set[str] = set()
    for f in exp.glob("experiment_state-*.json"):
        try:
            state = json.loads(f.read_text())
        except ValueError:   # being rewritten
            continue
        # trial_data: [[trial metadata as a JSON string, runtime state as a JSON string], ...]
        trials = [json.loads(t[0]) for t in state.get("trial_data", [])]
        done = {t["relative_logdir"] for t in trials if t.get("status") == "TERMINATED"}
        best = max(best, done, key=len)
    return best


def make_bundle(base: Path, cache: Path, second: str = "tcn", tune_post: bool = True, **export_kw) -> Path:
    """Two fold checkpoints (tcn on fold 0, `second` on fold 1) -> a 2-member per-fold ensemble at
    `base/ens` (inference windows 64/32/8) -> an exported bundle at `base/bundle`; returns the bundle."""
    from ensemble.build import build
    from ensemble.export import export
    from ensemble.infer import InferSettings

    make_checkpoint(base / "exp" / "train-a" / "checkpoint_1", cache, 0.3, "tcn", 0, 1)
    make_checkpoint(base / "exp" / "train-b" / "checkpoint_1", cache, 0.2, second, 1, 2)
    build([base / "exp"], base / "ens", 2, "per-fold", settings=InferSettings(window=64, stride=32, trim=8),
          tune_post=tune_post, progress=False, log=lambda *a: None)
    export(base / "ens", base / "bundle", log=lambda *a: None, **export_kw)
    return base / "bundle"


def mirror_scene(xy: np.ndarray) -> np.ndarray:
    """Mirror canonical points [T, 9, 2] (y -> -y) and relabel left <-> right (ears, hips)."""
    from features.skeleton import CANONICAL

    out = xy.copy()
    out[..., 1] *= -1
    swap = list(range(len(CANONICAL)))
    for i, n in enumerate(CANONICAL):
        if "_left" in n:
            j = CANONICAL.index(n.replace("_left", "_right"))
            swap[i], swap[j] = j, i
    return out[:, swap]
