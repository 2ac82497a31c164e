"""Data preparation before training: the synthetic Kaggle twin and the feature cache, built once and reused.

- `search_data_paths(scfg)`: (data root, cache) of a search, absolute, without touching the disk.
- `prepare_search_data(scfg, cfg)`: generate the synthetic data (no --data) and build the cache if missing.
- `smoke_data(root, cache, ...)`: the tiny synthetic set + cache of every --smoke-test.
- `ensure_cache(cfg)`: build `data.cache` from `data.root` when it does not exist yet (tune.train, Modal).
Sizes of the synthetic sets: tune/presets.py.
"""
from __future__ import annotations

import os
from pathlib import Path

from features.errors import MabeDataError
from tune.config import TrainConfig
from tune.presets import SYNTH_SIZES
from tune.search_config import SearchConfig


def search_data_paths(scfg: SearchConfig) -> tuple[str, str]:
    """(data root, feature cache), both absolute: --data and --cache, else ./data/synth(-smoke)[/cache]."""
    if scfg.data:
        root = Path(scfg.data).resolve()
        cache = Path(scfg.cache or Path("data/cache") / root.name).resolve()
    else:
        root = Path("data/synth-smoke" if scfg.smoke_test else "data/synth").resolve()
        cache = Path(scfg.cache or root / "cache").resolve()
    return str(root), str(cache)


def prepare_search_data(scfg: SearchConfig, cfg: TrainConfig) -> None:
    """Check --data, or generate the synthetic Kaggle twin once (at cfg.data.root); build the cache at
    cfg.data.cache with cfg's feature settings if it does not exist; later runs reuse both."""
    root, cache = Path(cfg.data.root), Path(cfg.data.cache)
    if scfg.data:
        if not (root / "train.csv").exists():
            raise MabeDataError("no train.csv: --data must be a Kaggle-layout folder",
                                file=root / "train.csv")
    elif not (root / "train.csv").exists():
        from features.synth import generate

        n_videos, n_frames = SYNTH_SIZES["smoke" if scfg.smoke_test else "search"]
        print(f"generating synthetic data: {n_videos} videos x {n_frames} frames -> {root}")
        generate(root, n_videos=n_videos, n_frames=n_frames, seed=0)
    if not (cache / "index.parquet").exists():
        from features.cache import build_cache

        print(f"building feature cache -> {cache}")
        build_cache(root, cache, cfg.feature_settings(), workers=max(1, (os.cpu_count() or 1)), n_folds=5,
                    seed=0)


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
