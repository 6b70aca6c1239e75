"""Program-wide settings: earn rate, expiry period, value of a point."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from sqlmodel import Session, select

from db.engine import begin_write
from db.models import ProgramSetting, utcnow
from loyalty.access import Actor, require
from loyalty.audit import record_audit
from loyalty.errors import InvalidInput


@dataclass(frozen=True)
class ProgramSettings:
    currency: str = "EUR"
    points_per_currency_unit: float = 1.0
    expiry_months: int = 12  # 0 means points never expire
    point_value: float = 0.01  # money value of one point, for liability
    idle_timeout_minutes: int = 60
    weekly_report: bool = False  # also render an executive report every Monday
    adjustment_approval_limit: int = 10_000  # larger point adjustments wait for a second admin

    def validate(self) -> None:
        if self.points_per_currency_unit < 0:
            raise InvalidInput("Points per currency unit cannot be negative.")
        if self.expiry_months < 0:
            raise InvalidInput("The expiry period cannot be negative (0 means points never expire).")
        if self.point_value < 0:
            raise InvalidInput("The value of a point cannot be negative.")
        if self.idle_timeout_minutes <= 0:
            raise InvalidInput("The idle timeout must be at least one minute.")
        if self.adjustment_approval_limit < 0:
            raise InvalidInput("The adjustment approval limit cannot be negative.")


def get_settings(session: Session) -> ProgramSettings:
    stored = {row.key: row.value for row in session.exec(select(ProgramSetting))}
    known = {f.name for f in fields(ProgramSettings)}
    return ProgramSettings(**{k: v for k, v in stored.items() if k in known})


def update_settings(*, session: Session, actor: Actor, **changes: Any) -> ProgramSettings:
    """Change settings (admin only), audited. Unknown keys are refused."""
    require(actor, "settings.manage")
    begin_write(session)
    current = get_settings(session)
    unknown = set(changes) - {f.name for f in fields(ProgramSettings)}
    if unknown:
        raise InvalidInput(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
    updated = ProgramSettings(**{**asdict(current), **changes})
    updated.validate()
    for key, value in changes.items():
        row = session.get(ProgramSetting, key)
        if row is None:
            session.add(ProgramSetting(key=key, value=value, updated_by=actor.username))
        else:
            row.value, row.updated_at, row.updated_by = value, utcnow(), actor.username
            session.add(row)
    record_audit(
        session, actor=actor, action="settings.update", entity="settings",
        before={k: getattr(current, k) for k in changes}, after=changes,
    )
    session.commit()
    return updated
