"""Contract tests generated from the API's OpenAPI schema (Schemathesis): whatever a client
sends, within the schema or not, the API never answers with a 5xx and its answers match the
schema it publishes. On SQLite and PostgreSQL."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from db.engine import get_engine
from loyalty.access.roles import SYSTEM_CLI
from loyalty.integrations.api import ApiLimits, create_app
from loyalty.integrations.apikeys import create_key
from tests.factories import make_member, make_purchase, make_reward

# A fixed, reproducible run in CI; LOYALTY_CONTRACT_EXAMPLES=500 LOYALTY_CONTRACT_RANDOM=1 explores more.
EXAMPLES_PER_OPERATION = int(os.environ.get("LOYALTY_CONTRACT_EXAMPLES", "40"))
DERANDOMIZE = not os.environ.get("LOYALTY_CONTRACT_RANDOM")
OPERATIONS = [
    ("/v1/members", "POST"),
    ("/v1/members/{member_id}", "GET"),
    ("/v1/purchases", "POST"),
    ("/v1/purchases/{purchase_id}/returns", "POST"),
    ("/v1/rewards", "GET"),
    ("/v1/redemptions", "POST"),
    ("/v1/redemptions/{redemption_id}", "GET"),
]


@pytest.fixture
def contract(db_url, session, now):
    member = make_member(session, external_id="C1")
    make_purchase(session, member, 80.0, now - timedelta(days=2), external_id="CP1")
    make_reward(session, points_cost=10)
    key = create_key(session, name="contract", scopes=["members:read", "members:write", "purchases:write", "redemptions:write"], actor=SYSTEM_CLI)
    app = create_app(get_engine(db_url), limits=ApiLimits(requests_per_second=100_000, burst=100_000))
    return schemathesis.openapi.from_asgi("/openapi.json", app), {"Authorization": f"Bearer {key['key']}"}


@pytest.mark.parametrize("path,method", OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_no_generated_request_gets_a_server_error(contract, path, method):
    schema, headers = contract
    operation = schema[path][method]

    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=DERANDOMIZE)
    @given(case=operation.as_strategy())
    def call(case):
        case.call_and_validate(headers=headers, checks=[not_a_server_error, status_code_conformance, response_schema_conformance])

    call()
