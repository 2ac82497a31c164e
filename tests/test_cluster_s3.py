"""Multi-node cluster over object storage, emulated with real parts on this machine (issue 12).

- S3: moto's server on 127.0.0.1 (`s3_server`), reached only through the standard AWS variables.
- Cluster: `ray start --head` plus a second `ray start --address=...` (1 CPU each, the head with
  cluster.yaml's TRAIN_DRIVER resource), each node with its own node-local staging folder (MABE_STAGE_DIR)
  and PYTHONPATH.
- The submitting side uploads a tiny synthetic Kaggle download to the bucket and deletes its local copy; a
  smoke-sized search goes through JobSubmissionClient with a working_dir. Then: SUCCEEDED; each node staged
  the feature cache exactly once (which also shows both nodes ran a Train worker: 1 CPU each, 2 trials at
  once); results.csv, optuna.db, search.json and the best checkpoints are in the bucket; `ensemble.build
  --experiment s3://...` builds an ensemble from them.
- A second job, after a tracking file in the bucket was corrupted, fails fast: exit 2 with the one-line data
  error, before Ray Tune starts (so nothing is retried).

The nodes are stopped by signalling their `ray start --block` process groups (never `ray stop`: it would
kill other sessions' Ray processes).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers import free_ports, kill_under, ray_bin, submit_job

ROOT = Path(__file__).resolve().parents[1]
EXCLUDES = ["data/", "experiments/", "runs/", ".git/", "**/__pycache__", ".pytest_cache/", ".hypothesis/",
            "bundle/", "build/", "dist/", "ensembles/"]


def _start(cmd, env, log_path):
    log = open(log_path, "w")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True), log


def _stop(proc):
    for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 20)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def two_nodes(s3_server):
    """A head (1 CPU, TRAIN_DRIVER 4) and a worker node (1 CPU), distinct MABE_STAGE_DIRs; yields
    (JobSubmissionClient, {"head": stage dir, "worker": stage dir})."""
    pytest.importorskip("ray.job_submission")
    if ray_bin() is None:
        pytest.skip("ray CLI not found")
    temp = tempfile.mkdtemp(prefix="rcl", dir="/tmp")
    stages = {"head": Path(temp) / "stage-head", "worker": Path(temp) / "stage-worker"}
    base = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    base.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", TQDM_DISABLE="1",
                PYTHONPATH=os.pathsep.join([str(ROOT), base.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                PATH=os.path.dirname(sys.executable) + os.pathsep + base.get("PATH", ""))
    gcs, dash, client_port, *p = free_ports(15)
    head = [ray_bin(), "start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={dash}",
            "--dashboard-host=127.0.0.1", f"--ray-client-server-port={client_port}",
            f"--dashboard-agent-listen-port={p[0]}", f"--dashboard-agent-grpc-port={p[1]}",
            f"--metrics-export-port={p[2]}", f"--runtime-env-agent-port={p[3]}",
            f"--node-manager-port={p[4]}", f"--object-manager-port={p[5]}", "--num-cpus=1",
            '--resources={"TRAIN_DRIVER": 4}',
            f"--temp-dir={temp}", "--disable-usage-stats", "--include-dashboard=true"]
    worker = [ray_bin(), "start", "--block", f"--address=127.0.0.1:{gcs}",
              f"--dashboard-agent-listen-port={p[6]}", f"--dashboard-agent-grpc-port={p[7]}",
              f"--metrics-export-port={p[8]}", f"--runtime-env-agent-port={p[9]}",
              f"--node-manager-port={p[10]}", f"--object-manager-port={p[11]}", "--num-cpus=1",
              f"--temp-dir={temp}/w", "--disable-usage-stats"]   # its own runtime_resources, as a machine
    procs = []
    try:
        procs.append(_start(head, {**base, "MABE_STAGE_DIR": str(stages["head"])}, Path(temp) / "head.log"))
        from ray.job_submission import JobSubmissionClient

        client, deadline = None, time.time() + 120
        while client is None:
            if procs[0][0].poll() is not None:
                pytest.fail("ray start --head exited: " + (Path(temp) / "head.log").read_text()[-2000:])
            try:
                client = JobSubmissionClient(f"http://127.0.0.1:{dash}")
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(1)
        wlog = Path(temp) / "worker.log"
        for attempt in range(3):   # `ray start` gives a raylet 30 s to register: a busy 2-core CI can miss it
            procs.append(_start(worker, {**base, "MABE_STAGE_DIR": str(stages["worker"])}, wlog))
            while "Ray runtime started" not in wlog.read_text() and procs[-1][0].poll() is None:
                time.sleep(1)
            if "Ray runtime started" in wlog.read_text():
                break
            assert attempt < 2, "worker node did not join: " + wlog.read_text()[-2000:]
        yield client, stages
    finally:
        for proc, log in reversed(procs):
            _stop(proc)
            log.close()
        kill_under(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _wait(client, job_id, limit_s=900):
    from ray.job_submission import JobStatus

    deadline = time.time() + limit_s
    status = client.get_job_status(job_id)
    while status not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED) and time.time() < deadline:
        time.sleep(2)
        status = client.get_job_status(job_id)
    return status, client.get_job_logs(job_id)


def _submit(client, args: str):
    return submit_job(
        client,
        entrypoint=f"{sys.executable} -m tune.search {args}",
        runtime_env={"working_dir": str(ROOT), "excludes": EXCLUDES,
                     "env_vars": {"TQDM_DISABLE": "1", "RAY_AUTH_MODE": "disabled"}})


@pytest.mark.slow
@pytest.mark.ray
def test_search_on_two_nodes_over_s3(two_nodes, s3_server, tmp_path):
    from features import storage
    from features.synth import generate

    client, stages = two_nodes
    t0 = time.time()
    data = tmp_path / "mabe"
    generate(data, n_videos=5, n_frames=300, seed=0, test_videos=2)
    data_uri, exp_root = s3_server.uri("cl", "mabe"), s3_server.uri("cl", "experiments")
    storage.upload_dir(data, data_uri)
    shutil.rmtree(data)                       # the submitting side keeps no data and builds no cache
    assert not any(tmp_path.iterdir())

    args = f"--smoke-test --num-samples 2 --epochs 1 --data {data_uri} --storage {exp_root} --name job"
    status, logs = _wait(client, _submit(client, args))
    print("\n".join(logs.splitlines()[:20]))
    assert status == "SUCCEEDED", logs[-5000:]
    exp = storage.join(exp_root, "job")
    assert f"next: python -m ensemble.build --experiment {exp}" in logs

    # each node staged the published cache exactly once (both nodes ran a Train worker)
    caches = [c for c in storage.listdir(storage.join(exp_root, "caches")) if c.endswith("meta.json")]
    assert len(caches) == 1
    fp = caches[0].split("/")[0]
    per_node = {k: [e for e in storage.staged(d) if e["fingerprint"] == f"cache-{fp}"]
                for k, d in stages.items()}
    assert {k: len(v) for k, v in per_node.items()} == {"head": 1, "worker": 1}, per_node
    bytes_staged = {k: v[0]["bytes"] for k, v in per_node.items()}
    print("bytes staged per node:", bytes_staged)

    # results, study and best checkpoints are in the bucket
    listing = storage.listdir(exp)
    assert {"results.csv", "optuna.db", "search.json"} <= set(listing)
    table = pd.read_csv(io.StringIO(storage.read_text(storage.join(exp, "results.csv"))))
    assert len(table) == 2 and set(table["status"]) <= {"TERMINATED", "STOPPED"}, table
    for ckpt in table["best_checkpoint"].dropna():
        assert ckpt.startswith("s3://") and storage.exists(storage.join(ckpt, "model.pt")), ckpt
    assert json.loads(storage.read_text(storage.join(exp, "search.json")))["summary"]["n_trials"] == 2

    # the ensemble is built locally from the s3:// experiment, by the printed command
    cmd = logs.split("next: ", 1)[1].splitlines()[0].split()     # exactly as printed, run from elsewhere
    assert cmd[:2] == ["python", "-m"]
    done = subprocess.run([sys.executable, *cmd[1:]], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    members = json.loads((tmp_path / "ensembles" / "job" / "ensemble.json").read_text())["members"]
    assert len(members) == 2
    print(f"wall time to the ensemble: {time.time() - t0:.0f} s")

    # a corrupt tracking file in the bucket, --strict-data: the head's cache build fails fast with one line,
    # exit 2 (without it the video is skipped with a warning and listed in the cache's meta.json)
    tracking = next(p for p in storage.listdir(data_uri) if p.startswith("train_tracking/"))
    storage.write_bytes(storage.join(data_uri, tracking), b"not a parquet file")
    status, logs2 = _wait(client, _submit(client, args.replace("--name job", "--name job2 --strict-data")))
    assert status == "FAILED", logs2[-3000:]
    errors = [line for line in logs2.splitlines() if line.startswith("python -m tune.search: error:")]
    assert len(errors) == 1 and tracking.split("/")[-1] in errors[0], logs2[-3000:]
    assert "Traceback" not in logs2 and "trial driver resources" not in logs2   # Ray Tune never started
    assert not storage.exists(storage.join(exp_root, "job2", "results.csv"))
    print(f"total wall time: {time.time() - t0:.0f} s")


# ------------------------------------------------------------------ the head's part, without Ray (fast)
def test_head_stages_data_builds_and_publishes_the_cache_once(s3_server, tmp_path, monkeypatch):
    from features import storage
    from features.cache import FeatureCache
    from features.errors import MabeDataError
    from features.synth import generate
    from tune.prepare import prepare_search_data, search_data_paths
    from tune.search import base_config, parse_args

    monkeypatch.setenv("MABE_STAGE_DIR", str(tmp_path / "head"))
    monkeypatch.chdir(tmp_path)
    generate(tmp_path / "src", n_videos=3, n_frames=200, seed=3, test_videos=1)
    data_uri, exp_root = s3_server.uri("head", "mabe"), s3_server.uri("head", "experiments")
    storage.upload_dir(tmp_path / "src", data_uri)
    scfg = parse_args(["--data", data_uri, "--storage", exp_root, "--name", "h", "--smoke-test"])
    cfg = prepare_search_data(scfg, base_config(scfg, *search_data_paths(scfg)))
    assert cfg.data.cache.startswith(exp_root + "/caches/")
    again = prepare_search_data(scfg, base_config(scfg, *search_data_paths(scfg)))
    assert again.data.cache == cfg.data.cache                      # same content, same fingerprint
    assert len([e for e in storage.staged(tmp_path / "head") if e["fingerprint"].startswith("data-")]) == 1
    # a worker node: FeatureCache on the URI stages it once into its own folder
    monkeypatch.setenv("MABE_STAGE_DIR", str(tmp_path / "worker"))
    assert FeatureCache(cfg.data.cache).path == FeatureCache(cfg.data.cache).path
    assert [e["fingerprint"][:6] for e in storage.staged(tmp_path / "worker")] == ["cache-"]
    # --cache pointing at nothing published: one data error, before Ray
    scfg2 = parse_args(["--cache", s3_server.uri("head", "nothing"), "--storage", exp_root, "--name", "h2"])
    with pytest.raises(MabeDataError, match="no feature cache here"):
        prepare_search_data(scfg2, base_config(scfg2, *search_data_paths(scfg2)))


def test_database_urls_are_masked_and_read_from_the_environment(monkeypatch):
    from tune.search import parse_args

    scfg = parse_args(["--optuna-storage", "postgresql://u:hunter2@db:5432/optuna"])
    assert "hunter2" not in json.dumps(scfg.public())
    assert scfg.optuna_url().endswith("u:hunter2@db:5432/optuna")
    monkeypatch.setenv("OPTUNA_STORAGE", "postgresql://u:pw2@db/optuna")
    scfg = parse_args([])
    assert scfg.optuna_url() == "postgresql://u:pw2@db/optuna" and "pw2" not in json.dumps(scfg.public())


@pytest.mark.slow
@pytest.mark.ray
def test_trial_data_error_fails_once_without_retries(synth_small, tmp_path):
    """Bad input met by the Train workers (here: asked feature settings differ from the cache's) fails each
    trial once with the one-line error (no Ray Train restart, no Tune retry) and the search exits 2."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-m", "tune.search", "--smoke-test", "--cache", str(synth_small.cache), "--data",
         str(synth_small.root), "--storage", str(tmp_path / "exp"), "--name", "bad", "--max-failures", "2",
         "--set", "features.clip=5.0"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out[-4000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("python -m tune.search: error: ")]
    assert len(errors) == 1 and "differ from the cache's settings" in errors[0], out[-4000:]
    assert out.count("(not retried)") == 2, out[-4000:]                 # one failure per trial, no Tune retry
    assert out.count("data error: ") == 2, out[-4000:]                  # one worker attempt per trial
    table = pd.read_csv(tmp_path / "exp" / "bad" / "results.csv")
    assert table["status"].tolist() == ["ERROR", "ERROR"]
