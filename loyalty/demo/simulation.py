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
2. tier evaluation, by the rule of the scheduled job (``loyalty.evaluation.kpis``): spend
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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Integer, bindparam, cast, func, text, update
from sqlmodel import Session, col, select

from db.bulk import allocate_ids, insert_frame, sqlite_page_cache
from db.engine import is_sqlite, write_transaction
from db.models import (
    Campaign,
    Goal,
    KpiTarget,
    Member,
    Purchase,
    Reward,
    Segment,
    Tier,
    stored_id,
    utcnow,
)
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor, require
from loyalty.errors import InvalidInput
from loyalty.ledger.earning import base_points
from loyalty.ledger.entries import EXPIRE, REDEEM, REVERSE, expire_points, expiry_dates
from loyalty.ledger.purchases import PURCHASE_COLUMNS, add_purchases
from loyalty.program.campaigns import activate_campaign, save_campaign, stable_uniform
from loyalty.program.rewards import save_reward
from loyalty.program.settings import get_settings
from loyalty.program.tiers import qualifying_tier_index, save_tiers

__all__ = [
    "ACQUISITION_CHANNELS",
    "CATEGORIES",
    "DEFAULT_MEMBERS",
    "DEFAULT_MONTHS",
    "DEFAULT_SEED",
    "create_demo",
]

ProgressFn = Callable[[int, int], None]

DEFAULT_MEMBERS = 5_000
DEFAULT_MONTHS = 24
DEFAULT_SEED = 42
MIN_MEMBERS, MAX_MEMBERS = 10, 9_999_999  # external ids are "M" + 7 digits
MIN_MONTHS, MAX_MONTHS = 3, 120

DAY = 86_400
MONTH = 30.4375 * DAY
OPENING, CLOSING = 8 * 3600, 22 * 3600  # purchases happen in shop hours (UTC)
# A member's window in a month shorter than this gets no purchase, refund or redemption:
# events need room to happen in their order (purchases, refunds, redemption, cancel).
MIN_WINDOW = 2 * 3600
# Chunk size for add_purchases while a campaign that looks purchases up by id is
# running (spend threshold, birthday): the engine puts a chunk's ids in one SQL IN
# list, and PostgreSQL's driver takes at most 65,535 parameters per statement.
CAMPAIGN_SAFE_CHUNK = 25_000
PURCHASE_CHUNK = 200_000
LOOKUP_CHUNK = 10_000
SQLITE_CACHE_KIB = 256 * 1024

# --- the program -----------------------------------------------------------------------

TIERS: tuple[dict[str, Any], ...] = (
    {"name": "Bronze", "min_spend": 0.0, "min_purchases": 0, "window_months": 12, "multiplier": 1.0, "grace_months": 0,
     "benefits": ["1 point per euro", "Member prices", "Birthday bonus"]},
    {"name": "Silver", "min_spend": 400.0, "min_purchases": 6, "window_months": 12, "multiplier": 1.25, "grace_months": 2,
     "benefits": ["1.25 points per euro", "Free delivery over 30 EUR", "Early access to sales"]},
    {"name": "Gold", "min_spend": 1000.0, "min_purchases": 12, "window_months": 12, "multiplier": 1.5, "grace_months": 3,
     "benefits": ["1.5 points per euro", "Free delivery", "Priority service line", "VIP shopping evenings"]},
    {"name": "Platinum", "min_spend": 2500.0, "min_purchases": 24, "window_months": 12, "multiplier": 2.0, "grace_months": 3,
     "benefits": ["2 points per euro", "Personal shopper", "Free returns and delivery", "Invitations to exclusive events"]},
)


@dataclass(frozen=True)
class _ChannelProfile:
    """How members recruited through one acquisition channel behave."""

    share: float  # of new members
    rate: float  # multiplies the member's purchase rate
    dropout: tuple[float, float]  # Beta(a, b): chance to drop out after each repeat purchase
    never_buys: float  # signed up, never bought
    buys_at_join: float  # enrolled at the checkout
    consent: float  # marketing consent
    purchase_channels: tuple[float, float, float]  # store, online, app
    satisfaction: float  # shifts NPS answers


ACQUISITION_CHANNELS: dict[str, _ChannelProfile] = {
    "store": _ChannelProfile(0.30, 1.00, (1.0, 14.0), 0.03, 0.92, 0.45, (0.85, 0.10, 0.05), 0.1),
    "web": _ChannelProfile(0.19, 0.90, (1.0, 9.0), 0.12, 0.55, 0.60, (0.35, 0.55, 0.10), 0.0),
    "app": _ChannelProfile(0.17, 1.20, (1.1, 19.0), 0.10, 0.60, 0.75, (0.25, 0.15, 0.60), 0.2),
    "referral": _ChannelProfile(0.10, 1.10, (1.0, 30.0), 0.05, 0.80, 0.55, (0.60, 0.25, 0.15), 0.6),
    "social_ads": _ChannelProfile(0.16, 0.75, (1.5, 3.0), 0.35, 0.35, 0.65, (0.30, 0.50, 0.20), -0.5),
    "partner": _ChannelProfile(0.08, 0.90, (1.0, 7.3), 0.20, 0.50, 0.40, (0.50, 0.35, 0.15), -0.1),
}
PURCHASE_CHANNELS = ("store", "online", "app")
ONLINE_STORE, APP_STORE = "Webshop", "Mobile app"

# Purchases per month while alive: gamma(shape, scale), mean 1.2.
RATE_SHAPE, RATE_SCALE = 1.6, 0.75
# Gamma-Gamma spend: purchase ~ gamma(p, rate nu), nu ~ gamma(q, rate gamma): mean p*gamma/(q-1) = 42.
SPEND_P, SPEND_Q, SPEND_GAMMA = 6.0, 3.5, 17.5
MIN_AMOUNT = 1.0

CATEGORIES = ("grocery", "fashion", "home", "beauty", "electronics", "sports", "eco-friendly", "toys")
CATEGORY_SHARE = np.array([0.34, 0.14, 0.12, 0.10, 0.07, 0.07, 0.10, 0.06])
CATEGORY_PRICE = np.array([0.60, 1.30, 1.40, 0.90, 2.60, 1.20, 0.95, 1.00])
REFUND_RATE = np.array([0.004, 0.05, 0.02, 0.01, 0.05, 0.02, 0.01, 0.02])
ECO_MEMBER_SHARE = 0.25  # members who lean to the eco-friendly range...
ECO_SHARE_FOR_ECO_MEMBERS = 0.30  # ...and buy it this often

# Purchase rate by calendar month: December peak, summer dip. Joins follow it too.
SEASON = np.array([0.90, 0.92, 1.00, 1.00, 1.02, 0.93, 0.85, 0.82, 1.00, 1.03, 1.15, 1.45])
JOIN_GROWTH = (0.6, 1.4)  # join rate at the start and the end of the history: a growing program

CITIES: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("Amsterdam", 0.20, ("Amsterdam Centrum", "Amsterdam Zuid")),
    ("Rotterdam", 0.15, ("Rotterdam Lijnbaan", "Rotterdam Alexandrium")),
    ("The Hague", 0.11, ("The Hague Centrum",)),
    ("Utrecht", 0.11, ("Utrecht Hoog Catharijne",)),
    ("Eindhoven", 0.08, ("Eindhoven Piazza",)),
    ("Groningen", 0.07, ("Groningen Herestraat",)),
    ("Antwerp", 0.09, ("Antwerp Meir",)),
    ("Brussels", 0.08, ("Brussels Louise",)),
    ("Ghent", 0.05, ("Ghent Veldstraat",)),
    ("Maastricht", 0.06, ("Maastricht Entre Deux",)),
)
HOME_STORE_SHARE = 0.85

