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
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

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
    """Start `python -m module args`, poll `ready()` until it is true, then send `sig` to the whole process
    group (as a terminal's Ctrl-C or an OOM/preemption kill would). Returns (exit status, stdout+stderr).
    Fails if the command finishes before the point was reached (the case would not have been tested)."""
    log = tempfile.TemporaryFile("w+")
    p = subprocess.Popen([sys.executable, "-m", module, *map(str, args)], stdout=log,
                         stderr=subprocess.STDOUT, env=_env(), start_new_session=True, cwd=cwd)
    try:
        deadline = time.monotonic() + HANG_S
        while not ready():
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
    return lambda: any(out.parent.glob(f".{out.name}.*/{pattern}"))


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


# --------------------------------------------------------------------------- 6. Ctrl-C of a search, --resume
def _trials(exp: Path) -> dict[str, list[str]]:
    """{trial folder: its result.json lines} (one line per epoch + the driver's final report)."""
    return {p.parent.name: [x for x in p.read_text().splitlines() if x.strip()]
            for p in exp.glob("*/result.json")}


def _terminated(exp: Path) -> int:
    """TERMINATED trials in Tune's saved experiment state (what a restore will see)."""
    n = 0
    for f in exp.glob("experiment_state-*.json"):
        try:
            state = json.loads(f.read_text())
        except ValueError:  # being rewritten
            continue
        n = max(n, sum(json.loads(t[0]).get("status") == "TERMINATED" for t in state.get("trial_data", [])))
    return n


@pytest.mark.slow
@pytest.mark.ray
def test_ctrl_c_search_then_resume(synth_small, tmp_path):
    """SIGINT to the process group of a running search (a terminal's Ctrl-C) once its first trial has
    finished: exit 130 with one line saying how to resume, no results.csv as if it were complete; `--resume`
    finishes the search without training the finished trial again."""
    from helpers import kill_under

    ray_tmp = Path(tempfile.mkdtemp(prefix="rfc", dir="/tmp"))  # short: Ray's unix socket paths
    os.environ["RAY_TMPDIR"] = str(ray_tmp)  # inherited by the CLI subprocesses (_env copies os.environ)
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = "1"
    exp = tmp_path / "exp" / "cc"
    args = ["--data", synth_small.root, "--cache", synth_small.cache, "--storage", tmp_path / "exp",
            "--name", "cc", "--smoke-test", "--num-samples", 2, "--max-concurrent", 1, "--epochs", 1,
            "--grace-period", 2, "--set", "run.checkpoint_every=1"]
    try:
        rc, text = interrupt_when("tune.search", args, lambda: _terminated(exp) >= 1, sig=signal.SIGINT)
        kill_under(str(ray_tmp))
        assert rc == 130 and "Traceback" not in text, text[-3000:]
        assert "python -m tune.search: interrupted with 1 trial(s) unfinished" in text and "--resume" in text
        assert not (exp / "results.csv").exists(), "an interrupted search must not look finished"
        before = _trials(exp)
        finished = [t for t, lines in before.items() if len(lines) == 2]  # 1 epoch + the driver's report
        assert finished, before

        p = cli("tune.search", *args, "--resume")
        assert "resuming" in p.stdout
    finally:
        kill_under(str(ray_tmp))
        os.environ.pop("RAY_TMPDIR", None)
        os.environ.pop("TUNE_GLOBAL_CHECKPOINT_S", None)
    table = pd.read_csv(exp / "results.csv")
    assert table["trial"].tolist() == [1, 2] and (table["status"] == "TERMINATED").all()
    after = _trials(exp)
    assert len(after) == 2 and all(len(lines) == 2 for lines in after.values())
    assert all(after[t] == before[t] for t in finished)  # the finished trial was not trained again
    runs = sorted(p.name for p in exp.glob("train-*"))
    assert len(runs) == 2 and set(table["trial_id"].map(lambda t: f"train-{t}")) == set(runs)
