"""``python -m loyalty <command>``: the command line over the same functions the pages call.

Command names, flags and JSON shapes are a contract other programs depend on.
Exit codes: 0 ok, 2 invalid input, 3 refused (points or stock short), 4 not found,
5 not allowed, 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from db.engine import get_engine, new_session
from loyalty.access.roles import ROLES, SYSTEM_CLI
from loyalty.bootstrap import prepare_database
from loyalty.errors import InvalidInput, LoyaltyError, describe_fault
from loyalty.events import EVENT_TYPES


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, default=str))


class _TerminalProgress:
    """A progress bar on stderr (stdout stays clean for ``--json``)."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label, self.enabled = label, enabled
        self._bar: Any = None  # a tqdm bar, imported when first drawn

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=self.label, unit="rows", file=sys.stderr, unit_scale=True)
        self._bar.update(done - self._bar.n)

    def close(self, outcome: str | None = None) -> None:
        """End the bar; ``outcome`` (e.g. "refused, nothing written") replaces its label, so a
        bar that ran to the end of a refused file does not read as done."""
        if self._bar is not None:
            if outcome:
                self._bar.set_description(f"{self.label}: {outcome}", refresh=False)
            self._bar.close()


# --- commands ---------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    # main() has already migrated the schema and created the first admin.
    print(f"Database ready: {get_engine().url.render_as_string(hide_password=True)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from loyalty.demo.simulation import create_demo

    progress = _TerminalProgress("demo", enabled=not args.json)
    with new_session() as session:
        summary = create_demo(session, members=args.members, months=args.months, seed=args.seed, actor=SYSTEM_CLI, progress=progress)
    progress.close()
    from loyalty.evaluation.jobs import run_all

    # The first evaluation, so KPI tiles, goal status and a report exist straight away.
    summary["evaluations"] = {r["job"]: r["status"] for r in run_all(actor=SYSTEM_CLI)}
    if args.json:
        _print_json(summary)
    else:
        width = max(map(len, summary))
        for key, value in summary.items():
            if key != "users":
                print(f"{key:>{width}}: {value:,}" if isinstance(value, int) else f"{key:>{width}}: {value}")
        for user in summary.get("users", []):
            print(f"demo user {user['username']:<12} role {user['role']:<11} password {user['password']}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from loyalty.ledger.imports import ImportRefused, import_csv

    mapping = {}
    for item in args.map or []:
        source, sep, target = item.partition("=")
        if not sep or not source or not target:
            print(f"--map expects SOURCE=TARGET, got {item!r}", file=sys.stderr)
            return 2
        mapping[source] = target
    progress = _TerminalProgress(f"import {args.kind}", enabled=sys.stderr.isatty() or not args.json)
    try:
        with new_session() as session:
            result = import_csv(
                session,
                args.kind,
                Path(args.file),
                actor=SYSTEM_CLI,
                mapping=mapping,
                create_members=args.create_members,
                skip_invalid=args.skip_invalid,
                progress=progress,
            )
    except ImportRefused as refused:
        progress.close("refused, nothing written")
        if args.json:
            _print_json({"imported": 0, "skipped": 0, "rejected": refused.rejected, "error": str(refused)})
        print(f"error: {refused.report()}", file=sys.stderr)
        return 2
    progress.close()
    if args.json:
        _print_json({"imported": result.imported, "skipped": result.skipped, "rejected": result.rejected})
    else:
        print(
            f"imported {result.imported:,}, skipped {result.skipped:,} (already there), rejected {result.rejected:,}"
            f" in {result.seconds:.1f} s ({result.rows_per_second:,.0f} rows/s)"
        )
        if result.rejected_path:
            print(f"rejected rows with reasons: {result.rejected_path}")
    return 0


def cmd_rewards_list(args: argparse.Namespace) -> int:
    from loyalty.ledger.redemptions import list_rewards

    with new_session() as session:
        rewards = list_rewards(session)
    if args.json:
        _print_json([{"id": r["id"], "name": r["name"], "points_cost": r["points_cost"], "stock": r["stock"]} for r in rewards])
    else:
        for r in rewards:
            stock = "unlimited" if r["stock"] is None else r["stock"]
            print(f"{r['id']:>4}  {r['name']:<40} {r['points_cost']:>8,} pts  stock {stock}{'' if r['active'] else '  (inactive)'}")
    return 0


def cmd_balance(args: argparse.Namespace) -> int:
    from db.models import stored_id
    from loyalty.ledger.entries import member_balance
    from loyalty.ledger.members import find_member

    with new_session() as session:
        member = find_member(session, args.member)
        points = member_balance(session, stored_id(member))
    if args.json:
        _print_json(
            {
                "member": args.member,
                "balance": points.points,
                "past_expiry_points": points.past_expiry,
                "next_expiry_on": points.next_expiry_on.isoformat() if points.next_expiry_on else None,
                "next_expiry_points": points.next_expiry_points,
            }
        )
    else:
        expiry = f"; {points.next_expiry_points:,} expire on {points.next_expiry_on:%Y-%m-%d}" if points.next_expiry_on else "; none due to expire"
        print(f"{args.member}: {points.points:,} points to spend{expiry}")
    return 0


def cmd_ledger(args: argparse.Namespace) -> int:
    from db.models import stored_id
    from loyalty.ledger.entries import member_ledger
    from loyalty.ledger.members import find_member

    with new_session() as session:
        lines = member_ledger(session, stored_id(find_member(session, args.member))).tail(args.limit)
    if args.json:
        _print_json(
            [
                {
                    **line,
                    "occurred_at": line["occurred_at"].isoformat(),
                    "expires_at": line["expires_at"].isoformat() if line["expires_at"] is not None else None,
                }
                for line in lines.astype(object).where(lines.notna(), None).to_dict("records")
            ]
        )
    else:
        for line in lines.itertuples():
            print(f"{line.occurred_at:%Y-%m-%d %H:%M}  {line.points:>+8,}  {line.balance:>8,}  {line.description}")
    return 0


def cmd_redeem(args: argparse.Namespace) -> int:
    from db.models import stored_id
    from loyalty.ledger.members import find_member
    from loyalty.ledger.redemptions import redeem_reward

    try:
        with new_session() as session:
            member = find_member(session, args.member)
            result = redeem_reward(session=session, member_id=stored_id(member), reward_id=args.reward, actor=SYSTEM_CLI)
    except LoyaltyError as error:
        if args.json:
            _print_json({"ok": False, "error": str(error)})
        else:
            print(f"refused: {error}", file=sys.stderr)
        return error.exit_code
    if args.json:
        _print_json({"ok": True, "redemption_id": result.redemption_id, "balance": result.balance})
    else:
        print(f"redemption {result.redemption_id} requested; balance now {result.balance:,}")
    return 0


def cmd_refund(args: argparse.Namespace) -> int:
    from loyalty.ledger.purchases import refund_purchase
    from loyalty.settings import get_settings

    with new_session() as session:
        done = refund_purchase(session=session, purchase=args.purchase, actor=SYSTEM_CLI, reason=args.reason, amount=args.amount)
        currency = get_settings(session).currency
    if args.json:
        _print_json(
            {
                "ok": True,
                "purchase": args.purchase,
                "points_reversed": done.points_reversed,
                "amount_returned": done.returned_cents / 100,
                "returned_total": done.total_returned_cents / 100,
                "purchase_amount": done.purchase_cents / 100,
                "fully_returned": done.fully_returned,
                "points_already_expired": done.points_already_expired,
            }
        )
    else:
        print(done.summary(currency))
    return 0


def cmd_adjust(args: argparse.Namespace) -> int:
    from db.models import stored_id
    from loyalty.ledger.approvals import request_adjustment
    from loyalty.ledger.entries import member_balance
    from loyalty.ledger.members import find_member

    with new_session() as session:
        member = find_member(session, args.member)
        outcome = request_adjustment(session=session, member_id=stored_id(member), points=args.points, reason=args.reason, actor=SYSTEM_CLI)
        points = member_balance(session, stored_id(member)).points
    if args.json:
        _print_json({"ok": True, "member": args.member, "balance": points, "pending_approval": outcome.pending_id})
    elif outcome.pending:
        print(
            f"{args.member}: {args.points:,} points is above the approval limit of {outcome.limit:,}; "
            f"adjustment {outcome.pending_id} waits for an admin's approval (balance still {points:,})"
        )
    else:
        print(f"{args.member}: balance now {points:,}")
    return 0


def cmd_expire(args: argparse.Namespace) -> int:
    from loyalty.ledger.entries import expire_points

    with new_session() as session:
        members = expire_points(session=session, actor=SYSTEM_CLI)
    _print_json({"members": members}) if args.json else print(f"points expired for {members:,} members")
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    from loyalty.access.users import create_user

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    with new_session() as session:
        created = create_user(session=session, username=args.username, role=args.role, actor=SYSTEM_CLI, password=password, email=args.email or "")
    if args.json:
        _print_json({"ok": True, "username": created.username, "role": created.role})
    else:
        print(f"user {created.username} ({created.role}) created")
    if password is None:
        print(f"password (shown once): {created.password}", file=sys.stderr)
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from loyalty.access.users import list_users

    with new_session() as session:
        users = list_users(session)
    if args.json:
        _print_json([{k: u[k] for k in ("username", "role", "active", "email", "last_login_at")} for u in users])
    else:
        for u in users:
            print(f"{u['username']:<20} {u['role']:<11} {'active' if u['active'] else 'disabled'}")
    return 0


def cmd_users_set_role(args: argparse.Namespace) -> int:
    from loyalty.access.users import set_role

    with new_session() as session:
        set_role(session=session, username=args.username, role=args.role, actor=SYSTEM_CLI)
    print(f"{args.username} is now {args.role}")
    return 0


def cmd_users_enable_or_disable(args: argparse.Namespace) -> int:
    from loyalty.access.users import disable_user, enable_user

    enabling = args.users_command == "enable"
    with new_session() as session:
        (enable_user if enabling else disable_user)(session=session, username=args.username, actor=SYSTEM_CLI)
    if args.json:
        _print_json({"ok": True, "username": args.username, "active": enabling})
    else:
        print(f"{args.username} {'enabled' if enabling else 'disabled'}")
    return 0


def cmd_users_reset_password(args: argparse.Namespace) -> int:
    from loyalty.access.users import reset_password

    given = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    with new_session() as session:
        password = reset_password(session=session, username=args.username, actor=SYSTEM_CLI, password=given)
    print(f"password of {args.username} reset; account unlocked")
    if given is None:
        print(f"new password (shown once): {password}", file=sys.stderr)
    return 0


def cmd_members_erase(args: argparse.Namespace) -> int:
    from loyalty.ledger.erasure import erase_member

    with new_session() as session:
        changed = erase_member(session=session, external_id=args.member_id, actor=SYSTEM_CLI)
    _print_json({"ok": True, "member": args.member_id, "changed": changed}) if args.json else print(
        f"member {args.member_id} anonymised everywhere ({', '.join(f'{n} {what.replace(chr(95), chr(32))}' for what, n in changed.items())}); "
        "ledger and purchase totals kept"
    )
    return 0


def cmd_webhooks_add(args: argparse.Namespace) -> int:
    from loyalty.integrations.webhooks import add_endpoint

    with new_session() as session:
        created = add_endpoint(session, url=args.url, events=args.events, actor=SYSTEM_CLI)
    if args.json:
        _print_json({"id": created["id"], "secret": created["secret"]})
    else:
        print(f"webhook {created['id']} added for {args.url}")
        print(f"signing secret (shown once, keep it with the receiver): {created['secret']}")
    return 0


def cmd_webhooks_list(args: argparse.Namespace) -> int:
    from loyalty.integrations.webhooks import list_endpoints

    with new_session() as session:
        endpoints = list_endpoints(session)
    if args.json:
        _print_json(endpoints)
    else:
        for e in endpoints:
            state = f"disabled: {e['disabled_reason']}" if e["disabled_at"] else "active"
            print(f"{e['id']:>4}  {e['url']:<50} {','.join(e['events']):<40} {e['pending']:>6,} pending  {state}")
    return 0


def cmd_webhooks_remove(args: argparse.Namespace) -> int:
    from loyalty.integrations.webhooks import remove_endpoint

    with new_session() as session:
        removed = remove_endpoint(session, args.id, SYSTEM_CLI)
    if args.json:
        _print_json({"ok": True, "id": removed["id"], "pending_dropped": removed["pending_dropped"]})
    else:
        print(f"webhook {removed['id']} removed ({removed['pending_dropped']:,} undelivered events dropped)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from loyalty.access.roles import Actor
    from loyalty.ledger.exports import export_csv

    if args.what == "parquet":
        return _export_parquet(args)

    # The command line acts as an administrator; --as-role writes what that role would get (masking included).
    actor = SYSTEM_CLI if args.as_role is None else Actor(f"{SYSTEM_CLI.username} as {args.as_role}", args.as_role)
    with new_session() as session:
        result = export_csv(session, args.what, args.out, actor=actor, segment=args.name, purpose=args.purpose)
    if args.json:
        _print_json(result)
    else:
        print(f"exported {result['rows']:,} rows of {args.what}{' ' + args.name if args.name else ''} to {result['file']}")
    return 0


def _export_parquet(args: argparse.Namespace) -> int:
    from loyalty.analytics.parquet import export_parquet

    if args.name or args.as_role or args.purpose != "analysis":
        raise InvalidInput("export parquet takes only --out DIR (and --json): it writes the analytics columns, no contact details.")
    with new_session() as session:
        result = export_parquet(session, args.out, actor=SYSTEM_CLI)
    if args.json:
        _print_json(result)
    else:
        for name, table in result["tables"].items():
            print(f"{name}: {table['rows']:,} rows; {len(table['months_written'])} months written, {len(table['months_kept'])} unchanged")
        print(f"in {result['out']}")
    return 0


def _date(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _add_engine(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine",
        choices=["default", "spark"],
        help="where the figures are added up (default: LOYALTY_ANALYTICS_ENGINE, else default); spark: LOYALTY_SPARK_MASTER, local[*] unless set",
    )
    parser.add_argument(
        "--parquet",
        metavar="DIR",
        help="with --engine spark: read purchases and the ledger from this Parquet export (export parquet --out DIR), "
        "not the database (default: LOYALTY_PARQUET_DIR)",
    )


def cmd_analyze(args: argparse.Namespace) -> int:
    with new_session() as session:
        if args.analysis == "retention":
            from loyalty.analytics.engines import retention_analysis_on

            result = retention_analysis_on(session, args.period, args.as_of, engine=args.engine, lake=args.parquet)
        elif args.analysis == "clv" and not args.members:
            from loyalty.analytics.clv import clv_analysis

            result = clv_analysis(session, calibration_end=args.calibration_end, time_unit=args.time_unit)
        elif args.analysis == "kpis":
            from loyalty.analytics.engines import kpi_summary_on

            result = kpi_summary_on(session, args.date_from, args.date_to, engine=args.engine, lake=args.parquet)
        elif args.analysis in ("redemptions", "nps", "cycle"):
            from loyalty.evaluation import summaries

            if args.analysis == "redemptions":
                result = summaries.redemption_summary(session, args.date_from, args.date_to, by=args.by)
            elif args.analysis == "nps":
                result = summaries.nps_summary(session, args.date_from, args.date_to, by=args.by)
            else:
                result = summaries.cycle_summary(session, args.date_from, args.date_to)
        elif args.analysis == "liability":
            from loyalty.evaluation.summaries import liability_summary

            result = liability_summary(session, as_of=args.as_of)
        elif args.analysis == "forecast":
            from loyalty.evaluation.summaries import forecast_summary_json

            result = forecast_summary_json(session, as_of=args.as_of)
        elif args.analysis == "winback":
            from loyalty.evaluation.summaries import winback_summary

            result = winback_summary(session, as_of=args.as_of, limit=args.limit)
        elif args.analysis == "clv" and args.members:
            from loyalty.analytics.clv import clv_analysis
            from loyalty.evaluation.summaries import clv_members_summary

            result = {
                **clv_analysis(session, calibration_end=args.calibration_end, time_unit=args.time_unit),
                "per_member": clv_members_summary(session, args.calibration_end, args.time_unit),
            }
        elif args.analysis == "uplift":
            from loyalty.insights.campaign_results import uplift_summary

            result = uplift_summary(session, campaign_id=args.campaign)
        elif args.analysis == "history":
            from loyalty.analytics.metrics import kpi_history

            result = kpi_history(session, first=args.date_from, last=args.date_to)
        else:
            from loyalty.analytics.engines import rfm_analysis_on

            result = rfm_analysis_on(session, args.as_of, engine=args.engine, lake=args.parquet)
    period = result.get("period") if isinstance(result, dict) else None
    if isinstance(period, dict) and period.get("complete") is False:
        print(
            f"warning: the period {period['from']} to {period['to']} (exclusive) has not ended: its figures are so far, not final.", file=sys.stderr
        )
    if args.json:
        _print_json(result)
    else:
        print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from loyalty.devtools.bench import BenchConfig, run_bench

    if args.members < 10:
        raise SystemExit("bench: --members must be at least 10.")
    config = BenchConfig(
        members=args.members,
        purchases_per_member=args.purchases_per_member,
        database_url=args.database_url,
        workdir=Path(args.workdir) if args.workdir else None,
        steps=tuple(args.steps or ()),
        api_workers=args.api_workers,
        api_connections=args.api_connections,
        api_seconds=args.api_seconds,
    )
    echo = (lambda line: print(line, file=sys.stderr)) if args.json else print
    echo(f"{'step':<42} {'seconds':>11} {'peak':>12}")
    result = run_bench(config, echo=echo)
    if args.json:
        _print_json(result)
    else:
        details = result["details"]
        print(f"\n{result['members']:,} members, {result['purchases']:,} purchases on {details['database']}")
        if "import_purchases" in details:
            print(f"import: {details['import_purchases'].get('rows_per_second'):,} purchases a second (points included)")
        if "baseline" in details:
            print("engine vs pandas baseline (x faster): " + ", ".join(f"{k} {v}" for k, v in details["baseline"]["ratio"].items()))
            print(f"in memory (retention + RFM + KPIs + tier review): {details['baseline']['in_memory_seconds']} s")
        if "redemptions" in details:
            r = details["redemptions"]
            print(
                f"redemptions: {r['succeeded']} of {r['attempts']} succeeded, {r['attempts_per_second']} attempts/s, "
                f"overspend: {'YES' if r['overspend'] else 'none'}"
            )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import logging

    from loyalty.evaluation.worker import exit_if_jobs_left_running, run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    exit_if_jobs_left_running(run_worker())
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    if not 1 <= args.workers <= 64:
        raise InvalidInput("--workers is 1 to 64.")
    print(f"Loyalty Console API on http://{args.host}:{args.port}/v1 (docs at /docs), {args.workers} worker(s)", file=sys.stderr)
    # An import string and a factory: each worker process builds its own app and engine.
    uvicorn.run(
        "loyalty.integrations.api:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
    return 0


def cmd_apikeys(args: argparse.Namespace) -> int:
    from loyalty.integrations.apikeys import create_key, list_keys, revoke_key

    with new_session() as session:
        if args.apikeys_command == "create":
            made = create_key(session, name=args.name, scopes=args.scopes.split(","), actor=SYSTEM_CLI)
            if args.json:
                _print_json(made)
            else:
                print(f"API key {made['name']} ({', '.join(made['scopes'])}): {made['key']}")
                print("Copy it now: it is not shown again (only its hash is kept).", file=sys.stderr)
        elif args.apikeys_command == "list":
            keys = list_keys(session)
            if args.json:
                _print_json(keys)
            else:
                for k in keys:
                    state = f"revoked {k['revoked_at']:%Y-%m-%d}" if k["revoked_at"] else f"last used {k['last_used_at'] or 'never'}"
                    print(f"{k['name']:<24} {k['prefix']}…  {','.join(k['scopes']):<60} {state}")
        else:
            revoked = revoke_key(session, args.name, actor=SYSTEM_CLI)
            if args.json:
                _print_json(revoked)
            else:
                print(f"API key {revoked['name']} revoked: requests with it now get 401.")
    return 0


def cmd_members_show(args: argparse.Namespace) -> int:
    from loyalty.ledger.members import member_profile

    with new_session() as session:
        card = member_profile(session, args.member_id, actor=SYSTEM_CLI).summary()
    if args.json:
        _print_json(card)
    else:
        print(f"{card['member_id']}: {card['balance']:,} points, tier {card['tier'] or 'none'}, next expiry {card['next_expiry'] or 'none'}")
        print(f"  {card['streak_months']} month(s) in a row with a purchase; badges: {', '.join(b['name'] for b in card['badges']) or 'none'}")
        referred = f", referred by {card['referred_by']}" if card["referred_by"] else ""
        print(f"  referral code {card['referral_code']}: {card['referrals']} member(s) referred{referred}")
        for c in card["challenges"]:
            done = f", completed {c['completed_at']:%Y-%m-%d}" if c["completed_at"] is not None else ""
            print(f"  {c['name']}: {c['progress']} of {c['target']}{done}")
    return 0


def cmd_messages(args: argparse.Namespace) -> int:
    from pathlib import Path

    from loyalty.engagement.messages import export_csv, list_messages

    with new_session() as session:
        if args.messages_command == "list":
            found = list_messages(session, status=args.status, kind=args.kind, limit=args.limit)
            if args.json:
                _print_json(found)
            else:
                for m in found:
                    why = f" ({m['reason']})" if m["reason"] else ""
                    print(f"{m['created_at']:%Y-%m-%d %H:%M} {m['member_id']:<12} {m['kind']:<20} {m['channel']:<6} {m['status']}{why}")
                if not found:
                    print("No messages.")
        else:
            content, count = export_csv(session, actor=SYSTEM_CLI)
            Path(args.out).write_bytes(content)
            if args.json:
                _print_json({"messages": count, "out": args.out})
            else:
                print(f"{count:,} message(s) written to {args.out} and marked sent.")
    return 0


def cmd_challenges(args: argparse.Namespace) -> int:
    from loyalty.ledger.challenges import define_challenge, list_challenges
    from loyalty.program.segments import segment_id

    with new_session() as session:
        if args.challenges_command == "add":
            made = define_challenge(
                session,
                name=args.name,
                purchases=args.purchases,
                min_spend=args.min_spend,
                streak_months=args.streak_months,
                within_days=args.within_days,
                category=args.category or "",
                points=args.points,
                badge=args.badge or "",
                starts=args.starts,
                ends=args.ends,
                max_completions=args.max_completions,
                holdout_pct=args.holdout,
                segment_id=segment_id(session, args.segment) if args.segment else None,
                actor=SYSTEM_CLI,
            )
            if args.json:
                _print_json(made)
            else:
                print(
                    f"Challenge {made['name']} saved (id {made['id']}): {made['points']:,} points{' and the badge ' + made['badge'] if made['badge'] else ''}."
                )
        else:
            found = list_challenges(session)
            if args.json:
                _print_json(found)
            else:
                for c in found or []:
                    print(
                        f"{c['id']:>4} {c['name']:<32} {c['kind']:<14} target {c['target']:<8} {c['points']:>7,} pts  {c['members_completed']:,} completed"
                    )
                if not found:
                    print("No challenge yet: python -m loyalty challenges add --help")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from loyalty.evaluation.jobs import run_all, run_job

    def progress(fraction: float, message: str) -> None:
        if not args.json:
            print(f"  {fraction:>4.0%}  {message}", file=sys.stderr)

    if args.job == "all":
        if args.backfill:
            raise InvalidInput("--backfill applies to the kpi-snapshot job only: evaluate --job kpi-snapshot --backfill.")
        results = run_all(as_of=args.as_of, actor=SYSTEM_CLI, progress=progress)
    else:
        results = [run_job(args.job, as_of=args.as_of, actor=SYSTEM_CLI, progress=progress, backfill=args.backfill)]
    if args.json:
        _print_json(results if args.job == "all" else results[0])
    else:
        for r in results:
            print(f"{r['job']:<20} {r['status']:<10} as of {r['as_of']}  rows {r['rows']:>8,}  {r.get('error') or ''}")
    return 0 if all(r["status"] == "succeeded" for r in results) else 1


def cmd_jobs_history(args: argparse.Namespace) -> int:
    from loyalty.evaluation.jobs import job_history, mark_interrupted_runs

    mark_interrupted_runs()  # a run whose process died reads as failed
    with new_session() as session:
        history = job_history(session, args.limit)
    if args.json:
        _print_json(history)
    else:
        for h in history:
            print(f"{h['started_at']}  {h['job']:<20} {h['status']:<10} as of {h['as_of']}  rows {h['rows']}  {h['error'] or ''}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from loyalty.evaluation.reports import render_report

    if args.out is None and args.format != "json":
        raise InvalidInput("Name the file to write: --out FILE (only --format json prints to the screen).")
    with new_session() as session:
        content = render_report(session, args.period, args.format)
    if args.out is None:
        print(content.decode())
        return 0
    Path(args.out).write_bytes(content)
    print(f"{args.format.upper()} report for {args.period} written to {args.out} ({len(content):,} bytes)")
    return 0


# --- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loyalty", description="Loyalty Console command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str, parent=sub) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    add("init", cmd_init, "Create or upgrade the database schema (and the first admin user).")

    p = add("demo", cmd_demo, "Fill the database with a synthetic demo program.")
    p.add_argument("--members", type=int, default=5000)
    p.add_argument("--months", type=int, default=24)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", action="store_true")

    p = add("import", cmd_import, "Import members, purchases or feedback from a CSV file.")
    p.add_argument("kind", choices=["members", "purchases", "feedback"])
    p.add_argument("file")
    p.add_argument("--map", action="append", metavar="SOURCE=TARGET", help="rename a column of the file (repeatable)")
    p.add_argument("--create-members", action="store_true", help="create members first seen in a purchase file")
    p.add_argument("--skip-invalid", action="store_true", help="import valid rows; write rejected ones to a CSV beside the input")
    p.add_argument("--json", action="store_true")

    rewards = sub.add_parser("rewards", help="The rewards catalogue.").add_subparsers(dest="rewards_command", required=True)
    p = add("list", cmd_rewards_list, "List rewards.", parent=rewards)
    p.add_argument("--json", action="store_true")

    p = add("balance", cmd_balance, "What a member can spend now (lots past their date left out), and the next expiry.")
    p.add_argument("--member", required=True, metavar="MEMBER_ID")
    p.add_argument("--json", action="store_true")

    p = add("ledger", cmd_ledger, "A member's points movements, newest last, each naming its purchase, reward or campaign.")
    p.add_argument("--member", required=True, metavar="MEMBER_ID")
    p.add_argument("--limit", type=int, default=50, help="the last N lines (default 50)")
    p.add_argument("--json", action="store_true")

    p = add("redeem", cmd_redeem, "Redeem a reward for a member (exit 3 when points or stock are short).")
    p.add_argument("--member", required=True, metavar="MEMBER_ID")
    p.add_argument("--reward", required=True, type=int, metavar="REWARD_ID")
    p.add_argument("--json", action="store_true")

    p = add("refund", cmd_refund, "Refund a purchase, or return part of it (--amount): take back that share of its points, once.")
    p.add_argument("--purchase", required=True, metavar="PURCHASE_ID")
    p.add_argument("--amount", metavar="AMOUNT", help="the amount returned, e.g. 12.50 (default: all that is left of the purchase)")
    p.add_argument("--reason", default="refund")
    p.add_argument("--json", action="store_true")

    p = add("adjust", cmd_adjust, "Adjust a member's points with a reason.")
    p.add_argument("--member", required=True, metavar="MEMBER_ID")
    p.add_argument("--points", required=True, type=int)
    p.add_argument("--reason", required=True)
    p.add_argument("--json", action="store_true")

    users = sub.add_parser("users", help="Console users and their roles.").add_subparsers(dest="users_command", required=True)
    p = add("add", cmd_users_add, "Add a user (a random password is printed once unless --password-stdin).", parent=users)
    p.add_argument("username")
    p.add_argument("--role", required=True, choices=list(ROLES))
    p.add_argument("--email")
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    p.add_argument("--json", action="store_true")
    p = add("list", cmd_users_list, "List users.", parent=users)
    p.add_argument("--json", action="store_true")
    p = add("set-role", cmd_users_set_role, "Change a user's role.", parent=users)
    p.add_argument("username")
    p.add_argument("role", choices=list(ROLES))
    p = add("disable", cmd_users_enable_or_disable, "Disable a user (they can no longer sign in); not the last enabled admin.", parent=users)
    p.add_argument("username")
    p.add_argument("--json", action="store_true")
    p = add("enable", cmd_users_enable_or_disable, "Enable a disabled user again.", parent=users)
    p.add_argument("username")
    p.add_argument("--json", action="store_true")
    p = add("reset-password", cmd_users_reset_password, "Set a new password and unlock the account.", parent=users)
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true")

    webhooks = sub.add_parser("webhooks", help="Endpoints that receive the program's events (docs/webhooks.md).").add_subparsers(
        dest="webhooks_command", required=True
    )
    p = add("add", cmd_webhooks_add, "Add an endpoint; its signing secret is printed once.", parent=webhooks)
    p.add_argument("--url", required=True)
    p.add_argument("--events", required=True, help="comma-separated: " + ",".join(EVENT_TYPES))
    p.add_argument("--json", action="store_true")
    p = add("list", cmd_webhooks_list, "List endpoints with their pending deliveries (never their secret).", parent=webhooks)
    p.add_argument("--json", action="store_true")
    p = add("remove", cmd_webhooks_remove, "Remove an endpoint; its undelivered events are dropped.", parent=webhooks)
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("--json", action="store_true")

    members = sub.add_parser("members", help="Member administration.").add_subparsers(dest="members_command", required=True)
    p = add("show", cmd_members_show, "A member's balance, tier, next expiry, badges and challenges.", parent=members)
    p.add_argument("member_id")
    p.add_argument("--json", action="store_true")
    p = add("erase", cmd_members_erase, "Anonymise a member (right to erasure); KPIs are unchanged.", parent=members)
    p.add_argument("member_id", metavar="MEMBER_ID")
    p.add_argument("--json", action="store_true")

    analyze = sub.add_parser("analyze", help="Analyses: retention cohorts, CLV model, KPIs, RFM.").add_subparsers(dest="analysis", required=True)
    p = add("retention", cmd_analyze, "Cohort retention (cohort = month of first purchase).", parent=analyze)
    p.add_argument("--period", choices=["month", "quarter"], default="month")
    p.add_argument("--as-of", type=_date)
    _add_engine(p)
    p.add_argument("--json", action="store_true")
    p = add("clv", cmd_analyze, "Fit BG/NBD + Gamma-Gamma on purchases up to the calibration end.", parent=analyze)
    p.add_argument("--calibration-end", type=_date, required=True)
    p.add_argument("--time-unit", choices=["day", "week", "month"], default="week")
    p.add_argument("--members", action="store_true", help="also each member's probability of being alive and predicted CLV")
    p.add_argument("--json", action="store_true")
    p = add("kpis", cmd_analyze, "The KPI catalogue for a period [FROM, TO).", parent=analyze)
    p.add_argument("--from", dest="date_from", type=_date, required=True)
    p.add_argument("--to", dest="date_to", type=_date, required=True, help="end of the period, exclusive (2026-11-01 ends with October)")
    _add_engine(p)
    p.add_argument("--json", action="store_true")
    p = add("history", cmd_analyze, "The KPIs of every complete month (each as analyze kpis gives it).", parent=analyze)
    p.add_argument("--from", dest="date_from", type=_date, help="a day of the first month (default: the month of the first purchase)")
    p.add_argument("--to", dest="date_to", type=_date, help="a day of the last month (default: the last complete month)")
    p.add_argument("--json", action="store_true")
    for name, words, by in (
        ("redemptions", "Redemption rate, breakage, points outstanding and liability of a period [FROM, TO), per month.", True),
        ("nps", "Net Promoter Score of a period [FROM, TO), per month.", True),
        ("cycle", "Purchase cycle of a period [FROM, TO): days between purchases and the verdict.", False),
    ):
        p = add(name, cmd_analyze, words, parent=analyze)
        p.add_argument("--from", dest="date_from", type=_date, required=True)
        p.add_argument("--to", dest="date_to", type=_date, required=True, help="end of the period, exclusive")
        if by:
            p.add_argument("--by", choices=["tier", "channel", "segment"], help="also split the figures")
        p.add_argument("--json", action="store_true")
    for name, words in (
        ("liability", "Points outstanding and liability at the end of a day (default yesterday)."),
        ("forecast", "The liability forecast: the next 12 months of points outstanding, with a band."),
        ("winback", "High-value members whose probability of being alive fell (masked as an analyst sees them)."),
    ):
        p = add(name, cmd_analyze, words, parent=analyze)
        p.add_argument("--as-of", type=_date)
        if name == "winback":
            p.add_argument("--limit", type=int, default=100)
        p.add_argument("--json", action="store_true")
    p = add("uplift", cmd_analyze, "Each campaign against its holdout, in money: incremental revenue, cost, ROI.", parent=analyze)
    p.add_argument("--campaign", type=int, help="only this campaign (its id)")
    p.add_argument("--json", action="store_true")
    p = add("rfm", cmd_analyze, "RFM segment counts and the thresholds used.", parent=analyze)
    p.add_argument("--as-of", type=_date)
    _add_engine(p)
    p.add_argument("--json", action="store_true")

    p = add("bench", cmd_bench, "Build a program of the given size and measure every step (issue 8).")
    p.add_argument("--members", type=int, required=True)
    p.add_argument("--purchases-per-member", type=float, default=10.0)
    p.add_argument("--database-url", help="an empty database (default: a new SQLite file in the work directory)")
    p.add_argument("--workdir", help="where the CSV files and the SQLite database go (default: a new temporary directory)")
    p.add_argument(
        "--steps",
        action="append",
        choices=["evaluate", "analyze", "decide", "pages", "browser", "redemptions", "api"],
        help="only these measurement groups (repeatable; generation and imports always run)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--api-workers", type=int, default=1, help="api step: API server processes (default 1)")
    p.add_argument("--api-connections", type=int, default=32, help="api step: tills, one key and keep-alive connection each")
    p.add_argument("--api-seconds", type=float, default=30.0, help="api step: how long the load runs")
    p = add("api", cmd_api, "Serve the HTTP API for tills, the web shop and the app (FastAPI on uvicorn).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    apikeys = sub.add_parser("apikeys", help="Keys of the HTTP API.").add_subparsers(dest="apikeys_command", required=True)
    p = add("create", cmd_apikeys, "Make an API key; it is printed once.", parent=apikeys)
    p.add_argument("--name", required=True)
    p.add_argument("--scopes", required=True, help="comma-separated: members:read,members:write,purchases:write,redemptions:write")
    p.add_argument("--json", action="store_true")
    p = add("list", cmd_apikeys, "List API keys (never the keys themselves).", parent=apikeys)
    p.add_argument("--json", action="store_true")
    p = add("revoke", cmd_apikeys, "Revoke an API key by name.", parent=apikeys)
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    messages = sub.add_parser("messages", help="Messages to members (reminders, tier news, challenges, offers).").add_subparsers(
        dest="messages_command", required=True
    )
    p = add("list", cmd_messages, "The newest messages with their status (queued, sent, failed, suppressed).", parent=messages)
    p.add_argument("--status", choices=["queued", "sent", "failed", "suppressed"])
    p.add_argument("--kind", choices=["points_expiring", "tier_up", "tier_down", "challenge_completed", "campaign_offer"])
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--json", action="store_true")
    p = add("export", cmd_messages, "Write the queued CSV-channel messages for an e-mail service provider, and mark them sent.", parent=messages)
    p.add_argument("--out", required=True)
    p.add_argument("--json", action="store_true")
    challenges = sub.add_parser("challenges", help="Challenges members meet by buying.").add_subparsers(dest="challenges_command", required=True)
    p = add("add", cmd_challenges, "Define a challenge: a number of purchases, a spend, or a streak of months.", parent=challenges)
    p.add_argument("--name", required=True)
    goal = p.add_mutually_exclusive_group(required=True)
    goal.add_argument("--purchases", type=int, help="this many purchases")
    goal.add_argument("--min-spend", type=float, help="purchases adding up to at least this amount")
    goal.add_argument("--streak-months", type=int, help="a purchase in each of this many consecutive months")
    p.add_argument("--within-days", type=int, help="all within this many days of each other (default: anywhere in the dates)")
    p.add_argument("--category", help="only purchases of this category count")
    p.add_argument("--points", type=int, required=True, help="points paid on completion (0 for a badge only)")
    p.add_argument("--badge", help="a badge the member earns")
    p.add_argument("--starts", type=_date, help="first day (default: now)")
    p.add_argument("--ends", type=_date, help="the day it ends (exclusive; default: open)")
    p.add_argument("--max-completions", type=int, default=1, help="times one member can complete it (default 1)")
    p.add_argument("--holdout", type=float, default=0.0, help="share of members left out to measure the effect (0 to 0.5)")
    p.add_argument("--segment", help="only members of this saved segment (by name) can complete it")
    p.add_argument("--json", action="store_true")
    p = add("list", cmd_challenges, "List challenges with how many members completed each.", parent=challenges)
    p.add_argument("--json", action="store_true")
    add("worker", cmd_worker, "Run the scheduler (one active worker per database; others wait as standby).")
    p = add("evaluate", cmd_evaluate, "Run an evaluation job once (or all of them).")
    from loyalty.evaluation.jobs import JOBS

    p.add_argument("--job", required=True, choices=["all", *JOBS])
    p.add_argument("--as-of", type=_date, help="evaluate as of this day (default: yesterday)")
    p.add_argument(
        "--backfill",
        action="store_true",
        help="kpi-snapshot: recompute the overall KPIs of every past month and quarter (those missing are filled anyway)",
    )
    p.add_argument("--json", action="store_true")
    jobs = sub.add_parser("jobs", help="Evaluation job runs.").add_subparsers(dest="jobs_command", required=True)
    p = add("history", cmd_jobs_history, "Recent job runs, newest first.", parent=jobs)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p = add("report", cmd_report, "Render the executive report of a period.")
    p.add_argument("--period", required=True, help="YYYY-MM (monthly) or YYYY-Www (weekly)")
    p.add_argument("--format", choices=["html", "pdf", "json"], default="html", help="json: the report's figures")
    p.add_argument("--out", help="the file to write (default for json: print it)")

    p = add(
        "export",
        cmd_export,
        "Export members, purchases, the ledger or a segment's members to a CSV file (safe to open in a spreadsheet); "
        "parquet: all three to a folder as Parquet by month, rewriting only new or changed months.",
    )
    p.add_argument("what", choices=["members", "purchases", "ledger", "segment", "parquet"])
    p.add_argument("name", nargs="?", help="the segment's name (export segment NAME)")
    p.add_argument("--out", required=True, help="the CSV file to write (parquet: the folder)")
    p.add_argument("--purpose", choices=["analysis", "marketing"], default="analysis", help="marketing leaves out members without consent")
    p.add_argument("--as-role", choices=list(ROLES), help="mask as this role would see the data (default: administrator)")
    p.add_argument("--json", action="store_true")

    p = add("expire", cmd_expire, "Expire every points lot past its date now.")
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        prepare_database()
        return args.handler(args)
    except LoyaltyError as error:
        return _refused(args, str(error), error.exit_code)
    except Exception as error:  # a fault of the environment: one line, never a traceback
        fault = describe_fault(error)
        if fault is None:
            raise
        return _refused(args, *fault)


def _refused(args: argparse.Namespace, message: str, exit_code: int) -> int:
    if getattr(args, "json", False):
        _print_json({"ok": False, "error": message})
    else:
        print(f"error: {message}", file=sys.stderr)
    return exit_code
