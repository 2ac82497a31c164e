"""Fault injection (issue 13 item 5): the real CLIs as subprocesses, stopped by real signals at points they
reach for real, and real write failures; no mocks.

Every kill case: the CLI is started, the test polls the file system until the command is provably in the
middle of its work (a temporary folder or file of its own has appeared), sends SIGKILL to its process group
(SIGINT for the Ctrl-C case), then checks that the output folder still holds the previous result byte for
byte (or nothing), re-runs the same command and compares the result with an uninterrupted run's (file
hashes, arrays, rows).
Write failures: a read-only target folder (for root: CAP_DAC_OVERRIDE dropped from the child's bounding set,
so the permission bits count) and `resource.setrlimit(RLIMIT_FSIZE)` set in the child: one line on stderr,
exit 2, no traceback, the previous output intact and loadable.

Poll loops have a generous deadline only to turn a hang into a failure; nothing asserts a duration.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from tune.keys import BEST_CKPT

REPO = Path(__file__).resolve().parents[1]
HANG_S = 300  # a command that neither finishes nor reaches its kill point within this is a failure


def _env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("RAY_ADDRESS", None)
    return env


def cli(module: str, *args, preexec=None, ok: bool = True, cwd=None) -> subprocess.CompletedProcess:
    """Run `python -m module args...`; with ok=True it must exit 0."""
    p = subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                       env=_env(), preexec_fn=preexec, timeout=HANG_S * 2, cwd=cwd)
    if ok:
        assert p.returncode == 0, f"{module} exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p


def interrupt_when(module: str, args, ready, sig=signal.SIGKILL, cwd=None) -> tuple[int, str]:
    """Start `python -m module args`, poll `ready(output so far)` until it is true, then send `sig` to the
    whole process group (as a terminal's Ctrl-C or an OOM/preemption kill would). Returns (exit status,
    stdout+stderr). Fails if the command finishes before the point was reached (the case would not have been
    tested)."""
    log = tempfile.TemporaryFile("w+")
    p = subprocess.Popen([sys.executable, "-m", module, *map(str, args)], stdout=log,
                         stderr=subprocess.STDOUT, env=_env(), start_new_session=True, cwd=cwd)
    try:
        deadline = time.monotonic() + HANG_S
        while not ready(_read(log)):
            if p.poll() is not None:
                log.seek(0)
                pytest.fail(f"{module} finished (exit {p.returncode}) before the kill point:\n"
                            f"{log.read()[-3000:]}")
            assert time.monotonic() < deadline, f"{module} never reached the kill point"
            time.sleep(0.002)
        os.killpg(p.pid, sig)
        rc = p.wait(timeout=HANG_S)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)  # leftovers of the group (worker processes)
        log.seek(0)
        text = log.read()
        log.close()
    return rc, text


def _read(log) -> str:
    log.seek(0)
    return log.read()


def tree(folder: Path, skip=()) -> dict[str, str]:
    """{relative path: sha256} of every file below `folder` (names in `skip` left out)."""
    folder = Path(folder)
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip
    }


def leftovers(folder: Path) -> list[str]:
    """Temporary or old copies (`.x.tmp-*`, `.x.old-*`, `*.tmp-*`) anywhere below `folder`."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if ".tmp" in p.name or
                  ".old-" in p.name)


def assert_one_line_error(p: subprocess.CompletedProcess, *words: str) -> None:
    err = p.stderr.strip()
    assert p.returncode == 2, f"exit {p.returncode}:\n{p.stdout[-1500:]}\n{p.stderr[-3000:]}"
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for w in words:
        assert w.lower() in err.lower(), (w, err)


# ---------------------------------------------------------------- write failures set up in the child process
_libc = ctypes.CDLL(None, use_errno=True)
_PR_CAPBSET_DROP, _CAP_DAC_OVERRIDE = 24, 1


def child_limits(fsize: int | None = None, read_only: bool = False):
    """preexec_fn: a file-size limit (Python ignores SIGXFSZ, so a write past it fails with EFBIG) and/or, for
    root, no CAP_DAC_OVERRIDE (so a folder without write permission is read-only for the child as well)."""

    def pre():
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        if read_only and os.geteuid() == 0 and _libc.prctl(_PR_CAPBSET_DROP, _CAP_DAC_OVERRIDE, 0, 0, 0):
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE)")

    return pre


@contextlib.contextmanager
def read_only(*folders: Path):
    """The folders without write permission for the duration (restored afterwards, for tmp_path's cleanup)."""
    modes = [(f, f.stat().st_mode) for f in folders]
    for f, m in modes:
        f.chmod(m & ~0o222)
    try:
        yield
    finally:
        for f, m in modes:
            f.chmod(m)


