"""What the demo program is made of, and the numbers that drive its members' behaviour.

Tiers, rewards, campaigns, segments and goals as the demo creates them; acquisition
channels, spend, seasons, redemption and survey rates as the simulation draws them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
    {
        "name": "Bronze",
        "min_spend": 0.0,
        "min_purchases": 0,
        "window_months": 12,
        "multiplier": 1.0,
        "grace_months": 0,
        "benefits": ["1 point per euro", "Member prices", "Birthday bonus"],
    },
    {
        "name": "Silver",
        "min_spend": 400.0,
        "min_purchases": 6,
        "window_months": 12,
        "multiplier": 1.25,
        "grace_months": 2,
        "benefits": ["1.25 points per euro", "Free delivery over 30 EUR", "Early access to sales"],
    },
    {
        "name": "Gold",
        "min_spend": 1000.0,
        "min_purchases": 12,
        "window_months": 12,
        "multiplier": 1.5,
        "grace_months": 3,
        "benefits": ["1.5 points per euro", "Free delivery", "Priority service line", "VIP shopping evenings"],
    },
    {
        "name": "Platinum",
        "min_spend": 2500.0,
        "min_purchases": 24,
        "window_months": 12,
        "multiplier": 2.0,
        "grace_months": 3,
        "benefits": ["2 points per euro", "Personal shopper", "Free returns and delivery", "Invitations to exclusive events"],
    },
)


@dataclass(frozen=True)
class ChannelProfile:
    """How members recruited through one acquisition channel behave."""

    share: float  # of new members
    rate: float  # multiplies the member's purchase rate
    dropout: tuple[float, float]  # Beta(a, b): chance to drop out after each repeat purchase
    never_buys: float  # signed up, never bought
    buys_at_join: float  # enrolled at the checkout
    consent: float  # marketing consent
    purchase_channels: tuple[float, float, float]  # store, online, app
    satisfaction: float  # shifts NPS answers


ACQUISITION_CHANNELS: dict[str, ChannelProfile] = {
    "store": ChannelProfile(0.30, 1.00, (1.0, 14.0), 0.03, 0.92, 0.45, (0.85, 0.10, 0.05), 0.1),
    "web": ChannelProfile(0.19, 0.90, (1.0, 9.0), 0.12, 0.55, 0.60, (0.35, 0.55, 0.10), 0.0),
    "app": ChannelProfile(0.17, 1.20, (1.1, 19.0), 0.10, 0.60, 0.75, (0.25, 0.15, 0.60), 0.2),
    "referral": ChannelProfile(0.10, 1.10, (1.0, 30.0), 0.05, 0.80, 0.55, (0.60, 0.25, 0.15), 0.6),
    "social_ads": ChannelProfile(0.16, 0.75, (1.5, 3.0), 0.35, 0.35, 0.65, (0.30, 0.50, 0.20), -0.5),
    "partner": ChannelProfile(0.08, 0.90, (1.0, 7.3), 0.20, 0.50, 0.40, (0.50, 0.35, 0.15), -0.1),
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
    "Emma",
    "Noah",
    "Sophie",
    "Liam",
    "Julia",
    "Lucas",
    "Mila",
    "Daan",
    "Tess",
    "Sem",
    "Zoë",
    "Finn",
    "Sara",
    "Levi",
    "Anna",
    "Milan",
    "Eva",
    "Jesse",
    "Nora",
    "Luuk",
    "Lotte",
    "Thomas",
    "Fleur",
    "Ruben",
    "Lisa",
    "Bram",
    "Iris",
    "Max",
    "Yara",
    "Adam",
    "Fatima",
    "Mohammed",
    "Aisha",
    "Omar",
    "Lina",
    "Ravi",
    "Mei",
    "Ahmet",
    "Elif",
    "Jan",
)
LAST_NAMES = (
    "de Jong",
    "Jansen",
    "de Vries",
    "van den Berg",
    "van Dijk",
    "Bakker",
    "Janssen",
    "Visser",
    "Smit",
    "Meijer",
    "de Boer",
    "Mulder",
    "de Groot",
    "Bos",
    "Vos",
    "Peters",
    "Hendriks",
    "van Leeuwen",
    "Dekker",
    "Brouwer",
    "Peeters",
    "Maes",
    "Jacobs",
    "Willems",
    "Claes",
    "Goossens",
    "Wouters",
    "De Smet",
    "Dubois",
    "Lambert",
    "Yilmaz",
    "El Amrani",
    "Kaya",
    "Nguyen",
    "Singh",
    "Chen",
    "Silva",
    "Kowalski",
    "Novak",
    "Rossi",
)


@dataclass(frozen=True)
class RewardPlan:
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


REWARDS: tuple[RewardPlan, ...] = (
    RewardPlan("Free coffee", "product", 200, 4.0, description="A coffee of your choice in any store café."),
    RewardPlan("Plant a tree", "donation", 250, 3.0, description="We plant a tree with our reforestation partner."),
    RewardPlan("Reusable tote bag", "product", 350, 3.0, stock_per_1000=6, description="Organic cotton, made to last."),
    RewardPlan("5 EUR discount voucher", "discount", 500, 10.0, description="5 EUR off your next purchase."),
    RewardPlan("Early access to the seasonal sale", "exclusive_access", 800, 2.0, description="Shop the sale a day before everyone else."),
    RewardPlan("10 EUR discount voucher", "discount", 900, 8.0, description="10 EUR off your next purchase."),
    RewardPlan("Ocean clean-up donation", "donation", 1000, 2.0, description="Your points fund one kilogram of plastic removed from the sea."),
    RewardPlan("Cinema ticket", "partner", 1200, 3.0, partner="Pathé", description="One ticket for any film."),
    RewardPlan(
        "Summer picnic basket",
        "product",
        1500,
        3.0,
        stock_per_1000=3,
        window="summer",
        active=False,
        description="A seasonal reward; back next summer.",
    ),
    RewardPlan("Bamboo kitchen set", "product", 1800, 2.0, stock_per_1000=4, description="Plastic-free kitchen utensils."),
    RewardPlan("500 airline miles", "partner", 2000, 1.5, partner="SkyFlyer", description="Miles on your frequent-flyer account."),
    RewardPlan("25 EUR discount voucher", "discount", 2200, 4.0, description="25 EUR off your next purchase."),
    RewardPlan(
        "VIP shopping evening",
        "exclusive_access",
        2500,
        6.0,
        stock_per_1000=5,
        min_tier="Gold",
        description="An evening in store with a personal shopper, for Gold and Platinum members.",
    ),
    RewardPlan("Cooking workshop", "experience", 3500, 1.5, stock_per_1000=3, description="Three hours with a chef, for two."),
    RewardPlan("Wireless earbuds", "product", 6000, 1.0, stock_per_1000=2),
    RewardPlan("Concert tickets for two", "experience", 8000, 1.0, stock_per_1000=1, window="recent"),
    RewardPlan("Premium gift box", "product", 10000, 1.0, stock_per_1000=1, description="Our finest products in one box."),
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
class CampaignPlan:
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


CAMPAIGNS: tuple[CampaignPlan, ...] = (
    CampaignPlan(
        "Spring double points",
        "multiplier",
        {"multiplier": 2.0},
        20,
        14,
        0.20,
        budget_per_member=4,
        description="Double points on every purchase for two weeks.",
    ),
    CampaignPlan(
        "We miss you: 300 points to come back",
        "win_back",
        {"inactive_days": 90, "points": 300},
        15,
        42,
        0.20,
        revive=0.08,
        budget_per_member=4,
        channels=("email", "sms"),
        description="Members without a purchase in 90 days get 300 points on their next one.",
    ),
    CampaignPlan(
        "Eco month: double points on eco-friendly",
        "category_bonus",
        {"categories": ["eco-friendly"], "multiplier": 2.0},
        11,
        30,
        0.20,
        budget_per_member=6,
        channels=("email", "app", "in-store"),
        description="Double points on the eco-friendly range.",
    ),
    CampaignPlan(
        "Birthday treat",
        "birthday",
        {"points": 200, "window_days": 7, "occasion": "birthday"},
        9,
        400,
        0.50,
        budget_per_member=25,
        description="200 points on a purchase in the week of your birthday.",
    ),
    CampaignPlan(
        "Spend 150 EUR, get 500 points",
        "spend_threshold",
        {"spend": 150, "points": 500},
        5,
        30,
        0.20,
        eligibility={"tiers": ["Bronze", "Silver"]},
        holdout_pct=0.15,
        budget_per_member=8,
        description="A push for Bronze and Silver members; the budget runs out before the end.",
    ),
    CampaignPlan(
        "App week: double points in the app",
        "multiplier",
        {"multiplier": 2.0},
        3,
        10,
        0.20,
        eligibility={"acquisition_channels": ["app", "web"], "purchase_channels": ["app"]},
        budget_per_member=2,
        channels=("app",),
        description="Double points on purchases made in the app.",
    ),
    CampaignPlan(
        "Gold and Platinum: 1.5x points",
        "tier_offer",
        {"multiplier": 1.5},
        0,
        45,
        0.20,
        eligibility={"tiers": ["Gold", "Platinum"]},
        budget_per_member=8,
        description="Extra points for the top tiers this season.",
    ),
    CampaignPlan(
        "Double points month",
        "multiplier",
        {"multiplier": 2.0},
        -1,
        31,
        0.0,
        budget_per_member=6,
        lifecycle="schedule",
        description="Next month: double points for everyone.",
    ),
    CampaignPlan(
        "Referral thank-you bonus",
        "fixed_bonus",
        {"points": 100, "min_amount": 20},
        -2,
        60,
        0.0,
        eligibility={"acquisition_channels": ["referral"]},
        lifecycle="draft",
        description="Draft: 100 points per purchase over 20 EUR for referred members.",
    ),
)

SEGMENTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("Referred members", "Members who joined through a referral.", {"acquisition_channel": ["referral"]}),
    ("Social-ads recruits", "Members recruited by social-media advertising.", {"acquisition_channel": ["social_ads"]}),
    ("Lapsing: no purchase in 90 days", "Members whose last purchase is 90 days old or more.", {"days_since_last_purchase": {"min": 90}}),
    ("Gold and Platinum", "The top tiers.", {"tier": ["Gold", "Platinum"]}),
    (
        "Active with marketing consent",
        "Bought in the last 30 days and may be contacted.",
        {"marketing_consent": True, "days_since_last_purchase": {"max": 30}},
    ),
    ("Big spenders", "Over 1,500 EUR spent in total.", {"spend": {"min": 1500}}),
)


@dataclass(frozen=True)
class TargetPlan:
    metric: str
    period: str
    how: str  # "times": baseline x amount; "plus": baseline + amount
    amount: float
    segment: str | None = None


GOALS: tuple[tuple[str, str, str, str, str, tuple[TargetPlan, ...]], ...] = (
    (
        "Grow membership",
        "grow_membership",
        "Loyalty manager",
        "monthly",
        "Recruit where members stay (referral, app) rather than through social ads.",
        (TargetPlan("new_members", "month", "times", 1.10), TargetPlan("active_members", "month", "times", 1.05)),
    ),
    (
        "Raise sales",
        "raise_sales",
        "Loyalty manager",
        "monthly",
        "Bigger baskets and more visits from existing members: category bonuses and tier offers.",
        (
            TargetPlan("average_transaction_value", "month", "times", 1.05),
            TargetPlan("purchase_frequency", "month", "times", 1.05),
            TargetPlan("revenue_per_member", "quarter", "times", 1.05),
            TargetPlan("historical_clv", "quarter", "times", 1.08),
        ),
    ),
    (
        "Win back lapsing members",
        "win_back",
        "CRM lead",
        "monthly",
        "Win-back offers to members inactive for 90 days; watch retention of social-ads recruits.",
        (
            TargetPlan("retention_rate", "month", "times", 1.05),
            TargetPlan("retention_rate", "month", "times", 1.15, segment="Social-ads recruits"),
            TargetPlan("repeat_purchase_rate", "month", "times", 1.05),
        ),
    ),
    (
        "Delight members",
        "satisfaction",
        "Customer service lead",
        "quarterly",
        "Answer every detractor's comment within a week; fix delivery complaints first.",
        (TargetPlan("nps", "quarter", "plus", 5.0),),
    ),
    (
        "Keep liability in check",
        "liability",
        "Finance controller",
        "quarterly",
        "Make rewards reachable so points are redeemed rather than piling up.",
        (TargetPlan("points_outstanding", "month", "times", 0.90), TargetPlan("redemption_rate", "month", "times", 1.10)),
    ),
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


def eco_category_shares() -> np.ndarray:
    """Category shares of members who lean to the eco-friendly range."""
    eco = CATEGORIES.index("eco-friendly")
    shares = CATEGORY_SHARE * (1 - ECO_SHARE_FOR_ECO_MEMBERS) / (1 - CATEGORY_SHARE[eco])
    shares[eco] = ECO_SHARE_FOR_ECO_MEMBERS
    return shares
