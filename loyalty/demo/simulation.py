"""The demo program: a realistic synthetic loyalty program, deterministic for a seed.

:func:`create_demo` fills an empty database with a program a new user can explore and
the later features can measure: tiers, a rewards catalogue, members joining over the
history from six acquisition channels, their purchases, the points those earned
(through :func:`loyalty.ledger.purchases.add_purchases` and the campaign earn engine, the one
path purchases take), refunds, redemptions, expiry, past and running campaigns with
holdout groups, NPS answers, segments, and goals with KPI targets.

How members behave
------------------
A BG/NBD-like process (Fader, Hardie and Lee 2005), so a CLV model fitted later finds
sensible parameters: while alive, a member buys at a monthly rate drawn from a gamma
distribution; after each repeat purchase they drop out with a probability drawn from a
beta distribution. Spend per purchase follows the Gamma-Gamma model (a gamma around a
member's own mean, itself gamma-distributed), scaled by the category's price level.
Acquisition channels differ in rates, dropout, members who never buy at all and
marketing consent: referral members stay, social-ads members churn fast. Purchase
rates follow the season (December peak, summer dip).

How the history is simulated
----------------------------
Month by month (calendar months; the first and the last are partial, the last ends at
``now``), vectorised over members with numpy state arrays: nothing loops per purchase,
so a million members fit in memory and in minutes. At each month boundary, in this
order:

1. expiry: each member's ``expire`` entry is ``max(0, P(t) - D(t))`` (the FIFO rule of
   :mod:`loyalty.ledger.entries`), dated at the boundary. With calendar boundaries, the lots of
   month ``k`` expire inside month ``k + expiry_months``, so all of them, and no later
   ones, are due at boundary ``k + expiry_months + 1``;
2. tier evaluation, by the rule of the scheduled job (``loyalty.evaluation.tiers``): spend
   *and* purchase count over the last 12 months; upgrades at once, a downgrade only
   after the tier's grace period from the day it was reached; each movement recorded. Purchases of the month then earn with
   the member's tier multiplier at that time, as a live program would;
3. campaigns starting at the boundary assign their eligible members, with the same
   stable holdout as :func:`loyalty.program.campaigns.activate_campaign`.

Within a month: the purchases, written through ``add_purchases`` (earn entries and
campaign bonuses from the real engine); then, per member and after their last purchase
of the month, the refunds (``reverse`` entries taking back exactly what the purchase
earned), then possibly one redemption of points they hold at that moment, then
possibly its cancellation (points returned as a new lot). The final boundary at
``now`` runs :func:`loyalty.ledger.entries.expire_points` itself, so running it again at
``now`` finds nothing. Balances therefore never go below zero at any moment.

Treatment members of a campaign genuinely buy more during it (``uplift``); holdout
members and members not eligible do not, so campaign evaluation measures a real
effect. A campaign assigns the members who joined before it started (as activation
does), so a long-running campaign does not include later joiners.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, text
from sqlmodel import Session, select

from db.bulk import sqlite_page_cache
from db.engine import is_sqlite, write_transaction
from db.models import Campaign, Goal, Member, Reward, Segment, Tier, utcnow
from loyalty.access.roles import Actor, require
from loyalty.demo.boundaries import month_boundary
from loyalty.demo.finish import finish_history
from loyalty.demo.members import create_members
from loyalty.demo.months import simulate_month
from loyalty.demo.parameters import (
    ACQUISITION_CHANNELS,
    CATEGORIES,
    CATEGORY_PRICE,
    CATEGORY_SHARE,
    DEFAULT_MEMBERS,
    DEFAULT_MONTHS,
    DEFAULT_SEED,
    MAX_MEMBERS,
    MAX_MONTHS,
    MIN_MEMBERS,
    MIN_MONTHS,
    PURCHASE_CHANNELS,
    REWARDS,
    SEGMENTS,
    SQLITE_CACHE_KIB,
    TIERS,
    ProgressFn,
)
from loyalty.demo.setup import set_up_program
from loyalty.demo.state import Simulation
from loyalty.errors import InvalidInput

__all__ = [
    "ACQUISITION_CHANNELS",
    "CATEGORIES",
    "CATEGORY_PRICE",
    "CATEGORY_SHARE",
    "DEFAULT_MEMBERS",
    "DEFAULT_MONTHS",
    "DEFAULT_SEED",
    "PURCHASE_CHANNELS",
    "REWARDS",
    "SEGMENTS",
    "TIERS",
    "create_demo",
    "simulate",
]


# --- the use case ------------------------------------------------------------------------


def create_demo(
    session: Session,
    *,
    members: int = DEFAULT_MEMBERS,
    months: int = DEFAULT_MONTHS,
    seed: int = DEFAULT_SEED,
    actor: Actor,
    progress: ProgressFn | None = None,
    redemptions: bool = True,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Fill an empty database with a synthetic demo program, in one transaction.

    Parameters
    ----------
    members
        Members to create (they join over the history).
    months
        Length of the history before ``now``, in months.
    seed
        Seed of ``numpy.random.default_rng``: the same seed (with the same ``now`` and
        settings) gives the same program.
    actor
        Needs ``program.configure``. An admin also gets the demo users (one per role).
    progress
        Called as ``progress(done, total)`` after each simulated month.
    redemptions
        Whether members redeem rewards (benchmarks may want purchases only).
    now
        End of the history (timezone-aware; default: the current UTC time).

    Returns
    -------
    dict
        Counts of what was created (members, purchases, ledger_entries, redemptions,
        feedback, campaigns, rewards, tiers, goals, segments, ...) and ``seconds``;
        ``users`` lists the demo users created (username, role, password).

    Raises
    ------
    InvalidInput
        When the database already has members or a program configuration, or an
        argument is out of range. Nothing is written then, nor after any failure.
    """
    require(actor, "program.configure")
    if not MIN_MEMBERS <= members <= MAX_MEMBERS:
        raise InvalidInput(f"The demo program needs between {MIN_MEMBERS:,} and {MAX_MEMBERS:,} members (got {members:,}).")
    if not MIN_MONTHS <= months <= MAX_MONTHS:
        raise InvalidInput(f"The demo history must be {MIN_MONTHS} to {MAX_MONTHS} months long (got {months}).")
    now = now or utcnow()
    if now.tzinfo is None:
        raise InvalidInput("The end of the demo history needs a time zone (UTC).")
    # Whole seconds: SQLite stores timestamps to the second, and the expiry run at `now`
    # must compare equal on both databases.
    now = now.astimezone(UTC).replace(microsecond=0)
    started = time.perf_counter()
    with write_transaction(session), sqlite_page_cache(session, SQLITE_CACHE_KIB):
        _refuse_unless_empty(session)
        summary = simulate(
            Simulation(session, members=members, months=months, seed=seed, actor=actor, now=now, redemptions=redemptions, progress=progress)
        )
    summary["seconds"] = round(time.perf_counter() - started, 2)
    if actor.can("users.manage"):
        # After the commit: create_user commits on its own, which would end the demo's
        # transaction half-way.
        from loyalty.access.users import create_demo_users

        summary["users"] = [{"username": u.username, "role": u.role, "password": u.password} for u in create_demo_users(session, actor=actor)]
    return summary


