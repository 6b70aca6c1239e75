"""Win-back: high-value members whose probability of being alive is falling.

The selection
-------------
One BG/NBD + Gamma-Gamma model (:mod:`loyalty.analytics.clv`) is fitted on purchases up
to ``as_of``. With the *same* parameters, each member's probability of being alive is
computed twice: from the summary as of ``as_of`` ("now") and from the summary as of
``reference = as_of - reference_days`` ("then", only members who had bought by then).
A member is a win-back candidate when

* their historical CLV (spend to date) **or** predicted 12-month CLV is in the top
  ``1 - min_value_quantile`` share of the members who bought by ``as_of`` (the value
  line is ``numpy.quantile`` with linear interpolation, one line per measure);
* ``P(alive) then - P(alive) now >= min_drop`` (the fall, in probability points); and
* ``P(alive) now < max_alive``.

Erased members are never listed. The list is ordered by historical spend (the most
valuable first) and cut at ``limit`` rows; the frame's ``attrs`` say how many matched.

One action follows from the list: :func:`create_winback_campaign`, a *draft* campaign of
the ``win_back`` kind (a bonus on the first purchase in the window) for exactly those
members, with a holdout so the campaign's effect can be measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import polars as pl
from sqlalchemy import func
from sqlmodel import Session, col, select

from db.engine import write_transaction
from db.models import Campaign, Member, Purchase, utcnow
from loyalty.access.roles import Actor, require
from loyalty.analytics.clv import (
    DEFAULT_HORIZON_MONTHS,
    DEFAULT_TIME_UNIT,
    MIN_MEMBERS,
    ClvModel,
    clv_table,
    fit_clv,
    probability_alive,
    summary_data,
)
from loyalty.analytics.data import load_members, load_purchases
from loyalty.errors import InvalidInput
from loyalty.ledger.members import mask
from loyalty.program.campaigns import listed_member_ids, save_campaign
from loyalty.settings import get_settings

__all__ = [
    "CANDIDATE_COLUMNS",
    "DEFAULT_LIMIT",
    "DEFAULT_MAX_ALIVE",
    "DEFAULT_MIN_DROP",
    "DEFAULT_REFERENCE_DAYS",
    "DEFAULT_VALUE_QUANTILE",
    "EXPORT_COLUMNS",
    "WinbackChoice",
    "WinbackScores",
    "campaign_window",
    "create_winback_campaign",
    "describe_selection",
    "winback_candidates",
    "winback_scores",
    "winback_view",
    "with_contacts",
]

DEFAULT_REFERENCE_DAYS = 90
DEFAULT_VALUE_QUANTILE = 0.8  # high value: the top fifth
DEFAULT_MIN_DROP = 0.2  # P(alive) fell by at least 20 points...
DEFAULT_MAX_ALIVE = 0.5  # ...to below one half
DEFAULT_LIMIT = 1000
MAX_REFERENCE_DAYS = 730
# The draft campaign: a come-back bonus for 30 days starting a week from now, with a
# tenth of the members held out so the effect can be measured against them.
WINBACK_POINTS = 300
WINBACK_HOLDOUT = 0.10
WINBACK_LEAD_DAYS = 7
WINBACK_DAYS = 30
WINBACK_CHANNELS = ["email", "app"]

CANDIDATE_COLUMNS = [
    "member_id",
    "member",
    "name",
    "email",
    "tier",
    "historical_spend",
    "predicted_clv_12m",
    "p_alive_then",
    "p_alive_now",
    "drop",
    "last_purchase",
    "days_since_last_purchase",
    "purchase_days",
    "expected_purchases_12m",
]
EXPORT_COLUMNS = CANDIDATE_COLUMNS[1:]  # without the internal id
CONTACT_COLUMNS = ("name", "email")


@dataclass(frozen=True)
class WinbackChoice:
    """What the Win-back page's sliders chose; the defaults are the list the night stores."""

    reference_days: int = DEFAULT_REFERENCE_DAYS
    top_share_percent: int = round((1 - DEFAULT_VALUE_QUANTILE) * 100)
    min_drop_points: int = round(DEFAULT_MIN_DROP * 100)


class WinbackScores(NamedTuple):
    """Every member who bought by ``as_of``, scored then and now with one fitted model.

    ``members``: ``member_id, purchase_days, last_purchase, historical_spend,
    predicted_clv_12m, expected_purchases_12m, p_alive_now, p_alive_then`` (null when
    the member had not bought by ``reference``).
    """

    members: pl.DataFrame
    as_of: date
    reference: date
    model: ClvModel


