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