FIRST_NAMES = (
    "Emma", "Noah", "Sophie", "Liam", "Julia", "Lucas", "Mila", "Daan", "Tess", "Sem", "Zoë", "Finn", "Sara",
    "Levi", "Anna", "Milan", "Eva", "Jesse", "Nora", "Luuk", "Lotte", "Thomas", "Fleur", "Ruben", "Lisa",
    "Bram", "Iris", "Max", "Yara", "Adam", "Fatima", "Mohammed", "Aisha", "Omar", "Lina", "Ravi", "Mei",
    "Ahmet", "Elif", "Jan",
)
LAST_NAMES = (
    "de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Janssen", "Visser", "Smit",
    "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters", "Hendriks", "van Leeuwen", "Dekker",
    "Brouwer", "Peeters", "Maes", "Jacobs", "Willems", "Claes", "Goossens", "Wouters", "De Smet", "Dubois",
    "Lambert", "Yilmaz", "El Amrani", "Kaya", "Nguyen", "Singh", "Chen", "Silva", "Kowalski", "Novak", "Rossi",
)


@dataclass(frozen=True)
class _RewardPlan:
    name: str
    kind: str
    points_cost: int
    weight: float  # how popular, among the rewards a member can afford
    stock_per_1000: float | None = None  # stock per 1,000 members; None: unlimited
    min_tier: str | None = None
    partner: str = ""
    window: str | None = None  # "summer": last full summer only; "recent": the last six months
    active: bool = True
    description: str = ""


REWARDS: tuple[_RewardPlan, ...] = (
    _RewardPlan("Free coffee", "product", 200, 4.0, description="A coffee of your choice in any store café."),
    _RewardPlan("Plant a tree", "donation", 250, 3.0, description="We plant a tree with our reforestation partner."),
    _RewardPlan("Reusable tote bag", "product", 350, 3.0, stock_per_1000=6, description="Organic cotton, made to last."),
    _RewardPlan("5 EUR discount voucher", "discount", 500, 10.0, description="5 EUR off your next purchase."),
    _RewardPlan("Early access to the seasonal sale", "exclusive_access", 800, 2.0,
                description="Shop the sale a day before everyone else."),
    _RewardPlan("10 EUR discount voucher", "discount", 900, 8.0, description="10 EUR off your next purchase."),
    _RewardPlan("Ocean clean-up donation", "donation", 1000, 2.0,
                description="Your points fund one kilogram of plastic removed from the sea."),
    _RewardPlan("Cinema ticket", "partner", 1200, 3.0, partner="Pathé", description="One ticket for any film."),
    _RewardPlan("Summer picnic basket", "product", 1500, 3.0, stock_per_1000=3, window="summer", active=False,
                description="A seasonal reward; back next summer."),
    _RewardPlan("Bamboo kitchen set", "product", 1800, 2.0, stock_per_1000=4, description="Plastic-free kitchen utensils."),
    _RewardPlan("500 airline miles", "partner", 2000, 1.5, partner="SkyFlyer", description="Miles on your frequent-flyer account."),
    _RewardPlan("25 EUR discount voucher", "discount", 2200, 4.0, description="25 EUR off your next purchase."),
    _RewardPlan("VIP shopping evening", "exclusive_access", 2500, 6.0, stock_per_1000=5, min_tier="Gold",
                description="An evening in store with a personal shopper, for Gold and Platinum members."),
    _RewardPlan("Cooking workshop", "experience", 3500, 1.5, stock_per_1000=3, description="Three hours with a chef, for two."),
    _RewardPlan("Wireless earbuds", "product", 6000, 1.0, stock_per_1000=2),
    _RewardPlan("Concert tickets for two", "experience", 8000, 1.0, stock_per_1000=1, window="recent"),
    _RewardPlan("Premium gift box", "product", 10000, 1.0, stock_per_1000=1, description="Our finest products in one box."),
)
# Members who can afford a bigger reward lean to it: weight x (cost / cheapest) ** this.
VALUE_PREFERENCE = 0.5
REDEEM_PROPENSITY_ACTIVE = 0.20  # per month, for a member still buying who can afford a reward
REDEEM_PROPENSITY_LAPSED = 0.03  # members who stopped buying mostly let their points expire
CANCEL_SHARE = 0.03
FULFIL_DAYS = (1, 6)
CANCEL_NOTES = ("member changed their mind", "item damaged in transit", "member unreachable for delivery")
HANDLED_BY = "operations"


@dataclass(frozen=True)
class _CampaignPlan:
    name: str
    kind: str
    rule: dict[str, Any]
    months_back: int  # starts on the 1st of the month this many months before the current one
    days: int
    uplift: float  # extra purchase rate of treatment members during the campaign (birthday: in its week)
    eligibility: dict[str, Any] = field(default_factory=dict)
    holdout_pct: float = 0.10
    # Points budget per member of the program: about twice what the campaign awards,
    # except the spend-threshold push, whose budget runs out.
    budget_per_member: float | None = None
    revive: float = 0.0  # share of churned treatment members a win-back brings back
    channels: tuple[str, ...] = ("email", "app")
    description: str = ""
    lifecycle: str = "run"  # "run": ended or active by its dates; "schedule": activated now; "draft"


CAMPAIGNS: tuple[_CampaignPlan, ...] = (
    _CampaignPlan("Spring double points", "multiplier", {"multiplier": 2.0}, 20, 14, 0.20, budget_per_member=4,
                  description="Double points on every purchase for two weeks."),
    _CampaignPlan("We miss you: 300 points to come back", "win_back", {"inactive_days": 90, "points": 300}, 15, 42, 0.20,
                  revive=0.08, budget_per_member=4, channels=("email", "sms"),
                  description="Members without a purchase in 90 days get 300 points on their next one."),
    _CampaignPlan("Eco month: double points on eco-friendly", "category_bonus",
                  {"categories": ["eco-friendly"], "multiplier": 2.0}, 11, 30, 0.20, budget_per_member=6,
                  channels=("email", "app", "in-store"), description="Double points on the eco-friendly range."),
    _CampaignPlan("Birthday treat", "birthday", {"points": 200, "window_days": 7, "occasion": "birthday"}, 9, 400, 0.50,
                  budget_per_member=25, description="200 points on a purchase in the week of your birthday."),
    _CampaignPlan("Spend 150 EUR, get 500 points", "spend_threshold", {"spend": 150, "points": 500}, 5, 30, 0.20,
                  eligibility={"tiers": ["Bronze", "Silver"]}, holdout_pct=0.15, budget_per_member=8,
                  description="A push for Bronze and Silver members; the budget runs out before the end."),
    _CampaignPlan("App week: double points in the app", "multiplier", {"multiplier": 2.0}, 3, 10, 0.20,
                  eligibility={"acquisition_channels": ["app", "web"], "purchase_channels": ["app"]},
                  budget_per_member=2, channels=("app",), description="Double points on purchases made in the app."),
    _CampaignPlan("Gold and Platinum: 1.5x points", "tier_offer", {"multiplier": 1.5}, 0, 45, 0.20,
                  eligibility={"tiers": ["Gold", "Platinum"]}, budget_per_member=8,
                  description="Extra points for the top tiers this season."),
    _CampaignPlan("Double points month", "multiplier", {"multiplier": 2.0}, -1, 31, 0.0, budget_per_member=6,
                  lifecycle="schedule", description="Next month: double points for everyone."),
    _CampaignPlan("Referral thank-you bonus", "fixed_bonus", {"points": 100, "min_amount": 20}, -2, 60, 0.0,
                  eligibility={"acquisition_channels": ["referral"]}, lifecycle="draft",
                  description="Draft: 100 points per purchase over 20 EUR for referred members."),
)

SEGMENTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("Referred members", "Members who joined through a referral.", {"acquisition_channel": ["referral"]}),
    ("Social-ads recruits", "Members recruited by social-media advertising.", {"acquisition_channel": ["social_ads"]}),
    ("Lapsing: no purchase in 90 days", "Members whose last purchase is 90 days old or more.",
     {"days_since_last_purchase": {"min": 90}}),
    ("Gold and Platinum", "The top tiers.", {"tier": ["Gold", "Platinum"]}),
    ("Active with marketing consent", "Bought in the last 30 days and may be contacted.",
     {"marketing_consent": True, "days_since_last_purchase": {"max": 30}}),
    ("Big spenders", "Over 1,500 EUR spent in total.", {"spend": {"min": 1500}}),
)


@dataclass(frozen=True)
class _TargetPlan:
    metric: str
    period: str
    how: str  # "times": baseline x amount; "plus": baseline + amount
    amount: float
    segment: str | None = None


