"""Rule-based segments: which members a ``Segment.rules`` JSON selects, vectorised.

Rules are a JSON object; every key narrows the selection (AND), and an empty object
selects every member. Supported keys:

======================== ================================================================
key                      value and meaning
======================== ================================================================
acquisition_channel      list of channels: ``{"acquisition_channel": ["referral"]}``
tier                     list of current tier names; ``"(none)"`` for members without one
city                     list of cities
marketing_consent        ``true`` or ``false``
days_since_last_purchase ``{"min": 90}`` / ``{"max": 30}`` / both, inclusive, counted from
                         the last purchase day to ``as_of``; members who never bought
                         match no range
purchases                ``{"min": n, "max": n}``: non-refunded purchases up to ``as_of``
                         (members who never bought have 0)
spend                    ``{"min": x, "max": x}``: non-refunded spend up to ``as_of``
joined_on                ``{"min": "YYYY-MM-DD", "max": "YYYY-MM-DD"}``, inclusive
rfm_segment              list of RFM segment names (:data:`loyalty.analytics.rfm.RFM_SEGMENTS`),
                         scored over all purchases up to ``as_of``
======================== ================================================================

A list also accepts a single string. Names match exactly (case-sensitive). ``as_of`` is
the day the rules look from (inclusive); purchases after it are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from sqlmodel import Session, select

from db.models import Segment
from loyalty.analytics.data import load_members, load_purchases, members_frame, purchases_frame
from loyalty.analytics.rfm import RFM_SEGMENTS, rfm_measures, rfm_table
from loyalty.errors import InvalidInput

__all__ = ["RULE_KEYS", "match_members", "rules_in_words", "segment_members", "segment_memberships", "validate_rules"]

LIST_RULES = {"acquisition_channel": "acquisition_channel", "tier": "tier", "city": "city"}
RANGE_RULES = ("days_since_last_purchase", "purchases", "spend")
PURCHASE_RULES = frozenset({"days_since_last_purchase", "purchases", "spend", "rfm_segment"})
RULE_KEYS: dict[str, str] = {
    "acquisition_channel": "list of acquisition channels",
    "tier": "list of current tier names ('(none)' for members without a tier)",
    "city": "list of cities",
    "marketing_consent": "true or false",
    "days_since_last_purchase": '{"min": days, "max": days}, inclusive',
    "purchases": '{"min": n, "max": n}: purchases up to as_of',
    "spend": '{"min": x, "max": x}: spend up to as_of',
    "joined_on": '{"min": "YYYY-MM-DD", "max": "YYYY-MM-DD"}, inclusive',
    "rfm_segment": "list of RFM segment names",
}


_RULE_WORDS = {
    "acquisition_channel": "joined through",
    "tier": "in tier",
    "city": "living in",
    "rfm_segment": "in RFM segment",
    "days_since_last_purchase": ("last bought", "days ago"),
    "purchases": ("made", "purchases"),
    "spend": ("spent", "in all"),
}


def rules_in_words(rules: Mapping[str, Any] | None) -> str:
    """A segment's rules as a sentence a manager reads: ``Members in tier Gold or Platinum who
    last bought at least 90 days ago.`` (every rule must hold)."""
    if not rules:
        return "Every member."

    def either(values: Any) -> str:
        names = [values] if isinstance(values, str) else [str(v) for v in values]
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]

    def between(value: Mapping[str, Any]) -> str:
        low, high = value.get("min"), value.get("max")
        if low is not None and high is not None:
            return f"between {low} and {high}"
        return f"at least {low}" if low is not None else f"at most {high}"

    parts = []
    for key, value in rules.items():
        words = _RULE_WORDS.get(key)
        if key == "marketing_consent":
            parts.append("who agreed to marketing" if value else "who did not agree to marketing")
        elif key == "joined_on" and isinstance(value, Mapping):
            low, high = value.get("min"), value.get("max")
            when = f"from {low} to {high}" if low and high else (f"on or after {low}" if low else f"on or before {high}")
            parts.append(f"who joined {when}")
        elif isinstance(words, str):
            parts.append(f"{words} {either(value)}")
        elif isinstance(words, tuple) and isinstance(value, Mapping):
            verb, unit = words
            parts.append(f"who {verb} {between(value)} {unit}".rstrip())
        else:
            parts.append(f"{key} {value}")
    return "Members " + ", ".join(parts) + "."


def _names(key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidInput(f'Segment rule {key!r} takes a non-empty list of names, e.g. {{"{key}": ["..."]}}; got {value!r}.')


def _bounds(key: str, value: Any, kind: type) -> tuple[Any, Any]:
    if not isinstance(value, Mapping) or not value or set(value) - {"min", "max"}:
        raise InvalidInput(f'Segment rule {key!r} takes {{"min": ..., "max": ...}} (either or both); got {value!r}.')
    low, high = value.get("min"), value.get("max")
    for bound in (low, high):
        if bound is None:
            continue
        if kind is date:
            if not isinstance(bound, (str, date)):
                raise InvalidInput(f"Segment rule {key!r} bounds are dates YYYY-MM-DD; got {bound!r}.")
        elif isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise InvalidInput(f"Segment rule {key!r} bounds are numbers; got {bound!r}.")
    if kind is date:
        try:
            low = date.fromisoformat(low) if isinstance(low, str) else low
            high = date.fromisoformat(high) if isinstance(high, str) else high
        except ValueError as error:
            raise InvalidInput(f"Segment rule {key!r}: {error}; write dates as YYYY-MM-DD.") from None
    if low is not None and high is not None and low > high:
        raise InvalidInput(f"Segment rule {key!r} has min {low} above max {high}.")
    return low, high


def validate_rules(rules: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check a rules object; returns it normalised (lists as lists, dates parsed).

    Raises :class:`InvalidInput` naming the offending key and the supported ones.
    """
    if rules is None:
        return {}
    if not isinstance(rules, Mapping):
        raise InvalidInput(f'Segment rules are a JSON object such as {{"tier": ["Gold"]}}, not {rules!r}.')
    unknown = set(rules) - set(RULE_KEYS)
    if unknown:
        supported = "; ".join(f"{k}: {v}" for k, v in RULE_KEYS.items())
        raise InvalidInput(f"Unknown segment rule(s) {', '.join(sorted(unknown))}. Supported: {supported}.")
    normalised: dict[str, Any] = {}
    for key, value in rules.items():
        if key in LIST_RULES or key == "rfm_segment":
            normalised[key] = _names(key, value)
        elif key == "marketing_consent":
            if not isinstance(value, bool):
                raise InvalidInput(f"Segment rule 'marketing_consent' is true or false, not {value!r}.")
            normalised[key] = value
        elif key == "joined_on":
            normalised[key] = _bounds(key, value, date)
        else:
            normalised[key] = _bounds(key, value, float)
    unknown_rfm = set(normalised.get("rfm_segment", ())) - set(RFM_SEGMENTS)
    if unknown_rfm:
        raise InvalidInput(f"Unknown RFM segment(s) {sorted(unknown_rfm)}; choose from {list(RFM_SEGMENTS)}.")
    return normalised


