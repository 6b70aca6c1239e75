"""Integrations: the API keys of the tills, shop and app, the webhooks, and their delivery log (admin)."""

import streamlit as st

from loyalty.events import EVENT_TYPES
from loyalty.integrations.apikeys import SCOPES, create_key, list_keys, revoke_key
from loyalty.integrations.webhooks import add_endpoint, delivery_log, enable_endpoint, list_endpoints, remove_endpoint
from loyalty.ui.auth import page_actor
from loyalty.ui.core import db_session
from loyalty.ui.notices import run_and_reload, show_notice
from loyalty.ui.tables import readable

actor = page_actor("settings.manage")
st.title("Integrations")
st.caption(
    "The company's systems call the HTTP API (`python -m loyalty api`, see docs/api.md) with a key each, and "
    "receive the program's events on their webhooks, signed (docs/webhooks.md)."
)
show_notice("integrations")
with db_session() as session:
    keys = list_keys(session)
    endpoints = list_endpoints(session)
    log = delivery_log(session, limit=200)

st.subheader("API keys")
active = [k for k in keys if k["revoked_at"] is None]
if keys:
    st.dataframe(
        readable(keys),
        hide_index=True,
        width="stretch",
        column_order=["name", "prefix", "scopes", "last used at", "revoked at", "created at", "created by"],
        column_config={"scopes": st.column_config.ListColumn("scopes")},
    )
else:
    st.info("No API key yet: make one below for each till, shop or app that calls the API.")
make, revoke = st.columns(2)
with make, st.form("integrations_key", clear_on_submit=True):
    st.markdown("**Make a key**")
    name = st.text_input("Name (e.g. till-0042, web shop)", key="integrations_key_name")
    scopes = st.multiselect("Scopes", list(SCOPES), format_func=lambda s: f"{s}: {SCOPES[s]}", key="integrations_key_scopes")
    if st.form_submit_button("Make key", key="integrations_key_submit"):
        run_and_reload(
            "integrations",
            lambda s: create_key(s, name=name, scopes=scopes, actor=actor),
            lambda made: f"Key {made['name']} made. Copy it now, it is not shown again: `{made['key']}`",
        )
with revoke:
    st.markdown("**Revoke a key**")
    if active:
        target = st.selectbox("Key", [k["name"] for k in active], key="integrations_revoke_name")
        sure = st.checkbox(
            f"Yes, revoke {target}: its requests get 401 from now on", key=f"integrations_revoke_sure_{target}"
        )  # a new key, a new confirmation
        if st.button("Revoke", disabled=not sure, key="integrations_revoke"):
            run_and_reload("integrations", lambda s: revoke_key(s, target, actor=actor), f"Key {target} revoked: requests with it now get 401.")
    else:
        st.caption("No active key.")

st.subheader("Webhooks")
if endpoints:
    st.dataframe(
        readable(endpoints),
        hide_index=True,
        width="stretch",
        column_order=["id", "url", "events", "pending", "consecutive failures", "disabled at", "disabled reason", "created at"],
        column_config={"events": st.column_config.ListColumn("events")},
    )
else:
    st.info("No webhook yet: add the address that should receive the program's events.")
add, change = st.columns(2)
with add, st.form("integrations_webhook", clear_on_submit=True):
    st.markdown("**Add a webhook**")
    url = st.text_input("Address (https://…)", key="integrations_webhook_url")
    events = st.multiselect("Events", list(EVENT_TYPES), key="integrations_webhook_events")
    if st.form_submit_button("Add webhook", key="integrations_webhook_submit"):
        run_and_reload(
            "integrations",
            lambda s: add_endpoint(s, url=url, events=events, actor=actor),
            lambda made: f"Webhook {made['id']} added. Its signing secret, shown once: `{made['secret']}`",
        )
with change:
    st.markdown("**Remove or enable a webhook**")
    if endpoints:
        chosen = st.selectbox("Webhook", endpoints, format_func=lambda e: f"{e['id']}: {e['url']}", key="integrations_webhook_target")
        b1, b2 = st.columns(2)
        sure = b1.checkbox("Yes, remove it", key=f"integrations_remove_sure_{chosen['id']}")
        if b1.button("Remove", disabled=not sure, key="integrations_remove"):
            run_and_reload("integrations", lambda s: remove_endpoint(s, chosen["id"], actor), f"Webhook {chosen['id']} removed.")
        if chosen["disabled_at"] is not None and b2.button("Enable again", key="integrations_enable"):
            run_and_reload(
                "integrations", lambda s: enable_endpoint(s, chosen["id"], actor), f"Webhook {chosen['id']} enabled: waiting events go out now."
            )
    else:
        st.caption("No webhook.")

st.subheader("Delivery log")
if log:
    st.dataframe(
        readable(log),
        hide_index=True,
        width="stretch",
        column_order=[
            "created",
            "type",
            "url",
            "status",
            "attempts",
            "last status code",
            "last error",
            "next attempt at",
            "delivered at",
            "event id",
        ],
    )
else:
    st.caption("Nothing delivered yet.")
