"""Build the feature cache of a Kaggle-layout folder (real data or the synthetic twin).

    python -m features.synth --out data/synth                       # a synthetic dataset (if no Kaggle data)
    python -m features.build --data data/synth --out data/synth-cache
    python -m features.build --data /kaggle/input/MABe-mouse-behavior-detection --out cache/pair30 --workers 2
    python -m features.build --data data/synth --out data/synth-motion --feature-set motion --target-fps none
    python -m features.build --data data/synth --out data/synth-rich --feature-set pair_rich   # 214 values
    python -m features.build --data data/synth --out data/synth-test-cache --split test

A second run with the same inputs and settings does nothing and says so; a changed setting (or a changed
input file) rebuilds. The cache is written into a temporary folder and renamed into place, so a failed or
interrupted build never leaves a half-written cache. Layout and reader: features/cache.py.
"""

from __future__ import annotations

import argparse
import sys

from features.cache import FOLD_LABS, build_cache
from features.cli import NONE, ArgumentParser, HelpFormatter, add_flags, check_range, given
from features.errors import MabeDataError, cli_guard
from features.pipeline import FEATURE_SETS, FeatureSettings
from features.quirks import KNOWN_BAD_LABELS


# FeatureSettings fields with a flag
_SETTINGS = ["feature_set", "motion_points", "target_fps", "max_gap_s", "fix_label_fps"]


def _fps(value: str):
    if value.lower() in ("none", "native", "0"):
        return NONE
    return float(value)


def _video_ids(value: str) -> tuple[int, ...]:
    """'1,2,3' -> (1, 2, 3); 'none' or '' -> ()."""
    if value.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated video ids or 'none', got {value!r}"
        ) from None


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(
        prog="python -m features.build",
        description="Turn tracking + annotation parquet files into a memory-mappable feature cache: one "
        "float32 [pairs, frames, features] and one int8 [pairs, frames] label array per video, "
        "plus index.parquet (one row per (video, agent, target) with fold and whitelist masks) and "
        "meta.json (settings, feature names, fingerprint).",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--data",
        required=True,
        help="Kaggle-layout folder: train.csv, train_tracking/<lab>/<video>"
        ".parquet, train_annotation/... (or test.csv + test_tracking/)",
    )
    p.add_argument("--out", required=True, help="cache folder to create or update")
    p.add_argument("--workers", type=int, default=1, help="processes computing videos in parallel")
    add_flags(p, FeatureSettings, only=_SETTINGS, types={"target_fps": _fps},
              choices={"feature_set": FEATURE_SETS, "motion_points": ("raw", "canonical")})
    p.add_argument(
        "--folds", type=int, default=5, help="number of folds (grouped by video, stratified by lab)"
    )
    p.add_argument("--fold-labs", choices=FOLD_LABS, default="test",
                   help="labs whose videos are dealt into folds: test = the hidden test's 15 labs plus "
                        "those of test.csv (features/quirks.py; other labs get fold -1: always trained on, "
                        "never validated); all = every lab. Recorded in meta.json")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold assignment")
    p.add_argument(
        "--split",
        choices=("train", "test"),
        default="train",
        help="which half of the layout to cache (test: no labels, fold -1)",
    )
    p.add_argument("--limit", type=int, default=None, help="only the first N videos (quick looks)")
    p.add_argument(
        "--exclude-videos",
        type=_video_ids,
        default=None,
        help="training caches only: comma-separated video ids to leave out, or 'none' (default: "
        f"{','.join(map(str, KNOWN_BAD_LABELS))}, known bad labels; features/quirks.py); "
        "recorded in meta.json",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="abort on the first bad video (missing/corrupt file) instead of skipping it with a warning "
        "(skipped videos are listed in meta.json 'skipped_videos')",
    )
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--force", action="store_true",
                   help="replace --out even if it is not a feature cache this command wrote (never --data)")
    args = p.parse_args(argv)
    check_range(p, args, {"--workers": 1, "--folds": 1, "--limit": 1, "--max-gap-s": 0})
    if args.target_fps is not None and args.target_fps is not NONE and not args.target_fps > 0:
        p.error(f"argument --target-fps: must be > 0 or none (got {args.target_fps})")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.exclude_videos is not None and args.split != "train":
        raise MabeDataError(
            "--exclude-videos applies to training caches only (every test video is predicted)"
        )
    settings = FeatureSettings(**given(args, FeatureSettings, _SETTINGS))
    print(
        f"features.build: {args.data} -> {args.out} ({args.split}); settings {settings.to_dict()}; "
        f"F = {settings.num_features}"
    )
    s = build_cache(
        args.data,
        args.out,
        settings,
        workers=args.workers,
        n_folds=args.folds,
        seed=args.seed,
        split=args.split,
        progress=not args.no_progress,
        limit=args.limit,
        force=args.force,
        exclude_videos=args.exclude_videos,
        strict=args.strict,
        fold_labs=args.fold_labs,
    )
    if s["skipped"]:
        print(
            f"cache {args.out} is up to date (fingerprint {s['fingerprint']}): nothing to do "
            f"({s.get('videos', '?')} videos, {s.get('pairs', '?')} pairs)"
        )
    else:
        print(
            f"built {args.out}: {s['videos']} videos, {s['pairs']} pairs, {s['frames']:,} pair-frames "
            f"(from {s['frames_orig']:,} video frames); overlapping different-action labels: "
            f"{s['overlap_frames']:,} pair-frames in {s['overlap_pairs']} pairs (shorter interval kept); "
            f"{s['dropped_events']} non-whitelisted events dropped; {s['seconds']:.1f} s, "
            f"{s['rows_per_s']:,.0f} pair-frames/s"
        )
    if s.get("excluded_videos"):
        print(f"excluded (--exclude-videos): {', '.join(map(str, s['excluded_videos']))}")
    if s.get("skipped_videos"):
        print(f"skipped {len(s['skipped_videos'])} bad video(s), listed in meta.json 'skipped_videos': "
              f"{', '.join(str(v['video_id']) for v in s['skipped_videos'])} (--strict aborts instead)")
    if args.split == "train":
        print(f"next: python -m tune.train --set data.cache={args.out}")
    else:
        print("next: predict with the exported ensemble on this test cache (see README)")
    return s


if __name__ == "__main__":
    with cli_guard("python -m features.build"):
        main(sys.argv[1:])
