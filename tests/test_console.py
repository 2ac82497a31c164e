"""tune.driver on a local search: the console filter (quiet_ray_console: Ray's internal lines out, everything
else in, in order, from several threads), the preemption watcher off, trial actors reused only where safe."""
from __future__ import annotations

import io
import sys
import threading

from tune.driver import RAY_INTERNAL_LINES, LineFilter, local_train_env, quiet_ray_console

RAY_LINES = [
    "\x1b[36m(TrainController pid=32261)\x1b[0m [2026-11-30 16:40:05,801 E 32261 32742] core_worker.cc:2465: "
    "Actor with class name: 'PreemptionWatcher' and ID: '95' has constructor arguments in the object store "
    "and max_restarts > 0.",
    "(raylet) WARNING: 12 PYTHON worker processes have been started on node: ab with address: 127.0.0.1. "
    "This could be a result of ..., which is 4x the maximum expected startup concurrency (2).",
    "\x1b[36m(TrainController pid=7)\x1b[0m ray.exceptions.GetTimeoutError: Get timed out",
]
OUR_LINES = [
    "\x1b[36m(RayTrainWorker pid=10629)\x1b[0m [tune.train] epoch 2: train/loss 1.7198 val/score 0.0503",
    "Trial status: 2 RUNNING",
    "best vs V6: +0.032 (trial 2: 0.0503, V6 trial 1: 0.0187)",
]


def test_line_filter_drops_rays_internal_lines_only_and_keeps_order():
    sink = io.StringIO()
    f = LineFilter(sink, RAY_INTERNAL_LINES)
    for a, b in zip(OUR_LINES, RAY_LINES):
        f.write(a[:10])           # a line arrives in pieces
        f.write(a[10:] + "\n" + b + "\n")
    f.write("no newline yet")
    f.flush()
    assert sink.getvalue() == "\n".join(OUR_LINES) + "\nno newline yet"
    assert f.dropped == len(RAY_LINES)


def test_quiet_ray_console_filters_stdout_and_stderr_from_threads_and_restores_them(capsys):
    with quiet_ray_console():
        threads = [threading.Thread(target=lambda i=i: [print(OUR_LINES[i]), print(RAY_LINES[i]),
                                                        print(RAY_LINES[i], file=sys.stderr)])
                   for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    out, err = capsys.readouterr()
    assert sorted(out.splitlines()[:3]) == sorted(OUR_LINES)
    assert "6 internal Ray log lines not shown" in out.splitlines()[3]
    assert err == ""
    assert not isinstance(sys.stdout, LineFilter) and not isinstance(sys.stderr, LineFilter)


def test_local_ray_turns_the_preemption_watcher_off_unless_the_user_set_it(monkeypatch):
    monkeypatch.delenv("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", raising=False)
    assert local_train_env() == {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}
    monkeypatch.setenv("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "1")
    assert local_train_env() == {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "1"}


def test_trial_actors_are_reused_only_when_asha_can_stop_no_trial():
    from tune.driver import reuse_actors
    from tune.search_config import SearchConfig

    assert reuse_actors(SearchConfig(epochs=6))                        # CPU default: grace = max_t
    assert not reuse_actors(SearchConfig(epochs=100))                  # rungs at 6, 12, ...: ASHA stops
    assert not reuse_actors(SearchConfig(epochs=6, grace_period=2))
