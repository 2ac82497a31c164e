"""`ray job submit` path: a real `ray start --head` on free ports (with cluster.yaml's TRAIN_DRIVER resource),
a smoke search submitted with JobSubmissionClient (working_dir = this repo, data/ excluded), SUCCEEDED,
results checked, cluster stopped.

The head runs with `--block` in its own process group and is stopped by terminating exactly that process
(which shuts down the Ray processes it started). Plain `ray stop` is not used: it kills every Ray process of
this user on the machine, including other test sessions' private clusters.
"""
from __future__ import annotations

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


@pytest.fixture
def ray_head():
    """A separate head node: own temp dir (short path: unix sockets), own ports, no auth, never
    RAY_ADDRESS."""
    pytest.importorskip("ray.job_submission")
    if ray_bin() is None:
        pytest.skip("ray CLI not found")
    gcs, dash, client, agent, agent_grpc, metrics, rt_env = free_ports(7)
    temp = tempfile.mkdtemp(prefix="rjob", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
               PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""))
    cmd = [ray_bin(), "start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={dash}",
           "--dashboard-host=127.0.0.1", f"--ray-client-server-port={client}",
           f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
           f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={rt_env}", "--num-cpus=2",
           '--resources={"TRAIN_DRIVER": 4}',
           f"--temp-dir={temp}", "--disable-usage-stats", "--include-dashboard=true"]
    log = open(Path(temp) / "ray_start.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        from ray.job_submission import JobSubmissionClient

        client_obj, deadline = None, time.time() + 90
        while client_obj is None:
            if proc.poll() is not None:
                pytest.fail("ray start exited: " + (Path(temp) / "ray_start.log").read_text()[-2000:])
            try:
                client_obj = JobSubmissionClient(address)
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(1)
        yield client_obj, env
    finally:
        # stop exactly the head we started: SIGTERM to its process group (`ray start --block` and the Ray
        # processes it spawned), then SIGKILL for stragglers, then anything still naming our temp dir
        for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 20)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        kill_under(temp)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.ray
def test_job_submit_smoke_search(ray_head, synth_set, tmp_path):
    client, _env = ray_head
    from ray.job_submission import JobStatus

    storage = tmp_path / "exp"
    data = synth_set(4, 600, seed=0, cache=False).root  # the job gets it by path
    job_id = submit_job(
        client,
        entrypoint=f"{sys.executable} -m tune.search --smoke-test --num-samples 2 --epochs 1 "
        f"--storage {storage} --name job --data {data} --cache {tmp_path / 'cache'}",
        runtime_env={
            "working_dir": str(ROOT),
            "excludes": [
                "data/",
                "experiments/",
                "runs/",
                ".git/",
                "**/__pycache__",
                ".pytest_cache/",
                ".hypothesis/",
                "bundle/",
                "build/",
                "dist/",
            ],
            "env_vars": {"TQDM_DISABLE": "1", "RAY_AUTH_MODE": "disabled"},
        },
    )
    deadline = time.time() + 420
    status = client.get_job_status(job_id)
    while status not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED) and time.time() < deadline:
        time.sleep(2)
        status = client.get_job_status(job_id)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-4000:]
    assert "best vs V6:" in logs and "next: python -m ensemble.build --experiment" in logs
    assert "trial driver resources: {'TRAIN_DRIVER': 0.01}" in logs   # pinned to the head, as on cluster.yaml
    table = pd.read_csv(storage / "job" / "results.csv")
    assert len(table) == 2 and table["trial"].tolist() == [1, 2]
    assert (storage / "job" / "optuna.db").is_file()
