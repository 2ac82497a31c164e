"""`--difficulty hard`: lab-specific annotation styles, confusable motifs, unlabelled look-alikes, long tails.

The easy generator (the default) plants a behaviour and an annotator writes it down almost exactly, so the
pose determines the label and a model can come close to the oracle. Real labs do not: each labels an action
with its own idea of how close and how long it must be, reacts late, misses events, and leaves look-alikes
unlabelled. Hard mode adds, all seeded (same seed, same bytes):

- a `LabStyle` per lab (drawn from the seed and the lab name, so every video of a lab shares it): per action
  a long-tailed prior (lognormal weights: a few actions dominate a lab), a duration cut-off (events shorter
  than it are not written), a distance cut-off for pair actions (the median agent-nose -> target-centre
  distance over the event must be below it), an onset lag, a miss rate in [0.1, 0.3], and a boundary noise
  half-width in [0.2, 0.5] s (each boundary moves by U(-b, b)); `contrast` (`--lab-contrast`, default 1)
  widens how far labs' cut-offs and lags lie apart (same draws, so 1 is the same twin byte for byte);
- confusable motifs: every scene draws its motif's parameters around the catalogue values (speed, gap, nose
  rhythm, thrust, posture, mount geometry, sometimes the contact point of a neighbour), so neighbouring
  actions overlap;
- look-alikes: a share of scenes play a confusable neighbour of a whitelisted action and are never labelled;
- long-tailed durations (lognormal factor per scene) and longer, more variable videos (`HARD_FRAMES`).

`annotate_hard` is the hard annotator; `features.synth.annotate.annotate` stays the easy one.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from features.labels import ACTIONS, SELF_ACTIONS
from features.synth.annotate import resolve_overlaps
from features.synth.scenes import MOTIFS

DIFFICULTIES = ("easy", "hard")
HARD_FRAMES = 6000        # default mean video length in hard mode (easy: DEFAULT_FRAMES)
DECOY_SHARE = 0.2         # share of scenes that play an unlabelled look-alike
MISS = (0.1, 0.3)         # per lab and action: share of events the annotator misses
BOUNDARY = (0.2, 0.5)     # per lab: boundary noise half-width (s)

# base distance cut-off (cm, agent nose -> target centre, median over the event) by motif family; a lab's
# cut-off is this x U(0.85, 1.4). Families without one (approach, reactions, self) are never distance-cut.
# Bases sit near the 75th percentile of the planted events' distances (hard mode, 20 videos): a strict lab
# drops a quarter to a half of them, a lenient one none.
_DIST_BASE = {"contact": 2.8, "mutual": 5.0, "pursuit": 10.0, "fight": 2.8, "mount": 2.4, "disengage": 9.0}

# look-alike neighbours: a decoy scene plays one of these instead of the chosen action, unlabelled
CONFUSABLE: dict[str, tuple[str, ...]] = {
    "sniff": ("sniffbody", "sniffface", "reciprocalsniff"), "sniffface": ("sniff", "reciprocalsniff"),
    "sniffbody": ("sniff", "sniffgenital"), "sniffgenital": ("sniffbody", "sniff"),
    "reciprocalsniff": ("sniffface",), "allogroom": ("sniffbody", "dominancegroom"),
    "dominancegroom": ("allogroom", "sniff"), "approach": ("follow",),
    "chase": ("follow", "chaseattack"), "follow": ("chase", "shepherd"), "shepherd": ("follow",),
    "chaseattack": ("chase",), "attack": ("tussle",), "tussle": ("attack",),
    "mount": ("attemptmount", "intromit", "dominancemount"), "intromit": ("mount",),
    "attemptmount": ("mount",), "dominancemount": ("mount", "dominance"), "dominance": ("dominancemount",),
    "ejaculate": ("intromit",), "escape": ("avoid", "flinch"), "avoid": ("escape",), "flinch": ("avoid",),
    "defend": ("submit",), "submit": ("defend",), "disengage": ("avoid",),
    "rear": ("climb", "freeze"), "selfgroom": ("genitalgroom", "dig"), "genitalgroom": ("selfgroom",),
    "freeze": ("rest",), "rest": ("freeze",), "dig": ("selfgroom",), "run": ("dig",), "climb": ("rear",),
    "exploreobject": ("biteobject",), "biteobject": ("exploreobject",), "huddle": ("rest",),
}


@dataclass(frozen=True)
class LabStyle:
    """How one lab annotates (hard mode). Times in seconds, distances in cm, per action."""

    lab: str
    prior: dict[str, float]      # weight multiplier of each action's scenes (lognormal: long-tailed)
    min_dur: dict[str, float]    # written events shorter than this are dropped
    max_dist: dict[str, float]   # pair events farther than this (median nose -> target centre) are dropped
    lag: dict[str, float]        # onset lag added to the start
    miss: dict[str, float]       # share of events missed, in MISS
    boundary: float              # boundary noise half-width, in BOUNDARY
    dur_sigma: float             # lognormal sigma of the per-scene duration factor


def lab_style(lab: str, seed: int, contrast: float = 1.0) -> LabStyle:
    """The seeded style of one lab: a function of (seed, lab name, contrast) only, the same in every process.
    contrast c stretches the per-action spread between labs from the same draws: duration cut-off
    0.2 + c x U(0, 1) s, distance cut-off factor U(0.85, 1.4) ** c, onset lag c x U(0, 0.4) s."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(lab.encode())]))
    acts = sorted(ACTIONS)
    prior = dict(zip(acts, np.exp(rng.normal(0.0, 1.1, len(acts))).round(4).tolist()))
    dur = rng.uniform(0.2, 1.2, len(acts))
    factor = rng.uniform(0.85, 1.4, len(acts))
    if contrast != 1.0:
        dur, factor = 0.2 + contrast * (dur - 0.2), factor ** contrast
    min_dur = dict(zip(acts, dur.round(3).tolist()))
    max_dist = {a: (math.inf if a in SELF_ACTIONS or MOTIFS[a].family not in _DIST_BASE
                    else round(_DIST_BASE[MOTIFS[a].family] * f, 2)) for a, f in zip(acts, factor)}
    lag = dict(zip(acts, (contrast * rng.uniform(0.0, 0.4, len(acts))).round(3).tolist()))
    miss = dict(zip(acts, rng.uniform(*MISS, len(acts)).round(3).tolist()))
    boundary = round(float(rng.uniform(*BOUNDARY)), 3)
    dur_sigma = round(float(rng.uniform(0.3, 0.7)), 3)
    return LabStyle(lab, prior, min_dur, max_dist, lag, miss, boundary, dur_sigma)


