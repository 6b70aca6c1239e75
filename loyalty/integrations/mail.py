"""The SMTP server of ``LOYALTY_SMTP_*``: where the executive report and members' messages are mailed from.

``LOYALTY_SMTP_HOST`` (no host: no e-mail), ``LOYALTY_SMTP_PORT`` (default 25),
``LOYALTY_SMTP_FROM``, optional ``LOYALTY_SMTP_USER``/``LOYALTY_SMTP_PASSWORD`` and
``LOYALTY_SMTP_STARTTLS=1``; the report's distribution list is ``LOYALTY_SMTP_TO``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from loyalty.errors import InvalidInput

__all__ = ["SmtpSettings", "smtp_server", "smtp_settings"]


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    user: str = ""
    password: str = ""
    starttls: bool = False


def smtp_server(env: Mapping[str, str] | None = None) -> SmtpSettings | None:
    """The SMTP server of ``LOYALTY_SMTP_*`` (no recipients), or None when no host is set."""
    env = os.environ if env is None else env
    host = env.get("LOYALTY_SMTP_HOST", "").strip()
    if not host:
        return None
    try:
        port = int(env.get("LOYALTY_SMTP_PORT", "25"))
    except ValueError:
        raise InvalidInput(f"LOYALTY_SMTP_PORT must be a number, not {env.get('LOYALTY_SMTP_PORT')!r}.") from None
    return SmtpSettings(
        host=host,
        port=port,
        sender=env.get("LOYALTY_SMTP_FROM", "loyalty-console@localhost").strip(),
        recipients=(),
        user=env.get("LOYALTY_SMTP_USER", ""),
        password=env.get("LOYALTY_SMTP_PASSWORD", ""),
        starttls=env.get("LOYALTY_SMTP_STARTTLS", "") in ("1", "true", "yes"),
    )


def smtp_settings(env: Mapping[str, str] | None = None) -> SmtpSettings | None:
    """SMTP settings from ``LOYALTY_SMTP_*`` with the report's recipients, or None when no host or recipient is set."""
    env = os.environ if env is None else env
    server = smtp_server(env)
    recipients = tuple(a.strip() for a in env.get("LOYALTY_SMTP_TO", "").split(",") if a.strip())
    if server is None or not recipients:
        return None
    return replace(server, recipients=recipients)