def _refuse_unless_empty(session: Session) -> None:
    """Refuse a database that already has members or a program configured."""
    if not is_sqlite(session):
        # Two app processes starting on an empty database at once: the second waits
        # here, then finds the first one's members and is refused cleanly.
        session.execute(text("LOCK TABLE member IN SHARE ROW EXCLUSIVE MODE"))
    existing = session.exec(select(func.count()).select_from(Member)).one()
    if existing:
        raise InvalidInput(f"The database already has {existing:,} members: the demo program only fills an empty one.")
    configured = {
        "tiers": session.exec(select(func.count()).select_from(Tier)).one(),
        "rewards": session.exec(select(func.count()).select_from(Reward)).one(),
        "campaigns": session.exec(select(func.count()).select_from(Campaign)).one(),
        "goals": session.exec(select(func.count()).select_from(Goal)).one(),
        "segments": session.exec(select(func.count()).select_from(Segment)).one(),
    }
    present = [f"{n} {what}" for what, n in configured.items() if n]
    if present:
        raise InvalidInput(f"The database already has a program configured ({', '.join(present)}): the demo program only fills an empty one.")


def simulate(sim: Simulation) -> dict[str, Any]:
    """Run the demo's steps in order on ``sim``'s session; the counts of what was created.

    The program first (tiers, rewards, campaigns), then the members, then month by
    month: the boundary (expiry, tier evaluation, campaigns starting) and the month
    itself (purchases and refunds, redemptions, NPS answers); last the end of the
    history (expiry at ``now``, scheduled campaigns, segments, goals). The steps share one
    random generator: their order is what makes a seed give the same program.
    """
    total = sim.intervals + 2
    set_up_program(sim)
    create_members(sim)
    sim.report(1, total)
    for k in range(sim.intervals):
        if k > 0:
            month_boundary(sim, k)
        simulate_month(sim, k)
        sim.report(k + 2, total)
    finish_history(sim)
    sim.report(total, total)
    return _summary(sim)


def _summary(sim: Simulation) -> dict[str, Any]:
    """What the run created, as ``create_demo`` returns it."""
    return {
        "members": sim.n,
        "purchases": sim.counts["purchases"],
        "ledger_entries": sim.counts["ledger_entries"],
        "redemptions": sim.counts["redemptions"],
        "feedback": sim.counts["feedback"],
        "campaigns": len(sim.campaigns),
        "rewards": len(sim.reward_ids),
        "tiers": len(sim.tier_ids),
        "goals": sim.goal_count,
        "kpi_targets": sim.target_count,
        "segments": len(sim.segment_ids),
        "refunds": sim.counts["refunds"],
        "tier_movements": sim.counts["tier_movements"],
        "campaign_assignments": sim.counts["campaign_assignments"],
        "points_outstanding": sim.points_outstanding,
        "challenges": 2,
        "challenge_completions": sim.counts["challenge_completions"],
        "referrals": sim.counts["referrals"],
        "referrals_paid": sim.counts["referrals_paid"],
        "messages_queued": sim.counts["messages_queued"],
    }
