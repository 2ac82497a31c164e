"""Shared fixtures. Ray tests share one private local Ray per session (cluster start is seconds)."""
from __future__ import annotations

import os

import pytest

# Never join a cluster started elsewhere on this machine, and no token prompts in tests.
os.environ.pop("RAY_ADDRESS", None)
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def ray_local():
    """A private local Ray for the whole session (`ray.init(address="local")`), shut down at the end."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
