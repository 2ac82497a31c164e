"""Export an ensemble folder as a self-checking Kaggle dataset bundle for offline prediction.

    python -m ensemble.export --ensemble ensembles/<name> --out bundle/
    python -m ensemble.export --ensemble ensembles/<name> --out bundle/ --dataset-id myuser/mabe-tune-bundle
    kaggle datasets create -p bundle/          # upload (then add it as an input of the notebook)

The bundle is FLAT (Kaggle's CLI skips sub-folders unless zipped), every file at its top level:

    model-<i>.pt, config-<i>.json, metrics-<i>.json   member i: state_dict (torch.load(weights_only=True)),
                                                       full TrainConfig (model + feature settings), metrics
    ensemble.json        members, inference settings (windows, TTA), feature settings, OOF scores
    thresholds.json      post-processing: per-(lab, action) thresholds, per-action fallbacks, smoothing,
                         minimum duration, gap filling (ensemble.postprocess.PostprocessConfig)
    mabe_tune-*.whl      this project as a wheel (pip install --no-index --no-deps <bundle>/<wheel>)
    notebook_predict.py  the Kaggle notebook cell (ensemble.notebook)
    manifest.json        package versions, OOF scores, sha256 of every file the Kaggle upload keeps
    dataset-metadata.json  for `kaggle datasets create -p bundle/`: NOT in the manifest (the Kaggle client
                         never uploads its metadata files), so the dataset id and title can be edited freely

The manifest is corruption detection (a truncated upload, a partial copy, a file replaced by mistake), not a
signature: predict refuses a file it loads that is missing, unlisted or has another sha256.

Every member's weights are loaded back with `weights_only=True` before anything is written; the bundle is
assembled in a temporary folder and moved into place at the end, so a failed export leaves no half bundle.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from features import files
from features.errors import MabeDataError, cli_guard
from features.files import sha256_file

MANIFEST = "manifest.json"
FORMAT = 2  # 2: the Kaggle client's metadata files are outside `files`
# What `kaggle datasets create/version -p DIR` never uploads (kaggle-api KaggleApi.upload_files, 1.8 and 2.x):
# its metadata files. Sub-folders are skipped too (without --dir-mode), which is why the bundle is flat.
KAGGLE_METADATA = frozenset({
    "dataset-metadata.json",
    "datapackage.json",
    "kernel-metadata.json",
    "model-metadata.json",
    "model-instance-metadata.json",
    *(f"dataset-cover-image{ext}" for ext in (".png", ".jpg", ".jpeg", ".webp")),
})
PACKAGES = ("torch", "numpy", "pandas", "pyarrow", "tqdm")
WHEEL_SOURCES = ("features", "models", "tune", "ensemble", "bench", "pyproject.toml", "README.md")


def project_root() -> Path:
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise MabeDataError(
            "the project's pyproject.toml is not next to the ensemble package: run export from a "
            "source checkout",
            file=root,
        )
    return root


def build_wheel(dest: str | os.PathLike, root: Path | None = None) -> Path:
    """`pip wheel --no-deps` of a clean copy of the project's sources (the checkout gets no build/ folder)."""
    root = root or project_root()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mabe-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in WHEEL_SOURCES:
            p = root / name
            if p.is_dir():
                shutil.copytree(
                    p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.tmp*")
                )
            elif p.is_file():
                shutil.copy2(p, src / name)
        out = Path(tmp) / "wheels"
        proc = subprocess.run(
            check=False,
            args=[
                sys.executable,
                "-m",
                "pip",
                "wheel",
                str(src),
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "-q",
                "-w",
                str(out),
            ],
            capture_output=True,
            text=True,
        )
        wheels = sorted(out.glob("*.whl")) if out.exists() else []
        if proc.returncode != 0 or not wheels:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise MabeDataError(
                f"building the wheel failed: {' | '.join(tail)}", file=root / "pyproject.toml"
            )
        target = dest / wheels[0].name
        shutil.copy2(wheels[0], target)
    return target


def package_versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in PACKAGES + ("mabe-tune",):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def uploaded_files(bundle: Path) -> list[Path]:
    """The files a Kaggle upload of `bundle` keeps, less the manifest: top-level files but KAGGLE_METADATA."""
    skip = KAGGLE_METADATA | {MANIFEST}
    return [p for p in sorted(bundle.iterdir()) if p.is_file() and p.name not in skip]


def write_manifest(bundle: Path, extra: dict) -> dict:
    """sha256 of every file the Kaggle upload keeps (uploaded_files)."""
    digests = {p.name: sha256_file(p) for p in uploaded_files(bundle)}
    manifest = {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": package_versions(),
        **extra,
        "files": digests,
    }
    files.write_json(bundle / MANIFEST, manifest)
    return manifest


def copy_members(ens: Path, members: list[dict], dst: Path) -> list[dict]:
    """Member i's model.pt, config.json, metrics.json -> dst/model-<i>.pt, config-<i>.json, metrics-<i>.json,
    each member loaded back first (`weights_only=True` + model rebuild: what predict will do)."""
    import torch

    from models.checkpoint import load_model

    out = []
    for i, m in enumerate(members):
        src = ens / "members" / m["name"]
        try:
            load_model(src)
        except Exception as exc:  # noqa: BLE001 - any failure here means the member cannot ship
            raise MabeDataError(f"member {m['name']} does not load ({exc})", file=src) from None
        for kind, ext in (("model", "pt"), ("config", "json"), ("metrics", "json")):
            shutil.copy2(src / f"{kind}.{ext}", dst / f"{kind}-{i}.{ext}")
        torch.load(dst / f"model-{i}.pt", map_location="cpu", weights_only=True)
        out.append({**m, "index": i})
    return out