GOALS: tuple[tuple[str, str, str, str, str, tuple[_TargetPlan, ...]], ...] = (
    ("Grow membership", "grow_membership", "Loyalty manager", "monthly",
     "Recruit where members stay (referral, app) rather than through social ads.",
     (_TargetPlan("new_members", "month", "times", 1.10), _TargetPlan("active_members", "month", "times", 1.05))),
    ("Raise sales", "raise_sales", "Loyalty manager", "monthly",
     "Bigger baskets and more visits from existing members: category bonuses and tier offers.",
     (_TargetPlan("average_transaction_value", "month", "times", 1.05),
      _TargetPlan("purchase_frequency", "month", "times", 1.05),
      _TargetPlan("revenue_per_member", "quarter", "times", 1.05),
      _TargetPlan("historical_clv", "quarter", "times", 1.08))),
    ("Win back lapsing members", "win_back", "CRM lead", "monthly",
     "Win-back offers to members inactive for 90 days; watch retention of social-ads recruits.",
     (_TargetPlan("retention_rate", "month", "times", 1.05),
      _TargetPlan("retention_rate", "month", "times", 1.15, segment="Social-ads recruits"),
      _TargetPlan("repeat_purchase_rate", "month", "times", 1.05))),
    ("Delight members", "satisfaction", "Customer service lead", "quarterly",
     "Answer every detractor's comment within a week; fix delivery complaints first.",
     (_TargetPlan("nps", "quarter", "plus", 5.0),)),
    ("Keep liability in check", "liability", "Finance controller", "quarterly",
     "Make rewards reachable so points are redeemed rather than piling up.",
     (_TargetPlan("points_outstanding", "month", "times", 0.90), _TargetPlan("redemption_rate", "month", "times", 1.10))),
)

# Metrics where lower is better; every other target is "up".
TARGET_DIRECTIONS = {"points_outstanding": "down"}

# NPS answers: who is asked, and what they say.
SURVEY_RATE_BUYERS = 0.04  # per month, of members who bought (a survey after the visit)
SURVEY_RATE_OTHERS = 0.006  # per month, of members who did not (an e-mail survey)
SCORE_BASE, SCORE_SPREAD = 7.7, 1.4
SCORE_TREND = 0.5  # answers improve over the history: something for the NPS goal to show
COMMENT_SHARE = 0.45
COMMENTS = {
    "promoter": (
        "Love the rewards, the free coffee is a nice touch.",
        "Staff are always friendly and the app makes collecting points easy.",
        "Great selection of eco-friendly products.",
        "Double points weeks are the best, I plan my shopping around them.",
        "The birthday bonus was a lovely surprise.",
        "Quick delivery and easy returns.",
    ),
    "passive": (
        "Good shop, but the rewards take a long time to reach.",
        "Fine overall. Prices could be lower.",
        "The app is okay but sometimes slow.",
        "I would like more rewards between 500 and 1,000 points.",
        "Decent, nothing special.",
    ),
    "detractor": (
        "My points expired before I could use them.",
        "Delivery was late twice this month.",
        "Checkout queues are far too long on Saturdays.",
        "The reward I wanted was out of stock.",
        "Customer service never answered my e-mail.",
        "Too expensive compared to other shops.",
    ),
}


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
        summary = _Simulation(session, members=members, months=months, seed=seed, actor=actor, now=now,
                              redemptions=redemptions, progress=progress).run()
    summary["seconds"] = round(time.perf_counter() - started, 2)
    if actor.can("users.manage"):
        # After the commit: create_user commits on its own, which would end the demo's
        # transaction half-way.
        from loyalty.access.users import create_demo_users

        summary["users"] = [{"username": u.username, "role": u.role, "password": u.password}
                            for u in create_demo_users(session, actor=actor)]
    return summary


def _refuse_unless_empty(session: Session) -> None:
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
        raise InvalidInput(f"The database already has a program configured ({', '.join(present)}): "
                           "the demo program only fills an empty one.")


# --- helpers -------------------------------------------------------------------------------


def _seconds(moment: datetime | pd.Timestamp) -> int:
    return int(pd.Timestamp(moment).timestamp())


def _timestamps(seconds: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(np.asarray(seconds, dtype=np.int64), unit="s", utc=True))


def _moment(seconds: int) -> datetime:
    return datetime.fromtimestamp(int(seconds), tz=UTC)


def _month_boundaries(now: datetime, months: int) -> np.ndarray:
    """History start, every 1st of the month after it, and ``now`` (epoch seconds)."""
    start = pd.Timestamp(now) - pd.DateOffset(months=months)
    first = start.normalize().replace(day=1) + pd.DateOffset(months=1)
    month_starts = pd.date_range(first, pd.Timestamp(now), freq="MS", inclusive="left")
    return np.array([_seconds(start), *(_seconds(t) for t in month_starts), _seconds(now)], dtype=np.int64)


