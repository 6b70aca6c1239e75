"""Segment rules read as a sentence on the Segments page, never as raw JSON."""

from __future__ import annotations

import pytest

from loyalty.analytics.segments import rules_in_words


@pytest.mark.parametrize(
    "rules,words",
    [
        ({}, "Every member."),
        (
            {"tier": ["Gold", "Platinum"], "days_since_last_purchase": {"min": 90}},
            "Members in tier Gold or Platinum, who last bought at least 90 days ago.",
        ),
        ({"acquisition_channel": "social_ads", "marketing_consent": True}, "Members joined through social_ads, who agreed to marketing."),
        ({"spend": {"min": 100, "max": 500}}, "Members who spent between 100 and 500 in all."),
        ({"purchases": {"max": 1}, "joined_on": {"min": "2026-01-01"}}, "Members who made at most 1 purchases, who joined on or after 2026-01-01."),
        ({"city": ["Lyon", "Paris", "Lille"], "rfm_segment": ["Champions"]}, "Members living in Lyon, Paris or Lille, in RFM segment Champions."),
    ],
)
def test_rules_read_as_a_sentence(rules, words):
    assert rules_in_words(rules) == words
    assert "{" not in words
