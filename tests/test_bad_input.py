"""The bad-input corpus: every CLI, run as a real subprocess, answers a user error with exit 2, no traceback,
and one stderr line that names the file/flag and the problem; folders the user owns are left intact.

Each case: (module, arguments, words the last stderr line must contain, setup). Placeholders in arguments:
{data} a synthetic Kaggle-layout folder (read-only, shared), {cache} its feature cache, {ens} a built
ensemble folder, {bundle} an exported bundle (both shared, read-only), {tmp} the test's own folder. A setup
writes user files into {tmp} first; every file it wrote must be unchanged afterwards (nothing lost).
tune.search cases are fast-failing ones only (refused before data prep and Ray start).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIMIT_S = 120  # a case that runs longer than this started real work instead of refusing: a failure


# ------------------------------------------------------------------------------------------------ setups
def user_folder(tmp: Path) -> None:
    """{tmp}/mine: a folder holding the user's only copy of something."""
    (tmp / "mine").mkdir()
    (tmp / "mine" / "my_only_copy.txt").write_text("precious\n")


def user_data(tmp: Path, data: Path) -> None:
    """{tmp}/X: a Kaggle-layout dataset the user owns (no synth marker)."""
    shutil.copytree(data, tmp / "X", ignore=shutil.ignore_patterns("cache", "synth.json", ".*"))


def a_file(tmp: Path) -> None:
    (tmp / "file").write_text("not a folder\n")


def bad_yaml(tmp: Path) -> None:
    (tmp / "bad.yaml").write_text("model:\n  name: tcn\n  hidden: [16\noptim: {lr: \n")


def bad_csv(tmp: Path) -> None:
    (tmp / "sub.csv").write_text("this,is\nnot,a submission\n")


def empty_folder(tmp: Path) -> None:
    (tmp / "empty").mkdir()


def bad_metadata(tmp: Path) -> None:
    (tmp / "D").mkdir()
    (tmp / "D" / "train.csv").write_text("video_id,lab_id\n1,\x00\x00garbage\n")


SETUPS = {f.__name__: f for f in (user_folder, a_file, bad_yaml, bad_csv, empty_folder, bad_metadata)}

# ------------------------------------------------------------------------------------------------ the corpus
FB, FS = "features.build", "features.synth"
TT, TS, TR = "tune.train", "tune.search", "tune.results"
EB, EE, EP, EM = "ensemble.build", "ensemble.export", "ensemble.predict", "ensemble.metric"
SEARCH = ["--data", "{data}", "--cache", "{cache}", "--storage", "{tmp}/exp", "--name", "s"]
# --set on every key of the CPU search space (tune/space.py CPU_SPACE): nothing is left to search
PIN_ALL = [a for k, v in (("optim.lr", 1e-3), ("optim.warmup_epochs", 1), ("optim.bg_weight", 1),
                          ("optim.class_weight_power", 0.5), ("model.name", "tcn"), ("model.hidden", 16),
                          ("model.dropout", 0.1), ("data.window", 64), ("optim.batch_size", 16))
           for a in ("--set", f"{k}={v}")]

