"""Engagement: challenges and badges (referrals and messages to members follow)."""
