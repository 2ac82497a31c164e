"""Run every benchmark and print one table: stage, ours, baseline, ratio, target, pass/fail.

    python -m bench --quick          # every stage, shrunk (< 10 min on 2 CPU cores)
    python -m bench                  # full sizes (the search comparison takes long)
    python -m bench --gpu            # add the CUDA rows (bf16, projected full-dataset epochs)
    python -m bench --scale          # only the real-scale stage: like-real twin at --fraction (0.1), cache,
                                     # loader, data-wait share, projected to the full set (~10 min on 2 cores)
    python -m bench --only data,metric

Each stage lives in its own module (`bench/<stage>_bench.py`) exposing `run(quick: bool, gpu: bool) ->
list[dict]`; rows carry `stage, ours, baseline, ratio, target, unit` and optionally `passed` and `note`.
Ratios are measured against a baseline run side by side in the same process, because absolute times on
shared machines drift.
Results are written to `bench/results.json` (with the date and the machine).
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import platform
import re
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

STAGES = ("data", "metric", "train", "ray", "search", "predict")
EXTRA_STAGES = ("scale",)  # not in the default run: only with --scale or --only scale
RESULTS = Path(__file__).resolve().parent / "results.json"
RESULTS_SCALE = RESULTS.with_name("results-scale.json")  # --scale alone keeps the full run's results.json


def _passed(row: dict) -> bool | None:
    """A row passes when its value meets its target, e.g. target '>= 10' against the ratio (or ours)."""
    if row.get("passed") is not None:
        return bool(row["passed"])
    m = re.match(r"\s*(<=|>=|<|>)\s*([-+0-9.eE]+)", str(row.get("target") or ""))
    value = row.get("ratio") if row.get("ratio") is not None else row.get("ours")
    if not m or value is None:
        return None
    op, limit = m.group(1), float(m.group(2))
    return {"<=": value <= limit, ">=": value >= limit, "<": value < limit, ">": value > limit}[op]


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-2):
            return f"{v:.3g}"
        return f"{v:.3f}".rstrip("0").rstrip(".") if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def print_table(rows: list[dict]) -> None:
    cols = ["stage", "ours", "baseline", "ratio", "target", "result", "unit"]
    table = []
    for r in rows:
        p = r.get("result")
        table.append([r["stage"], _fmt(r.get("ours")), _fmt(r.get("baseline")), _fmt(r.get("ratio")),
                      str(r.get("target") or "-"), p, str(r.get("unit") or "")])
    widths = [max(len(c), *(len(t[i]) for t in table)) if table else len(c) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
    print(line)
    print("-" * len(line))
    for t in table:
        print("  ".join(x.ljust(w) for x, w in zip(t, widths)))


def run_stage(stage: str, quick: bool, gpu: bool, **extra) -> list[dict]:
    module = importlib.import_module(f"bench.{stage}_bench")
    params = inspect.signature(module.run).parameters
    kwargs = {"quick": quick}
    if "gpu" in params:
        kwargs["gpu"] = gpu
    kwargs.update({k: v for k, v in extra.items() if k in params})
    return module.run(**kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="shrink every stage (skip the long search comparison)"
    )
    parser.add_argument("--gpu", action="store_true", help="also measure on CUDA when a GPU is present")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated stages to run (default: all of {','.join(STAGES)}; also "
                             f"{','.join(EXTRA_STAGES)})")
    parser.add_argument("--scale", action="store_true",
                        help="run the real-scale stage (bench/scale_bench.py): the like-real twin at "
                             "--fraction through cache build, loader and trainer, projected to the full set")
    parser.add_argument("--fraction", type=float, default=0.1,
                        help="--scale: like-real twin scale F in (0, 1]")
    parser.add_argument("--scale-workers", type=int, default=2,
                        help="--scale: processes generating the twin and building its caches")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"where to write the JSON results (default {RESULTS.name}; {RESULTS_SCALE.name} "
                             f"when only the scale stage runs)")
    args = parser.parse_args(argv)

    only = args.only if args.only is not None else ("scale" if args.scale else ",".join(STAGES))
    stages = [s.strip() for s in only.split(",") if s.strip()]
    if args.scale and "scale" not in stages:
        stages.append("scale")
    unknown = sorted(set(stages) - set(STAGES) - set(EXTRA_STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {unknown}; choose from {list(STAGES + EXTRA_STAGES)}")
    if not 0 < args.fraction <= 1 or args.scale_workers < 1:
        parser.error("--fraction must be in (0, 1] and --scale-workers >= 1")
    if args.out is None:
        args.out = RESULTS_SCALE if stages == ["scale"] else RESULTS

    rows: list[dict] = []
    t_all = time.perf_counter()
    for stage in stages:
        print(f"\n=== bench: {stage} {'(quick)' if args.quick else ''}", flush=True)
        t0 = time.perf_counter()
        try:
            stage_rows = run_stage(stage, args.quick, args.gpu, fraction=args.fraction,
                                   workers=args.scale_workers)
        except Exception as exc:  # one broken stage must not hide the others' numbers
            traceback.print_exc()
            stage_rows = [{"stage": f"{stage}: failed", "ours": None, "target": None,
                           "passed": False, "note": f"{type(exc).__name__}: {exc}"}]
        for r in stage_rows:
            r.setdefault("group", stage)
            ok = _passed(r)
            r["result"] = "-" if ok is None else ("pass" if ok else "FAIL")
        rows.extend(stage_rows)
        print(f"=== {stage} done in {time.perf_counter() - t0:.1f} s", flush=True)

    print()
    print_table(rows)
    for r in rows:
        if r.get("note"):
            print(f"  note [{r['stage']}]: {r['note']}")
    wall = time.perf_counter() - t_all
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    try:
        import torch

        machine += f", torch {torch.__version__}"
        if torch.cuda.is_available():
            machine += f", {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    payload = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine,
               "quick": args.quick, "wall_s": round(wall, 1), "rows": rows}
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    os.replace(tmp, args.out)
    failed = [r["stage"] for r in rows if r["result"] == "FAIL"]
    print(f"\n{len(rows)} rows in {wall:.0f} s on {machine}; {len(failed)} missed target(s)"
          + (f": {', '.join(failed)}" if failed else ""))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
