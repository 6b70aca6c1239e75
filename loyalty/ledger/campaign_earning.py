"""The campaign earn engine: the bonus points running campaigns add to each new purchase.

How campaigns stack on one purchase, and who is treated, is described in
:mod:`loyalty.program.campaigns` (the configuration). This module applies it to a frame of
purchases, for the import, the pages and the API alike (:mod:`loyalty.ledger.purchases`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, text
from sqlmodel import Session, col, select

from db.bulk import id_batches
from db.models import Campaign, Member, Purchase, stored_id
from loyalty.ledger.entries import BONUS
from loyalty.program.campaigns import EARNING_STATUSES, MULTIPLIER_KINDS

__all__ = ["CampaignEngine", "ReplayedCampaignEngine", "earn_rules_for"]


class CampaignEngine:
    """Bonus ledger rows for a frame of new purchases, with the stacking rules above.

    Implements ``loyalty.ledger.earning.EarnRule``: called with the purchases frame (``id,
    member_id, occurred_at, amount, category, channel, base_points``).
    """

    def __init__(self, session: Session, campaigns: list[Any]) -> None:
        self.session = session
        self.campaigns = campaigns

    def _treatment(self, campaign_id: int) -> np.ndarray:
        # Cached for the session (an import calls the engine once per chunk); a campaign's
        # assignment is written once, at activation, which also changes updated_at.
        cache = self.session.info.setdefault("campaign_treatment", {})
        updated = next(c.updated_at for c in self.campaigns if c.id == campaign_id)
        key = (campaign_id, updated)
        if key not in cache:
            cache[key] = np.sort(
                np.asarray(
                    self.session.execute(
                        text("SELECT member_id FROM campaign_assignment WHERE campaign_id = :c AND \"group\" = 'treatment'"), {"c": campaign_id}
                    )
                    .scalars()
                    .all(),
                    dtype=np.int64,
                )
            )
        return cache[key]

    def _already_awarded(self, campaign_id: int, member_ids: np.ndarray) -> np.ndarray:
        awarded = np.asarray(
            self.session.execute(text("SELECT DISTINCT member_id FROM ledger_entry WHERE campaign_id = :c AND kind = 'bonus'"), {"c": campaign_id})
            .scalars()
            .all(),
            dtype=np.int64,
        )
        return np.isin(member_ids, awarded)

    def _spent(self, campaign_id: int) -> int:
        return int(
            self.session.execute(
                text("SELECT COALESCE(SUM(points), 0) FROM ledger_entry WHERE campaign_id = :c AND kind IN ('bonus', 'reverse')"), {"c": campaign_id}
            ).scalar_one()
        )

    def _member_dates(self, member_ids: np.ndarray, occasion: str) -> pd.Series:
        column = "birth_date" if occasion == "birthday" else "joined_at"
        rows = [
            row
            for batch in id_batches(np.unique(member_ids))
            for row in self.session.execute(select(Member.id, getattr(Member, column)).where(col(Member.id).in_(batch))).all()
        ]
        return pd.Series({m: d for m, d in rows if d is not None}, dtype=object)

    def __call__(self, purchases: pd.DataFrame) -> pd.DataFrame:
        columns = ["purchase_id", "member_id", "occurred_at", "kind", "points", "campaign_id"]
        if purchases.empty or not self.campaigns:
            return pd.DataFrame(columns=columns)
        at = pd.to_datetime(purchases["occurred_at"], utc=True)
        member = purchases["member_id"].to_numpy(dtype=np.int64)
        base = purchases["base_points"].to_numpy(dtype=np.int64)
        best_extra = np.zeros(len(purchases), dtype=np.int64)
        best_campaign = np.full(len(purchases), -1, dtype=np.int64)
        awards: list[pd.DataFrame] = []
        for campaign in self.campaigns:
            rule = campaign.rule or {}
            mask = ((at >= pd.Timestamp(campaign.starts_at)) & (at < pd.Timestamp(campaign.ends_at))).to_numpy().copy()
            mask &= np.isin(member, self._treatment(campaign.id))
            purchase_channels = (campaign.eligibility or {}).get("purchase_channels")
            if purchase_channels:
                mask &= purchases["channel"].isin(purchase_channels).to_numpy()
            if not mask.any():
                continue
            if campaign.kind in MULTIPLIER_KINDS or (campaign.kind == "tier_offer" and rule.get("multiplier")):
                if campaign.kind == "category_bonus":
                    mask &= purchases["category"].isin(rule["categories"]).to_numpy()
                extra = np.where(mask, np.floor(base * (float(rule["multiplier"]) - 1) + 1e-9).astype(np.int64), 0)
                better = extra > best_extra
                best_extra = np.where(better, extra, best_extra)
                best_campaign = np.where(better, campaign.id, best_campaign)
                continue
            points = np.zeros(len(purchases), dtype=np.int64)
            if campaign.kind in ("fixed_bonus", "tier_offer"):
                mask &= purchases["amount"].to_numpy() >= float(rule.get("min_amount", 0))
                points[mask] = int(rule["points"])
            else:
                points = self._once_per_member(campaign, purchases, at, mask)
            if points.any():
                awards.append(self._rows(purchases, at, points, campaign.id))
        multiplied = best_extra > 0
        if multiplied.any():
            for campaign_id in np.unique(best_campaign[multiplied]):
                awards.insert(0, self._rows(purchases, at, np.where(best_campaign == campaign_id, best_extra, 0), int(campaign_id)))
        if not awards:
            return pd.DataFrame(columns=columns)
        return self._apply_budgets(pd.concat(awards, ignore_index=True))[columns]

    def _once_per_member(self, campaign: Campaign, purchases: pd.DataFrame, at: pd.Series, mask: np.ndarray) -> np.ndarray:
        rule = campaign.rule or {}
        points = np.zeros(len(purchases), dtype=np.int64)
        idx = np.flatnonzero(mask)
        candidates = pd.DataFrame(
            {"row": idx, "member_id": purchases["member_id"].to_numpy()[idx], "at": at.to_numpy()[idx], "amount": purchases["amount"].to_numpy()[idx]}
        )
        candidates = candidates[~self._already_awarded(stored_id(campaign), candidates["member_id"].to_numpy())]
        if candidates.empty:
            return points
        candidates = candidates.sort_values(["member_id", "at", "row"])
        if campaign.kind == "spend_threshold":
            # New purchases get ids above every stored one, so "before this chunk" is an id bound.
            first_new = int(purchases["id"].min())
            channels = (campaign.eligibility or {}).get("purchase_channels")
            channel_filter = [col(Purchase.channel).in_(channels)] if channels else []
            prior = {
                member: spend
                for batch in id_batches(candidates["member_id"].unique())
                for member, spend in self.session.execute(
                    select(Purchase.member_id, func.sum(Purchase.amount))
                    .where(
                        Purchase.occurred_at >= campaign.starts_at,
                        Purchase.occurred_at < campaign.ends_at,
                        col(Purchase.refunded_at).is_(None),
                        col(Purchase.id) < first_new,
                        col(Purchase.member_id).in_(batch),
                        *channel_filter,
                    )
                    .group_by(col(Purchase.member_id))
                ).all()
            }
            running = candidates.groupby("member_id")["amount"].cumsum() + candidates["member_id"].map(prior).fillna(0.0)
            candidates = candidates[running >= float(rule["spend"])]
        elif campaign.kind == "birthday":
            dates = self._member_dates(candidates["member_id"].to_numpy(), rule.get("occasion", "birthday"))
            anchor = candidates["member_id"].map(dates)
            keep = anchor.notna()
            candidates, anchor = candidates[keep], anchor[keep]
            when = pd.to_datetime(candidates["at"], utc=True)
            months = [d.month for d in anchor]
            days = [min(d.day, 28) if d.month == 2 else d.day for d in anchor]
            # The nearest occurrence may fall in the year before or after (Dec 30 vs Jan 2).
            distance = np.min(
                [
                    (when - pd.to_datetime({"year": when.dt.year + k, "month": months, "day": days}, utc=True)).abs().dt.days.to_numpy()
                    for k in (-1, 0, 1)
                ],
                axis=0,
            )
            candidates = candidates[distance <= int(rule.get("window_days", 7))]
        first = candidates.drop_duplicates("member_id", keep="first")
        points[first["row"].to_numpy()] = int(rule["points"])
        return points

    def _rows(self, purchases: pd.DataFrame, at: pd.Series, points: np.ndarray, campaign_id: int) -> pd.DataFrame:
        hit = points > 0
        return pd.DataFrame(
            {
                "purchase_id": purchases["id"].to_numpy()[hit],
                "member_id": purchases["member_id"].to_numpy()[hit],
                "occurred_at": at.to_numpy()[hit],
                "kind": BONUS,
                "points": points[hit],
                "campaign_id": campaign_id,
            }
        )

    def _apply_budgets(self, awards: pd.DataFrame) -> pd.DataFrame:
        budgets = {c.id: c.budget_points for c in self.campaigns if c.budget_points}
        if not budgets:
            return awards
        parts = []
        for campaign_id, rows in awards.groupby("campaign_id", sort=False):
            budget = budgets.get(int(campaign_id))
            if budget is None:
                parts.append(rows)
                continue
            # Earlier chunks of the same import are already in the ledger (same transaction).
            remaining = max(0, budget - self._spent(int(campaign_id)))
            rows = rows.sort_values(["occurred_at", "purchase_id"])
            before = rows["points"].cumsum() - rows["points"]
            rows = rows.assign(points=np.clip(remaining - before.to_numpy(), 0, rows["points"].to_numpy()))
            parts.append(rows[rows["points"] > 0])
        return pd.concat(parts, ignore_index=True) if parts else awards.iloc[0:0]


class ReplayedCampaignEngine(CampaignEngine):
    """One campaign replayed over past purchases: every one of ``members`` treated, nothing
    awarded yet and no budget spent (what a preview of a draft assumes)."""

    def __init__(self, session: Session, campaign: Any, members: np.ndarray) -> None:
        super().__init__(session, [campaign])
        self.treated = np.sort(members)

    def _treatment(self, campaign_id: int) -> np.ndarray:
        return self.treated

    def _already_awarded(self, campaign_id: int, member_ids: np.ndarray) -> np.ndarray:
        return np.zeros(len(member_ids), dtype=bool)

    def _spent(self, campaign_id: int) -> int:
        return 0


def earn_rules_for(session: Session, purchases: pd.DataFrame) -> tuple[CampaignEngine, ...]:
    """The campaign engine for campaigns whose window overlaps these purchases."""
    if purchases.empty:
        return ()
    at = pd.to_datetime(purchases["occurred_at"], utc=True)
    campaigns = session.exec(
        select(Campaign).where(
            col(Campaign.status).in_(EARNING_STATUSES), Campaign.starts_at <= at.max().to_pydatetime(), Campaign.ends_at > at.min().to_pydatetime()
        )
    ).all()
    return (CampaignEngine(session, list(campaigns)),) if campaigns else ()