def _shop_times(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A moment per row in ``(lo, hi)``, squeezed into shop hours, to the second.

    Where shop hours fall outside the window (a member joining at 20:00, the history
    ending at 09:00) the uniform moment is kept, rather than piling rows on the edge.
    """
    raw = np.clip(lo + (rng.random(len(lo)) * (hi - lo)).astype(np.int64), lo + 1, hi - 1)
    day = raw - raw % DAY
    moment = day + OPENING + ((raw - day) * (CLOSING - OPENING)) // DAY
    return np.where((moment > lo) & (moment < hi), moment, raw)


def _choose(rng: np.random.Generator, probabilities: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One choice per row, drawn with the weights ``probabilities[rows[i]]``."""
    cumulative = np.cumsum(probabilities, axis=1)
    cumulative /= cumulative[:, -1:]
    u = rng.random(len(rows))
    return np.minimum((u[:, None] > cumulative[rows]).sum(axis=1), probabilities.shape[1] - 1)


def _objects(values: tuple[str, ...] | list[str]) -> np.ndarray:
    return np.asarray(values, dtype=object)


# --- the simulation ----------------------------------------------------------------------------


@dataclass
class _Month:
    """What one simulated month produced, for the goals' baselines."""

    new_members: int = 0
    active: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # per member: bought this month
    purchases: int = 0
    revenue: float = 0.0
    repeat_buyers: int = 0
    earned: int = 0
    redeemed: int = 0
    scores: list[np.ndarray] = field(default_factory=list)


class _Simulation:
    def __init__(self, session: Session, *, members: int, months: int, seed: int, actor: Actor, now: datetime,
                 redemptions: bool, progress: ProgressFn | None) -> None:
        self.session, self.actor, self.now = session, actor, now
        self.n = members
        self.redemptions_on = redemptions
        self.progress = progress
        self.rng = np.random.default_rng(seed)
        settings = get_settings(session)
        self.rate = float(settings.points_per_currency_unit)
        self.expiry_months = int(settings.expiry_months)
        self.b = _month_boundaries(now, months)
        self.intervals = len(self.b) - 1
        self.calendar_month = np.array([pd.Timestamp(_moment(s)).month for s in self.b[:-1]]) - 1
        self.month_first = np.array([_seconds(pd.Timestamp(_moment(s)).normalize().replace(day=1)) for s in self.b[:-1]])
        self.counts: dict[str, int] = {"purchases": 0, "ledger_entries": 0, "redemptions": 0, "feedback": 0,
                                       "refunds": 0, "tier_movements": 0, "campaign_assignments": 0}
        self.next_purchase_number = 1
        self.monthly: list[_Month] = []

    # -- orchestration --------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        total = self.intervals + 2
        self._configure()
        self._make_members()
        self._report(1, total)
        for k in range(self.intervals):
            if k > 0:
                self._boundary(k)
            self._month(k)
            self._report(k + 2, total)
        self._finish()
        self._report(total, total)
        return {
            "members": self.n,
            "purchases": self.counts["purchases"],
            "ledger_entries": self.counts["ledger_entries"],
            "redemptions": self.counts["redemptions"],
            "feedback": self.counts["feedback"],
            "campaigns": len(self.campaigns),
            "rewards": len(self.reward_ids),
            "tiers": len(self.tier_ids),
            "goals": self.goal_count,
            "kpi_targets": self.target_count,
            "segments": len(self.segment_ids),
            "refunds": self.counts["refunds"],
            "tier_movements": self.counts["tier_movements"],
            "campaign_assignments": self.counts["campaign_assignments"],
            "points_outstanding": self.points_outstanding,
        }

    def _report(self, done: int, total: int) -> None:
        if self.progress:
            self.progress(done, total)

    # -- configuration --------------------------------------------------------------

    def _configure(self) -> None:
        session, actor = self.session, self.actor
        save_tiers(session=session, tiers=[dict(t) for t in TIERS], actor=actor)
        tiers = session.exec(select(Tier).order_by(col(Tier.rank))).all()
        self.tier_ids = np.array([t.id for t in tiers], dtype=np.int64)
        self.tier_names = [t.name for t in tiers]
        self.tier_multiplier = np.array([t.multiplier for t in tiers], dtype=np.float64)
        self.tier_min_spend = np.array([t.min_spend for t in tiers], dtype=np.float64)
        self.tier_min_purchases = np.array([t.min_purchases for t in tiers], dtype=np.int64)
        self.tier_grace = np.array([t.grace_months for t in tiers], dtype=np.int64)
        rank_of = {t.name: i for i, t in enumerate(tiers)}
        self._configure_rewards(rank_of)
        self._plan_campaigns()

    def _configure_rewards(self, rank_of: dict[str, int]) -> None:
        b, last = self.b, self.intervals
        summer = self._last_full_summer()
        recent_from = max(1, last - 6)
        ids, costs, weights, stock, min_rank, available = [], [], [], [], [], []
        for plan in REWARDS:
            window: tuple[int, int] = (0, last)  # months [from, until) in which it can be redeemed
            window_fields: dict[str, Any] = {}
            if plan.window == "summer" and summer is not None:
                window = summer
                window_fields = {"available_from": _moment(b[summer[0]]), "available_until": _moment(b[summer[1]])}
            elif plan.window == "summer":
                window = (0, 0)
            elif plan.window == "recent":
                window = (recent_from, last)
                window_fields = {"available_from": _moment(b[recent_from])}
            units = None if plan.stock_per_1000 is None else max(1, round(plan.stock_per_1000 * self.n / 1000))
            reward = save_reward(
                session=self.session, actor=self.actor, name=plan.name, kind=plan.kind, description=plan.description,
                points_cost=plan.points_cost, stock=units, partner=plan.partner, active=plan.active,
                min_tier_id=int(self.tier_ids[rank_of[plan.min_tier]]) if plan.min_tier else None, **window_fields,
            )
            ids.append(reward.id)
            costs.append(plan.points_cost)
            weights.append(plan.weight)
            stock.append(-1 if units is None else units)
            min_rank.append(rank_of[plan.min_tier] if plan.min_tier else 0)
            open_months = np.zeros(last, dtype=bool)
            open_months[window[0]:window[1]] = True
            available.append(open_months)
        self.reward_ids = np.array(ids, dtype=np.int64)
        self.reward_names = _objects([p.name for p in REWARDS])
        self.reward_cost = np.array(costs, dtype=np.int64)
        self.reward_weight = np.array(weights, dtype=np.float64)
        self.reward_stock = np.array(stock, dtype=np.int64)  # -1: unlimited
        self.reward_min_rank = np.array(min_rank, dtype=np.int64)
        self.reward_available = np.array(available)  # rewards x months

    def _last_full_summer(self) -> tuple[int, int] | None:
        """Intervals of the last June-August fully inside the history."""
        for k in range(self.intervals - 3, 0, -1):
            if self.calendar_month[k] == 5 and k + 3 < len(self.b) - 1:
                return k, k + 3
        return None

    def _plan_campaigns(self) -> None:
        """Create the campaigns (validated drafts) whose start falls inside the history.

        Their status is set now, before any purchase: the earn engine then awards their
        bonuses as the history's purchases are added, from the assignments written at
        each campaign's start.
        """
        current = self.intervals - 1  # the interval starting on the 1st of the current month
        self.campaigns: list[tuple[Campaign, _CampaignPlan, int]] = []
        for plan in CAMPAIGNS:
            start_index = current - plan.months_back
            if plan.months_back >= 0 and start_index < 1:
                continue  # the history is too short for it
            if plan.months_back >= 0:
                starts_at = _moment(self.b[start_index])
            else:
                starts_at = (pd.Timestamp(self.b[-2], unit="s", tz="UTC") + pd.DateOffset(months=-plan.months_back)).to_pydatetime()
            ends_at = starts_at + timedelta(days=plan.days)
            campaign = save_campaign(
                session=self.session, actor=self.actor, name=plan.name, kind=plan.kind, description=plan.description,
                starts_at=starts_at, ends_at=ends_at, channels=list(plan.channels), eligibility=dict(plan.eligibility),
                rule=dict(plan.rule), holdout_pct=plan.holdout_pct,
                budget_points=int(plan.budget_per_member * self.n) if plan.budget_per_member else None,
            )
            if plan.lifecycle == "run":
                campaign.status = "ended" if campaign.ends_at <= self.now else "active"
                self.session.add(campaign)
            self.campaigns.append((campaign, plan, start_index if plan.lifecycle == "run" else -1))
        self.session.flush()
        self.treated: dict[int, np.ndarray] = {}

    # -- members ----------------------------------------------------------------------

    def _make_members(self) -> None:
        rng, n, b = self.rng, self.n, self.b
        names = list(ACQUISITION_CHANNELS)
        profiles = list(ACQUISITION_CHANNELS.values())
        shares = np.array([p.share for p in profiles])
        channel = rng.choice(len(names), size=n, p=shares / shares.sum())

        # Joins: a growing program, more joins in busy months.
        lengths = np.diff(b).astype(np.float64)
        middle = (b[:-1] + b[1:]) / 2
        growth = JOIN_GROWTH[0] + (JOIN_GROWTH[1] - JOIN_GROWTH[0]) * (middle - b[0]) / (b[-1] - b[0])
        weight = lengths * growth * SEASON[self.calendar_month]
        month = rng.choice(self.intervals, size=n, p=weight / weight.sum())
        lo, hi = b[month], np.minimum(b[month + 1], b[-1] - MIN_WINDOW)
        joined = _shop_times(rng, lo, np.maximum(hi, lo + 2))
        order = np.argsort(joined, kind="stable")  # M0000001 is the first member to join
        self.joined, self.channel = joined[order], channel[order]
        self.join_month = np.searchsorted(b, self.joined, side="right") - 1

        ch = self.channel
        rate_factor = np.array([p.rate for p in profiles])[ch]
        self.rate_per_month = rng.gamma(RATE_SHAPE, RATE_SCALE, size=n) * rate_factor
        dropout_a = np.array([p.dropout[0] for p in profiles])[ch]
        dropout_b = np.array([p.dropout[1] for p in profiles])[ch]
        self.dropout = np.clip(rng.beta(dropout_a, dropout_b), 1e-4, 0.95)
        self.spend_rate = rng.gamma(SPEND_Q, 1.0 / SPEND_GAMMA, size=n)  # nu of the Gamma-Gamma model
        self.never_buys = rng.random(n) < np.array([p.never_buys for p in profiles])[ch]
        self.buys_at_join = ~self.never_buys & (rng.random(n) < np.array([p.buys_at_join for p in profiles])[ch])
        self.eco = rng.random(n) < ECO_MEMBER_SHARE
        self.satisfaction = (0.4 * (np.log(self.rate_per_month) - np.log(RATE_SHAPE * RATE_SCALE))
                             + rng.normal(0.0, 1.0, size=n) + np.array([p.satisfaction for p in profiles])[ch])
        consent = rng.random(n) < np.array([p.consent for p in profiles])[ch]
        city_share = np.array([c[1] for c in CITIES])
        city = rng.choice(len(CITIES), size=n, p=city_share / city_share.sum())
        stores = [s for c in CITIES for s in c[2]]
        city_first_store = np.cumsum([0] + [len(c[2]) for c in CITIES])[:-1]
        city_store_count = np.array([len(c[2]) for c in CITIES])
        self.home_store = city_first_store[city] + (rng.random(n) * city_store_count[city]).astype(np.int64)
        self.store_names = _objects(stores)
        self.purchase_channel_probs = np.array([p.purchase_channels for p in profiles])
        age_days = np.clip(rng.normal(41.0, 13.0, size=n), 18.0, 85.0) * 365.25
        birth = (pd.Timestamp(self.now).tz_localize(None).normalize() - pd.to_timedelta(age_days.astype(np.int64), unit="D"))
        self.birth_month = birth.month.to_numpy() - 1
        # As the earn engine does: a 29 February birthday is kept on the 28th.
        self.birth_day = np.where((self.birth_month == 1) & (birth.day.to_numpy() == 29), 28, birth.day.to_numpy())
        first = rng.integers(0, len(FIRST_NAMES), size=n)
        last = rng.integers(0, len(LAST_NAMES), size=n)

        self.member_ids = allocate_ids(self.session, "member", n)
        number = np.arange(1, n + 1)
        first_names, last_names = _objects(FIRST_NAMES)[first], _objects(LAST_NAMES)[last]
        frame = pd.DataFrame({
            "id": self.member_ids,
            "external_id": [f"M{i:07d}" for i in number],
            "name": first_names + " " + last_names,
            "email": [f"{f}.{s}.{i}@example.com".lower().replace(" ", "").replace("ë", "e")
                      for f, s, i in zip(first_names, last_names, number)],
            "phone": "",
            "joined_at": _timestamps(self.joined),
            "acquisition_channel": _objects(names)[ch],
            "birth_date": pd.Series(birth).dt.date.to_numpy(),
            "city": _objects([c[0] for c in CITIES])[city],
            "marketing_consent": consent,
            "tier_id": int(self.tier_ids[0]),
            "tier_since": _timestamps(self.joined),
            "created_at": pd.Timestamp(utcnow()),
        })
        insert_frame(self.session, "member", frame)

        # State carried from month to month.
        self.alive = ~self.never_buys
        self.has_bought = np.zeros(n, dtype=bool)
        self.last_purchase = np.full(n, -1, dtype=np.int64)
        self.tier = np.zeros(n, dtype=np.int64)
        self.tier_reached = np.zeros(n, dtype=np.int64)  # boundary index of tier_since (Bronze never drops)
        self.window_spend = np.zeros((12, n), dtype=np.float64)  # per month, the tier window
        self.window_count = np.zeros((12, n), dtype=np.int32)
        slots = max(self.expiry_months + 1, 1)
        self.lots = np.zeros((slots, n), dtype=np.int64)  # per month, lots not yet due
        self.due = np.zeros(n, dtype=np.int64)  # P: lots whose expiry has passed
        self.credited = np.zeros(n, dtype=np.int64)  # every lot ever
        self.debited = np.zeros(n, dtype=np.int64)  # D: every debit (redeem, reverse, expire)

    # -- month boundaries -----------------------------------------------------------

    def _boundary(self, j: int) -> None:
        moment = int(self.b[j])
        if self.expiry_months > 0 and j - self.expiry_months - 1 >= 0:
            self.due += self.lots[(j - self.expiry_months - 1) % len(self.lots)]
            expired = np.maximum(0, self.due - self.debited)
            who = np.flatnonzero(expired)
            if len(who):
                self.debited[who] += expired[who]
                self._ledger(pd.DataFrame({
                    "member_id": self.member_ids[who], "kind": EXPIRE, "points": -expired[who],
                    "occurred_at": _timestamps(np.full(len(who), moment)), "reason": "lots past their expiry date",
                }))
        self._evaluate_tiers(j, moment)
        for campaign, plan, start_index in self.campaigns:
            if start_index == j:
                self._assign(campaign, plan, moment)

    def _evaluate_tiers(self, j: int, moment: int) -> None:
        """The monthly tier evaluation, by the rule of ``loyalty.evaluation.kpis``'s job.

        Upgrades at once; a downgrade only once the tier's grace period, counted from
        the day the member reached it, is over. Movements read as the job writes them.
        """
        member = np.flatnonzero(self.joined < moment)
        if not len(member):
            return
        spend = self.window_spend.sum(axis=0)[member]
        count = self.window_count.sum(axis=0)[member]
        qualified = np.maximum(qualifying_tier_index(spend, count, self.tier_min_spend, self.tier_min_purchases), 0)
        current = self.tier[member]
        # Boundaries are 1sts of the month, so "tier_since + grace months" is a boundary index.
        down = (qualified < current) & (j >= self.tier_reached[member] + self.tier_grace[current])
        moved = (qualified > current) | down
        if not moved.any():
            return
        who, old, new = member[moved], current[moved], qualified[moved]
        self.tier[who] = new
        self.tier_reached[who] = j
        names = _objects(self.tier_names)
        bought = pd.Series(count[moved])
        lead = ("spent " + pd.Series(spend[moved]).map("{:,.2f}".format) + " and bought "
                + pd.Series(np.where(bought == 1, "once", bought.astype(str) + " times")) + " in the last 12 months")
        needs = (" (needs " + pd.Series(self.tier_min_spend[old]).map("{:,.2f}".format) + " and "
                 + pd.Series(self.tier_min_purchases[old]).astype(str) + " purchases)")
        grace = pd.Series(np.where(self.tier_grace[old] > 0,
                                   " and its " + pd.Series(self.tier_grace[old]).astype(str) + "-month grace period is over", ""))
        reason = pd.Series(np.where(
            new > old,
            (lead + ": qualifies for " + pd.Series(names[new])).to_numpy(),
            (lead + ": below " + pd.Series(names[old]) + needs + grace + ": moves to " + pd.Series(names[new])).to_numpy(),
        ))
        when = _moment(moment)
        insert_frame(self.session, "tier_movement", pd.DataFrame({
            "member_id": self.member_ids[who], "from_tier_id": self.tier_ids[old], "to_tier_id": self.tier_ids[new],
            "moved_at": _timestamps(np.full(len(who), moment)), "reason": reason.to_numpy(),
            # As the job: an evaluation as of day D takes effect at D + 1, 00:00 UTC.
            "as_of": np.full(len(who), (when - timedelta(days=1)).date(), dtype=object),
        }))
        self.counts["tier_movements"] += len(who)
        table = Member.__table__  # type: ignore[attr-defined]  # set by SQLModel at class creation, not in its stubs
        self.session.execute(
            update(table).where(table.c.id == bindparam("member")).values(tier_id=bindparam("tier"), tier_since=bindparam("since")),
            [{"member": int(m), "tier": int(t), "since": when} for m, t in zip(self.member_ids[who], self.tier_ids[new])],
        )

    def _eligible(self, plan: _CampaignPlan, moment: int) -> np.ndarray:
        """Member indexes eligible at the campaign's start (as ``campaigns.eligible_members``)."""
        ok = self.joined < moment
        rules = plan.eligibility
        if rules.get("tiers"):
            ok &= np.isin(self.tier, [self.tier_names.index(t) for t in rules["tiers"]])
        if rules.get("acquisition_channels"):
            ok &= np.isin(self.channel, [list(ACQUISITION_CHANNELS).index(c) for c in rules["acquisition_channels"]])
        if plan.kind == "win_back":
            inactive = moment - int(plan.rule["inactive_days"]) * DAY
            ok &= self.has_bought & (self.last_purchase < inactive)
        return np.flatnonzero(ok)

    def _assign(self, campaign: Campaign, plan: _CampaignPlan, moment: int) -> None:
        member = self._eligible(plan, moment)
        holdout = stable_uniform(stored_id(campaign), self.member_ids[member]) < campaign.holdout_pct
        insert_frame(self.session, "campaign_assignment", pd.DataFrame({
            "campaign_id": stored_id(campaign), "member_id": self.member_ids[member],
            "group": np.where(holdout, "holdout", "treatment"), "assigned_at": _timestamps(np.full(len(member), moment)),
        }))
        self.counts["campaign_assignments"] += len(member)
        treated = member[~holdout]
        self.treated[stored_id(campaign)] = treated
        if plan.revive:
            # A win-back brings some lapsed members back; the holdout shows how many
            # would have come back anyway (none, here).
            lapsed = treated[~self.alive[treated] & ~self.never_buys[treated]]
            self.alive[lapsed[self.rng.random(len(lapsed)) < plan.revive]] = True

    # -- one month ----------------------------------------------------------------------

    def _month(self, k: int) -> None:
        month_start, month_end = int(self.b[k]), int(self.b[k + 1])
        lo = np.maximum(month_start, self.joined)
        present = (self.joined < month_end) & (month_end - lo >= MIN_WINDOW)
        stats = _Month(new_members=int((self.join_month == k).sum()), active=np.zeros(self.n, dtype=bool))
        self.month_lots = np.zeros(self.n, dtype=np.int64)
        self.last_of_month = np.full(self.n, -1, dtype=np.int64)
        self.window_spend[k % 12] = 0.0
        self.window_count[k % 12] = 0

        member, moment = self._candidates(k, lo, present, month_start, month_end)
        member, moment = self._dropout(member, moment)
        order = np.lexsort((member, moment))  # time order: purchase ids grow with time
        if len(member):
            self._purchases(k, stats, member[order], moment[order], month_end)

        # Each member's remaining events of the month come after their last purchase.
        settle_from = np.where(self.last_of_month >= 0, self.last_of_month, lo)
        if self.redemptions_on:
            self._redeem(k, stats, settle_from, month_end, present)
        self._feedback(k, stats, settle_from, month_end, lo, present)
        self.lots[k % len(self.lots)] = self.month_lots
        self.credited += self.month_lots
        self.monthly.append(stats)

    def _candidates(self, k: int, lo: np.ndarray, present: np.ndarray, month_start: int,
                    month_end: int) -> tuple[np.ndarray, np.ndarray]:
        """Purchases before dropout: the visit at enrolment, the member's own rate, campaign uplift."""
        rng = self.rng
        season = SEASON[self.calendar_month[k]]
        members, times = [], []
        joining = np.flatnonzero((self.join_month == k) & self.buys_at_join & present)
        members.append(joining)
        times.append(self.joined[joining] + rng.integers(60, 1800, size=len(joining)))
        buying = np.flatnonzero(self.alive & present)
        expected = self.rate_per_month[buying] * season * (month_end - lo[buying]) / MONTH
        self._add_candidates(members, times, buying, rng.poisson(expected), lo[buying], np.full(len(buying), month_end))
        for campaign, plan, _ in self.campaigns:
            treated = self.treated.get(stored_id(campaign))
            start, end = _seconds(campaign.starts_at), _seconds(campaign.ends_at)
            if treated is None or end <= month_start or start >= month_end:
                continue
            # Extra purchases inside the campaign's own window: the uplift a holdout
            # comparison later measures.
            treated = treated[self.alive[treated] & present[treated]]
            window_lo = np.maximum(lo[treated], start)
            window_hi = np.full(len(treated), min(month_end, end))
            if plan.kind == "birthday":
                # Only around the birthday, where the bonus is earned (the part of that
                # week falling in the next or previous month is left out).
                treated = treated[self.birth_month[treated] == self.calendar_month[k]]
                birthday = self.month_first[k] + (self.birth_day[treated] - 1) * DAY
                days = int(plan.rule["window_days"]) * DAY
                window_lo = np.maximum(np.maximum(lo[treated], start), birthday - days)
                window_hi = np.minimum(min(month_end, end), birthday + days + DAY)
            room = window_hi - window_lo >= MIN_WINDOW
            treated, window_lo, window_hi = treated[room], window_lo[room], window_hi[room]
            extra = self.rate_per_month[treated] * season * plan.uplift * (window_hi - window_lo) / MONTH
            self._add_candidates(members, times, treated, rng.poisson(extra), window_lo, window_hi)
        return np.concatenate(members), np.concatenate(times)

    def _add_candidates(self, members: list[np.ndarray], times: list[np.ndarray], who: np.ndarray, count: np.ndarray,
                        lo: np.ndarray, hi: np.ndarray) -> None:
        rows = np.repeat(np.arange(len(who)), count)
        members.append(who[rows])
        times.append(_shop_times(self.rng, lo[rows], hi[rows]))

    def _dropout(self, member: np.ndarray, moment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """BG/NBD: after each repeat purchase the member leaves with probability ``dropout``."""
        order = np.lexsort((moment, member))
        member, moment = member[order], moment[order]
        n_candidates = np.bincount(member, minlength=self.n)
        first_ever = (~self.has_bought & (n_candidates > 0)).astype(np.int64)
        repeats = n_candidates - first_ever
        who = np.flatnonzero(repeats > 0)
        leaves_after = self.rng.geometric(self.dropout[who])
        leaves = leaves_after <= repeats[who]
        keep = n_candidates.copy()
        keep[who[leaves]] = first_ever[who[leaves]] + leaves_after[leaves]
        self.alive[who[leaves]] = False
        starts = np.cumsum(n_candidates) - n_candidates
        rank = np.arange(len(member)) - starts[member]
        kept = rank < keep[member]
        return member[kept], moment[kept]

    def _purchases(self, k: int, stats: _Month, member: np.ndarray, moment: np.ndarray, month_end: int) -> None:
        rng, n_rows = self.rng, len(member)
        category = _choose(rng, np.vstack([CATEGORY_SHARE, _eco_shares()]), self.eco[member].astype(np.int64))
        channel = _choose(rng, self.purchase_channel_probs, self.channel[member])
        away = rng.random(n_rows) >= HOME_STORE_SHARE
        store_index = np.where(away, rng.integers(0, len(self.store_names), size=n_rows), self.home_store[member])
        store = np.where(channel == 0, self.store_names[store_index], np.where(channel == 1, ONLINE_STORE, APP_STORE))
        amount = rng.gamma(SPEND_P, 1.0 / self.spend_rate[member]) * CATEGORY_PRICE[category]
        amount = np.maximum(np.round(amount, 2), MIN_AMOUNT)
        first_number = self.next_purchase_number
        self.next_purchase_number += n_rows
        external = [f"P{i:09d}" for i in range(first_number, first_number + n_rows)]
        frame = pd.DataFrame({
            "external_id": external, "member_id": self.member_ids[member], "occurred_at": _timestamps(moment),
            "amount": amount, "channel": _objects(PURCHASE_CHANNELS)[channel], "store": store,
            "category": _objects(CATEGORIES)[category],
        })[PURCHASE_COLUMNS]

        last_id = int(self.session.execute(text("SELECT COALESCE(MAX(id), 0) FROM purchase")).scalar_one())
        chunk = CAMPAIGN_SAFE_CHUNK if self._lookup_campaign_running(int(self.b[k]), month_end) else PURCHASE_CHUNK
        written, entries = add_purchases(self.session, frame, actor=self.actor, chunk_rows=chunk)
        self.counts["purchases"] += written
        self.counts["ledger_entries"] += entries

        # The lots just written: base points as the earn engine computes them (the same
        # function and tier multipliers), plus the campaign bonuses read back.
        earn = base_points(frame["amount"], pd.Series(self.tier_multiplier[self.tier[member]]), self.rate)
        bonus = self.session.execute(
            text("SELECT purchase_id, member_id, points FROM ledger_entry WHERE kind = 'bonus' AND purchase_id > :p"),
            {"p": last_id},
        ).all()
        bonus_purchase = np.array([r[0] for r in bonus], dtype=np.int64)
        bonus_member = np.searchsorted(self.member_ids, np.array([r[1] for r in bonus], dtype=np.int64))
        bonus_points = np.array([r[2] for r in bonus], dtype=np.int64)
        self.month_lots += np.bincount(member, weights=earn, minlength=self.n).astype(np.int64)
        self.month_lots += np.bincount(bonus_member, weights=bonus_points, minlength=self.n).astype(np.int64)
        np.maximum.at(self.last_of_month, member, moment)

        refunded = self._refunds(member, category, earn, external, bonus_purchase, bonus_points, month_end)
        kept = ~refunded
        slot = k % 12
        self.window_spend[slot] = np.bincount(member[kept], weights=amount[kept], minlength=self.n)
        self.window_count[slot] = np.bincount(member[kept], minlength=self.n)
        self.has_bought[member] = True
        np.maximum.at(self.last_purchase, member, moment)

        visits = pd.DataFrame({"member": member[kept], "day": moment[kept] // DAY}).drop_duplicates()
        days_per_member = np.bincount(visits["member"].to_numpy(), minlength=self.n)
        stats.active = self.window_count[slot] > 0
        stats.repeat_buyers = int((days_per_member >= 2).sum())
        stats.purchases = int(kept.sum())
        stats.revenue = float(amount[kept].sum())
        stats.earned = int(self.month_lots.sum())

    def _lookup_campaign_running(self, month_start: int, month_end: int) -> bool:
        return any(
            plan.kind in ("spend_threshold", "birthday")
            and _seconds(campaign.starts_at) < month_end and _seconds(campaign.ends_at) > month_start
            for campaign, plan, start_index in self.campaigns if start_index >= 0
        )

    def _purchase_ids(self, external: list[str]) -> np.ndarray:
        ids: dict[str, int] = {}
        for start in range(0, len(external), LOOKUP_CHUNK):
            keys = external[start : start + LOOKUP_CHUNK]
            ids.update(self.session.execute(
                select(Purchase.external_id, Purchase.id).where(col(Purchase.external_id).in_(keys))
            ).tuples().all())
        return np.array([ids[e] for e in external], dtype=np.int64)

    def _refunds(self, member: np.ndarray, category: np.ndarray, earn: np.ndarray, external: list[str],
                 bonus_purchase: np.ndarray, bonus_points: np.ndarray, month_end: int) -> np.ndarray:
        """Refund a few purchases, after the member's last purchase of the month.

        The ``reverse`` entry takes back exactly what the purchase earned (base and
        bonus); those points are in the balance then, so it never goes below zero.
        """
        rng = self.rng
        room = month_end - self.last_of_month[member]
        refunded = (rng.random(len(member)) < REFUND_RATE[category]) & (room >= MIN_WINDOW)
        rows = np.flatnonzero(refunded)
        if not len(rows):
            return refunded
        ids = self._purchase_ids([external[i] for i in rows])
        order = np.argsort(bonus_purchase)
        sorted_ids, sorted_points = bonus_purchase[order], bonus_points[order]
        total_before = np.concatenate([[0], np.cumsum(sorted_points)])
        points = earn[rows] + (total_before[np.searchsorted(sorted_ids, ids, "right")]
                               - total_before[np.searchsorted(sorted_ids, ids, "left")])
        # In the first half of the time left after the member's last purchase; a
        # redemption, if any, comes in the second half.
        last = self.last_of_month[member[rows]]
        when = last + 60 + (rng.random(len(rows)) * (0.45 * (month_end - last) - 60)).astype(np.int64)
        table = Purchase.__table__  # type: ignore[attr-defined]  # set by SQLModel at class creation, not in its stubs
        self.session.execute(
            update(table).where(table.c.id == bindparam("purchase")).values(
                refunded_at=bindparam("at"), returned_cents=cast(func.round(table.c.amount * 100), Integer)),
            [{"purchase": int(p), "at": _moment(t)} for p, t in zip(ids, when)],
        )
        with_points = points > 0
        self._ledger(pd.DataFrame({
            "member_id": self.member_ids[member[rows][with_points]], "kind": REVERSE, "points": -points[with_points],
            "occurred_at": _timestamps(when[with_points]), "purchase_id": ids[with_points], "reason": "refund",
        }))
        np.add.at(self.debited, member[rows], points)
        self.counts["refunds"] += len(rows)
        return refunded

    def _redeem(self, k: int, stats: _Month, settle_from: np.ndarray, month_end: int, present: np.ndarray) -> None:
        """At most one redemption per member and month, of points the member holds then."""
        rng = self.rng
        balance = self.credited + self.month_lots - self.debited
        room = month_end - settle_from
        open_rewards = self.reward_available[:, k] & (self.reward_stock != 0)
        if not open_rewards.any():
            return
        cheapest = self.reward_cost[open_rewards].min()
        propensity = np.where(self.alive & ~self.never_buys, REDEEM_PROPENSITY_ACTIVE, REDEEM_PROPENSITY_LAPSED)
        who = np.flatnonzero(present & (room >= MIN_WINDOW) & (balance >= cheapest) & (rng.random(self.n) < propensity))
        if not len(who):
            return
        reachable = ((self.reward_cost[None, :] <= balance[who, None]) & open_rewards[None, :]
                     & (self.reward_min_rank[None, :] <= self.tier[who, None]))
        preference = self.reward_weight * (self.reward_cost / self.reward_cost.min()) ** VALUE_PREFERENCE
        cumulative = np.cumsum(reachable * preference[None, :], axis=1)
        threshold = rng.random(len(who)) * cumulative[:, -1]
        pick = np.minimum((cumulative <= threshold[:, None]).sum(axis=1), len(self.reward_ids) - 1)
        when = settle_from[who] + (room[who] * (0.5 + 0.45 * rng.random(len(who)))).astype(np.int64)
        # Limited stock goes to the earliest requests; later ones find it sold out.
        keep = np.ones(len(who), dtype=bool)
        for reward in np.flatnonzero(self.reward_stock >= 0):
            asked = np.flatnonzero(pick == reward)
            if len(asked) > self.reward_stock[reward]:
                keep[asked[np.argsort(when[asked], kind="stable")][self.reward_stock[reward]:]] = False
        who, pick, when = who[keep], pick[keep], when[keep]
        count = len(who)
        if not count:
            return
        cost = self.reward_cost[pick]
        cancelled = rng.random(count) < CANCEL_SHARE
        cancelled_at = when + 60 + (rng.random(count) * (month_end - when - 120) * 0.9).astype(np.int64)
        fulfilled_at = when + rng.integers(FULFIL_DAYS[0] * DAY, FULFIL_DAYS[1] * DAY, size=count)
        fulfilled = ~cancelled & (fulfilled_at <= _seconds(self.now))
        status = np.where(cancelled, "cancelled", np.where(fulfilled, "fulfilled", "requested"))
        note = np.where(cancelled, _objects(CANCEL_NOTES)[rng.integers(0, len(CANCEL_NOTES), size=count)], "")
        ids = allocate_ids(self.session, "redemption", count)
        insert_frame(self.session, "redemption", pd.DataFrame({
            "id": ids, "member_id": self.member_ids[who], "reward_id": self.reward_ids[pick], "points": cost,
            "status": status, "requested_at": _timestamps(when),
            "fulfilled_at": _timestamps(fulfilled_at).where(fulfilled),
            "cancelled_at": _timestamps(cancelled_at).where(cancelled),
            "handled_by": np.where(status == "requested", "", HANDLED_BY), "note": note,
        }))
        self._ledger(pd.DataFrame({
            "member_id": self.member_ids[who], "kind": REDEEM, "points": -cost, "occurred_at": _timestamps(when),
            "redemption_id": ids, "reason": "redeemed " + pd.Series(self.reward_names[pick]),
        }))
        returned_at = _timestamps(cancelled_at[cancelled])
        # Returned points are a new lot with a fresh expiry period, as cancel_redemption writes.
        self._ledger(pd.DataFrame({
            "member_id": self.member_ids[who[cancelled]], "kind": REVERSE, "points": cost[cancelled],
            "occurred_at": returned_at, "expires_at": self._expiry(returned_at), "redemption_id": ids[cancelled],
            "reason": "redemption cancelled: " + pd.Series(note[cancelled], dtype=object),
        }))
        self.debited[who] += cost
        np.add.at(self.month_lots, who[cancelled], cost[cancelled])
        limited = self.reward_stock >= 0
        taken = np.bincount(pick[~cancelled], minlength=len(self.reward_ids))
        self.reward_stock[limited] -= taken[limited]
        self.counts["redemptions"] += count
        stats.redeemed = int(cost[~cancelled].sum())

    def _expiry(self, moments: pd.Series) -> pd.Series:
        if self.expiry_months <= 0:
            return pd.Series(pd.NaT, index=moments.index, dtype=moments.dtype)
        return expiry_dates(moments, self.expiry_months)

    def _feedback(self, k: int, stats: _Month, settle_from: np.ndarray, month_end: int, lo: np.ndarray,
                  present: np.ndarray) -> None:
        """NPS answers: a survey after a visit, or by e-mail; scores follow satisfaction and activity."""
        rng = self.rng
        bought = stats.active
        asked = present & (rng.random(self.n) < np.where(bought, SURVEY_RATE_BUYERS, SURVEY_RATE_OTHERS))
        who = np.flatnonzero(asked & (month_end - settle_from >= MIN_WINDOW))
        if not len(who):
            return
        # Buyers answer within three days of their last visit; others any time in the month.
        start = np.where(bought[who], settle_from[who], lo[who]) + 60
        end = np.where(bought[who], np.minimum(start + 3 * DAY, month_end - 60), month_end - 60)
        when = start + (rng.random(len(who)) * (end - start)).astype(np.int64)
        trend = SCORE_TREND * (k / max(self.intervals - 1, 1) - 0.5)
        latent = (SCORE_BASE + trend + SCORE_SPREAD * self.satisfaction[who] + 0.6 * bought[who]
                  - 1.2 * ~self.alive[who] + rng.normal(0.0, 1.0, size=len(who)))
        score = np.clip(np.round(latent), 0, 10).astype(np.int64)
        band = np.where(score >= 9, "promoter", np.where(score >= 7, "passive", "detractor"))
        comment = np.full(len(who), "", dtype=object)
        with_comment = rng.random(len(who)) < COMMENT_SHARE
        for name, texts in COMMENTS.items():
            rows = np.flatnonzero(with_comment & (band == name))
            comment[rows] = _objects(texts)[rng.integers(0, len(texts), size=len(rows))]
        insert_frame(self.session, "feedback", pd.DataFrame({
            "member_id": self.member_ids[who], "submitted_at": _timestamps(when), "score": score, "comment": comment,
        }))
        self.counts["feedback"] += len(who)
        stats.scores.append(score)

    def _ledger(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        frame = frame.assign(actor=self.actor.username, created_at=pd.Timestamp(utcnow()))
        self.counts["ledger_entries"] += insert_frame(self.session, "ledger_entry", frame)

    # -- the end of the history ---------------------------------------------------------

    def _finish(self) -> None:
        session, actor = self.session, self.actor
        # The last boundary is `now` itself, not a 1st of the month: the ledger's own
        # expiry run computes it exactly.
        if self.expiry_months > 0:
            self.counts["ledger_entries"] += expire_points(session=session, as_of=self.now, actor=actor)
        table = Reward.__table__  # type: ignore[attr-defined]  # set by SQLModel at class creation, not in its stubs
        limited = np.flatnonzero(self.reward_stock >= 0)
        if len(limited):
            session.execute(update(table).where(table.c.id == bindparam("reward")).values(stock=bindparam("left")),
                            [{"reward": int(self.reward_ids[r]), "left": int(self.reward_stock[r])} for r in limited])
        for campaign, plan, _ in self.campaigns:
            if plan.lifecycle == "schedule":
                activate_campaign(session=session, campaign_id=stored_id(campaign), actor=actor, now=self.now)
                self.counts["campaign_assignments"] += int(session.execute(
                    text("SELECT COUNT(*) FROM campaign_assignment WHERE campaign_id = :c"), {"c": campaign.id}).scalar_one())
        self.segment_ids: dict[str, int] = {}
        for name, description, rules in SEGMENTS:
            segment = Segment(name=name, description=description, rules=rules, created_by=actor.username)
            session.add(segment)
            session.flush()
            self.segment_ids[name] = stored_id(segment)
        self.points_outstanding = int(session.execute(text("SELECT COALESCE(SUM(points), 0) FROM ledger_entry")).scalar_one())
        self._goals()
        record_audit(session, actor=actor, action="demo.create", entity="program", after={
            "members": self.n, "months": len(self.b) - 1, "purchases": self.counts["purchases"], "now": self.now.isoformat(),
        })

    def _baselines(self) -> dict[tuple[str, str | None], float]:
        """Each KPI over the last three complete months, for targets near today's level."""
        recent = self.monthly[-4:-1] if len(self.monthly) >= 4 else self.monthly[:-1] or self.monthly
        previous = self.monthly[-5:-2] if len(self.monthly) >= 5 else recent
        active = [int(m.active.sum()) for m in recent]
        purchases = [m.purchases for m in recent]
        revenue = [m.revenue for m in recent]
        retention, social_retention = [], []
        social = self.channel == list(ACQUISITION_CHANNELS).index("social_ads")
        for before, this in zip(previous, recent):
            kept = before.active & this.active
            retention.append(kept.sum() / max(before.active.sum(), 1))
            social_retention.append((kept & social).sum() / max((before.active & social).sum(), 1))
        scores = np.concatenate([s for m in self.monthly[-6:] for s in m.scores] or [np.zeros(0)])
        nps = 100.0 * ((scores >= 9).mean() - (scores <= 6).mean()) if len(scores) else 0.0
        buyers = np.flatnonzero(self.has_bought)
        earned = sum(m.earned for m in recent)
        return {
            ("new_members", None): _mean([m.new_members for m in recent]),
            ("active_members", None): _mean(active),
            ("average_transaction_value", None): sum(revenue) / max(sum(purchases), 1),
            ("purchase_frequency", None): sum(purchases) / max(sum(active), 1),
            ("revenue_per_member", None): sum(revenue) / max(int(np.logical_or.reduce([m.active for m in recent]).sum()), 1),
            ("historical_clv", None): sum(m.revenue for m in self.monthly) / max(len(buyers), 1),
            ("retention_rate", None): _mean(retention),
            ("retention_rate", "Social-ads recruits"): _mean(social_retention),
            ("repeat_purchase_rate", None): sum(m.repeat_buyers for m in recent) / max(sum(active), 1),
            ("nps", None): nps,
            ("points_outstanding", None): float(self.points_outstanding),
            ("redemption_rate", None): sum(m.redeemed for m in recent) / max(earned, 1),
        }

    def _goals(self) -> None:
        from loyalty.program.goals import save_goal

        baselines = self._baselines()
        today = self.now.date()
        starts_on = (pd.Timestamp(today).replace(day=1) - pd.DateOffset(months=2)).date()
        ends_on = (pd.Timestamp(today).replace(day=1) + pd.DateOffset(months=10)).date() - timedelta(days=1)
        self.goal_count = self.target_count = 0
        for name, objective, owner, frequency, strategy, targets in GOALS:
            goal = save_goal(session=self.session, actor=self.actor, name=name, objective=objective, owner=owner,
                             starts_on=starts_on, ends_on=ends_on, reporting_frequency=frequency, strategy=strategy)
            self.goal_count += 1
            for plan in targets:
                # Written as loyalty.program.goals.save_kpi_target does, without importing the
                # analytics catalogue (scipy and all: seconds) only to check names this
                # module's tests already check against it.
                target = KpiTarget(goal_id=stored_id(goal), metric=plan.metric, period=plan.period,
                                   target_value=_target_value(baselines[(plan.metric, plan.segment)], plan),
                                   direction=TARGET_DIRECTIONS.get(plan.metric, "up"),
                                   segment_id=self.segment_ids[plan.segment] if plan.segment else None)
                self.session.add(target)
                self.session.flush()
                record_audit(self.session, actor=self.actor, action="kpi_target.save", entity="kpi_target",
                             entity_id=target.id, after=target.model_dump())
                self.target_count += 1


def _mean(values: list[float] | list[int]) -> float:
    return float(np.mean(values)) if len(values) else 0.0


def _target_value(baseline: float, target: _TargetPlan) -> float:
    value = baseline + target.amount if target.how == "plus" else baseline * target.amount
    if target.metric in ("new_members", "active_members", "points_outstanding", "nps"):
        return float(round(value))
    if target.metric in ("retention_rate", "repeat_purchase_rate", "redemption_rate"):
        return float(min(round(value, 3), 1.0))
    return float(round(value, 2))


def _eco_shares() -> np.ndarray:
    """Category shares of members who lean to the eco-friendly range."""
    eco = CATEGORIES.index("eco-friendly")
    shares = CATEGORY_SHARE * (1 - ECO_SHARE_FOR_ECO_MEMBERS) / (1 - CATEGORY_SHARE[eco])
    shares[eco] = ECO_SHARE_FOR_ECO_MEMBERS
    return shares
