"""The names of the webhook events (docs/webhooks.md), apart from the outbox code in
``loyalty.events`` so the command line can name them without importing pandas."""

POINTS_CHANGED, TIER_CHANGED, REDEMPTION_UPDATED, POINTS_EXPIRING = "points.changed", "tier.changed", "redemption.updated", "points.expiring"
EVENT_TYPES = (POINTS_CHANGED, TIER_CHANGED, REDEMPTION_UPDATED, POINTS_EXPIRING)
