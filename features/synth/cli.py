"""`python -m features.synth`: the command line of the dataset writer (defaults: `generate`'s own)."""
from __future__ import annotations

import argparse
import inspect

from features.cli import ArgumentParser, HelpFormatter, check_range
from features.errors import cli_guard
from features.synth.hard import DIFFICULTIES, HARD_FRAMES
from features.synth.like_real import DEFAULT_FRACTION, format_scale
from features.synth.meta import DEFAULT_FRAMES, DEFAULT_LABS
from features.synth.write import generate

_DEFAULTS = {k: p.default for k, p in inspect.signature(generate).parameters.items()}


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(
        prog="python -m features.synth",
        description="Write a synthetic MABe dataset in the exact Kaggle layout (train.csv, test.csv, "
                    "train_tracking/, train_annotation/, test_tracking/, sample_submission.csv) plus "
                    "test_solution.csv (ground truth of the test videos for the official metric). "
                    "Metadata rows "
                    "copy real annotated rows of train.csv; behaviours are planted from the simulated pose.",
        formatter_class=HelpFormatter)
    p.add_argument("--out", required=True,
                   help="folder to write: created, or one this command wrote before (has synth.json); other "
                        "folders with Kaggle files are refused")
    p.add_argument("--videos", type=int, default=None,
                   help=f"training videos (default {_DEFAULTS['n_videos']}; not with --like-real)")
    p.add_argument("--frames", type=int, default=None,
                   help=f"mean frames per video (easy: x U(0.8, 1.2), hard: x lognormal(0, 0.35)); default "
                        f"{DEFAULT_FRAMES} (easy), {HARD_FRAMES} (hard)")
    p.add_argument("--seed", type=int, default=_DEFAULTS["seed"], help="same seed -> same files")
    p.add_argument("--labs", default=None,
                   help="comma-separated labs to imitate, dealt round-robin: any lab of train.csv with "
                        f"annotated videos (the 15 adjective-animal labs, CalMS21_*, CRIM13); default "
                        f"{','.join(DEFAULT_LABS)}; not with --like-real")
    p.add_argument("--like-real", action="store_true",
                   help="training videos in the real set's shape: round(F x 848) real annotated rows, labs "
                        "in their real proportions, each lab's videos sampled over its length distribution, "
                        "each video as long as its real one (fps, mice, body parts, whitelists copied), so "
                        "F=1 is the whole set (21.3 M frames, 45.0 M pair-frames); the summary prints the "
                        "twin's counts next to F x the real ones. --frames sets the test videos' length")
    p.add_argument("--fraction", type=float, default=None,
                   help=f"with --like-real: the scale F in (0, 1] (default {DEFAULT_FRACTION})")
    p.add_argument("--workers", type=int, default=1,
                   help="processes making videos in parallel (same files for any value)")
    p.add_argument("--test-videos", type=int, default=_DEFAULTS["test_videos"],
                   help="test videos (test.csv, test_tracking/, test_solution.csv)")
    p.add_argument("--fps-quirk", action=argparse.BooleanOptionalAction, default=_DEFAULTS["fps_quirk"],
                   help="reproduce the real 25-fps AdaptableSnail label/tracking frame-axis defect "
                        "(written label frames = round(true x 30/25), the 30-fps label axis; "
                        "features/quirks.py maps them back); --no-fps-quirk: labels on the tracking axis, "
                        "as in older versions (build its cache with --no-fix-label-fps)")
    p.add_argument("--difficulty", choices=DIFFICULTIES, default=_DEFAULTS["difficulty"],
                   help="easy: the original generator (same seed, same bytes as before); hard: lab-specific "
                        "annotation styles (distance/duration cut-offs, onset lag, 10-30%% missed events, "
                        "0.2-0.5 s boundary noise), confusable motifs, unlabelled look-alikes, long-tailed "
                        "action priors and durations, longer videos (features/synth/hard.py; calibration: "
                        "python -m bench.synth_calibration)")
    p.add_argument("--lab-contrast", type=float, default=1.0,
                   help="hard only: how far the labs' annotation styles lie apart: duration cut-off "
                        "0.2 + C x U(0, 1) s, distance cut-off factor U(0.85, 1.4) ** C, onset lag "
                        "C x U(0, 0.4) s (1: the hard twin as before; 0: the same cut-offs and lags in "
                        "every lab); python -m bench.synth_calibration --lab-contrast C prints what knowing "
                        "the lab is worth on such a twin")
    p.add_argument("--force", action="store_true",
                   help="write into --out even if it holds Kaggle-layout files features.synth did not write")
    args = p.parse_args(argv)
    if args.like_real:
        for flag, value in (("--videos", args.videos), ("--labs", args.labs)):
            if value is not None:
                p.error(f"argument {flag}: not allowed with --like-real (it sets videos and labs)")
        args.fraction = DEFAULT_FRACTION if args.fraction is None else args.fraction
        if not 0 < args.fraction <= 1:
            p.error(f"argument --fraction: must be in (0, 1] (got {args.fraction})")
    elif args.fraction is not None:
        p.error("argument --fraction: only with --like-real")
    args.videos = _DEFAULTS["n_videos"] if args.videos is None else args.videos
    args.labs = ",".join(DEFAULT_LABS) if args.labs is None else args.labs
    if args.frames is None:
        args.frames = HARD_FRAMES if args.difficulty == "hard" else DEFAULT_FRAMES
    check_range(p, args, {"--videos": 1, "--test-videos": 0, "--frames": 100, "--workers": 1})
    if args.lab_contrast != 1.0 and args.difficulty != "hard":
        p.error("argument --lab-contrast: only with --difficulty hard")
    check_range(p, args, {"--lab-contrast": 0})
    return args


