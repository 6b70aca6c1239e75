"""Domain errors, each with a message a loyalty manager understands.

Pages show them with ``st.error``; the command line prints them as JSON with an exit code.
"""

from __future__ import annotations


class LoyaltyError(Exception):
    """Base class: the operation was refused and nothing was written."""

    exit_code = 1


class NotFound(LoyaltyError):
    exit_code = 4


class PermissionDenied(LoyaltyError):
    exit_code = 5


class InsufficientPoints(LoyaltyError):
    exit_code = 3


class OutOfStock(LoyaltyError):
    exit_code = 3


class RewardUnavailable(LoyaltyError):
    exit_code = 3


class InvalidInput(LoyaltyError):
    exit_code = 2


class AlreadyDone(LoyaltyError):
    """The operation was already applied (a purchase refunded twice, say)."""

    exit_code = 3


class NeedsConfirmation(LoyaltyError):
    """The change is unusually large (a 12x multiplier, a huge budget): saved only once confirmed."""

    exit_code = 2


# --- faults of the environment ---------------------------------------------------------------

ENVIRONMENT_EXIT_CODE = 1
INPUT_EXIT_CODE = 2


def describe_fault(error: BaseException) -> tuple[str, int] | None:
    """A fault that is no refusal of the domain, as one line for a person and an exit code
    (1: the environment, such as a database that is down, read-only or on a full disk;
    2: input the database cannot store, such as a NUL character in text); None for anything else.

    Pages show the line with ``st.error``, the command line prints it instead of a traceback.
    """
    import errno

    from sqlalchemy.exc import DBAPIError, OperationalError

    raw = str(getattr(error, "orig", None) or error).strip()
    text = raw.splitlines()[0] if raw else type(error).__name__
    lowered = text.lower()
    if "nul" in lowered and ("0x00" in lowered or "character" in lowered):
        return "Text with a NUL character (0x00) cannot be stored: remove it and try again. Nothing was changed.", INPUT_EXIT_CODE
    if isinstance(error, OperationalError):
        if "readonly" in lowered or "read-only" in lowered or "read only" in lowered:
            return f"The database is read-only, so nothing can be changed ({text}). Nothing was changed.", ENVIRONMENT_EXIT_CODE
        if "disk" in lowered and ("full" in lowered or "space" in lowered):
            return f"The database's disk is full ({text}). Nothing was changed.", ENVIRONMENT_EXIT_CODE
        if any(s in lowered for s in ("connection refused", "could not connect", "connection failed", "unable to open database", "timeout")):
            return f"The database cannot be reached ({text}). Check LOYALTY_DATABASE_URL and that the server runs.", ENVIRONMENT_EXIT_CODE
        return f"The database refused the operation ({text}). Nothing was changed.", ENVIRONMENT_EXIT_CODE
    if isinstance(error, DBAPIError):
        return f"The database refused the operation ({text}). Nothing was changed.", ENVIRONMENT_EXIT_CODE
    if isinstance(error, OSError):
        where = f": {error.filename}" if getattr(error, "filename", None) else ""
        if error.errno == errno.ENOSPC:
            return f"The disk is full{where}. Nothing was written.", ENVIRONMENT_EXIT_CODE
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"No permission to write{where} ({error.strerror}).", ENVIRONMENT_EXIT_CODE
        return f"{error.strerror or text}{where}.", ENVIRONMENT_EXIT_CODE
    return None
