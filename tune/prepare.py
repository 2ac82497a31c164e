"""Data preparation before training: the synthetic Kaggle twin and the feature cache, built once and reused.

- `search_data_paths(scfg)`: (data root, cache) of a search, absolute (or URIs), without touching the disk.
- `prepare_search_data(scfg, cfg)`: generate the synthetic data (no --data), build the cache if missing
  (staging a remote --data first), publish it to a remote --storage; returns cfg pointing at the cache.
- `smoke_data(root, cache, ...)`: the tiny synthetic set + cache of every --smoke-test.
- `ensure_cache(cfg)`: build `data.cache` from `data.root` when it does not exist yet (tune.train, Modal).
Sizes of the synthetic sets: tune/presets.py.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from features import storage
from features.errors import MabeDataError
from tune.config import TrainConfig
from tune.presets import SYNTH_DIFFICULTY, SYNTH_SIZES
from tune.search_config import SearchConfig


def search_data_paths(scfg: SearchConfig) -> tuple[str, str]:
    """(data root, feature cache), local ones absolute, s3:// and gs:// URIs as given: --data and --cache,
    else the embedded twin ./data/synth-hard (--smoke-test: ./data/synth-smoke) and its cache/;
    remote --data without --cache: a node-local build folder
    (`features.storage.stage_root()/build/<data name>`), published to --storage by `prepare_search_data`."""
    if storage.is_remote(scfg.data):
        name = scfg.data.rstrip("/").rsplit("/", 1)[-1]
        return scfg.data, scfg.cache or str(storage.stage_root() / "build" / name)
    if scfg.data:
        root = Path(scfg.data).resolve()
        cache = scfg.cache or Path("data/cache") / root.name
    else:
        root = Path("data/synth-smoke" if scfg.smoke_test else "data/synth-hard").resolve()
        cache = scfg.cache or root / "cache"
    return str(root), (cache if storage.is_remote(cache) else str(Path(cache).resolve()))


def prepare_search_data(scfg: SearchConfig, cfg: TrainConfig) -> TrainConfig:
    """Make sure the search's feature cache exists once; returns `cfg` with `data.cache` where every Train
    worker can read it.

    - `--cache s3://...` (or gs://): used as it is, after checking its meta.json (fingerprint present,
      feature settings the ones asked); workers stage it node-locally (`features.cache.stage_cache`).
    - otherwise the cache is built here (on the head) from `--data` (a remote --data is staged first, with
      its modification times, so the fingerprint is stable), or from the synthetic twin generated once; a
      remote `--storage` then gets it at `<storage>/caches/<fingerprint>` (uploaded once) and `data.cache`
      points there.
    A MabeDataError (bad input) stops the search here, before Ray starts."""
    from features.cache import publish_cache, remote_meta

    root, cache = cfg.data.root, cfg.data.cache
    if storage.is_remote(cache):
        meta = remote_meta(cache)
        asked, built = cfg.feature_settings().to_dict(), dict(meta.get("settings") or {})
        clash = {k: (asked[k], built.get(k)) for k in cfg.features if asked.get(k) != built.get(k)}
        if clash:
            raise MabeDataError(f"features {clash} (asked, cached) differ from the cache's settings",
                                file=cache)
        print(f"feature cache {cache} (fingerprint {meta['fingerprint']})")
        return cfg
    if storage.is_remote(root):
        root = str(storage.stage(root, "data-" + storage.listing_key(root)))
    root_p, cache_p = Path(root), Path(cache)
    if scfg.data:
        if not (root_p / "train.csv").exists():
            raise MabeDataError("no train.csv: --data must be a Kaggle-layout folder",
                                file=storage.join(cfg.data.root, "train.csv"))
    fresh = not scfg.data and _embedded_twin(root_p, "smoke" if scfg.smoke_test else "search")
    if fresh or storage.is_remote(cfg.data.root) or _cached_fold_labs(cache_p) != scfg.fold_labs:
        from features.cache import build_cache

        print(f"feature cache -> {cache_p}")
        build_cache(root_p, cache_p, cfg.feature_settings(), workers=max(1, (os.cpu_count() or 1)), n_folds=5,
                    seed=0, progress=False, strict=scfg.strict_data, fold_labs=scfg.fold_labs)
    if scfg.is_remote_storage():
        return replace(cfg, data=replace(cfg.data, cache=publish_cache(cache_p, scfg.storage_path())))
    return cfg


def _embedded_twin(root: Path, preset: str) -> bool:
    """Generate the embedded synthetic twin of `preset` (sizes and difficulty: tune/presets.py) at `root`
    unless it holds one already; returns whether it was generated."""
    if (root / "train.csv").exists():
        return False
    from features.synth import generate

    (n_videos, n_frames), difficulty = SYNTH_SIZES[preset], SYNTH_DIFFICULTY[preset]
    print(f"generating the {difficulty} synthetic twin: {n_videos} videos x {n_frames} frames -> {root}")
    generate(root, n_videos=n_videos, n_frames=n_frames, seed=0, difficulty=difficulty)
    return True


def _cached_fold_labs(cache: Path) -> str | None:
    """The fold_labs a built cache was dealt with (older caches: "all"); None when there is no cache."""
    if not (cache / "index.parquet").exists():
        return None
    try:
        return json.loads((cache / "meta.json").read_text()).get("fold_labs") or "all"
    except (OSError, ValueError):
        return None


def smoke_data(root: str, cache: str, n_videos: int = SYNTH_SIZES["smoke"][0],
               n_frames: int = SYNTH_SIZES["smoke"][1], seed: int = 0, features=None) -> dict:
    """Generate (or reuse) a tiny synthetic Kaggle-layout set at `root` and its feature cache at `cache`.
    `features`: a TrainConfig.features dict (None = the defaults)."""
    from features.cache import build_cache

    root_p = Path(root)
    if not (root_p / "train.csv").is_file():
        from features.synth import generate

        generate(root_p, n_videos=n_videos, n_frames=n_frames, seed=seed)
    settings = TrainConfig(features=dict(features or {})).feature_settings()
    return build_cache(root_p, cache, settings, progress=False)


def ensure_cache(cfg: TrainConfig) -> None:
    """Build the cache from `data.root` if `data.cache` does not exist yet (the CLI's convenience)."""
    if (Path(cfg.data.cache) / "index.parquet").is_file():
        return
    if not (Path(cfg.data.root) / "train.csv").is_file():
        raise MabeDataError("neither a feature cache nor a Kaggle-layout train.csv found; pass --set "
                            "data.cache=... or --set data.root=..., make synthetic data with `python -m "
                            "features.synth --out data/synth`, or use --smoke-test", file=cfg.data.cache)
    from features.cache import build_cache

    build_cache(cfg.data.root, cfg.data.cache, cfg.feature_settings())