def format_summary(s: dict) -> str:
    labs = ", ".join(f"{k} {v}" for k, v in sorted(s["labs"].items()))
    acts = ", ".join(f"{k} {v}" for k, v in s["intervals"].items())
    return "\n".join([
        f"wrote {s['out']}: {s['videos']} train + {s['test_videos']} test videos in {s['seconds']} s "
        f"(seed {s['seed']})",
        f"  labs: {labs}",
        f"  frames: {s['frames']:,} train, {s['test_frames']:,} test; "
        f"{s['pair_frames']:,} whitelisted pair-frames",
        f"  intervals per action: {acts}",
        f"  positive share of whitelisted pair-frames: {s['positive_share']:.1%} ("
        + ", ".join(f"{k} {v:.0%}" for k, v in s["positive_share_by_lab"].items()) + ")",
        f"  scenes played: {s['scenes']} ({s['scenes_aborted']} aborted: contact never reached); overlaps "
        f"kept: {s['overlaps']}; videos without annotation file: {s['videos_without_annotation']}",
        f"  tracking rows: {s['tracking_rows']:,}; whole missing frames: {s['whole_missing_frames']}; "
        f"out-of-frame rows: {s['out_of_frame_rows']}; identity swaps: {s['id_swaps']}; "
        f"test intervals: {s['test_intervals']}",
        *([f"  {s['difficulty']}: look-alike scenes left unlabelled {s['hard']['decoys']}; planted events "
           f"missed {s['hard']['missed']}, beyond the lab's distance cut-off {s['hard']['too_far']}, "
           f"shorter than its duration cut-off {s['hard']['too_short']}"] if "hard" in s else []),
        *([format_scale(s)] if "like_real" in s else []),
        f"next: python -m features.build --data {s['out']} --out {s['out']}/cache",
    ])


def main(argv=None) -> int:
    args = parse_args(argv)
    with cli_guard("python -m features.synth"):
        labs = [x.strip() for x in args.labs.split(",") if x.strip()]
        summary = generate(args.out, n_videos=args.videos, n_frames=args.frames, seed=args.seed, labs=labs,
                           test_videos=args.test_videos, progress=True, fps_quirk=args.fps_quirk,
                           force=args.force, difficulty=args.difficulty,
                           like_real=args.fraction if args.like_real else None, workers=args.workers,
                           lab_contrast=args.lab_contrast)
        print(format_summary(summary))
    return 0

