"""The month's NPS answers: a survey after a visit, or by e-mail."""

from __future__ import annotations

import numpy as np
import pandas as pd

from db.bulk import insert_frame
from loyalty.demo.parameters import (
    COMMENT_SHARE,
    COMMENTS,
    DAY,
    MIN_WINDOW,
    SCORE_BASE,
    SCORE_SPREAD,
    SCORE_TREND,
    SURVEY_RATE_BUYERS,
    SURVEY_RATE_OTHERS,
)
from loyalty.demo.state import MonthStats, Simulation
from loyalty.demo.timeline import as_timestamps, object_array


def collect_feedback(
    sim: Simulation, k: int, stats: MonthStats, settle_from: np.ndarray, month_end: int, lo: np.ndarray, present: np.ndarray
) -> None:
    """NPS answers: a survey after a visit, or by e-mail; scores follow satisfaction and activity."""
    rng = sim.rng
    bought = stats.active
    asked = present & (rng.random(sim.n) < np.where(bought, SURVEY_RATE_BUYERS, SURVEY_RATE_OTHERS))
    who = np.flatnonzero(asked & (month_end - settle_from >= MIN_WINDOW))
    if not len(who):
        return
    # Buyers answer within three days of their last visit; others any time in the month.
    start = np.where(bought[who], settle_from[who], lo[who]) + 60
    end = np.where(bought[who], np.minimum(start + 3 * DAY, month_end - 60), month_end - 60)
    when = start + (rng.random(len(who)) * (end - start)).astype(np.int64)
    trend = SCORE_TREND * (k / max(sim.intervals - 1, 1) - 0.5)
    latent = (
        SCORE_BASE + trend + SCORE_SPREAD * sim.satisfaction[who] + 0.6 * bought[who] - 1.2 * ~sim.alive[who] + rng.normal(0.0, 1.0, size=len(who))
    )
    score = np.clip(np.round(latent), 0, 10).astype(np.int64)
    band = np.where(score >= 9, "promoter", np.where(score >= 7, "passive", "detractor"))
    comment = np.full(len(who), "", dtype=object)
    with_comment = rng.random(len(who)) < COMMENT_SHARE
    for name, texts in COMMENTS.items():
        rows = np.flatnonzero(with_comment & (band == name))
        comment[rows] = object_array(texts)[rng.integers(0, len(texts), size=len(rows))]
    insert_frame(
        sim.session,
        "feedback",
        pd.DataFrame({"member_id": sim.member_ids[who], "submitted_at": as_timestamps(when), "score": score, "comment": comment}),
    )
    sim.counts["feedback"] += len(who)
    stats.scores.append(score)