# ------------------------------------------------------------------------------------ 1. the feature cache
def cache_content(path: Path) -> dict:
    """Everything a cache holds except the run's own clock readings."""
    meta = json.loads((path / "meta.json").read_text())
    meta.pop("created")
    for k in ("seconds", "rows_per_s", "out"):
        meta["summary"].pop(k)
    return {"files": tree(path, skip=("meta.json",)), "meta": meta}


@pytest.fixture(scope="module")
def feature_data(synth_set, tmp_path_factory):
    """8 training videos (no cache) and the reference: an uninterrupted 2-fold build."""
    s = synth_set(n_videos=8, n_frames=600, seed=2, test_videos=1, cache=False)
    ref = tmp_path_factory.mktemp("ref-cache") / "cache"
    cli("features.build", "--data", s.root, "--out", ref, "--folds", 2, "--no-progress")
    return s.root, ref


def _staged(out: Path, pattern: str):
    return lambda _: any(out.parent.glob(f".{out.name}.*/{pattern}"))


@pytest.mark.slow
def test_kill9_during_cache_build(feature_data, tmp_path):
    data, ref = feature_data
    out = tmp_path / "work" / "cache"
    build = ["--data", data, "--out", out, "--folds", 2, "--no-progress"]

    # a first build killed after its first video: no cache folder at all, so nothing can read half a cache
    rc, _ = interrupt_when("features.build", build, _staged(out, "videos/*.x.npy"))
    assert rc == -signal.SIGKILL
    assert not out.exists() and list(out.parent.glob(f".{out.name}.tmp-*")), "the kill left its temp folder"

    # a previous cache (3 folds) is in place; a rebuild (2 folds) is killed midway: the old cache is untouched
    cli("features.build", "--data", data, "--out", out, "--folds", 3, "--no-progress")
    before = tree(out)
    rc, _ = interrupt_when("features.build", build, _staged(out, "videos/*.x.npy"))
    assert rc == -signal.SIGKILL
    assert tree(out) == before
    from features.cache import FeatureCache

    assert FeatureCache(out).meta["n_folds"] == 3

    # the re-run finishes, equals the uninterrupted build, and cleans the killed run's temp folder
    cli("features.build", *build)
    assert cache_content(out) == cache_content(ref)
    assert leftovers(out.parent) == []


# ------------------------------------------------------------------------------------ 5. writes that fail
@pytest.mark.slow
def test_cache_write_failures_keep_previous_cache(feature_data, tmp_path):
    data, _ = feature_data
    out = tmp_path / "work" / "cache"
    cli("features.build", "--data", data, "--out", out, "--folds", 3, "--no-progress")
    before = tree(out)
    rebuild = ["--data", data, "--out", out, "--folds", 2, "--no-progress"]

    p = cli("features.build", *rebuild, preexec=child_limits(fsize=64 * 1024), ok=False)
    assert_one_line_error(p, str(out), "not written", "short write")
    assert tree(out) == before and leftovers(out.parent) == []

    with read_only(out.parent):
        p = cli("features.build", *rebuild, preexec=child_limits(read_only=True), ok=False)
    assert_one_line_error(p, str(out), "not written", "permission denied")
    assert tree(out) == before and leftovers(out.parent) == []
    from features.cache import FeatureCache

    assert FeatureCache(out).meta["n_folds"] == 3


# ---------------------------------------------------------- 2-4. ensemble.build, ensemble.export, ensemble.pr
INFER = ["--window", 64, "--stride", 32, "--trim", 8, "--threads", 1]
PREDICT = ["--device", "cpu", "--threads", 1, "--no-progress"]


def ensemble_content(ens: Path) -> dict:
    """An ensemble folder without its clock readings: member files, thresholds, ensemble.json less `seconds`
    and `oof.crossfit_seconds`, and the OOF arrays (npz files carry zip timestamps)."""
    import numpy as np

    info = json.loads((ens / "ensemble.json").read_text())
    info.pop("seconds", None)
    info.get("oof", {}).pop("crossfit_seconds", None)
    oof = {}
    for f in sorted((ens / "oof").glob("*.npz")):
        with np.load(f) as z:
            oof[f.name] = {k: hashlib.sha256(np.ascontiguousarray(z[k]).tobytes()).hexdigest()
                           for k in z.files}
    files = {k: v for k, v in tree(ens, skip=("ensemble.json",)).items() if not k.startswith("oof/")}
    return {"files": files, "info": info, "oof": oof}