def winback_scores(
    session: Session, *, as_of: date | None = None, reference_days: int = DEFAULT_REFERENCE_DAYS, time_unit: str = DEFAULT_TIME_UNIT
) -> WinbackScores:
    """Fit the CLV model on purchases up to ``as_of`` and score P(alive) now and ``reference_days`` earlier.

    The expensive half of :func:`winback_candidates` (one model fit); cache it and pass it
    back as ``scores`` to try other thresholds. Raises :class:`InvalidInput` when fewer
    than ``MIN_MEMBERS`` members bought (the model cannot be fitted).
    """
    if not isinstance(reference_days, (int, np.integer)) or not 1 <= reference_days <= MAX_REFERENCE_DAYS:
        raise InvalidInput(f"Compare with a date 1 to {MAX_REFERENCE_DAYS} days earlier (got {reference_days!r}).")
    as_of = as_of or utcnow().date()
    reference = as_of - timedelta(days=int(reference_days))
    purchases = load_purchases(session, end=as_of + timedelta(days=1))
    now = summary_data(purchases, as_of, time_unit)
    if now.height < MIN_MEMBERS:
        raise InvalidInput(f"Only {now.height} members bought on or before {as_of}; the CLV model needs at least {MIN_MEMBERS}.")
    model = fit_clv(now, time_unit)
    table = clv_table(now, model, horizon_months=DEFAULT_HORIZON_MONTHS)
    then = summary_data(purchases, reference, time_unit)
    then_alive = then.select(
        "member_id",
        pl.Series(
            "p_alive_then", probability_alive(model.bgnbd, then["frequency"], then["recency"], then["T"]) if then.height else [], dtype=pl.Float64
        ),
    )
    members = table.select(
        "member_id",
        (pl.col("frequency") + 1).alias("purchase_days"),
        "last_purchase",
        pl.col("historical_clv").alias("historical_spend"),
        pl.col("predicted_clv").alias("predicted_clv_12m"),
        pl.col("expected_purchases").alias("expected_purchases_12m"),
        pl.col("probability_alive").alias("p_alive_now"),
    ).join(then_alive, on="member_id", how="left")
    return WinbackScores(members, as_of, reference, model)


def winback_candidates(
    session: Session,
    *,
    actor: Actor | None = None,
    as_of: date | None = None,
    reference_days: int = DEFAULT_REFERENCE_DAYS,
    min_value_quantile: float = DEFAULT_VALUE_QUANTILE,
    min_drop: float = DEFAULT_MIN_DROP,
    max_alive: float = DEFAULT_MAX_ALIVE,
    limit: int = DEFAULT_LIMIT,
    scores: WinbackScores | None = None,
) -> pd.DataFrame:
    """High-value members whose probability of being alive fell (see the module docstring).

    Parameters
    ----------
    actor
        Who reads the list: names and e-mails are masked unless the role may see
        personal data (``members.view_pii``); ``None`` masks them too.
    as_of, reference_days
        P(alive) now is as of ``as_of`` (default today, UTC); then, ``reference_days`` earlier.
    min_value_quantile
        High value: historical or predicted CLV at or above this quantile (0.8 = top fifth).
    min_drop, max_alive
        Keep members whose P(alive) fell by at least ``min_drop`` to below ``max_alive``.
    limit
        At most this many rows, the highest historical spend first.
    scores
        A :func:`winback_scores` result to reuse (its ``as_of`` and ``reference_days`` apply).

    Returns
    -------
    pandas.DataFrame
        :data:`CANDIDATE_COLUMNS`; ``member_id`` is the internal id
        (:func:`create_winback_campaign` takes it), ``member`` the company's id, money in
        the program's ``currency``. ``attrs["criteria"]`` holds the thresholds, value lines,
        dates, ``currency`` and ``matched`` (candidates before ``limit``).
    """
    if actor is not None:
        require(actor, "analysis.view")
    if not 0 <= min_value_quantile < 1:
        raise InvalidInput("The value share must leave some members: choose a quantile from 0 (everyone) to below 1.")
    if not 0 < min_drop <= 1 or not 0 < max_alive <= 1:
        raise InvalidInput("The minimum fall and the P(alive) ceiling are probabilities: choose them above 0 and up to 1.")
    if limit < 1:
        raise InvalidInput("List at least one member (limit >= 1).")
    scores = scores or winback_scores(session, as_of=as_of, reference_days=reference_days)
    listed, criteria = _selection(session, scores, min_value_quantile=min_value_quantile, min_drop=min_drop, max_alive=max_alive, limit=limit)
    return with_contacts(session, {"candidates": listed, "criteria": criteria}, actor=actor)


