"""Each analysis as JSON-ready data: what ``python -m loyalty analyze ...`` prints.

The same functions as the pages (the figures come from the KPI catalogue, the views of
:mod:`loyalty.insights.analysis` and the decisions), shaped for other programs: figures named
with the catalogue's keys, periods as ``{"from", "to", "complete"}`` (``to`` exclusive),
money with the currency named once, undefined values ``None``.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pandas as pd
from sqlmodel import Session

from db.models import utcnow
from loyalty.access.roles import Actor
from loyalty.analytics.metrics import DIMENSIONS, Dimension, compute_kpis
from loyalty.errors import InvalidInput
from loyalty.formatting import json_records, json_value
from loyalty.insights.analysis import REDEMPTION_FIGURES, Filters, feedback_view, purchase_cycle_view, redemptions_view
from loyalty.periods import check_period, default_as_of, is_complete, period_info
from loyalty.settings import get_settings

__all__ = [
    "clv_members_summary",
    "cycle_summary",
    "forecast_summary_json",
    "liability_summary",
    "nps_summary",
    "redemption_summary",
    "winback_summary",
]


def _split(session: Session, start: date, end: date, by: str | None, metrics: tuple[str, ...]) -> dict[str, dict[str, Any]] | None:
    """``{group: {metric: value}}`` of the catalogue split ``by`` tier, channel or segment."""
    if by is None:
        return None
    if by not in DIMENSIONS:
        raise InvalidInput(f"Split by one of {', '.join(DIMENSIONS)}, not {by!r}.")
    dimension: Dimension = by  # checked against DIMENSIONS above
    frame = compute_kpis(session, start, end, by=dimension, metrics=metrics)
    groups: dict[str, dict[str, Any]] = {}
    for row in frame.itertuples(index=False):
        value = json_value(row.value)
        groups.setdefault(str(row.dimension_value), {})[str(row.metric)] = (
            int(value) if row.metric == "points_outstanding" and value is not None else value
        )
    return groups


def redemption_summary(session: Session, start: date, end: date, *, by: str | None = None) -> dict[str, Any]:
    """The Redemptions and liability page's figures of ``[start, end)``.

    ``{"period", "currency", "redemption_rate", "breakage_estimate", "points_outstanding",
    "points_liability", "points_earned", "points_redeemed", "points_returned",
    "points_expired", "monthly": [{"month", "earned", "redeemed", "returned", "expired",
    "reversed", "redemption_rate"}], "by": {group: {figure: value}} or None}``.
    """
    check_period(start, end)
    view = redemptions_view(session, Filters(start, end))
    return {
        "period": period_info(start, end, utcnow()),
        "currency": view["currency"],
        "redemption_rate": view["redemption_rate"],
        "breakage_estimate": view["breakage"],
        "points_outstanding": view["outstanding"],
        "points_liability": view["liability"],
        "points_earned": view["earned"],
        "points_redeemed": view["redeemed"],
        "points_returned": view["returned"],
        "points_expired": view["expired"],
        "monthly": json_records(view["monthly"]),
        "by": _split(session, start, end, by, REDEMPTION_FIGURES),
    }


def liability_summary(session: Session, *, as_of: date | None = None) -> dict[str, Any]:
    """Points outstanding and their money value at the end of ``as_of`` (default yesterday, UTC).

    ``{"as_of", "currency", "point_value", "points_outstanding", "points_liability"}``: the
    catalogue's figures for a period ending that day (as the Overview shows them).
    """
    as_of = as_of or default_as_of(utcnow())
    end = as_of + timedelta(days=1)
    frame = compute_kpis(session, as_of, end, metrics=["points_outstanding", "points_liability"])
    values = {str(m): json_value(v) for m, v in zip(frame["metric"], frame["value"])}
    settings = get_settings(session)
    return {
        "as_of": as_of.isoformat(),
        "complete": is_complete(end, utcnow()),
        "currency": settings.currency,
        "point_value": settings.point_value,
        "points_outstanding": None if values["points_outstanding"] is None else int(values["points_outstanding"]),
        "points_liability": values["points_liability"],
    }


def forecast_summary_json(session: Session, *, as_of: date | None = None) -> dict[str, Any]:
    """The liability forecast of the Redemptions and liability page: the stored one of
    ``as_of`` (default yesterday) or the month before it, else computed now (not stored).

    ``{"as_of", "stored", "currency", "points_outstanding", "points_liability",
    "expected_redeemed", "expected_expired", "breakage_estimate", "months": [{"month",
    "kind", "outstanding", "outstanding_low", "outstanding_high", "liability", ...}]}``.
    """
    from loyalty.decisions.forecast import liability_outlook

    as_of = as_of or default_as_of(utcnow())
    outlook = liability_outlook(session, as_of)
    frame = outlook["frame"]
    months = []
    for row in frame.to_dict("records"):
        months.append(
            {
                "month": json_value(pd.Timestamp(row["month"]).date()),
                "kind": row["kind"],
                **{k: json_value(row[k]) for k in ("earned", "redeemed", "expired", "outstanding") if k in row},
                **{f"outstanding_{b}": json_value(row.get(f"outstanding_{b}")) for b in ("low", "high")},
                "liability": json_value(row.get("outstanding_money")),
            }
        )
    now = outlook["outstanding_now"]
    return {
        "as_of": outlook["as_of"].isoformat(),
        "stored": bool(outlook.get("stored")),
        "currency": outlook["currency"],
        "points_outstanding": None if now is None else int(now),
        "points_liability": None if now is None else now * outlook["point_value"],
        "expected_redeemed": json_value(outlook["expected_redeemed"]),
        "expected_expired": json_value(outlook["expected_expired"]),
        "breakage_estimate": json_value(outlook["breakage"]),
        "months": months,
    }


def nps_summary(session: Session, start: date, end: date, *, by: str | None = None) -> dict[str, Any]:
    """The Feedback page's score of ``[start, end)``: the catalogue's NPS, answers, per month.

    ``{"period", "nps", "answers", "monthly": [{"month", "nps", "answers"}], "by"}``.
    """
    check_period(start, end)
    frame = compute_kpis(session, start, end, metrics=["nps"])
    view = feedback_view(session, Filters(start, end), actor=Actor("cli", "analyst"), comments=0)
    return {
        "period": period_info(start, end, utcnow()),
        "nps": json_value(frame["value"].iloc[0]),
        "answers": len(view["answers"]),
        "monthly": json_records(view["monthly"]),
        "by": _split(session, start, end, by, ("nps",)),
    }


def cycle_summary(session: Session, start: date, end: date) -> dict[str, Any]:
    """The Purchase cycle page's figures of ``[start, end)``.

    ``{"period", "median_gap_days", "verdict", "active_members", "repeat_share", "frequency":
    [{"purchases_per_year_from", "purchases_per_year_to", "members"}]}``.
    """
    check_period(start, end)
    view = purchase_cycle_view(session, Filters(start, end))
    return {
        "period": period_info(start, end, utcnow()),
        "median_gap_days": json_value(view["median_gap"]),
        "verdict": view["verdict"],
        "active_members": int(view["active_members"]),
        "repeat_share": json_value(view["repeat_share"]),
        "frequency": json_records(view["frequency"]),
    }


def winback_summary(session: Session, *, as_of: date | None = None, limit: int = 100) -> dict[str, Any]:
    """The Win-back page's list: high-value members whose probability of being alive fell.

    ``{"as_of", "members": [{...}]}`` with names and e-mails masked (as an analyst sees them).
    """
    from loyalty.decisions.winback import winback_candidates

    as_of = as_of or default_as_of(utcnow())
    frame = winback_candidates(session, actor=Actor("cli", "analyst"), as_of=as_of, limit=limit)
    # The member's id in the company's systems, as everywhere else on the command line.
    frame = frame.drop(columns=["member_id"], errors="ignore").rename(columns={"member": "member_id"})
    return {"as_of": as_of.isoformat(), "members": json_records(frame)}


def clv_members_summary(session: Session, calibration_end: date, time_unit: str) -> list[dict[str, Any]]:
    """Per member: ``member_id`` (the member's id in the company's systems), ``probability_alive``,
    ``predicted_clv`` (12 months) and ``historical_clv``, as the Lifetime value page shows them."""
    from loyalty.analytics.clv import clv_members
    from loyalty.analytics.data import load_members

    table = clv_members(session, calibration_end, time_unit)
    ids = load_members(session, columns=["member_id", "external_id"]).to_pandas()
    table = table.merge(ids, on="member_id", how="left")
    columns = ["external_id", "probability_alive", "predicted_clv", "historical_clv", "frequency"]
    return [
        {"member_id": r["external_id"], **{k: json_value(r[k]) for k in columns[1:] if k in r}}
        for r in table[[c for c in columns if c in table]].to_dict("records")
    ]
