"""Program-wide settings: earn rate, expiry period, value of a point, guard-rail limits.

Each setting has a label (the words the Settings page and every refusal use) and a rule.
An update is saved whole or refused whole, naming each field that was refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import date
from typing import Any

import pandas as pd
from sqlmodel import Session, select

from db.engine import begin_write
from db.models import ProgramSetting, utcnow
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor, require
from loyalty.access.sessions import DEFAULT_IDLE_MINUTES
from loyalty.errors import InvalidInput

__all__ = ["SETTING_LABELS", "InvalidSetting", "ProgramSettings", "describe_settings", "get_settings", "stored_settings", "update_settings"]


@dataclass(frozen=True)
class ProgramSettings:
    currency: str = "EUR"
    points_per_currency_unit: float = 1.0
    expiry_months: int = 12  # 0 means points never expire
    point_value: float = 0.01  # money value of one point, for liability
    idle_timeout_minutes: int = DEFAULT_IDLE_MINUTES
    weekly_report: bool = False  # also render an executive report every Monday
    # A point adjustment above this many points waits for a second admin's approval.
    adjustment_approval_limit: int = 10_000
    # Bounds of what comes in (import, pages, command line, API).
    max_purchase_amount: float = 1_000_000.0  # in the currency
    program_start: date = date(2000, 1, 1)  # nothing (a purchase, a member joining) happened before
    max_import_megabytes: int = 1024  # a larger file is refused before it is read
    # The share of revenue left after the cost of goods: what a campaign's extra sales earn
    # the company, for its return on investment.
    gross_margin: float = 0.30
    # A full refund within this many days of the purchase also takes back the challenge and
    # referral rewards the purchase paid.
    return_window_days: int = 30
    # A referee's first purchase of at least this amount pays both referral bonuses, once.
    referral_referrer_points: int = 500
    referral_referee_points: int = 250
    referral_min_purchase: float = 20.0
    # Messages to one member in one calendar month at most (the rest are suppressed).
    messages_per_member_per_month: int = 4


# The largest values the rules below allow; points and sums stay far from 64-bit overflow.
MAX_POINTS_PER_CURRENCY_UNIT = 1_000
MAX_PURCHASE_AMOUNT_LIMIT = 10_000_000  # in cents (returns count cents) it still fits a 32-bit column
MAX_ADJUSTMENT_LIMIT = 1_000_000
MAX_IMPORT_MEGABYTES = 100_000
EARLIEST_PROGRAM_START = date(1900, 1, 1)
MAX_REFERRAL_POINTS = 1_000_000


SETTING_LABELS: dict[str, str] = {
    "currency": "Currency",
    "points_per_currency_unit": "Points per currency unit spent",
    "expiry_months": "Points expire after (months, 0 = never)",
    "point_value": "Money value of one point",
    "idle_timeout_minutes": "Sign users out after idle minutes",
    "adjustment_approval_limit": "Adjustment approval limit (points)",
    "max_purchase_amount": "Largest purchase amount accepted",
    "program_start": "Program start (nothing is dated before it)",
    "max_import_megabytes": "Largest import file (MB)",
    "gross_margin": "Gross margin on sales (0-1, for campaign ROI)",
    "return_window_days": "Return window (days): a full refund within it takes back challenge and referral rewards",
    "referral_referrer_points": "Referral bonus for the referrer (points)",
    "referral_referee_points": "Referral bonus for the new member (points)",
    "referral_min_purchase": "Referral: first purchase of at least (amount)",
    "messages_per_member_per_month": "Messages per member per month at most",
    "weekly_report": "Weekly executive report",
}
_DEFAULTS = ProgramSettings()


class InvalidSetting(InvalidInput):
    """One or more settings were refused; ``refused`` maps each field to the reason."""

    def __init__(self, refused: dict[str, str]) -> None:
        self.refused = refused
        super().__init__("Nothing was saved. " + " ".join(f"{SETTING_LABELS.get(name, name)}: {reason}" for name, reason in refused.items()))


def _rule_broken(name: str, value: Any) -> str | None:
    """Why ``value`` is not allowed for setting ``name``, or None when it is."""
    if name == "currency":
        return None if re.fullmatch(r"[A-Z]{3}", value) else f"must be a three-letter code such as EUR (you entered {value!r})."
    if name == "points_per_currency_unit" and value <= 0:
        return f"must be greater than 0, or members earn nothing (you entered {value:g})."
    if name == "points_per_currency_unit" and value > MAX_POINTS_PER_CURRENCY_UNIT:
        return f"can be at most {MAX_POINTS_PER_CURRENCY_UNIT:,} (you entered {value:g})."
    if name == "max_purchase_amount" and not 0 < value <= MAX_PURCHASE_AMOUNT_LIMIT:
        return f"must be above 0 and at most {MAX_PURCHASE_AMOUNT_LIMIT:,} (you entered {value:g})."
    if name == "adjustment_approval_limit" and value > MAX_ADJUSTMENT_LIMIT:
        return f"can be at most {MAX_ADJUSTMENT_LIMIT:,} points (you entered {value:,})."
    if name == "max_import_megabytes" and not 1 <= value <= MAX_IMPORT_MEGABYTES:
        return f"must be between 1 and {MAX_IMPORT_MEGABYTES:,} (you entered {value:,})."
    if name == "program_start" and not EARLIEST_PROGRAM_START <= value <= date.today():
        return f"must be a day between {EARLIEST_PROGRAM_START:%Y-%m-%d} and today (you entered {value:%Y-%m-%d})."
    if name == "gross_margin" and not 0 < value <= 1:
        return f"must be a share above 0 and at most 1, e.g. 0.30 for 30 % (you entered {value:g})."
    if name == "point_value" and value <= 0:
        return f"must be greater than 0, or the points liability reads as nothing (you entered {value:g})."
    if name in ("referral_referrer_points", "referral_referee_points") and not 0 <= value <= MAX_REFERRAL_POINTS:
        return f"must be between 0 and {MAX_REFERRAL_POINTS:,} points (you entered {value:,})."
    if name == "messages_per_member_per_month" and not 0 <= value <= 100:
        return f"must be between 0 and 100 (you entered {value:,})."
    if name == "referral_min_purchase" and value < 0:
        return f"cannot be negative (you entered {value:g})."
    if name == "return_window_days" and not 0 <= value <= 3650:
        return f"must be between 0 and 3,650 days (you entered {value:,})."
    if name == "idle_timeout_minutes" and value <= 0:
        return f"must be at least 1 minute (you entered {value})."
    if name in ("expiry_months", "adjustment_approval_limit") and value < 0:
        return f"cannot be negative (you entered {value})."
    return None


def _typed(name: str, value: Any) -> tuple[Any, str | None]:
    """``value`` as the type of setting ``name``, or the reason it is not one."""
    expected = type(getattr(_DEFAULTS, name))
    if expected is date:
        return _as_date(value)
    if expected is bool:
        return (value, None) if isinstance(value, bool) else (value, "must be yes or no.")
    if expected is str:
        return (value.strip().upper(), None) if isinstance(value, str) else (value, "must be text.")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return value, f"must be a number (you entered {value!r})."
    if expected is int:
        return (int(value), None) if float(value).is_integer() else (value, f"must be a whole number (you entered {value:g}).")
    return float(value), None


def _as_date(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, date):
        return value, None
    try:
        return date.fromisoformat(str(value).strip()), None
    except ValueError:
        return value, f"must be a day written YYYY-MM-DD (you entered {value!r})."


def _stored(name: str, value: Any) -> Any:
    """A stored (JSON) value as its setting's type: JSON keeps 2.0 as 2 and a day as text."""
    default = getattr(_DEFAULTS, name)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, date):
        return date.fromisoformat(value)
    return value