def winback_view(session: Session, choice: WinbackChoice | None, *, scores: WinbackScores | None = None) -> dict[str, Any]:
    """The Win-back page's list for ``choice`` (default: the defaults), without names and
    e-mails: ``{"candidates", "criteria"}`` (what the nightly evaluation stores; the page adds
    the contacts its reader may see with :func:`with_contacts`). ``scores``: a
    :func:`winback_scores` of the choice's ``reference_days`` to reuse."""
    choice = choice or WinbackChoice()
    scores = scores or winback_scores(session, reference_days=choice.reference_days)
    listed, criteria = _selection(
        session, scores, min_value_quantile=1 - choice.top_share_percent / 100, min_drop=choice.min_drop_points / 100, max_alive=DEFAULT_MAX_ALIVE
    )
    return {"candidates": listed, "criteria": criteria}


def with_contacts(session: Session, view: dict[str, Any], *, actor: Actor | None) -> pd.DataFrame:
    """The candidates of a :func:`winback_view` with names and e-mails, masked unless ``actor``
    may see personal data; a member erased since the list was made is left out (and uncounted).

    Returns :data:`CANDIDATE_COLUMNS`; ``attrs["criteria"]`` as :func:`winback_candidates` says."""
    listed = view["candidates"]
    contacts = _contacts(session, [int(i) for i in listed["member_id"]], show_pii=actor is not None and actor.can("members.view_pii"))
    erased = contacts.filter(pl.col("erased"))["member_id"].to_list()
    kept = listed[~listed["member_id"].isin(erased)]
    frame = kept.merge(contacts.drop("erased").to_pandas(), on="member_id", how="left")[CANDIDATE_COLUMNS].reset_index(drop=True)
    frame.attrs["criteria"] = {**view["criteria"], "matched": view["criteria"]["matched"] - len(erased), "listed": len(frame)}
    return frame