def hard_lengths(n_frames: int, n: int, rng: np.random.Generator) -> list[int]:
    """Video lengths of hard mode: n_frames x lognormal(0, 0.35), clipped to [0.5, 2.5] x n_frames."""
    return [int(round(n_frames * f)) for f in np.clip(np.exp(rng.normal(0.0, 0.35, n)), 0.5, 2.5)]


def look_alike(action: str, a: int, t: int, whitelist: set, rng: np.random.Generator) -> str:
    """The action a decoy scene plays: a confusable neighbour, preferably one not whitelisted for the pair."""
    pair = a != t
    cands = [n for n in CONFUSABLE.get(action, ()) if (n not in SELF_ACTIONS) == pair]
    if not cands:
        return action
    free = [n for n in cands if (a, t, n) not in whitelist]
    pick = free or cands
    return pick[int(rng.integers(len(pick)))]


def annotate_hard(events, n_frames: int, fps: float, rng: np.random.Generator, style: LabStyle,
                  dist=None, quantum: int = 1):
    """Planted intervals -> what this lab writes. Per event, in order: missed with probability
    style.miss[action]; dropped when its distance (dist[i], cm) exceeds style.max_dist[action]; start moved
    by the onset lag; both boundaries moved by U(-b, b) s (b = style.boundary); rounded to `quantum`; dropped
    when shorter than style.min_dur[action]. Overlaps are then resolved as the easy annotator does, and
    anything the overlap cut made shorter than its cut-off is dropped. Three draws per event whatever
    happens, so the stream does not depend on the cut-offs. Returns (events, n_overlaps, counts)."""
    counts = {"missed": 0, "too_far": 0, "too_short": 0}
    dist = [0.0] * len(events) if dist is None else dist
    noisy = []
    for (a, t, act, s, e), d in zip(events, dist):
        u, ns, ne = rng.random(), rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0)
        if u < style.miss[act]:
            counts["missed"] += 1
            continue
        if d > style.max_dist[act]:
            counts["too_far"] += 1
            continue
        b = style.boundary * fps
        s2 = int(np.clip(s + round(style.lag[act] * fps + ns * b), 0, n_frames))
        e2 = int(np.clip(e + round(ne * b), 0, n_frames))
        if quantum > 1:
            s2, e2 = quantum * round(s2 / quantum), min(n_frames, quantum * round(e2 / quantum))
        if e2 - s2 < max(2, style.min_dur[act] * fps):
            counts["too_short"] += 1
            continue
        noisy.append((a, t, act, s2, e2))
    out, overlaps = resolve_overlaps(noisy, rng)
    keep = [r for r in out if r[4] - r[3] >= style.min_dur[r[2]] * fps]
    counts["too_short"] += len(out) - len(keep)
    return keep, overlaps, counts


def apply_style(events, dist, style: LabStyle, fps: float, n_frames: int) -> list:
    """The deterministic part of `annotate_hard`: events farther than the lab's distance cut-off dropped, the
    onset lag added, events shorter than the duration cut-off dropped; no misses, no boundary noise, no
    overlap resolution. What a pose-perfect predictor that knows the lab's style would write
    (bench.synth_calibration)."""
    out = []
    for (a, t, act, s, e), d in zip(events, dist):
        if d > style.max_dist[act]:
            continue
        s2 = int(min(n_frames, s + round(style.lag[act] * fps)))
        if e - s2 >= max(2, style.min_dur[act] * fps):
            out.append((a, t, act, s2, int(e)))
    return out


def average_style(styles: list[LabStyle]) -> LabStyle:
    """One style with every per-action cut-off, lag and rate averaged over `styles` (infinite distance
    cut-offs stay infinite): the lab-blind compromise a pooled model is pushed towards."""
    acts = sorted(styles[0].prior)

    def mean(attr: str) -> dict[str, float]:
        return {a: float(np.mean([getattr(st, attr)[a] for st in styles])) for a in acts}

    return LabStyle("average", mean("prior"), mean("min_dur"), mean("max_dist"), mean("lag"), mean("miss"),
                    float(np.mean([st.boundary for st in styles])),
                    float(np.mean([st.dur_sigma for st in styles])))


def nose_distances(sim, events) -> list[float]:
    """Median distance (cm) agent nose -> target centre over each planted event (0 for self events)."""
    from features.synth.body import NOSE_REACH
    out = []
    for a, t, _, s, e in events:
        if a == t or e <= s:
            out.append(0.0)
            continue
        c, th = sim.center[s:e, a], sim.heading[s:e, a]
        r = NOSE_REACH * sim.e[s:e, a] * sim.scale[a]
        nose = c + r[:, None] * np.stack([np.cos(th), np.sin(th)], axis=1)
        out.append(float(np.median(np.linalg.norm(nose - sim.center[s:e, t], axis=1))))
    return out
