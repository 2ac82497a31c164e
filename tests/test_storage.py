"""features.storage against a real S3 endpoint (moto on 127.0.0.1, configured by the AWS env only)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from features import storage
from features.errors import MabeDataError


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _folder(root: Path) -> Path:
    (root / "videos").mkdir(parents=True)
    (root / "videos" / "1.x.npy").write_bytes(os.urandom(70_000))
    (root / "index.parquet").write_bytes(b"idx")
    (root / "meta.json").write_text('{"fingerprint": "abc"}')
    (root / ".hidden.lock").write_text("")
    return root


def test_text_round_trip_and_exists(s3_server):
    uri = s3_server.uri("t1", "a", "x.json")
    assert storage.is_remote(uri) and not storage.is_remote("/tmp/x") and not storage.is_remote("file:///x")
    assert not storage.exists(uri)
    storage.write_text(uri, "héllo")
    assert storage.exists(uri) and storage.is_dir(s3_server.uri("t1", "a")) and not storage.is_dir(uri)
    assert storage.read_text(uri) == "héllo"
    assert storage.listdir(s3_server.uri("t1")) == ["a/x.json"]
    with pytest.raises(MabeDataError, match="file not found"):
        storage.read_text(s3_server.uri("t1", "nope"))


def test_dir_round_trip(s3_server, tmp_path):
    src = _folder(tmp_path / "src")
    uri = s3_server.uri("t2", "cache")
    sent = storage.upload_dir(src, uri, last=("meta.json",))
    assert storage.listdir(uri) == ["index.parquet", "meta.json", "videos/1.x.npy"]  # hidden file skipped
    got = storage.download_dir(uri, tmp_path / "dst")
    assert got == sent == 70_000 + 3 + len('{"fingerprint": "abc"}')
    assert _tree(tmp_path / "dst") == {k: v for k, v in _tree(src).items() if not k.startswith(".")}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".dst.")] == [".dst.lock"]  # no temp left
    with pytest.raises(MabeDataError, match="no files"):
        storage.download_dir(s3_server.uri("t2", "missing"), tmp_path / "none")
    assert not (tmp_path / "none").exists()


_STAGE = """
import sys
from features import storage
print(storage.stage(sys.argv[1], "fp1"))
"""


def test_stage_once_per_node_with_two_processes(s3_server, tmp_path):
    uri = s3_server.uri("t3", "cache")
    storage.upload_dir(_folder(tmp_path / "src"), uri)
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "MABE_STAGE_DIR": str(tmp_path / "node"),
           "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", _STAGE, uri], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert {o[0].strip() for o in outs} == {str(tmp_path / "node" / "fp1")}
    log = storage.staged(tmp_path / "node")
    assert len(log) == 1 and log[0]["bytes"] > 70_000 and log[0]["fingerprint"] == "fp1"
    assert sum("staged s3://" in o[1] for o in outs) == 1
    # a third caller in this process reuses the copy; a different node root stages its own
    assert storage.stage(uri, "fp1", root=tmp_path / "node") == tmp_path / "node" / "fp1"
    assert len(storage.staged(tmp_path / "node")) == 1
    assert storage.stage(uri, "fp1", root=tmp_path / "other") == tmp_path / "other" / "fp1"
    assert _tree(tmp_path / "other" / "fp1")["meta.json"] == b'{"fingerprint": "abc"}'
    assert storage.stage(str(tmp_path / "src"), "fp1") == tmp_path / "src"  # local: used in place
    with pytest.raises(ValueError, match="safe folder name"):
        storage.stage(uri, "../x")


def test_stage_log_is_json_lines(s3_server, tmp_path):
    uri = s3_server.uri("t4", "cache")
    storage.upload_dir(_folder(tmp_path / "src"), uri)
    storage.stage(uri, "k", root=tmp_path / "n")
    line = (tmp_path / "n" / "staged.jsonl").read_text().splitlines()
    assert len(line) == 1 and json.loads(line[0])["uri"] == uri


@pytest.mark.parametrize("url, masked", [
    ("postgresql://u:secret@db.example:5432/optuna", "postgresql://u:***@db.example:5432/optuna"),
    ("postgresql+psycopg2://u:p%40ss@host/db?sslmode=require", "postgresql+psycopg2://u:***@host/db?sslmode=require"),
    ("mysql://root:pw@[::1]:3306/x", "mysql://root:***@[::1]:3306/x"),
    ("postgresql://u@host/db", "postgresql://u@host/db"),
    ("sqlite:////tmp/optuna.db", "sqlite:////tmp/optuna.db"),
    ("postgresql://u:pw@host:notaport/db", "postgresql://u:***@host:notaport/db"),
])
def test_mask_url(url, masked):
    assert storage.mask_url(url) == masked
