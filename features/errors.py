"""One exception type for every bad-input problem in the data layer.

Its message always names the file, the video and the problem, so a CLI can print that one line and exit
non-zero (see `features.errors.cli_guard`).
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path


class MabeDataError(ValueError):
    """Bad input: a missing column, a corrupt parquet, NaN coordinates, a malformed whitelist..."""

    def __init__(self, problem: str, *, file: str | Path | None = None, video: int | str | None = None):
        self.problem = problem
        self.file = str(file) if file is not None else None
        self.video = video
        parts = []
        if self.file is not None:
            parts.append(f"file {self.file}")
        if video is not None:
            parts.append(f"video {video}")
        prefix = ", ".join(parts)
        super().__init__(f"{prefix}: {problem}" if prefix else problem)


@contextmanager
def cli_guard(prog: str):
    """Turn a MabeDataError, or an OSError (a folder that cannot be written, a full disk, a file-size limit),
    into one line on stderr and exit code 2 (for `python -m ...` entry points)."""
    try:
        yield
    except (MabeDataError, OSError) as exc:
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)  # one line, always
        raise SystemExit(2) from None