CASES = [
    # features.build
    ("fb-out-is-data", FB, ["--data", "{tmp}/X", "--out", "{tmp}/X"], ["--out", "is --data"], "user_data"),
    ("fb-out-contains-data", FB, ["--data", "{tmp}/X", "--out", "{tmp}"], ["--out", "contains --data"],
     "user_data"),
    ("fb-out-user-folder", FB, ["--data", "{data}", "--out", "{tmp}/mine"], ["mine", "my_only_copy.txt"],
     "user_folder"),
    ("fb-out-foreign-data", FB, ["--data", "{data}", "--out", "{tmp}/X"], ["--out", "test.csv", "refusing"],
     "user_data"),
    ("fb-out-is-file", FB, ["--data", "{data}", "--out", "{tmp}/file"], ["--out", "is a file"], "a_file"),
    ("fb-folds-0", FB, ["--data", "{data}", "--out", "{tmp}/c", "--folds", "0"], ["--folds", ">= 1"], None),
    ("fb-max-gap-neg", FB, ["--data", "{data}", "--out", "{tmp}/c", "--max-gap-s", "-5"],
     ["--max-gap-s", ">= 0"], None),
    ("fb-workers-neg", FB, ["--data", "{data}", "--out", "{tmp}/c", "--workers", "-3"], ["--workers", ">= 1"],
     None),
    ("fb-limit-0", FB, ["--data", "{data}", "--out", "{tmp}/c", "--limit", "0"], ["--limit", ">= 1"], None),
    ("fb-target-fps-neg", FB, ["--data", "{data}", "--out", "{tmp}/c", "--target-fps", "-1"],
     ["--target-fps", "> 0"], None),
    ("fb-feature-set", FB, ["--data", "{data}", "--out", "{tmp}/c", "--feature-set", "foo"],
     ["--feature-set", "invalid choice"], None),
    ("fb-no-data", FB, ["--data", "{tmp}/nope", "--out", "{tmp}/c"], ["train.csv", "not found"], None),
    ("fb-bad-metadata", FB, ["--data", "{tmp}/D", "--out", "{tmp}/c"], ["train.csv"], "bad_metadata"),
    ("fb-workers-text", FB, ["--data", "{data}", "--out", "{tmp}/c", "--workers", "two"],
     ["--workers", "invalid int"], None),
    # features.synth
    ("fs-videos-0", FS, ["--out", "{tmp}/s", "--videos", "0"], ["--videos", ">= 1"], None),
    ("fs-frames-small", FS, ["--out", "{tmp}/s", "--frames", "10"], ["--frames", ">= 100"], None),
    ("fs-test-videos-neg", FS, ["--out", "{tmp}/s", "--test-videos", "-1"], ["--test-videos", ">= 0"], None),
    ("fs-unknown-lab", FS, ["--out", "{tmp}/s", "--labs", "NoSuchLab"], ["--labs", "NoSuchLab"], None),
    ("fs-foreign-data", FS, ["--out", "{tmp}/X", "--videos", "1"], ["synth.json", "refusing"], "user_data"),
    ("fs-out-is-file", FS, ["--out", "{tmp}/file"], ["--out", "is a file"], "a_file"),
    # tune.train
    ("tt-malformed-yaml", TT, ["--config", "{tmp}/bad.yaml"], ["bad.yaml"], "bad_yaml"),
    ("tt-missing-config", TT, ["--config", "{tmp}/missing.yaml"], ["missing.yaml"], None),
    ("tt-unknown-model", TT, ["--set", "model.name=foo", "--set", "data.cache={cache}"],
     ["model.name", "foo"], None),
    ("tt-unknown-field", TT, ["--set", "nosuch.field=1"], ["nosuch"], None),
    ("tt-bad-value", TT, ["--set", "optim.lr=abc"], ["optim.lr", "abc"], None),
    ("tt-set-no-equals", TT, ["--set", "optim.lr"], ["--set", "optim.lr"], None),
    ("tt-missing-data", TT, ["--set", "data.root={tmp}/nope", "--set", "data.cache={tmp}/nocache"],
     ["data.cache", "nocache"], None),
    ("tt-workers-neg", TT, ["--workers", "-1", "--set", "data.cache={cache}"], ["--workers"], None),
    # tune.search (fast-failing only)
    ("ts-malformed-yaml", TS, [*SEARCH, "--config", "{tmp}/bad.yaml"], ["bad.yaml"], "bad_yaml"),
    ("ts-unknown-model", TS, [*SEARCH, "--set", "model.name=foo"], ["model.name", "foo"], None),
    ("ts-warm-start-missing", TS, [*SEARCH, "--warm-start", "{tmp}/nope"], ["--warm-start", "nope"], None),
    ("ts-warm-start-not-experiment", TS, [*SEARCH, "--warm-start", "{tmp}/mine"], ["--warm-start", "mine"],
     "user_folder"),
    ("ts-num-samples-0", TS, [*SEARCH, "--num-samples", "0"], ["--num-samples"], None),
    ("ts-max-concurrent-0", TS, [*SEARCH, "--max-concurrent", "0"], ["--max-concurrent"], None),
    ("ts-unknown-space", TS, [*SEARCH, "--space", "foo"], ["--space", "foo"], None),
    ("ts-everything-pinned", TS, [*SEARCH, *PIN_ALL], ["pins every key", "tune.train"], None),
    ("ts-missing-data", TS, ["--data", "{tmp}/nope", "--storage", "{tmp}/exp", "--name", "s"],
     ["--data", "nope"], None),
    ("ts-set-no-equals", TS, [*SEARCH, "--set", "optim.lr"], ["--set", "optim.lr"], None),
    ("ts-resume-nothing", TS, [*SEARCH, "--resume"], ["--resume", "s"], None),
    # tune.results
    ("tr-missing-experiment", TR, ["--experiment", "{tmp}/nope"], ["--experiment", "nope"], None),
    ("tr-empty-experiment", TR, ["--experiment", "{tmp}/empty"], ["empty"], "empty_folder"),
    # ensemble.build
    ("eb-missing-experiment", EB, ["--experiment", "{tmp}/nope", "--out", "{tmp}/e"], ["nope"], None),
    ("eb-no-checkpoints", EB, ["--experiment", "{tmp}/empty", "--out", "{tmp}/e"], ["empty", "checkpoint"],
     "empty_folder"),
    ("eb-nothing-given", EB, ["--out", "{tmp}/e"], ["--experiment"], None),
    ("eb-top-k-0", EB, ["--experiment", "{ens}", "--top-k", "0", "--out", "{tmp}/e"], ["--top-k"], None),
    ("eb-out-user-folder", EB, ["--checkpoints", "{ens}/members/m0", "--out", "{tmp}/mine"],
     ["mine", "my_only_copy.txt"], "user_folder"),
    # ensemble.export
    ("ee-missing-ensemble", EE, ["--ensemble", "{tmp}/nope", "--out", "{tmp}/b"], ["nope"], None),
    ("ee-not-an-ensemble", EE, ["--ensemble", "{tmp}/empty", "--out", "{tmp}/b"], ["empty", "ensemble.json"],
     "empty_folder"),
    ("ee-out-user-folder", EE, ["--ensemble", "{ens}", "--out", "{tmp}/mine", "--no-wheel"],
     ["mine", "my_only_copy.txt"], "user_folder"),
    ("ee-out-is-ensemble", EE, ["--ensemble", "{ens}", "--out", "{ens}", "--no-wheel"], ["--out"], None),
    ("ee-bad-dataset-id", EE, ["--ensemble", "{ens}", "--out", "{tmp}/b", "--dataset-id", "no slash",
                               "--no-wheel"], ["--dataset-id"], None),
    # ensemble.predict
    ("ep-missing-bundle", EP, ["--bundle", "{tmp}/nope", "--data", "{data}", "--out", "{tmp}/s.csv"],
     ["nope"], None),
    ("ep-not-a-bundle", EP, ["--bundle", "{tmp}/empty", "--data", "{data}", "--out", "{tmp}/s.csv"],
     ["empty", "manifest.json"], "empty_folder"),
    ("ep-missing-data", EP, ["--bundle", "{bundle}", "--data", "{tmp}/nope", "--out", "{tmp}/s.csv"],
     ["nope", "test.csv"], None),
    ("ep-limit-0", EP, ["--bundle", "{bundle}", "--data", "{data}", "--out", "{tmp}/s.csv", "--limit", "0"],
     ["--limit"], None),
    ("ep-out-is-folder", EP, ["--bundle", "{bundle}", "--data", "{data}", "--out", "{tmp}/mine"],
     ["--out", "mine"], "user_folder"),
    ("ep-bad-device", EP, ["--bundle", "{bundle}", "--data", "{data}", "--out", "{tmp}/s.csv", "--device",
                           "tpu"], ["--device", "tpu"], None),
    # ensemble.metric
    ("em-missing-solution", EM, ["--solution", "{tmp}/nope.csv", "--submission", "{tmp}/sub.csv"],
     ["nope.csv"], "bad_csv"),
    ("em-bad-submission", EM, ["--solution", "{data}/test_solution.csv", "--submission", "{tmp}/sub.csv"],
     ["sub.csv"], "bad_csv"),
    ("em-beta-0", EM, ["--solution", "{data}/test_solution.csv", "--submission", "{tmp}/sub.csv", "--beta",
                       "0"], ["--beta"], "bad_csv"),
]


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def world(tmp_path_factory, synth_small):
    """The shared inputs: synthetic data + cache, a 2-member ensemble and its bundle (no wheel)."""
    from helpers import make_bundle

    base = tmp_path_factory.mktemp("bad-input")
    root = synth_small.root
    make_bundle(base, root / "cache", "tcn", tune_post=False, wheel=False)
    return {"data": root, "cache": root / "cache", "ens": base / "ens", "bundle": base / "bundle"}


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _run(module: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n[killed after {LIMIT_S} s: the command started real work instead of refusing]"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _case(case: tuple, world: dict, tmp: Path) -> dict:
    """Run one case in its own folder `tmp`: setup, the CLI, and snapshots of what the user owns."""
    _, module, args, _, setup = case
    work = tmp / "w"
    work.mkdir(parents=True)
    if setup == "user_data":
        user_data(work, world["data"])
    elif setup:
        SETUPS[setup](work)
    before = _snapshot(work)
    proc = _run(module, [a.format(tmp=work, **world) for a in args], cwd=tmp)
    after = _snapshot(work)
    return {"proc": proc, "kept": {k: v for k, v in after.items() if k in before} == before}


@pytest.fixture(scope="module")
def ran(request, world, tmp_path_factory):
    """Every selected case, run a few at a time (each is mostly interpreter start-up and imports)."""
    from concurrent.futures import ThreadPoolExecutor

    wanted = [it.callspec.params["case"] for it in request.session.items
              if getattr(it, "originalname", "") == "test_bad_input_one_line_exit_2"]
    shared = {k: _snapshot(world[k]) for k in ("ens", "bundle")}
    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 1))) as pool:
        futs = {c[0]: pool.submit(_case, c, world, tmp_path_factory.mktemp(c[0])) for c in wanted}
        out = {name: f.result() for name, f in futs.items()}
    out["_shared_kept"] = {k: _snapshot(world[k]) for k in shared} == shared
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_one_line_exit_2(case, ran):
    name, module, _, words, _ = case
    proc = ran[name]["proc"]
    err = proc.stderr.strip()
    last = err.splitlines()[-1] if err else ""
    assert "Traceback" not in err, err
    assert proc.returncode == 2, f"exit {proc.returncode}: {err[-2000:]}"
    missing = [w for w in words if w not in last]
    assert not missing, f"last stderr line {last!r} lacks {missing}"
    assert last.startswith(f"python -m {module}"), last
    assert len(err.splitlines()) == 1, f"more than one stderr line:\n{err[-2000:]}"
    assert ran[name]["kept"], "a user file changed or vanished"
    assert ran["_shared_kept"], "the shared ensemble or bundle changed"