def write_bundle(dst: Path, ens: Path, info: dict, post: dict, dataset_id: str, title: str,
                 wheel: bool) -> dict:
    """Every bundle file into the (empty, staged) folder `dst`; returns the manifest."""
    from ensemble import notebook

    members = copy_members(ens, info["members"], dst)
    info = {**info, "members": members}
    files.write_json(dst / "ensemble.json", info)
    files.write_json(dst / "thresholds.json", post)
    notebook.write(dst / "notebook_predict.py")
    slug = dataset_id or "USERNAME/mabe-tune-bundle"
    files.write_json(dst / "dataset-metadata.json",
                     {"title": title, "id": slug, "licenses": [{"name": "CC0-1.0"}]}, sort_keys=False)
    wheel_name = build_wheel(dst).name if wheel else None
    return write_manifest(dst, {"oof": info.get("oof", {}), "members": len(members), "wheel": wheel_name})


def export(
    ensemble_dir: str | os.PathLike,
    out: str | os.PathLike,
    dataset_id: str = "",
    title: str = "MABe Tune ensemble bundle",
    wheel: bool = True,
    log=print,
    force: bool = False,
) -> dict:
    """Write the bundle `out` from an ensemble folder of `python -m ensemble.build`; returns the manifest.
    The bundle is assembled in a staged folder swapped into place at the end (features.files.staged_dir),
    under the lock of `out` for the whole export. `out` must be new, empty or a bundle (its manifest.json is
    the marker: no extra file in a Kaggle bundle), else MabeDataError unless `force`; never the ensemble."""
    from ensemble.postprocess import PostprocessConfig

    ens, out = Path(ensemble_dir), Path(out)
    files.check_not_inside(out, ens, data_flag="--ensemble")
    files.check_replaceable(out, "bundle", force=force, legacy=_is_bundle)
    try:
        info = json.loads((ens / "ensemble.json").read_text())
        post = json.loads((ens / "thresholds.json").read_text())
    except (OSError, ValueError) as exc:
        raise MabeDataError(f"not an ensemble folder of python -m ensemble.build ({exc})", file=ens) from None
    PostprocessConfig.from_dict(post)  # refuse a broken config now, not on Kaggle
    with files.waiting_lock(out, f"another ensemble.export to {out}"):
        files.check_replaceable(out, "bundle", force=force, legacy=_is_bundle)
        with files.staged_dir(out, locked=True) as tmp:
            manifest = write_bundle(tmp, ens, info, post, dataset_id, title, wheel)
    size = sum(p.stat().st_size for p in out.iterdir())
    log(
        f"[ensemble.export] {manifest['members']} members, {len(manifest['files']) + 1} files, "
        f"{size / 1e6:.1f} MB -> {out}"
    )
    if not dataset_id:
        log(f"  edit {out / 'dataset-metadata.json'} (id = <your kaggle user>/<slug>) before uploading "
            "(it is outside manifest.json: safe to edit)")
    return manifest


def _is_bundle(out: Path) -> bool:
    """A bundle this module wrote: manifest.json with its format and checksums."""
    try:
        m = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and "format" in m and isinstance(m.get("files"), dict)


def main(argv=None) -> dict:
    from features.cli import ArgumentParser

    p = ArgumentParser(
        prog="python -m ensemble.export",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write a flat, checksummed Kaggle dataset bundle from an ensemble "
        "folder (python -m ensemble.build).",
        epilog=__doc__.split("\n\n", 2)[2],
    )
    p.add_argument(
        "--ensemble", required=True, help="ensemble folder (members/, ensemble.json, thresholds.json)"
    )
    p.add_argument("--out", default="bundle", help="bundle folder to write (replaced atomically)")
    p.add_argument(
        "--dataset-id", default="", help="Kaggle dataset id <user>/<slug> for dataset-metadata.json"
    )
    p.add_argument("--title", default="MABe Tune ensemble bundle", help="Kaggle dataset title")
    p.add_argument(
        "--no-wheel",
        action="store_true",
        help="skip the project wheel (the notebook then needs it from elsewhere)",
    )
    p.add_argument("--force", action="store_true",
                   help="replace --out even if it is not a bundle this command wrote (never --ensemble)")
    args = p.parse_args(argv)
    if args.dataset_id and not re.fullmatch(r"[^/\s]+/[^/\s]+", args.dataset_id):
        p.error(f"argument --dataset-id: {args.dataset_id!r} is not <kaggle user>/<slug>")
    manifest = export(args.ensemble, args.out, args.dataset_id, args.title, wheel=not args.no_wheel,
                      force=args.force)
    oof = manifest.get("oof", {})
    if oof:
        print(
            f"  OOF: best single {oof.get('best_single_score', float('nan')):.4f}, raw ensemble "
            f"{oof.get('raw_ensemble', float('nan')):.4f}, tuned {oof.get('tuned', float('nan')):.4f}"
        )
    print(
        f"next: python -m ensemble.predict --bundle {args.out} --data <kaggle data> --out submission.csv\n"
        f"      kaggle datasets create -p {args.out}   (then run {args.out}/notebook_predict.py in a "
        "notebook)"
    )
    return manifest


if __name__ == "__main__":
    with cli_guard("python -m ensemble.export"):
        main(sys.argv[1:])