def _in_range(column: pl.Expr, low: Any, high: Any) -> pl.Expr:
    condition = pl.lit(True)
    if low is not None:
        condition &= column >= low
    if high is not None:
        condition &= column <= high
    return condition


def match_members(
    members: pl.DataFrame | pd.DataFrame,
    rules: Mapping[str, Any] | None,
    *,
    purchases: pl.DataFrame | pd.DataFrame | None = None,
    as_of: date | None = None,
    rfm: pl.DataFrame | None = None,
) -> np.ndarray:
    """Ids of the members matching ``rules``, sorted (pure: frames in, ids out).

    Parameters
    ----------
    members
        ``member_id`` plus the attribute columns the rules use
        (:func:`loyalty.analytics.data.load_members`).
    rules
        A rules object (see the module docstring).
    purchases
        Needed by the purchase-based rules (``days_since_last_purchase``, ``purchases``,
        ``spend``, ``rfm_segment``), unless ``rfm`` is given.
    as_of
        The day the rules look from; default today (UTC).
    rfm
        :func:`~loyalty.analytics.rfm.rfm_measures` of the purchases up to ``as_of``, when
        another engine computed them (the Spark engine's nightly KPIs): used instead of
        ``purchases``.
    """
    checked = validate_rules(rules)
    frame = members_frame(members)
    as_of = as_of or datetime.now(UTC).date()
    conditions: list[pl.Expr] = []
    for key, column in LIST_RULES.items():
        if key in checked:
            if column not in frame.columns:
                raise InvalidInput(f"Rule {key!r} needs the members' {column} column.")
            conditions.append(pl.col(column).is_in(checked[key]))
    if "marketing_consent" in checked:
        conditions.append(pl.col("marketing_consent") == checked["marketing_consent"])
    if "joined_on" in checked:
        conditions.append(_in_range(pl.col("joined_on"), *checked["joined_on"]))
    if PURCHASE_RULES & set(checked):
        if rfm is None:
            if purchases is None:
                raise InvalidInput(f"Rules {sorted(PURCHASE_RULES & set(checked))} need the purchases frame.")
            rfm = rfm_measures(purchases_frame(purchases).filter(pl.col("occurred_on") <= as_of), as_of)
        totals = rfm.select("member_id", days_since_last_purchase="recency_days", purchases="frequency", spend="monetary")
        frame = frame.join(totals, on="member_id", how="left").with_columns(pl.col("purchases").fill_null(0), pl.col("spend").fill_null(0.0))
        for key in RANGE_RULES:
            if key in checked:
                conditions.append(_in_range(pl.col(key), *checked[key]).fill_null(False))
        if "rfm_segment" in checked:
            scored = rfm_table(None, as_of, measures=rfm).select("member_id", rfm_segment="segment")
            frame = frame.join(scored, on="member_id", how="left")
            conditions.append(pl.col("rfm_segment").is_in(checked["rfm_segment"]).fill_null(False))
    selected = frame.filter(pl.all_horizontal(conditions)) if conditions else frame
    return np.sort(selected["member_id"].to_numpy().astype(np.int64))


