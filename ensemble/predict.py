"""Offline prediction from an export bundle: Kaggle test data -> submission.csv. No Ray, Optuna or Modal.

    python -m ensemble.predict --bundle bundle/ --data /kaggle/input/MABe-mouse-behavior-detection \\
        --out /kaggle/working/submission.csv
    python -m ensemble.predict --bundle bundle/ --data data/synth --out sub.csv --device cpu --threads 4

Steps: (1) every file listed in the bundle's manifest.json is checked against its sha256 before anything is
loaded, and every file predict loads must be listed (a changed, missing, truncated or unlisted file -> refuse,
naming the file, exit 2; corruption detection, not a signature); (2) the members are rebuilt from their config
and `torch.load(weights_only=True)` weights; (3) test.csv is read and, per video (tqdm bar if installed),
its tracking parquet -> features (features.pipeline.video_features, the function the training cache used, once
per distinct feature setting) -> sliding-window probabilities averaged over the members (and the mirrored
input with TTA) -> the tuned post-processing (thresholds per (lab, action), fallback per action, smoothing,
minimum duration) on the resampled frames -> intervals in the video's own frame numbers, mapped onto the
frame axis of the lab's labels where it differs (features.quirks: 25-fps AdaptableSnail videos are scored
on a 30-fps axis); (4) the rows are checked with ensemble.submission.validate and written atomically.

Bad-video policy: a video whose files are missing or malformed is SKIPPED with a one-line warning naming the
file, the video and the problem, and the others are still predicted; the summary lists the skipped videos.
A whitelisted mouse without any tracked point drops only its own pairs (a warning names it); the video's
other pairs are still predicted. The submission is never empty: if nothing at all is predicted, one
harmless placeholder row is written (a zero-length interval of an action the video does not whitelist, which
the metric ignores) and the exit status is 3 when every video failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

from features.errors import MabeDataError, cli_guard

PROG = "python -m ensemble.predict"


def verify_bundle(bundle: str | os.PathLike) -> dict:
    """Check every file of manifest.json against its sha256; returns the manifest or raises MabeDataError.

    Corruption detection, not a signature. The Kaggle client's metadata files (export.KAGGLE_METADATA) are not
    checked even where an old (format 1) manifest lists them: Kaggle drops them and predict never reads them.
    Files predict loads must also be listed: see `listed_file`."""
    from ensemble.export import KAGGLE_METADATA, MANIFEST
    from features.files import sha256_file

    bundle = Path(bundle)
    try:
        manifest = json.loads((bundle / MANIFEST).read_text())
        files = manifest["files"]
        if not isinstance(files, dict) or any(Path(n).name != n for n in files):
            raise ValueError("'files' is not a {file name: sha256} mapping")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MabeDataError(
            f"bundle has no readable manifest ({exc}); re-run python -m ensemble.export",
            file=bundle / MANIFEST,
        ) from None
    for name, digest in sorted(files.items()):
        if name in KAGGLE_METADATA:
            continue
        p = bundle / name
        if not p.is_file():
            raise MabeDataError("bundle file listed in manifest.json is missing", file=p)
        if sha256_file(p) != digest:
            raise MabeDataError(
                "bundle file does not match its sha256 in manifest.json (changed or corrupted): "
                "refusing to use this bundle",
                file=p,
            )
    return manifest


def listed_file(bundle: Path, manifest: dict, name: str) -> Path:
    """bundle/name, if manifest.json lists it (verify_bundle has checked its sha256); else MabeDataError."""
    p = Path(bundle) / name
    if name not in manifest.get("files", {}):
        raise MabeDataError(
            "bundle file is not listed in manifest.json (every file predict loads must be, with its sha256): "
            "refusing to use this bundle; re-export it with python -m ensemble.export",
            file=p,
        )
    return p


class Ensemble:
    """The verified bundle, loaded: models grouped by feature settings, post-processing, inference."""

    def __init__(self, bundle: str | os.PathLike, device: str = "cpu", verify: bool = True):
        from ensemble.infer import InferSettings
        from ensemble.postprocess import PostprocessConfig
        from features.pipeline import FeatureSettings
        from models.checkpoint import load_weights, rebuild_model

        self.path = Path(bundle)
        self.manifest = verify_bundle(self.path) if verify else {}

        def path(name: str) -> Path:  # with verify, only files the manifest lists (and verify_bundle checked)
            return listed_file(self.path, self.manifest, name) if verify else self.path / name

        info = json.loads(path("ensemble.json").read_text())
        self.post = PostprocessConfig.from_dict(json.loads(path("thresholds.json").read_text()))
        self.infer = InferSettings.from_dict(info.get("infer", {}))  # tta; windows of pre-member ensembles
        self.device = device
        groups: dict[str, tuple] = {}
        for m in info["members"]:
            i = m["index"]
            cfg = json.loads(path(f"config-{i}.json").read_text())
            model = rebuild_model(cfg, load_weights(path(f"model-{i}.pt")))
            fs = FeatureSettings.from_dict(cfg.get("features") or {})
            key = json.dumps(fs.to_dict(), sort_keys=True)
            # the sliding-window settings its OOF probabilities were computed with (ensemble.build)
            settings = InferSettings.from_dict(m.get("infer") or info.get("infer", {}))
            groups.setdefault(key, (fs, []))[1].append((model.to(device).eval(), settings))
        self.groups = list(groups.values())  # [(FeatureSettings, [(model, InferSettings)])]
        self.n_models = sum(len(ms) for _, ms in self.groups)

    def video_probs(self, meta_row, tracking, source=None):
        """(VideoFeatures of the first group, probs float32 [P, T', 38]) averaged over all members."""
        from ensemble.infer import video_probs
        from features.pipeline import video_features

        first, total = None, None
        for fs, models in self.groups:
            vf = video_features(meta_row, tracking, fs, source=source, untracked="drop")
            if first is None:
                first = vf
            elif vf.pairs != first.pairs or vf.x.shape[1] != first.x.shape[1]:
                raise MabeDataError(
                    "members with different feature settings disagree on pairs/frames",
                    file=source,
                    video=vf.video_id,
                )
            for model, settings in models:
                p = video_probs([model], vf.x, vf.allowed, settings, fs.feature_names(), self.device,
                                lab=vf.lab_id)
                total = p if total is None else total + p
        return first, total / self.n_models


def predict(
    bundle: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    device: str = "cpu",
    limit: int | None = None,
    progress: bool = True,
    log=print,
) -> dict:
    """Write the submission; returns a summary {rows, videos, skipped, seconds, frames, ...}."""

    from ensemble.postprocess import events_to_submission, video_events
    from ensemble.submission import placeholder as placeholder_rows, write
    from features.io import kaggle_paths, read_metadata, read_tracking

    t0 = time.perf_counter()
    ens = Ensemble(bundle, device)
    log(
        f"bundle {bundle}: {len(ens.manifest.get('files', {}))} files verified, {ens.n_models} models in "
        f"{len(ens.groups)} feature group(s), TTA {'on' if ens.infer.tta else 'off'}"
    )
    test_csv = Path(data) / "test.csv"
    meta = read_metadata(test_csv)
    if len(meta) == 0:
        raise MabeDataError("test.csv has no videos", file=test_csv)
    rows = meta if limit is None else meta.iloc[:limit]
    items, skipped, frames = [], [], 0
    it = rows.iterrows()
    if progress:
        try:
            from tqdm import tqdm
        except ImportError:  # tqdm is optional offline: no bar then
            pass
        else:
            it = tqdm(it, total=len(rows), desc="predict", unit="video")
    for _, row in it:
        video = int(row["video_id"])
        path = None
        try:
            path, _ = kaggle_paths(data, "test", row["lab_id"], video)
            if not path.is_file():
                raise MabeDataError("tracking file of a test.csv video is missing", file=path, video=video)
            vf, probs = ens.video_probs(row, read_tracking(path, video), source=path)
            if vf.counts.get("untracked_pairs"):
                print(f"{PROG}: warning: video {video}: whitelisted mouse {vf.counts['untracked_mice']} has "
                      f"no tracked point: its {vf.counts['untracked_pairs']} pair(s) are not predicted",
                      file=sys.stderr)
            items.extend(
                (v, a, t, vf.to_label_axis(ev))
                for v, a, t, ev in video_events(
                    video, vf.pairs, probs, vf.allowed_raw, ens.post, vf.lab_id, vf.to_original
                )
            )
            frames += vf.n_frames_orig
        except (MabeDataError, OSError, ValueError, KeyError, IndexError) as exc:
            msg = str(exc) if isinstance(exc, MabeDataError) else f"file {path}, video {video}: {exc!r}"
            print(f"{PROG}: warning: skipping video {video}: {msg}", file=sys.stderr)
            skipped.append(video)
    sub = events_to_submission(items)
    placeholder = len(sub) == 0
    if placeholder:
        print(
            f"{PROG}: warning: nothing was predicted ({len(skipped)} of {len(rows)} videos failed); "
            "writing one "
            "placeholder row (zero-length, not whitelisted: ignored by the metric) so the file is not empty",
            file=sys.stderr,
        )
        sub = placeholder_rows(meta)
    out = write(sub, out, meta[["video_id"]])
    secs = time.perf_counter() - t0
    return {
        "rows": len(sub),
        "videos": len(rows) - len(skipped),
        "skipped": skipped,
        "placeholder": placeholder,
        "frames": frames,
        "seconds": secs,
        "out": str(out),
        "all_failed": len(skipped) == len(rows),
    }


def parse_args(argv=None):
    from features.cli import ArgumentParser, check_range

    p = ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Offline prediction (no Ray/Optuna/Modal): verify the bundle's checksums, read test.csv "
        "and "
        "test_tracking/, write a validated submission.csv.",
        epilog="Bad-video policy: a video with a missing or malformed file is skipped with a warning naming "
        "the "
        "file, video and problem; the other videos are still predicted and the summary lists the skipped "
        "ones. The submission is never empty: if nothing is predicted, one placeholder row the metric "
        "ignores is written, and the exit status is 3 when every video failed. A bundle is refused (exit 2) "
        "when a file it loads is missing, not listed in manifest.json or not matching its sha256 there.",
    )
    p.add_argument("--bundle", required=True, help="bundle folder from python -m ensemble.export")
    p.add_argument("--data", required=True, help="Kaggle-layout folder with test.csv and test_tracking/")
    p.add_argument("--out", default="submission.csv", help="submission CSV to write (default submission.csv)")
    p.add_argument("--device", default="auto", help="'auto' (cuda if available), 'cpu' or 'cuda'")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--limit", type=int, default=None, help="only the first N videos of test.csv (a dry run)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    args = p.parse_args(argv)
    check_range(p, args, {"--limit": 1, "--threads": 0})
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", args.device):
        p.error(f"argument --device: {args.device!r}: use auto, cpu, cuda or cuda:N")
    return args


def check_paths(bundle: str, data: str, out: str) -> None:
    """Cheap checks before any model is loaded: the bundle and test.csv exist, and --out is a file path
    that overwrites neither the bundle nor the input data."""
    b, d, o = Path(bundle), Path(data), Path(out)
    if not b.is_dir():
        raise MabeDataError(f"--bundle {bundle}: no such folder (write one with python -m ensemble.export)")
    if not (d / "test.csv").is_file():
        raise MabeDataError(f"--data {data}: no test.csv there (a Kaggle-layout folder is needed)",
                            file=d / "test.csv")
    if o.is_dir():
        raise MabeDataError(f"--out {out} is a folder: give the submission CSV's file path")
    if b.resolve() in o.resolve().parents or (o.exists() and o.resolve().parent == d.resolve()
                                             and o.name in ("test.csv", "train.csv")):
        raise MabeDataError(f"--out {out} would overwrite an input file (inside --bundle or --data)")


def main(argv=None) -> int:
    args = parse_args(argv)
    check_paths(args.bundle, args.data, args.out)  # user errors before torch is even imported
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MabeDataError(f"--device {device}: no CUDA device here (use --device cpu or auto)")
    s = predict(args.bundle, args.data, args.out, device, args.limit, progress=not args.no_progress)
    per_frame = s["seconds"] / max(s["frames"], 1) * 1e6
    print(
        f"\n[ensemble.predict] {s['rows']} rows for {s['videos']} videos in {s['seconds']:.1f}s "
        f"({per_frame:.1f} us/frame, {device}) -> {s['out']}"
    )
    if s["skipped"]:
        print(f"  skipped {len(s['skipped'])} video(s): {', '.join(map(str, s['skipped']))}")
    print(
        f"next: python -m ensemble.submission --submission {s['out']} "
        f"--test-csv {Path(args.data) / 'test.csv'}"
        "   (on Kaggle: submit the notebook's output)"
    )
    return 3 if s["all_failed"] else 0


if __name__ == "__main__":
    with cli_guard(PROG):
        raise SystemExit(main(sys.argv[1:]))
