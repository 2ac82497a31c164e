"""Synthetic twin of the Kaggle MABe 2025 dataset, in its exact file layout.

There is no Kaggle tracking data offline, so everything downstream (feature cache, training, search,
ensemble, export, predict) runs on what this module writes:

    <out>/train.csv, <out>/test.csv                      38 columns, real column order and dtypes
    <out>/train_tracking/<lab>/<video>.parquet           video_frame, mouse_id, bodypart, x, y (long format)
    <out>/train_annotation/<lab>/<video>.parquet         agent_id, target_id, action, start_frame, stop_frame
    <out>/test_tracking/<lab>/<video>.parquet
    <out>/sample_submission.csv                          official submission format
    <out>/test_solution.csv                              (not Kaggle) ground truth of the test videos in the
                                                         official metric's solution format

Metadata rows are copies of REAL annotated rows of train.csv (lab, fps, body parts, mice, whitelist incl.
the malformed single-quoted entries, pix_per_cm, arena, strains) with fresh video ids and a duration that
matches the generated frames. Mice are simulated in cm and seconds (steered random walk inside the arena
walls, a heading, a posture), body parts are placed from a per-mouse body model and written in pixels.
Behaviours are PLANTED FROM THE POSE: the simulation plays scenes (approach, sniff the target's head/face/
body/tail base, chase, attack, mount, rear, groom, ...) and labels exactly the frames where the pose shows
them (e.g. `sniff` only once the agent's nose has reached the target's head), then adds annotator noise
(boundary jitter, a few missed short events, rare overlaps of two actions for one pair). Tracking noise:
point jitter, missing points, missing runs, a mouse hiding, whole missing frames (missing = missing rows,
never NaN), a few coordinates just outside the image and rare tracker identity swaps. Lab quirks kept:
malformed whitelist strings, AdaptableSnail's mostly-missing `neck`, BoisterousParrot's 15-frame steps, and
the 25-fps AdaptableSnail videos' labels written on a 30-fps frame axis (`--fps-quirk`, on by default;
features/quirks.py maps them back).
Same seed -> byte-identical files (also across processes). `synth.json` (written last) marks the folder as
synthetic: regenerating replaces our files only there, and a folder with Kaggle files but no marker
(real data?) is refused.

Learnability (default dataset, 5-fold by video): a 2-layer MLP on the pair features + window means scores
~0.68 on the official metric, guessing ~0.07, so models have something real to learn.

    python -m features.synth --out data/synth                                  # defaults (20 + 5 videos)
    python -m features.synth --out data/synth-small --videos 6 --frames 1200 --test-videos 2
    python -m features.synth --out data/synth-lh --labs LyricalHare,GroovyShrew --seed 3
    python -m features.synth --out data/synth-hard --difficulty hard                  # harder labels
    python -m features.build --data data/synth --out data/synth/cache          # next step

Files, one job each: `meta` (the real rows copied), `scenes` (behaviour scripts), `simulate` (trajectories in
cm), `body` + `render` (body model -> pixels), `noise` (tracking defects), `annotate` (annotator noise),
`video` (one video), `write` (the dataset on disk; `videos` yields them in memory), `cli` (the command line),
`hard` (`--difficulty hard`, opt-in: per-lab annotation styles, look-alikes, long tails; easy, the default,
is the generator described above, byte-identical per seed; bench/synth_calibration.py measures both).
"""
from __future__ import annotations

from features.errors import MabeDataError
from features.synth.arena import Arena
from features.synth.cli import format_summary, main, parse_args
from features.synth.meta import (
    DEFAULT_FRAMES,
    DEFAULT_LABS,
    DEFAULT_TEST_VIDEOS,
    DEFAULT_VIDEOS,
    annotated_labs,
    real_metadata,
)
from features.synth.scenes import MOTIFS, Motif
from features.synth.video import VideoResult, make_video
from features.synth.write import MARKER, generate

__all__ = [
    "DEFAULT_FRAMES", "DEFAULT_LABS", "DEFAULT_TEST_VIDEOS", "DEFAULT_VIDEOS", "MARKER", "MOTIFS", "Arena",
    "MabeDataError", "Motif", "VideoResult", "annotated_labs", "format_summary", "generate", "main",
    "make_video", "parse_args", "real_metadata",
]