def bundle_content(bundle: Path) -> dict:
    """A bundle without its clock readings: every file's hash, except the manifest's `created` and the wheel,
    compared by its members' bytes (zip timestamps differ between builds)."""
    import zipfile

    out = {}
    for name, digest in tree(bundle).items():
        if name.endswith(".whl"):
            with zipfile.ZipFile(bundle / name) as z:
                out[name] = {i.filename: i.CRC for i in z.infolist()}
        elif name == "manifest.json":
            m = json.loads((bundle / name).read_text())
            m.pop("created", None)
            m["files"] = {k: v for k, v in m["files"].items() if not k.endswith(".whl")}
            out[name] = m
        else:
            out[name] = digest
    return out


@pytest.fixture(scope="module")
def ens_ref(synth_small, tmp_path_factory):
    """Two checkpoints on the small set, and the uninterrupted references: ensemble, bundle, submission."""
    from helpers import make_checkpoint

    base = tmp_path_factory.mktemp("faults-ens")
    make_checkpoint(base / "exp" / "train-a" / "checkpoint_1", synth_small.cache, 0.3, "tcn", 0, 1)
    make_checkpoint(base / "exp" / "train-b" / "checkpoint_1", synth_small.cache, 0.2, "conv_bilstm", 1, 2)
    build = ["--experiment", base / "exp", "--top-k", 2, "--strategy", "per-fold", *INFER]
    ref = base / "ref"
    cli("ensemble.build", *build, "--out", ref / "ens")
    cli("ensemble.export", "--ensemble", ref / "ens", "--out", ref / "bundle")
    cli("ensemble.predict", "--bundle", ref / "bundle", "--data", synth_small.root, "--out", ref / "sub.csv",
        *PREDICT)
    return {"build": build, "ens": ref / "ens", "bundle": ref / "bundle", "sub": ref / "sub.csv",
            "data": synth_small.root}


@pytest.mark.slow
def test_kill9_during_ensemble_build(ens_ref, tmp_path):
    out = tmp_path / "work" / "ens"
    build = [*ens_ref["build"], "--out", out]
    first_member = lambda _: any(out.parent.rglob("model.pt"))  # noqa: E731 - a member is being copied

    # a first build killed while it copies its members: no ensemble, and the next step says so
    rc, _ = interrupt_when("ensemble.build", build, first_member)
    assert rc == -signal.SIGKILL
    assert not (out / "ensemble.json").exists()
    p = cli("ensemble.export", "--ensemble", out, "--out", tmp_path / "bundle", ok=False)
    assert_one_line_error(p, str(out))
    assert not (tmp_path / "bundle").exists()

    # a previous ensemble (1 member, default post-processing) is in place; a rebuild is killed midway
    shutil.rmtree(out, ignore_errors=True)
    cli("ensemble.build", *ens_ref["build"][:2], "--top-k", 1, "--no-tune", *INFER, "--out", out)
    before = tree(out)
    rc, _ = interrupt_when("ensemble.build", build, lambda _: _new_member(out, before))
    assert rc == -signal.SIGKILL
    assert tree(out) == before, "a killed rebuild changed the previous ensemble"

    cli("ensemble.build", *build)
    assert ensemble_content(out) == ensemble_content(ens_ref["ens"])
    assert leftovers(out.parent) == []


def _new_member(out: Path, before: dict) -> bool:
    """A member file the previous ensemble did not have exists somewhere beside or below `out`."""
    for p in out.parent.rglob("model.pt"):
        rel = p.relative_to(out) if p.is_relative_to(out) else None
        if rel is None or str(rel) not in before:
            return True
    return False


@pytest.mark.slow
def test_kill9_during_export(ens_ref, tmp_path):
    out = tmp_path / "work" / "bundle"
    cli("ensemble.export", "--ensemble", ens_ref["ens"], "--out", out, "--title", "the previous bundle")
    before = tree(out)
    export = ["--ensemble", ens_ref["ens"], "--out", out]
    rc, _ = interrupt_when("ensemble.export", export, _staged(out, "model-0.pt"))
    assert rc == -signal.SIGKILL
    assert tree(out) == before
    from ensemble.predict import verify_bundle

    verify_bundle(out)
    cli("ensemble.export", *export)
    assert bundle_content(out) == bundle_content(ens_ref["bundle"])
    assert leftovers(out.parent) == []


@pytest.mark.slow
def test_kill9_during_predict(ens_ref, tmp_path):
    out = tmp_path / "work" / "submission.csv"
    cli("ensemble.predict", "--bundle", ens_ref["bundle"], "--data", ens_ref["data"], "--out", out,
        "--limit", 1, *PREDICT)
    before = tree(out.parent)
    args = ["--bundle", ens_ref["bundle"], "--data", ens_ref["data"], "--out", out, *PREDICT]
    rc, _ = interrupt_when("ensemble.predict", args, lambda text: "files verified" in text)  # predicting
    assert rc == -signal.SIGKILL
    assert tree(out.parent) == before  # the previous submission, byte for byte, and nothing half-written
    cli("ensemble.predict", *args)
    assert out.read_bytes() == ens_ref["sub"].read_bytes()
    assert leftovers(out.parent) == []


