"""Shared fixtures.

- `ray_local`: one private local Ray per session (cluster start is seconds). Every test that uses it, or that
  starts Ray in any other way, carries the `ray` marker (checked at collection for `ray_local` users).
- `s3_server`: a real S3 endpoint on 127.0.0.1 (moto's ThreadedMotoServer) with one bucket, for the whole
  session; the standard AWS variables point this process and its subprocesses (Ray nodes too) at it.
- `synth_set`: a session-wide factory of synthetic Kaggle-layout datasets (features.synth) with their feature
  cache, built once per distinct set of arguments; `synth_small` is the small set most modules share.
  The folders are shared: treat them as read-only (copy a folder before changing or corrupting it).

Functions that several test modules use live in tests/helpers.py.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

# Never join a cluster started elsewhere on this machine, and no token prompts in tests.
os.environ.pop("RAY_ADDRESS", None)
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TQDM_DISABLE", "1")

# The small shared dataset: 4 training videos (2 folds) + 3 test videos of ~400 frames; seconds to build.
SMALL = dict(n_videos=4, n_frames=400, seed=1, test_videos=3, n_folds=2)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config, items):
    """A test that uses the session Ray must say so with @pytest.mark.ray (so `-m "not ray"` skips it).

    Under pytest-xdist (`-n 2 --dist loadgroup`, the README's test command) every Ray test goes to one
    worker, one at a time and first (they take the longest): the session Ray starts once, and no two Ray
    clusters or searches compete for the cores; the other worker runs the rest meanwhile."""
    unmarked = [it.nodeid for it in items if "ray_local" in getattr(it, "fixturenames", ()) and
                it.get_closest_marker("ray") is None]
    if unmarked:
        raise pytest.UsageError(
            "tests using ray_local must be marked @pytest.mark.ray: " + ", ".join(unmarked)
        )
    for it in items:
        if it.get_closest_marker("ray") is not None:
            it.add_marker(pytest.mark.xdist_group("ray"))
    if getattr(config.option, "loadgroup", False):  # an xdist worker under --dist loadgroup
        items.sort(key=lambda it: it.get_closest_marker("ray") is None)  # stable: the Ray tests first


@pytest.fixture(scope="session")
def ray_local():
    """A private local Ray for the whole session (`ray.init(address="local")`), shut down at the end.

    Set up as `tune.driver.init_ray` does, with its own dashboard and RAY_ADDRESS = this Ray in its workers:
    Ray Train's PlacementGroupCleaner asks the State API whether a run's controller is alive, and a Ray
    without a dashboard sends it to http://localhost:8265, where another Ray (a search in another terminal)
    answers "no such actor"; the cleaner then removes the placement group of a live run and its worker dies
    ("Destroying worker since its placement group was removed")."""
    ray = pytest.importorskip("ray")
    from tune.driver import free_port

    if ray.is_initialized():
        ray.shutdown()
    port = free_port()
    os.environ["RAY_GCS_SERVER_PORT"] = str(port)   # read by the node that ray.init starts
    try:
        ray.init(address="local", num_cpus=4, log_to_driver=False, include_dashboard=True,
                 dashboard_host="127.0.0.1", dashboard_port=free_port(),
                 runtime_env={"env_vars": {"RAY_ADDRESS": f"127.0.0.1:{port}"}})
    finally:
        os.environ.pop("RAY_GCS_SERVER_PORT", None)
    yield ray
    ray.shutdown()


@dataclass(frozen=True)
class S3Server:
    """A running S3 endpoint: `endpoint` (http://127.0.0.1:PORT), `bucket`, `env` (the AWS variables set
    for the session); `uri("a", "b")` = `s3://<bucket>/a/b`."""

    endpoint: str
    bucket: str
    env: dict

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *parts])


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1 (a free port) with the bucket `mabe-test`; AWS_ENDPOINT_URL and dummy
    credentials are set in os.environ for the session (inherited by subprocesses), restored at the end."""
    moto_server = pytest.importorskip("moto.server")
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)   # no line per request in the captured logs
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        import boto3  # the dev extra; honours AWS_ENDPOINT_URL like pyarrow.fs.FileSystem.from_uri

        boto3.client("s3").create_bucket(Bucket="mabe-test")
        yield S3Server(env["AWS_ENDPOINT_URL"], "mabe-test", env)
    server.stop()


@dataclass(frozen=True)
class SynthSet:
    """A synthetic dataset in the Kaggle layout (`root`), its feature cache (`cache`, None when not built)
    and the summary `features.synth.generate` returned."""

    root: Path
    cache: Path | None
    summary: dict


@pytest.fixture(scope="session")
def synth_set(tmp_path_factory):
    """Factory: `synth_set(n_videos=..., n_frames=..., seed=..., test_videos=..., n_folds=5, cache=True)`.

    The same arguments return the same (already built) folders for the whole session. The cache is built
    with the default FeatureSettings into `<root>/cache`.
    """
    from features.cache import build_cache
    from features.synth import generate

    built: dict[tuple, SynthSet] = {}

    def make(n_videos: int, n_frames: int, seed: int = 0, test_videos: int | None = None, n_folds: int = 5,
             cache: bool = True) -> SynthSet:
        key = (n_videos, n_frames, seed, test_videos, n_folds, cache)
        if key not in built:
            root = tmp_path_factory.mktemp(f"synth-{n_videos}x{n_frames}-s{seed}") / "synth"
            kw = {} if test_videos is None else {"test_videos": test_videos}
            summary = generate(root, n_videos=n_videos, n_frames=n_frames, seed=seed, **kw)
            if cache:
                build_cache(root, root / "cache", n_folds=n_folds, progress=False)
            built[key] = SynthSet(root, root / "cache" if cache else None, summary)
        return built[key]

    return make


@pytest.fixture(scope="session")
def synth_small(synth_set) -> SynthSet:
    """The small shared dataset (SMALL) with its 2-fold cache."""
    return synth_set(**SMALL)
