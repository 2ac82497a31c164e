"""Submissions: the one column list, row builder, overlap check, validator and writer of the Kaggle format
(docs/mabe.md, Data layout).

`validate(df, test_csv) -> list[str]` returns one clear line per problem (an empty list means valid);
`check(df, test_csv)` raises `MabeDataError` listing them. Checked: column names and order, integer dtypes,
`row_id` unique, ids of the form `mouseN` / `self`, known action names, 0 <= start_frame <= stop_frame,
known videos (in test.csv), not empty, and no frame of one (video, agent, target) predicted for two
different actions (the official metric rejects the whole submission for that). Rows whose target is the
agent itself (`mouse1,mouse1`) are reported too: the metric ignores them, so they are a bug upstream.

`overlaps(df)` is the one overlap check (this validator and `ensemble.metric` call it); `to_frame(rows)`
builds every submission DataFrame (`ensemble.postprocess.events_to_submission`, `placeholder`);
`write(df, path, test_csv)` validates and writes atomically (features.files).

Commands:

    python -m ensemble.submission --submission submission.csv --test-csv test.csv
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from features import files
from features.errors import MabeDataError, cli_guard
from features.io import SUBMISSION_COLUMNS
from features.labels import ACTIONS, PAIR_ACTIONS

COLUMNS = list(SUBMISSION_COLUMNS)
OVERLAP_PROBLEM = "Multiple predictions for the same frame from one agent/target pair"
INT_COLUMNS = ("row_id", "video_id", "start_frame", "stop_frame")
STR_COLUMNS = ("agent_id", "target_id", "action")
MOUSE = re.compile(r"^mouse[1-9][0-9]*$")
MAX_LINES_PER_CHECK = 5


def _rows(mask: np.ndarray) -> str:
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in idx[:MAX_LINES_PER_CHECK])
    more = f" and {idx.size - MAX_LINES_PER_CHECK} more" if idx.size > MAX_LINES_PER_CHECK else ""
    return f"{idx.size} row(s) (positions {shown}{more})"


def to_frame(rows) -> pd.DataFrame:
    """A submission DataFrame from rows (video_id, agent_id, target_id, action, start_frame, stop_frame) in
    the given order: `row_id` enumerates them from 0, ids and frames are int64."""
    df = pd.DataFrame(list(rows), columns=COLUMNS[1:])
    df.insert(0, "row_id", np.arange(len(df), dtype=np.int64))
    return df.astype({"video_id": np.int64, "start_frame": np.int64, "stop_frame": np.int64})


def placeholder(meta: pd.DataFrame) -> pd.DataFrame:
    """One harmless row: a zero-length interval of an action the first video does not whitelist (the metric
    ignores it), so a submission is never empty."""
    row = meta.iloc[0]
    raw = row.get("behaviors_labeled")
    try:
        listed = set(json.loads(raw)) if isinstance(raw, str) else set()
    except ValueError:
        listed = set()
    action = next(a for a in PAIR_ACTIONS if f"mouse1,mouse2,{a}" not in listed)
    return to_frame([(int(row["video_id"]), "mouse1", "mouse2", action, 0, 0)])


def overlaps(df: pd.DataFrame) -> pd.DataFrame:
    """The one overlap check: merged runs (intervals of one action of one (video, agent, target), joined where
    they overlap) that start inside a run of another action of the same pair, sorted by (video, agent, target,
    start); empty when no frame of a pair is predicted for two different actions. Same-action overlaps and
    touching runs (stop == next start) are allowed; zero-length rows are ignored."""
    cols = ["video_id", "agent_id", "target_id", "action", "start_frame", "stop_frame"]
    d = df.loc[df["stop_frame"] > df["start_frame"], cols]
    if d.empty:
        return d.iloc[:0]
    key = ["video_id", "agent_id", "target_id", "action"]
    d = d.sort_values(key + ["start_frame"], kind="stable")
    # merge intervals of one key (same-action overlaps are allowed): a new run starts past the running end
    prev_end = (d.groupby(key, sort=False)["stop_frame"].cummax()
                .groupby([d[c] for c in key], sort=False).shift())
    run = (prev_end.isna() | (d["start_frame"] > prev_end)).cumsum()
    merged = d.groupby(run, sort=False).agg(video_id=("video_id", "first"), agent_id=("agent_id", "first"),
                                            target_id=("target_id", "first"), action=("action", "first"),
                                            start_frame=("start_frame", "min"),
                                            stop_frame=("stop_frame", "max"))
    pair = ["video_id", "agent_id", "target_id"]
    merged = merged.sort_values(pair + ["start_frame"], kind="stable").reset_index(drop=True)
    prev_stop = merged.groupby(pair, sort=False)["stop_frame"].cummax().groupby(
        [merged[c] for c in pair], sort=False).shift()
    return merged.loc[merged["start_frame"] < prev_stop]


def _overlap_lines(df: pd.DataFrame) -> list[str]:
    """One line per (video, agent, target) where two different actions share a frame."""
    bad = overlaps(df)
    lines = []
    for r in bad.head(MAX_LINES_PER_CHECK).itertuples(index=False):
        lines.append(f"video {r.video_id}, {r.agent_id} -> {r.target_id}: {r.action} "
                     f"from frame {r.start_frame} "
                     f"overlaps another action ({OVERLAP_PROBLEM})")
    if len(bad) > MAX_LINES_PER_CHECK:
        lines.append(f"... and {len(bad) - MAX_LINES_PER_CHECK} more overlaps")
    return lines


def _test_videos(test_csv) -> set:
    if isinstance(test_csv, pd.DataFrame):
        test = test_csv
    else:
        try:
            test = pd.read_csv(test_csv, usecols=["video_id"])
        except (OSError, ValueError) as exc:
            raise MabeDataError(f"cannot read test.csv ({exc})", file=test_csv) from None
    if "video_id" not in test.columns:
        raise MabeDataError("test.csv has no video_id column", file=None if isinstance(test_csv, pd.DataFrame)
                            else test_csv)
    return set(test["video_id"].tolist())


def validate(df: pd.DataFrame, test_csv) -> list[str]:
    """Problems of a submission, one line each; [] if it is valid. test_csv: path or DataFrame with
    video_id."""
    problems: list[str] = []
    if list(df.columns) != COLUMNS:
        missing = [c for c in COLUMNS if c not in df.columns]
        extra = [c for c in df.columns if c not in COLUMNS]
        detail = (f"missing {missing}" if missing else "") + (f" extra {extra}" if extra else "")
        problems.append(f"columns must be exactly {COLUMNS} in this order, got {list(df.columns)}"
                        + (f" ({detail.strip()})" if detail else ""))
        if missing:
            return problems
    if len(df) == 0:
        problems.append("submission is empty (the metric raises 'Missing solution or submission data')")
        return problems
    ok_ints = True
    for c in INT_COLUMNS:
        if not pd.api.types.is_integer_dtype(df[c]):
            problems.append(f"column {c} must be integer, got dtype {df[c].dtype}")
            ok_ints = False
    for c in STR_COLUMNS:
        if not (pd.api.types.is_string_dtype(df[c]) or df[c].dtype == object):
            problems.append(f"column {c} must be strings, got dtype {df[c].dtype}")
    agent = df["agent_id"].astype(str)
    target = df["target_id"].astype(str)
    bad = ~agent.str.match(MOUSE).to_numpy(bool)
    if bad.any():
        problems.append(f"agent_id must look like mouseN: {_rows(bad)}, e.g. {agent[bad].iloc[0]!r}")
    bad = ~(target.str.match(MOUSE) | (target == "self")).to_numpy(bool)
    if bad.any():
        problems.append(f"target_id must look like mouseN or self: {_rows(bad)}, "
                        f"e.g. {target[bad].iloc[0]!r}")
    same = (agent == target).to_numpy(bool)
    if same.any():
        problems.append(f"target_id equals agent_id (self-directed rows must use 'self'): {_rows(same)}")
    action = df["action"].astype(str)
    bad = ~action.isin(ACTIONS).to_numpy(bool)
    if bad.any():
        problems.append(f"unknown action: {_rows(bad)}, e.g. {action[bad].iloc[0]!r}")
    if ok_ints:
        if df["row_id"].duplicated().any():
            problems.append(f"row_id must be unique: {_rows(df['row_id'].duplicated().to_numpy())}")
        bad = (df["start_frame"] > df["stop_frame"]).to_numpy()
        if bad.any():
            problems.append(f"start_frame > stop_frame: {_rows(bad)}")
        bad = (df["start_frame"] < 0).to_numpy()
        if bad.any():
            problems.append(f"negative start_frame: {_rows(bad)}")
        known = _test_videos(test_csv)
        bad = ~df["video_id"].isin(known).to_numpy()
        if bad.any():
            problems.append(f"video_id not in test.csv: {_rows(bad)}, e.g. {df['video_id'][bad].iloc[0]}")
        problems.extend(_overlap_lines(df))
    return problems


def check(df: pd.DataFrame, test_csv, file: str | Path | None = None) -> None:
    """Raise MabeDataError listing every problem (one per line) if the submission is not valid."""
    problems = validate(df, test_csv)
    if problems:
        raise MabeDataError(f"{len(problems)} problem(s): " + " | ".join(problems), file=file)


def write(df: pd.DataFrame, path: str | Path, test_csv) -> Path:
    """Validate `df` (MabeDataError listing every problem) and write it as CSV, atomically and durably."""
    problems = validate(df, test_csv)
    if problems:
        raise MabeDataError("the submission does not validate: " + " | ".join(problems), file=path)
    with files.atomic_file(path) as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(
        prog="python -m ensemble.submission",
        description="Validate a MABe submission.csv: columns, dtypes, ids, actions, frame ranges, "
                    "known videos "
                    "and no overlapping actions per (video, agent, target). Prints one line per problem.")
    parser.add_argument("--submission", required=True, help="the submission CSV to check")
    parser.add_argument("--test-csv", required=True,
                        help="the competition's test.csv (for the known video ids)")
    args = parser.parse_args(argv)
    try:
        df = pd.read_csv(args.submission)
    except (OSError, ValueError) as exc:
        raise MabeDataError(f"cannot read CSV ({exc})", file=args.submission) from None
    problems = validate(df, args.test_csv)
    for line in problems:
        print(f"problem: {line}")
    if problems:
        raise MabeDataError(f"{len(problems)} problem(s), see above", file=args.submission)
    print(f"{args.submission}: valid ({len(df)} rows, {df['video_id'].nunique()} videos)")
    print(f"next: python -m ensemble.metric --solution <solution.csv> --submission {args.submission}")
    return problems


if __name__ == "__main__":
    with cli_guard("python -m ensemble.submission"):
        main()