@pytest.mark.slow
def test_export_write_failures_keep_previous_bundle(ens_ref, tmp_path):
    from ensemble.predict import verify_bundle

    out = tmp_path / "work" / "bundle"
    cli("ensemble.export", "--ensemble", ens_ref["ens"], "--out", out, "--title", "the previous bundle")
    before = tree(out)
    export = ["--ensemble", ens_ref["ens"], "--out", out]

    p = cli("ensemble.export", *export, preexec=child_limits(fsize=16 * 1024), ok=False)
    assert_one_line_error(p)
    assert tree(out) == before and leftovers(out.parent) == []
    verify_bundle(out)

    with read_only(out.parent):
        p = cli("ensemble.export", *export, preexec=child_limits(read_only=True), ok=False)
    assert_one_line_error(p, "permission denied")
    assert tree(out) == before and leftovers(out.parent) == []
    verify_bundle(out)


# --------------------------------------------------------------------------- 6. Ctrl-C of a search, --resume
def _trials(exp: Path) -> dict[str, list[str]]:
    """{trial folder: its result.json lines} (one line per epoch + the driver's final report)."""
    return {p.parent.name: [x for x in p.read_text().splitlines() if x.strip()]
            for p in exp.glob("*/result.json")}


@pytest.mark.slow
@pytest.mark.ray
def test_ctrl_c_search_then_resume(synth_small, tmp_path):
    """SIGINT to the process group of a running search (a terminal's Ctrl-C) once its first trial has
    finished: exit 130 with one line saying how to resume, no results.csv as if it were complete; `--resume`
    finishes the search without training the finished trial again."""
    from helpers import kill_under, terminated_logdirs, terminated_trials

    ray_tmp = Path(tempfile.mkdtemp(prefix="rfc", dir="/tmp"))  # short: Ray's unix socket paths
    os.environ["RAY_TMPDIR"] = str(ray_tmp)  # inherited by the CLI subprocesses (_env copies os.environ)
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = "1"
    exp = tmp_path / "exp" / "cc"
    args = ["--data", synth_small.root, "--cache", synth_small.cache, "--storage", tmp_path / "exp",
            "--name", "cc", "--smoke-test", "--num-samples", 2, "--max-concurrent", 1, "--epochs", 1,
            "--grace-period", 2, "--set", "run.checkpoint_every=1"]
    try:
        rc, text = interrupt_when("tune.search", args, lambda _: terminated_trials(exp) >= 1,
                                  sig=signal.SIGINT)
        kill_under(str(ray_tmp))
        assert rc == 130 and "Traceback" not in text, text[-3000:]
        assert "python -m tune.search: interrupted with 1 trial(s) unfinished" in text and "--resume" in text
        assert not (exp / "results.csv").exists(), "an interrupted search must not look finished"
        before = _trials(exp)
        finished = terminated_logdirs(exp)   # what the resume sees as done
        # 1 epoch + the driver's report
        assert finished and all(len(before[t]) == 2 for t in finished), before

        p = cli("tune.search", *args, "--resume")
        assert "resuming" in p.stdout
    finally:
        kill_under(str(ray_tmp))
        shutil.rmtree(ray_tmp, ignore_errors=True)
        os.environ.pop("RAY_TMPDIR", None)
        os.environ.pop("TUNE_GLOBAL_CHECKPOINT_S", None)
    table = pd.read_csv(exp / "results.csv")
    assert table["trial"].tolist() == [1, 2] and (table["status"] == "TERMINATED").all()
    after = _trials(exp)
    assert len(after) == 2
    assert all(after[t] == before[t] for t in finished)  # a finished trial was not run again
    for t, lines in after.items():
        rows = [json.loads(x) for x in lines]
        assert lines[:len(before.get(t, []))] == before.get(t, []), (t, lines)  # its history is kept
        assert rows[-1].get(BEST_CKPT), (t, lines)  # every trial ends with the driver's report
        # its one epoch reached Tune at most once: never, if the interrupt fell after Ray Train stored the
        # epoch's checkpoint but before Tune logged the report (the resumed Train run has nothing to train);
        # a trial that finished after the last saved state runs again and only reports.
        epochs = [r["epoch"] for r in rows if BEST_CKPT not in r]
        assert epochs in ([], [1]), (t, lines)
    runs = sorted(p.name for p in exp.glob("train-*"))
    assert len(runs) == 2 and set(table["trial_id"].map(lambda t: f"train-{t}")) == set(runs)
