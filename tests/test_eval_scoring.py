"""The scoring of bench/eval_search.py, pinned on hand-made answers: no library, no model (two shared clips
for the same-picture count)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from eval_scoring import (ALL, Guess, Truth, kept_share, right_answers, score_answers,  # noqa: E402
                          separation_threshold, side_by_side)

GROUPS = [{"rabbit_h264.mp4": 0.0, "rabbit_vp8.webm": 0.0, "rabbit_240p.mp4": 0.0},
          {"bbb_30s.webm": 0.0, "bbb_5s.ts": 0.0}]
DURATIONS = {"bbb_30s.webm": 30.0, "bbb_5s.ts": 5.0}


def pos(edit: str, video: str, time: float) -> Truth:
    return Truth(edit, True, video, time)


def neg(edit: str, video: str = "pig.mp4") -> Truth:
    return Truth(edit, False, video, 1.0)


TRUTHS = [pos("crop", "a.mp4", 3.0), pos("crop", "b.mp4", 10.0), pos("flip", "a.mp4", 7.5), pos("flip", "c.mp4", 0.2)]


def test_perfect_answers_score_one():
    answers = [[Guess(t.video, t.time, 0.9), Guess("x.mp4", 0.0, 0.5)] for t in TRUTHS]
    scores, _ = score_answers(TRUTHS, answers)
    assert set(scores) == {"crop", "flip", ALL}
    for s in scores.values():
        assert (s.top1, s.top5, s.ts_within, s.median_ts_error) == (1.0, 1.0, 1.0, 0.0)
    assert scores[ALL].queries == 4 and scores["crop"].queries == 2


def test_all_wrong_scores_zero():
    answers = [[Guess("x.mp4", t.time, 0.9), Guess("y.mp4", t.time, 0.8)] for t in TRUTHS]
    scores, _ = score_answers(TRUTHS, answers)
    for s in scores.values():
        assert (s.top1, s.top5) == (0.0, 0.0)
        assert math.isnan(s.ts_within) and math.isnan(s.median_ts_error)  # no right answer to time


def test_no_answer_is_wrong():
    scores, _ = score_answers(TRUTHS[:1], [[]])
    assert (scores[ALL].top1, scores[ALL].top5) == (0.0, 0.0)


def test_top5_counts_a_right_video_below_the_first_and_only_in_the_first_five():
    t = [pos("crop", "a.mp4", 3.0)] * 2
    answers = [[Guess("x.mp4", 0, .9), Guess("a.mp4", 3.0, .8)],
               [Guess(f"x{i}.mp4", 0, 1 - i / 10) for i in range(5)] + [Guess("a.mp4", 3.0, .1)]]
    s = score_answers(t, answers)[0][ALL]
    assert (s.top1, s.top5) == (0.0, 0.5)


def test_copy_pair_partner_counts_as_right_with_its_moment():
    truths = [pos("original", "rabbit_vp8.webm", 4.0), pos("original", "rabbit_vp8.webm", 4.0)]
    answers = [[Guess("rabbit_240p.mp4", 4.2, 0.9)], [Guess("rabbit_h264.mp4", 6.0, 0.9)]]
    s = score_answers(truths, answers, GROUPS, DURATIONS)[0][ALL]
    assert s.top1 == 1.0 and s.top5 == 1.0
    assert s.ts_within == 0.5 and s.median_ts_error == pytest.approx(1.1)


def test_partner_counts_only_where_its_footage_covers_the_moment():
    assert set(right_answers("bbb_30s.webm", 3.0, GROUPS, DURATIONS)) == {"bbb_30s.webm", "bbb_5s.ts"}
    assert set(right_answers("bbb_30s.webm", 20.0, GROUPS, DURATIONS)) == {"bbb_30s.webm"}
    truths = [pos("crop", "bbb_30s.webm", 20.0)]
    assert score_answers(truths, [[Guess("bbb_5s.ts", 4.9, 0.9)]], GROUPS, DURATIONS)[0][ALL].top1 == 0.0


def test_offsets_map_moments_between_copies():
    groups = [{"film.mp4": 0.0, "trailer.mp4": -10.0}]  # the trailer starts 10 s into the film
    assert right_answers("film.mp4", 12.0, groups) == {"film.mp4": 12.0, "trailer.mp4": 2.0}
    assert right_answers("trailer.mp4", 2.0, groups) == {"trailer.mp4": 2.0, "film.mp4": 12.0}


def test_other_videos_of_the_same_scene_are_wrong():
    truths = [pos("original", "rabbit_h264.mp4", 1.0)]
    assert score_answers(truths, [[Guess("bbb_5s.ts", 1.0, 0.99)]], GROUPS, DURATIONS)[0][ALL].top1 == 0.0


def test_timestamp_tolerance_and_median():
    truths = [pos("jpeg", "a.mp4", 10.0)] * 3
    answers = [[Guess("a.mp4", 10.5, 1)], [Guess("a.mp4", 11.0, 1)], [Guess("a.mp4", 13.0, 1)]]
    s = score_answers(truths, answers)[0]["jpeg"]
    assert s.ts_within == pytest.approx(2 / 3)
    assert s.median_ts_error == pytest.approx(1.0)


def test_span_holding_the_moment_counts_in_span_only():
    truths = [pos("grey", "a.mp4", 10.0)] * 5
    answers = [[Guess("a.mp4", 14.0, 1, start=2.0, end=20.0)],  # moment missed, span holds it
               [Guess("a.mp4", 14.0, 1)],  # no span: the moment alone, missed
               [Guess("a.mp4", 12.0, 1, start=11.5, end=13.0)],  # span 1.5 s after the moment, tolerance 1 s
               [Guess("a.mp4", 10.5, 1, start=10.5, end=10.5)],  # moment right: so is its span
               [Guess("b.mp4", 10.0, 1, start=0.0, end=60.0)]]  # wrong video: scored for nothing
    s = score_answers(truths, answers)[0]["grey"]
    assert s.ts_within == pytest.approx(1 / 4)
    assert s.in_span == pytest.approx(2 / 4)
    assert s.median_span == pytest.approx((0.0 + 1.5) / 2)  # of 18, 0, 1.5, 0


def test_separation_threshold_and_kept_share_by_hand():
    # 21 negatives scoring 0.00, 0.05, ..., 1.00: the 95th percentile is 0.95 exactly
    negatives = [i / 20 for i in range(21)]
    assert separation_threshold(negatives) == pytest.approx(0.95)
    assert kept_share([0.99, 0.96, 0.95, 0.5], 0.95) == 0.5  # strictly above the threshold
    assert math.isnan(kept_share([], 0.5))
    assert separation_threshold([]) == -math.inf


def test_separation_in_score_answers_uses_negatives_only_and_right_answers_only():
    negatives = [neg("crop") for _ in range(20)] + [neg("flip")]
    neg_answers = [[Guess("x.mp4", 0, i / 20)] for i in range(20)] + [[]]  # scores 0..0.95 and one empty
    truths = [pos("crop", "a.mp4", 1.0), pos("crop", "a.mp4", 2.0), pos("flip", "a.mp4", 3.0),
              pos("flip", "a.mp4", 4.0)] + negatives
    answers = [[Guess("a.mp4", 1.0, 0.99)], [Guess("a.mp4", 2.0, 0.90)],  # kept, rejected
               [Guess("b.mp4", 3.0, 0.99)],  # wrong: not counted in kept
               [Guess("a.mp4", 4.0, 0.97)]] + neg_answers
    scores, thr = score_answers(truths, answers)
    # 21 negative top-1 scores, sorted -inf (no answer), 0, 0.05 .. 0.95: the 95th percentile is the
    # 20th of them (index 19), 0.90; a right answer scoring exactly 0.90 is rejected
    assert thr == pytest.approx(0.90)
    assert scores["crop"].kept == 0.5
    assert scores["flip"].kept == 1.0
    assert scores[ALL].kept == pytest.approx(2 / 3)
    assert scores[ALL].queries == 4  # negatives are not accuracy queries


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError):
        score_answers(TRUTHS, [])


def test_side_by_side_table_has_a_row_per_edit_and_all():
    answers = [[Guess(t.video, t.time, 0.9)] for t in TRUTHS]
    ours, _ = score_answers(TRUTHS, answers)
    peer, _ = score_answers(TRUTHS, [[] for _ in TRUTHS])
    table = side_by_side(ours, peer).splitlines()
    assert len(table) == 2 + 3
    assert table[2].startswith("| crop | 2 | 1.00 | 1.00 | 1.00 | 0.00 | 0.00 | 0.00 | - | - |")
    assert table[-1].startswith("| **all** | 4 |")


def test_same_picture_misses_count_only_moments_that_look_the_same(videos):
    """A moment miss on a fixed camera's empty room (the same picture for seconds) is one no search by
    picture can avoid; one on moving footage is not; a right moment or a wrong video is no moment miss."""
    from eval_search import same_picture_misses

    room, bunny = "intel_one_by_one_person_432p_h264.mp4", "bbb_0-30s_720p_vp8.webm"
    truths = [pos("original", room, 108.4), pos("original", bunny, 5.0), pos("original", bunny, 20.0),
              pos("original", bunny, 9.0), neg("original")]
    answers = [[Guess(room, 105.0, 0.9)], [Guess(bunny, 12.0, 0.9)], [Guess(bunny, 20.4, 0.9)],
               [Guess(room, 9.0, 0.9)], [Guess(bunny, 1.0, 0.9)]]
    assert same_picture_misses(truths, answers, videos, {}) == (2, 1)
