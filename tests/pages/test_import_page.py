"""Import page: preview, import with progress and result, and the row-level error list."""

from __future__ import annotations

from sqlmodel import func, select

from db.models import LedgerEntry, Purchase
from tests.factories import make_member
from tests.pages.conftest import open_page

GOOD = b"purchase_id,member_id,occurred_at,amount,channel,store,category\nP1,M1,2026-10-01T10:00:00Z,42.50,store,S1,grocery\nP2,M1,2026-10-02,10,web,online,eco-friendly\n"
BAD = b"purchase_id,member_id,occurred_at,amount,channel,store,category\nP1,M1,yesterday,42.50,store,S1,grocery\nP2,M9,2026-10-02,-10,web,online,eco-friendly\n"


def test_a_manager_previews_and_imports_purchases_that_earn_points(app, session):
    member = make_member(session, external_id="M1")
    at = open_page(app, "manager", "pages/import_data.py")
    assert "Choose a file" in at.info[0].value
    at.file_uploader(key="import_file").set_value(("purchases.csv", GOOD, "text/csv")).run()
    assert len(at.dataframe[1].value) == 2, "the preview shows the file's rows"
    at.button(key="import_run").click().run()
    assert "Imported 2 rows" in at.success[0].value, [e.value for e in at.error]
    session.rollback()
    assert session.exec(select(func.count()).select_from(Purchase)).one() == 2
    assert session.exec(select(func.sum(LedgerEntry.points)).where(LedgerEntry.member_id == member.id)).one() == 42 + 10


def test_a_bad_file_is_refused_whole_with_each_problem_listed(app, session):
    make_member(session, external_id="M1")
    at = open_page(app, "manager", "pages/import_data.py")
    at.file_uploader(key="import_file").set_value(("purchases.csv", BAD, "text/csv")).run()
    at.button(key="import_run").click().run()
    assert "Nothing was imported" in at.error[0].value
    problems = at.dataframe[-1].value
    assert {(p.line, p.column) for p in problems.itertuples()} >= {(2, "occurred_at"), (3, "member_id"), (3, "amount")}
    session.rollback()
    assert session.exec(select(func.count()).select_from(Purchase)).one() == 0


SEMICOLON_BOM = (
    "\ufeffpurchase_id;member_id;occurred_at;amount;channel;store;category;till\nP1;M1;2026-10-01T10:00:00Z;42.50;store;S1;grocery;T4\n".encode()
)
TAB_OWN_NAMES = b"Order\tCustomer\toccurred_at\tamount\tchannel\tstore\tcategory\nP7\tM1\t2026-10-03\t8\tstore\tS1\tgrocery\n"


def test_a_semicolon_file_with_a_byte_order_mark_is_previewed_with_its_mapping_then_imported(app, session):
    make_member(session, external_id="M1")
    at = open_page(app, "manager", "pages/import_data.py")
    at.file_uploader(key="import_file").set_value(("till.csv", SEMICOLON_BOM, "text/csv")).run()
    assert any("of till.csv: 1 row of data, semicolon-separated, UTF-8 with a byte-order mark" in m.value for m in at.markdown)
    mapping = at.dataframe[0].value.set_index("file_column")
    assert mapping.loc["purchase_id", "status"] == "optional" and mapping.loc["amount", "status"] == "required"
    assert mapping.loc["till", "status"] == "unknown: not imported"
    assert at.dataframe[1].value.loc[0, "amount"] == "42.50"
    session.rollback()
    assert session.exec(select(func.count()).select_from(Purchase)).one() == 0, "nothing is written before the import is confirmed"
    at.button(key="import_run").click().run()
    assert "Imported 1 rows" in at.success[0].value, [e.value for e in at.error]
    session.rollback()
    assert session.exec(select(Purchase.external_id)).all() == ["P1"]


def test_a_missing_column_is_mapped_from_the_files_own_columns_before_importing(app, session):
    make_member(session, external_id="M1")
    at = open_page(app, "manager", "pages/import_data.py")
    at.file_uploader(key="import_file").set_value(("orders.tsv", TAB_OWN_NAMES, "text/tab-separated-values")).run()
    assert "Missing column(s): member_id" in at.warning[0].value
    assert at.button(key="import_run").disabled
    missing = at.dataframe[0].value.query("file_column == ''")
    assert list(missing["status"]) == ["missing: required", "absent: optional"]
    at.selectbox(key="import_map_member_id").set_value("Customer").run()
    mapping = at.dataframe[0].value.set_index("file_column")
    assert mapping.loc["Customer", "field"] == "member_id" and mapping.loc["Customer", "status"] == "required, mapped"
    at.button(key="import_run").click().run()
    assert "Imported 1 rows" in at.success[0].value, [e.value for e in at.error]


def test_an_import_stopped_half_way_says_so_on_the_next_run_and_wrote_nothing(app, session, monkeypatch):
    from streamlit.runtime.scriptrunner_utils.exceptions import StopException

    from loyalty.ledger import imports

    make_member(session, external_id="M1")
    at = open_page(app, "manager", "pages/import_data.py")
    at.file_uploader(key="import_file").set_value(("purchases.csv", GOOD, "text/csv")).run()
    real = imports._import_chunk

    def stopped(*args, **kwargs):  # what the Cancel button (a new run of the page) does to the running one
        real(*args, **kwargs)
        raise StopException()

    monkeypatch.setattr(imports, "_import_chunk", stopped)
    at.button(key="import_run").click().run()
    assert at.button(key="import_cancel") is not None
    monkeypatch.setattr(imports, "_import_chunk", real)
    at.run()
    assert "was stopped before it finished: nothing of it was written" in at.warning[0].value
    session.rollback()
    assert session.exec(select(func.count()).select_from(Purchase)).one() == 0
    at.run()
    assert not [w for w in at.warning if "stopped" in w.value], "said once"
