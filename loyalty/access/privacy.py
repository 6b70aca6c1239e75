"""Personal data inside free text: e-mail addresses and phone numbers masked for roles that may not see them.

Free text (a comment in a survey answer, the reason of a ledger adjustment) can hold what a
member wrote or what staff typed: "call me on +351 912 345 678", "refund for ana@example.com".
Roles without ``members.view_pii`` see such text with the contact details masked.
"""

from __future__ import annotations

import re

import pandas as pd

__all__ = ["mask_contacts"]

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Seven or more digits, possibly with a leading +, spaces, dots, dashes or brackets between them (not a date).
_PHONE = re.compile(r"(?<![\w-])(?!\d{4}-\d{2}-\d{2})\+?\(?\d(?:[\s.\-()]*\d){6,}")


def _masked_email(found: re.Match[str]) -> str:
    local, _, domain = found.group(0).partition("@")
    return f"{local[:1]}***@{domain}"


def mask_contacts(text: str | pd.Series) -> str | pd.Series:
    """``text`` with e-mail addresses as ``a***@example.com`` and phone numbers as ``[phone]``.

    >>> mask_contacts("write to ana.lima@example.com or call +351 912 345 678")
    'write to a***@example.com or call [phone]'
    """
    if isinstance(text, pd.Series):
        return text.str.replace(_EMAIL, _masked_email, regex=True).str.replace(_PHONE, "[phone]", regex=True)
    return _PHONE.sub("[phone]", _EMAIL.sub(_masked_email, text))
