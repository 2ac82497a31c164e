"""The Kaggle notebook script: install the bundle's wheel offline, write /kaggle/working/submission.csv.

`python -m ensemble.export` writes it into every bundle as `notebook_predict.py`; paste it into one cell of a
Kaggle notebook (internet off, accelerator optional) whose inputs are the competition data and the bundle
dataset. It finds both under /kaggle/input by their marker files (the bundle: manifest.json; the data:
test.csv + test_tracking/), installs the wheel with `pip install --no-index --find-links <bundle>` (torch,
numpy, pandas, pyarrow and tqdm are already in the Kaggle image), then runs `ensemble.predict`. A local dry
run: `MABE_KAGGLE_INPUT=<folder with the bundle and data folders> MABE_KAGGLE_OUT=sub.csv python
bundle/notebook_predict.py` (tests/test_e2e.py does this in a clean venv).

    python -m ensemble.notebook                      # print the script
    python -m ensemble.notebook --out notebook.py    # write it
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from features import files

SCRIPT = '''\
# MABe Tune offline submission: install the bundle's wheel (no internet), then predict.
# Inputs: the competition data and the bundle dataset (made by `python -m ensemble.export`).
import glob
import os
import subprocess
import sys

INPUT = os.environ.get("MABE_KAGGLE_INPUT", "/kaggle/input")  # overridable for a local dry run
OUT = os.environ.get("MABE_KAGGLE_OUT", "/kaggle/working/submission.csv")


def find(marker, extra=None):
    """The input folder holding `marker` (and `extra`), searched two levels deep."""
    for pattern in (f"{INPUT}/*/{marker}", f"{INPUT}/*/*/{marker}"):
        for hit in sorted(glob.glob(pattern)):
            folder = os.path.dirname(hit)
            if extra is None or os.path.exists(os.path.join(folder, extra)):
                return folder
    raise SystemExit(f"no input folder with {marker} under {INPUT}: add it as a notebook input")


BUNDLE = find("manifest.json")
DATA = find("test.csv", "test_tracking")
print(f"bundle {BUNDLE}\\ndata   {DATA}")
subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--find-links", BUNDLE,
                "mabe-tune"], check=True)

from ensemble.predict import main  # noqa: E402  (installed just above)

rc = main(["--bundle", BUNDLE, "--data", DATA, "--out", OUT])
print(f"ensemble.predict finished with status {rc}; {OUT} exists: {os.path.exists(OUT)}")
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