def _selection(
    session: Session, scores: WinbackScores, *, min_value_quantile: float, min_drop: float, max_alive: float, limit: int = DEFAULT_LIMIT
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The candidates (:data:`CANDIDATE_COLUMNS` but the contacts) and the criteria that chose them."""
    # A model on the edge of its parameter space can fail to predict (NaN): then only
    # historical spend decides who is high value.
    scored = scores.members.with_columns(pl.col("predicted_clv_12m", "expected_purchases_12m").fill_nan(None))
    historical_line = float(np.quantile(scored["historical_spend"].to_numpy(), min_value_quantile))
    predicted = scored["predicted_clv_12m"].drop_nulls().to_numpy()
    predicted_line = float(np.quantile(predicted, min_value_quantile)) if len(predicted) else None
    high_value = pl.col("historical_spend") >= historical_line
    if predicted_line is not None:
        high_value = high_value | (pl.col("predicted_clv_12m") >= predicted_line).fill_null(False)
    members = load_members(session, columns=("member_id", "external_id", "tier", "erased"))
    matched = (
        scored.filter(high_value & (pl.col("p_alive_then") - pl.col("p_alive_now") >= min_drop) & (pl.col("p_alive_now") < max_alive))
        .join(members, on="member_id", how="left")
        .filter(~pl.col("erased").fill_null(False))
        .with_columns(
            (pl.col("p_alive_then") - pl.col("p_alive_now")).alias("drop"),
            (pl.lit(scores.as_of) - pl.col("last_purchase")).dt.total_days().alias("days_since_last_purchase"),
        )
        .sort(["historical_spend", "drop", "member_id"], descending=[True, True, False])
    )
    listed = matched.head(limit).rename({"external_id": "member"}).select([c for c in CANDIDATE_COLUMNS if c not in CONTACT_COLUMNS]).to_pandas()
    criteria = {
        "as_of": scores.as_of.isoformat(),
        "reference": scores.reference.isoformat(),
        "reference_days": (scores.as_of - scores.reference).days,
        "min_value_quantile": min_value_quantile,
        "min_drop": min_drop,
        "max_alive": max_alive,
        "historical_line": historical_line,
        "predicted_line": predicted_line,
        "members_scored": scored.height,
        "matched": matched.height,
        "listed": len(listed),
        "bgnbd": scores.model.bgnbd.as_dict(),
        "time_unit": scores.model.time_unit,
        "currency": get_settings(session).currency,
    }
    return listed, criteria


def _contacts(session: Session, member_ids: list[int], *, show_pii: bool) -> pl.DataFrame:
    """Name and e-mail of the listed members, masked unless ``show_pii``, and whether each is erased."""
    rows = [
        row
        for start in range(0, len(member_ids), 10_000)
        for row in session.exec(
            select(Member.id, Member.name, Member.email, Member.erased_at).where(col(Member.id).in_(member_ids[start : start + 10_000]))
        ).all()
    ]
    shown = (lambda v: v or "") if show_pii else mask
    return pl.DataFrame(
        {
            "member_id": [r[0] for r in rows],
            "name": [shown(r[1]) for r in rows],
            "email": [shown(r[2]) for r in rows],
            "erased": [r[3] is not None for r in rows],
        },
        schema={"member_id": pl.Int64, "name": pl.String, "email": pl.String, "erased": pl.Boolean},
    )


def describe_selection(criteria: dict[str, Any] | None, members: int) -> str:
    """The campaign description: who was selected, and how (from ``attrs["criteria"]``)."""
    text = f"Win-back of {members:,} listed member{'s' if members != 1 else ''}"
    if not criteria:
        return text + "."
    top = 1 - criteria["min_value_quantile"]
    predicted = criteria.get("predicted_line")
    money = f"{criteria['currency']} " if criteria.get("currency") else ""
    by_predicted = f", or by predicted 12-month CLV, at least {money}{predicted:,.2f}" if predicted is not None else ""
    return (
        f"{text}: high-value members (top {top:.0%} by historical spend, at least {money}{criteria['historical_line']:,.2f}"
        f"{by_predicted}) whose probability of being alive "
        f"(BG/NBD) fell by at least {criteria['min_drop'] * 100:.0f} points between {criteria['reference']} and "
        f"{criteria['as_of']} to below {criteria['max_alive']:.0%}. "
        "Members who buy again before the campaign is activated drop out (they came back by themselves)."
    )


def _inactive_days(session: Session, member_ids: list[int], now: datetime) -> int:
    """Whole days since the most recent purchase of any listed member, less one.

    The ``win_back`` kind leaves out members who bought in the ``inactive_days`` before
    activation; one day less than the gap keeps every listed member eligible whatever the
    time of day of that purchase, and still drops those who buy again meanwhile.
    """
    latest = [
        session.exec(
            select(func.max(Purchase.occurred_at)).where(
                col(Purchase.member_id).in_(member_ids[start : start + 10_000]), col(Purchase.refunded_at).is_(None)
            )
        ).one()
        for start in range(0, len(member_ids), 10_000)
    ]
    latest = [moment if moment.tzinfo else moment.replace(tzinfo=UTC) for moment in latest if moment is not None]
    if not latest:
        return DEFAULT_REFERENCE_DAYS
    return max(1, (now.date() - max(latest).date()).days - 1)


def campaign_window(now: datetime | None = None) -> tuple[datetime, datetime]:
    """When a win-back campaign created at ``now`` runs: ``[starts_at, ends_at)``.

    From midnight UTC ``WINBACK_LEAD_DAYS`` days after ``now`` (time to prepare the
    message), for ``WINBACK_DAYS`` days.
    """
    now = now or utcnow()
    starts_at = datetime.combine(now.date() + timedelta(days=WINBACK_LEAD_DAYS), time.min, tzinfo=UTC)
    return starts_at, starts_at + timedelta(days=WINBACK_DAYS)


def create_winback_campaign(
    *,
    session: Session,
    actor: Actor,
    member_ids: list[int],
    name: str,
    criteria: dict[str, Any] | None = None,
    points: int = WINBACK_POINTS,
    holdout_pct: float = WINBACK_HOLDOUT,
    budget_points: int | None = None,
    now: datetime | None = None,
) -> Campaign:
    """A *draft* win-back campaign for exactly ``member_ids`` (internal ids); never activated here.

    Kind ``win_back``: ``points`` on each treatment member's first purchase in the
    window, which opens at midnight UTC ``WINBACK_LEAD_DAYS`` days from ``now`` and lasts
    ``WINBACK_DAYS`` days; ``holdout_pct`` of the members get nothing so the effect can
    be measured. Saved through :func:`loyalty.program.campaigns.save_campaign` (permission
    ``program.configure``, audited as ``campaign.create``).
    """
    require(actor, "program.configure")
    now = now or utcnow()
    starts_at, ends_at = campaign_window(now)
    with write_transaction(session):  # the checks and the save see the same members
        ids = listed_member_ids(session, member_ids)
        return save_campaign(
            session=session,
            actor=actor,
            name=name,
            kind="win_back",
            description=describe_selection(criteria, len(ids)),
            starts_at=starts_at,
            ends_at=ends_at,
            channels=list(WINBACK_CHANNELS),
            eligibility={"member_ids": ids},
            rule={"inactive_days": _inactive_days(session, ids, now), "points": int(points)},
            holdout_pct=holdout_pct,
            budget_points=budget_points,
        )
