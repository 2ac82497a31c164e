"""The Kaggle notebook script: install the bundle's wheel offline, write /kaggle/working/submission.csv.

`python -m ensemble.export` writes it into every bundle as `notebook_predict.py`; paste it into one cell of a
Kaggle notebook (internet off, accelerator optional) whose inputs are the competition data and the bundle
dataset. It finds both under /kaggle/input by their marker files (the bundle: manifest.json + ensemble.json;
the data: test.csv + test_tracking/), checks the wheel against the manifest's sha256, installs it with
`pip install --no-index --no-deps` (torch, numpy, pandas and pyarrow are in the Kaggle image), then runs
`python -m ensemble.predict` with its output shown in the cell. Any non-zero exit raises SubmissionFailed, so
the notebook run FAILS: exit 2 (bad input or a refused bundle) with predict's one-line message, exit 3 (no
test video could be predicted) as "PLACEHOLDER SUBMISSION". On success it prints "submission written: <out>".
A local dry run: `MABE_KAGGLE_INPUT=<folder with the bundle and data folders> MABE_KAGGLE_OUT=sub.csv python
bundle/notebook_predict.py` (tests/test_kaggle_notebook.py and tests/test_e2e.py do this in a clean venv).

    python -m ensemble.notebook                      # print the script
    python -m ensemble.notebook --out notebook.py    # write it
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from features import files

SCRIPT = r'''# MABe Tune offline submission: check and install the bundle's wheel (no internet), then predict.
# Inputs: the competition data and the bundle dataset (made by `python -m ensemble.export`).
# Every failure raises, so the notebook run fails instead of leaving a bad submission behind.
import glob
import hashlib
import json
import os
import subprocess
import sys

INPUT = os.environ.get("MABE_KAGGLE_INPUT", "/kaggle/input")  # overridable for a local dry run
OUT = os.environ.get("MABE_KAGGLE_OUT", "/kaggle/working/submission.csv")


class SubmissionFailed(RuntimeError):
    """Raised on any failure: the notebook run fails."""


def find(marker, extra):
    """The input folder holding `marker` and `extra`, searched up to three levels deep."""
    for depth in (1, 2, 3):
        for hit in sorted(glob.glob(os.path.join(INPUT, *["*"] * depth, marker))):
            folder = os.path.dirname(hit)
            if os.path.exists(os.path.join(folder, extra)):
                return folder
    raise SubmissionFailed(f"no input folder with {marker} and {extra} under {INPUT}: add it as an input")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


BUNDLE = find("manifest.json", "ensemble.json")
DATA = find("test.csv", "test_tracking")
print(f"bundle {BUNDLE}\ndata   {DATA}", flush=True)
with open(os.path.join(BUNDLE, "manifest.json")) as f:
    MANIFEST = json.load(f)
WHEEL = os.path.join(BUNDLE, MANIFEST.get("wheel") or "(no wheel named in manifest.json)")
if not os.path.isfile(WHEEL) or MANIFEST["files"].get(os.path.basename(WHEEL)) != sha256(WHEEL):
    raise SubmissionFailed(f"{WHEEL}: missing or not matching its sha256 in manifest.json: re-export")
subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--force-reinstall",
                "-q", WHEEL], check=True)

proc = subprocess.Popen(
    [sys.executable, "-m", "ensemble.predict", "--bundle", BUNDLE, "--data", DATA, "--out", OUT],
    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
last = ""
for line in proc.stdout:  # predict's output, shown in the notebook as it comes
    print(line, end="", flush=True)
    last = line.strip() or last
rc = proc.wait()
if rc == 3:
    raise SubmissionFailed(
        f"PLACEHOLDER SUBMISSION: ensemble.predict exited with status 3 (no test video could be predicted); "
        f"{OUT} holds one placeholder row that scores nothing. See the warnings above.")
if rc != 0:
    raise SubmissionFailed(f"ensemble.predict failed with exit status {rc}: {last}")
print(f"submission written: {OUT}")
'''


def script() -> str:
    """The notebook cell's source (see the module docstring)."""
    return SCRIPT


def write(path: str | os.PathLike) -> Path:
    return files.write_text(path, SCRIPT)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m ensemble.notebook",
        description="Print or write the Kaggle notebook script (offline predict).",
    )
    p.add_argument("--out", help="write the script here instead of printing it")
    args = p.parse_args(argv)
    if args.out:
        print(f"wrote {write(args.out)}")
    else:
        print(SCRIPT, end="")


if __name__ == "__main__":
    main()