def _member_columns(rules: Mapping[str, Any]) -> list[str]:
    columns = ["member_id"]
    for key in ("acquisition_channel", "tier", "city", "marketing_consent", "joined_on"):
        if key in rules:
            columns.append(key)
    return columns


def segment_members(session: Session, rules: Mapping[str, Any] | None, *, as_of: date | None = None) -> np.ndarray:
    """Ids (sorted int64 array) of the members a rules object selects, from the database."""
    checked = validate_rules(rules)
    members = load_members(session, columns=_member_columns(checked))
    purchases = None
    if PURCHASE_RULES & set(checked):
        end = None if as_of is None else date.fromordinal(as_of.toordinal() + 1)
        purchases = load_purchases(session, end=end)
    return match_members(members, rules, purchases=purchases, as_of=as_of)


def segment_memberships(
    session: Session,
    *,
    as_of: date | None = None,
    members: pl.DataFrame | None = None,
    purchases: pl.DataFrame | None = None,
    rfm: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Every saved segment's members: ``member_id, segment`` (a member may be in several).

    ``members`` and ``purchases`` frames already loaded can be passed to avoid reading
    them again; they must carry the columns the rules need. ``rfm``: the purchases'
    RFM measures as of ``as_of`` instead of the purchases (see :func:`match_members`).
    """
    segments = session.exec(select(Segment.name, Segment.rules).order_by(Segment.name)).all()
    frames = []
    for name, rules in segments:
        checked = validate_rules(rules)
        if members is None or not set(_member_columns(checked)) <= set(members.columns):
            members = load_members(session)
        if purchases is None and rfm is None and PURCHASE_RULES & set(checked):
            end = None if as_of is None else date.fromordinal(as_of.toordinal() + 1)
            purchases = load_purchases(session, end=end)
        ids = match_members(members, rules, purchases=purchases, as_of=as_of, rfm=rfm)
        frames.append(pl.DataFrame({"member_id": ids, "segment": [name] * len(ids)}, schema={"member_id": pl.Int64, "segment": pl.String}))
    if not frames:
        return pl.DataFrame(schema={"member_id": pl.Int64, "segment": pl.String})
    return pl.concat(frames)
