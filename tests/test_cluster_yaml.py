"""cluster.yaml is a valid Ray cluster-launcher config: Ray's own JSON schema and the launcher's checks."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_FILES = [p for p in ("cluster.yaml", "cluster-gcp.yaml") if (ROOT / p).exists()]


def _schema():
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def _load(name):
    return yaml.safe_load((ROOT / name).read_text())


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_matches_ray_schema(name):
    errors = [e.message for e in jsonschema.Draft7Validator(_schema()).iter_errors(_load(name))]
    assert errors == []


def test_schema_check_catches_a_typo():
    cfg = _load("cluster.yaml")
    cfg["available_node_types"]["gpu_h100x8"]["min_worker"] = 0
    errors = [e.message for e in jsonschema.Draft7Validator(_schema()).iter_errors(cfg)]
    assert any("'min_worker' was unexpected" in e for e in errors)


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_launcher_validate_config(name):
    """What `ray up` runs: merge the provider defaults, then validate (private API: skip if it moved)."""
    try:
        from ray.autoscaler._private.util import prepare_config, validate_config
    except ImportError as exc:  # pragma: no cover - depends on Ray internals
        pytest.skip(f"ray.autoscaler._private.util moved: {exc}")
    cfg = prepare_config(copy.deepcopy(_load(name)))
    validate_config(cfg)
    assert cfg["head_node_type"] in cfg["available_node_types"]
    bad = copy.deepcopy(cfg)
    bad["head_node_type"] = "nope"
    with pytest.raises(ValueError):
        validate_config(bad)


def test_cluster_yaml_content():
    cfg = _load("cluster.yaml")
    assert cfg["provider"]["type"] == "aws"
    assert cfg["docker"]["image"] == "rayproject/ray:2.60.0-py311-gpu"
    assert "ray-ml" not in (ROOT / "cluster.yaml").read_text().split("#")[0]
    head = cfg["available_node_types"][cfg["head_node_type"]]
    assert head["resources"] == {"CPU": 8, "TRAIN_DRIVER": 4}
    gpu = cfg["available_node_types"]["gpu_h100x8"]
    assert gpu["node_config"]["InstanceType"] == "p5.48xlarge"
    assert gpu["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert gpu["min_workers"] == 0 and gpu["max_workers"] >= 1 and gpu["resources"]["GPU"] == 8
    start = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "RAY_AUTH_MODE=token" in start
    assert "/home/ray/mabe-tune" in cfg["file_mounts"]


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_same_torch_build_everywhere_and_light_sync(name):
    """One pinned torch build (CUDA variant named, checked after install) for every node, the project with its
    tune and postgres extras, heavy folders and whatever .gitignore ignores kept out of the sync, and the
    documented command reads data from the bucket."""
    cfg, text = _load(name), (ROOT / name).read_text()
    setup = cfg["setup_commands"]
    assert not any(k in cfg.get(f"{t}_setup_commands", []) for t in ("head", "worker") for k in ("torch",))
    torch_lines = [c for c in setup if "pip install" in c and "torch" in c]
    assert len(torch_lines) == 1 and re.search(r'"torch==\d+\.\d+\.\d+"', torch_lines[0])
    variant = re.search(r"download\.pytorch\.org/whl/(cu\d+)", torch_lines[0]).group(1)
    version = re.search(r"torch==([\d.]+)", torch_lines[0]).group(1)
    assert any(f"{version}+{variant}" in c and "assert" in c for c in setup)
    assert any("pip install" in c and "[tune,postgres]" in c for c in setup)
    heavy = [line.strip("/") for line in (ROOT / ".gitignore").read_text().splitlines()
             if line.startswith("/") and line.strip().endswith("/")]  # the project's top-level output folders
    assert cfg["rsync_filter"] == [".gitignore"]
    assert {f"{d}/" for d in heavy} <= set(cfg["rsync_exclude"])  # also without the filter file
    scheme = "s3" if cfg["provider"]["type"] == "aws" else "gs"
    assert f"--data {scheme}://YOUR-BUCKET/mabe --storage {scheme}://YOUR-BUCKET/experiments" in text


KEY = re.compile(r"^\s*(?:- )?[A-Za-z_/][\w./-]*:(?:\s|$)")


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_every_key_is_commented(name):
    """Each key line has a comment on the line above (or at its end)."""
    lines = (ROOT / name).read_text().splitlines()
    missing = []
    prev = ""
    for i, line in enumerate(lines, 1):
        if KEY.match(line) and not prev.lstrip().startswith("#") and " # " not in line:
            missing.append(f"{i}: {line.strip()}")
        if line.strip():
            prev = line
    assert missing == []
