"""Scoring of the search evaluation (bench/eval_search.py): small pure functions, pinned by
tests/test_eval_scoring.py, no library, no video, no model needed.

Vocabulary:
- a *query* has a truth (:class:`Truth`): the edit applied, whether it is a positive (a frame of
  footage that is in the library) or a negative (a frame of a held-out video), the source video's
  file name and the frame's time in it;
- a system's *answer* to a query is a ranked list of :class:`Guess` (video file name, moment, score),
  best first;
- *copy groups* say which videos are the same footage (other encodes, other cuts of one film), each
  member with its offset on a shared timeline: time ``t`` in video A is time ``t - off[A] + off[B]``
  in video B. A guess is right when it names the source video or a member of its group whose
  duration covers the mapped moment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

ALL = "all"


@dataclass(frozen=True)
class Truth:
    edit: str
    positive: bool
    video: str  # file name of the video the frame was taken from
    time: float  # seconds, the frame's own time in that video


@dataclass(frozen=True)
class Guess:
    video: str
    timestamp: float
    score: float
    start: float | None = None  # the span the system says shows the same picture (Search's from / to);
    end: float | None = None  # none given: the moment alone


CopyGroups = Sequence[Mapping[str, float]]  # each: video file name -> offset (s) on the group's timeline


def right_answers(video: str, time: float, groups: CopyGroups,
                  durations: Mapping[str, float] | None = None, margin: float = 0.5) -> dict[str, float]:
    """Videos that are right for a frame of ``video`` at ``time``, each with the moment it should report.

    The source video itself, plus every member of its copy groups whose footage covers the mapped
    moment (within ``margin`` seconds of its ends; a member of unknown duration always counts).
    """
    right = {video: time}
    for group in groups:
        if video not in group:
            continue
        shared = time - group[video]
        for other, off in group.items():
            if other == video:
                continue
            t = shared + off
            dur = (durations or {}).get(other)
            if dur is None or -margin <= t <= dur + margin:
                right[other] = t
    return right


@dataclass
class EditScore:
    """One system's scores over one edit's positive queries (or over all of them)."""

    queries: int = 0
    top1: float = 0.0  # share of queries whose best guess is right
    top5: float = 0.0  # share with a right guess among the first five
    ts_within: float = 0.0  # share of top-1-right answers whose moment is within the tolerance
    median_ts_error: float = math.nan  # seconds, over top-1-right answers
    kept: float = math.nan  # share of top-1-right answers scoring above the negatives' threshold
    in_span: float = math.nan  # share of top-1-right answers whose span, widened by the tolerance, holds the moment
    median_span: float = math.nan  # seconds, the spans' median length over top-1-right answers
    ts_errors: list[float] = field(default_factory=list, repr=False)


def span_of(guess: Guess) -> tuple[float, float]:
    """The span a guess names: its start and end, or its moment alone; never without the moment itself."""
    start = guess.timestamp if guess.start is None else min(guess.start, guess.timestamp)
    end = guess.timestamp if guess.end is None else max(guess.end, guess.timestamp)
    return start, end


def top1_score(answer: Sequence[Guess]) -> float:
    """The score a system gives its best guess; no guess at all is a score of minus infinity."""
    return answer[0].score if answer else -math.inf


def separation_threshold(negative_top1: Sequence[float], reject: float = 0.95) -> float:
    """The score threshold that rejects ``reject`` of the negatives: their top-1 scores' percentile
    (linear interpolation). With no negatives nothing needs rejecting: minus infinity."""
    scores = sorted(s for s in negative_top1)
    if not scores:
        return -math.inf
    pos = reject * (len(scores) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(scores) - 1)
    if math.isinf(scores[lo]) or math.isinf(scores[hi]):
        return scores[hi] if pos > lo else scores[lo]
    return scores[lo] + (scores[hi] - scores[lo]) * (pos - lo)


def kept_share(right_scores: Sequence[float], threshold: float) -> float:
    """Share of right answers scoring strictly above ``threshold`` (NaN when there are none)."""
    if not right_scores:
        return math.nan
    return sum(s > threshold for s in right_scores) / len(right_scores)


def score_answers(truths: Sequence[Truth], answers: Sequence[Sequence[Guess]], groups: CopyGroups = (),
                  durations: Mapping[str, float] | None = None, k: int = 5, ts_tolerance: float = 1.0,
                  reject: float = 0.95) -> tuple[dict[str, EditScore], float]:
    """Per-edit scores (plus an ``all`` row) of one system, and the separation threshold used.

    Only positives are scored for accuracy; negatives only set the threshold: the ``reject``
    percentile of their top-1 scores, pooled over all edits (one threshold, as a deployment has).
    ``kept`` is then, per edit, the share of top-1-right answers scoring above it.
    ``in_span`` is the share of top-1-right answers whose span (``start``..``end``, widened by
    ``ts_tolerance``) holds the moment: a static shot shows one picture over many seconds, and a span
    over them tells a user so where a single moment cannot be right (with ``median_span`` beside it,
    so that a wide span cannot pass unseen).
    """
    if len(truths) != len(answers):
        raise ValueError(f"{len(truths)} truths but {len(answers)} answers")
    threshold = separation_threshold([top1_score(a) for t, a in zip(truths, answers) if not t.positive], reject)
    rows: dict[str, dict[str, list]] = {}
    for truth, answer in zip(truths, answers):
        if not truth.positive:
            continue
        right = right_answers(truth.video, truth.time, groups, durations)
        hit1 = bool(answer) and answer[0].video in right
        hit5 = any(g.video in right for g in answer[:k])
        for key in (truth.edit, ALL):
            r = rows.setdefault(key, {"n": [], "top1": [], "top5": [], "err": [], "score": [], "span": []})
            r["n"].append(1)
            r["top1"].append(hit1)
            r["top5"].append(hit5)
            if hit1:
                moment = right[answer[0].video]
                start, end = span_of(answer[0])
                r["err"].append(abs(answer[0].timestamp - moment))
                r["score"].append(answer[0].score)
                r["span"].append((start - ts_tolerance <= moment <= end + ts_tolerance, end - start))
    out: dict[str, EditScore] = {}
    for key, r in rows.items():
        n = len(r["n"])
        errs = r["err"]
        out[key] = EditScore(
            queries=n,
            top1=sum(r["top1"]) / n,
            top5=sum(r["top5"]) / n,
            ts_within=(sum(e <= ts_tolerance for e in errs) / len(errs)) if errs else math.nan,
            median_ts_error=median(errs),
            kept=kept_share(r["score"], threshold),
            in_span=(sum(inside for inside, _ in r["span"]) / len(errs)) if errs else math.nan,
            median_span=median(length for _, length in r["span"]),
            ts_errors=list(errs),
        )
    if ALL in out:  # the all row last, edits in first-seen order
        out[ALL] = out.pop(ALL)
    return out, threshold


def median(values: Iterable[float]) -> float:
    v = sorted(values)
    if not v:
        return math.nan
    m = len(v) // 2
    return v[m] if len(v) % 2 else (v[m - 1] + v[m]) / 2


def percentile(values: Iterable[float], q: float) -> float:
    """Linear-interpolation percentile (q in 0..100), NaN for no values."""
    v = sorted(values)
    if not v:
        return math.nan
    pos = q / 100 * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def _fmt(x: float, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def side_by_side(ours: Mapping[str, EditScore], peer: Mapping[str, EditScore], ours_name: str = "ours",
                 peer_name: str = "pHash") -> str:
    """The markdown table: one row per edit (and ``all``), ours then the peer."""
    head = (f"| edit | n | {ours_name} top-1 | {ours_name} top-5 | {ours_name} ts≤1s | {ours_name} med ts err (s) | "
            f"{peer_name} top-1 | {peer_name} top-5 | {peer_name} ts≤1s | {peer_name} med ts err (s) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for edit, s in ours.items():
        p = peer.get(edit, EditScore())
        name = f"**{edit}**" if edit == ALL else edit
        lines.append(f"| {name} | {s.queries} | {_fmt(s.top1)} | {_fmt(s.top5)} | {_fmt(s.ts_within)} | "
                     f"{_fmt(s.median_ts_error)} | {_fmt(p.top1)} | {_fmt(p.top5)} | {_fmt(p.ts_within)} | "
                     f"{_fmt(p.median_ts_error)} |")
    return "\n".join(lines)