def get_settings(session: Session) -> ProgramSettings:
    stored = {row.key: row.value for row in session.exec(select(ProgramSetting))}
    values: dict[str, Any] = {k: _stored(k, v) for k, v in stored.items() if k in SETTING_LABELS}
    return ProgramSettings(**values)


def stored_settings(session: Session) -> pd.DataFrame:
    """What the database holds now: each setting's label, value, and who changed it when.

    A setting never changed shows its default, with an empty ``changed_at``.
    """
    rows = {row.key: row for row in session.exec(select(ProgramSetting))}
    current = get_settings(session)
    return pd.DataFrame(
        [
            {
                "setting": label,
                "value": _shown(getattr(current, name)),
                "changed_at": rows[name].updated_at if name in rows else None,
                "changed_by": rows[name].updated_by if name in rows else "(default)",
            }
            for name, label in SETTING_LABELS.items()
        ],
        columns=["setting", "value", "changed_at", "changed_by"],
    )


def describe_settings(settings: ProgramSettings, names: Iterable[str]) -> str:
    """``"<label> is now <value>; ..."`` for the named settings, values as the page shows them."""
    return "; ".join(f"{SETTING_LABELS[name]} is now {_shown(getattr(settings, name))}" for name in names)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, date):
        return f"{value:%Y-%m-%d}"
    if isinstance(value, float):
        return f"{value:,.2f}" if value >= 1_000 else f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _json(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in values.items()}


def update_settings(*, session: Session, actor: Actor, **changes: Any) -> ProgramSettings:
    """Change settings (admin only), audited; all saved or, naming each refused field, none.

    Raises
    ------
    InvalidSetting
        A value of the wrong type or breaking its rule (a point value of 0, say).
    InvalidInput
        An unknown setting.
    """
    require(actor, "settings.manage")
    unknown = set(changes) - {f.name for f in fields(ProgramSettings)}
    if unknown:
        raise InvalidInput(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
    typed, refused = {}, {}
    for name, value in changes.items():
        typed[name], reason = _typed(name, value)
        # Only the fields being changed are checked: a value stored long ago never blocks another edit.
        if reason := reason or _rule_broken(name, typed[name]):
            refused[name] = reason
    if refused:
        raise InvalidSetting(refused)
    begin_write(session)
    current = get_settings(session)
    updated = ProgramSettings(**{**asdict(current), **typed})
    for key, value in _json(typed).items():
        row = session.get(ProgramSetting, key)
        if row is None:
            session.add(ProgramSetting(key=key, value=value, updated_by=actor.username))
        else:
            row.value, row.updated_at, row.updated_by = value, utcnow(), actor.username
            session.add(row)
    record_audit(
        session, actor=actor, action="settings.update", entity="settings", before=_json({k: getattr(current, k) for k in typed}), after=_json(typed)
    )
    session.commit()
    return updated
