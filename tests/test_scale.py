"""Real scale (issue 17): the like-real twin's plan, the float16 cache, the memmap gather and the prefetch
threads (bench/scale_bench.py measures them)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from features.cache import FeatureCache, build_cache
from features.synth.cli import parse_args
from features.synth.like_real import annotated, like_real_rows, quotas, real_frames, real_totals
from features.synth.meta import real_metadata
from tune.data import Prefetcher, epoch_batches, gather, gather_loop, load_pairs, select_rows


def test_like_real_plan_keeps_the_real_shape():
    meta = real_metadata()
    real = real_totals(meta)
    assert real["videos"] == 848 and round(real["frames"] / 1e6, 1) == 21.3
    assert round(real["pair_frames"] / 1e6, 1) == 45.0
    counts = annotated(meta)["lab_id"].value_counts()
    # F = 1 is the whole set, each real video once with its own length
    rows = like_real_rows(meta, 1.0, np.random.default_rng(0))
    assert sorted(r for r, _ in rows) == sorted(annotated(meta).index)
    assert sum(n for _, n in rows) == real["frames"]
    # F = 0.1: round(84.8) videos, each lab within one video of its share, lengths spread like the lab's
    q = quotas(counts, 0.1)
    assert sum(q.values()) == 85 and all(abs(q.get(lab, 0) - 0.1 * n) < 1 for lab, n in counts.items())
    rows = like_real_rows(meta, 0.1, np.random.default_rng(0))
    assert rows == like_real_rows(meta, 0.1, np.random.default_rng(0))  # seeded
    frames = np.array([n for _, n in rows])
    assert 0.7 < frames.sum() / (0.1 * real["frames"]) < 1.3
    assert np.median(frames) == pytest.approx(np.median(real_frames(annotated(meta))), rel=0.25)


@pytest.mark.parametrize("argv, msg", [
    (["--like-real", "--videos", "3"], "--videos: not allowed with --like-real"),
    (["--like-real", "--fraction", "0"], "--fraction: must be in (0, 1]"),
    (["--fraction", "0.1"], "--fraction: only with --like-real"),
])
def test_like_real_flags(argv, msg, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--out", "x", *argv])
    assert exc.value.code == 2 and msg in capsys.readouterr().err
    args = parse_args(["--out", "x", "--like-real"])
    assert args.fraction == 0.1 and args.videos == 20


def test_float16_cache_and_memmap_gather(synth_small, tmp_path):
    f32 = FeatureCache(synth_small.cache)
    out = build_cache(synth_small.root, tmp_path / "c16", n_folds=2, progress=False, dtype="float16")
    f16 = FeatureCache(tmp_path / "c16")
    meta = json.loads((tmp_path / "c16" / "meta.json").read_text())
    assert meta["dtype"] == "float16" and f32.dtype == "float32" and f16.dtype == "float16"
    assert out["fingerprint"] != f32.meta["fingerprint"]
    vid = f16.video_ids[0]
    assert f16.x(vid).dtype == np.float16 and f16.x(vid).nbytes * 2 == f32.x(vid).nbytes
    np.testing.assert_allclose(f16.x(vid), f32.x(vid), rtol=1e-3, atol=1e-3)

    rows, _ = select_rows(f32, 0)
    ram, mm = load_pairs(f32, rows), load_pairs(f32, rows, in_memory_gb=0)
    assert ram.in_memory and not mm.in_memory
    batches = epoch_batches(ram, 96, 64, 32, 0.5, seed=3, epoch=1)
    starts = batches[0][1].copy()
    starts[:2] = [ram.length[batches[0][0][0]] - 10, 0]  # one window past a pair's end (padded)
    batches[0] = (batches[0][0], starts)
    ram_out = [gather(ram, p, s, 64) for p, s in batches]
    for (p, s), a in zip(batches, ram_out):  # memmap gather == in-RAM gather == one-window-at-a-time
        for u, v, w in zip(a, gather(mm, p, s, 64), gather_loop(mm, p, s, 64)):
            np.testing.assert_array_equal(u, v)
            np.testing.assert_array_equal(u, w)
    for table in (ram, mm):  # the same batches, in order, for any number of prefetch threads
        for workers in (1, 3):
            feed = Prefetcher(table, batches, 64, workers=workers)
            got = list(feed)
            feed.close()
            assert len(got) == len(batches)
            for a, b in zip(got, ram_out):
                for u, v in zip(a, b):
                    np.testing.assert_array_equal(u, v)
    # float16: stays float16 in RAM (half the bytes), each batch upcast to float32
    h = load_pairs(f16, rows)
    assert h.x.dtype == np.float16 and h.x.nbytes * 2 == ram.x.nbytes
    x16 = gather(h, *batches[1], 64)[0]
    assert x16.dtype == np.float32
    np.testing.assert_allclose(x16, ram_out[1][0], rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(gather(load_pairs(f16, rows, in_memory_gb=0), *batches[1], 64)[0], x16)
