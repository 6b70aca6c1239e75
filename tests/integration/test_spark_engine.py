"""The Spark engine gives the default engine's answers to the last digit (issue 20).

One demo program, one Spark session for the module (the JVM takes seconds to start); the
tests run on one xdist worker together (their ``xdist_group``). They skip, saying why,
where pyspark or Java is missing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from loyalty.analytics.engines import analytics_engine, kpi_summary_on, retention_analysis_on, rfm_analysis_on
from loyalty.errors import InvalidInput
from tests.conftest import demo_database
from tests.factories import utc

pytestmark = [pytest.mark.xdist_group("spark")]

NOW = utc(2026, 11, 16, 12)
MEMBERS, MONTHS, SEED = 400, 14, 11


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    pytest.importorskip("pyspark", reason="the Spark engine needs pyspark (pip install -r requirements.txt)")
    if shutil.which("java") is None:
        pytest.skip("the Spark engine needs Java 17 (apt-get install openjdk-17-jre-headless); .ci/run installs it")
    from loyalty.analytics.spark import spark_session, stop_spark

    yield spark_session()
    stop_spark()


@pytest.fixture(scope="module")
def demo(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with demo_database(sqlite_template, tmp_path_factory, members=MEMBERS, months=MONTHS, seed=SEED, now=NOW) as (engine, _):
        yield engine


@pytest.fixture
def demo_session(demo: Engine) -> Iterator[Session]:
    from db.engine import new_session

    with new_session(demo) as session:
        yield session


ANALYSES: dict[str, Callable[[Session, str], dict[str, Any]]] = {
    "kpis of October": lambda s, e: kpi_summary_on(s, date(2026, 10, 1), date(2026, 11, 1), engine=e),
    "kpis of the third quarter": lambda s, e: kpi_summary_on(s, date(2026, 7, 1), date(2026, 10, 1), engine=e),
    "kpis of the running month": lambda s, e: kpi_summary_on(s, date(2026, 11, 1), date(2026, 12, 1), engine=e),
    "retention by month": lambda s, e: retention_analysis_on(s, "month", None, engine=e),
    "retention by quarter as of a day": lambda s, e: retention_analysis_on(s, "quarter", date(2026, 8, 14), engine=e),
    "rfm": lambda s, e: rfm_analysis_on(s, None, engine=e),
    "rfm as of a day": lambda s, e: rfm_analysis_on(s, date(2026, 6, 30), engine=e),
}


@pytest.mark.parametrize("analysis", list(ANALYSES), ids=list(ANALYSES))
def test_the_spark_engine_prints_the_default_engines_json_to_the_last_digit(spark: Any, demo_session: Session, analysis: str) -> None:
    run = ANALYSES[analysis]
    default = json.dumps(run(demo_session, "default"), default=str)
    assert json.dumps(run(demo_session, "spark"), default=str) == default
    assert '"size"' in default or '"kpis"' in default or '"segments"' in default  # not an empty answer


@pytest.fixture(scope="module")
def lake(demo: Engine, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo program exported as Parquet (what Spark reads on a cluster)."""
    from db.engine import new_session
    from loyalty.access.roles import Actor
    from loyalty.analytics.parquet import export_parquet

    out = tmp_path_factory.mktemp("lake")
    with new_session(demo) as session:
        export_parquet(session, out, actor=Actor("test-admin", "admin"))
    return out


@pytest.mark.parametrize("analysis", list(ANALYSES), ids=list(ANALYSES))
def test_the_spark_engine_reading_the_parquet_export_prints_the_same_json(
    spark: Any, demo_session: Session, lake: Path, analysis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loyalty.analytics import spark as engine

    run = ANALYSES[analysis]
    default = json.dumps(run(demo_session, "default"), default=str)
    monkeypatch.setenv("LOYALTY_PARQUET_DIR", str(lake))
    monkeypatch.setattr(engine, "load_purchases", _not_the_database)  # the rows come from the files
    monkeypatch.setattr(engine, "load_ledger_entries", _not_the_database)
    assert json.dumps(run(demo_session, "spark"), default=str) == default


def _not_the_database(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the Spark engine read the database, not the Parquet export")


def test_a_missing_export_is_said_in_words(spark: Any, demo_session: Session, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="export parquet --out"):
        rfm_analysis_on(demo_session, None, engine="spark", lake=str(tmp_path / "nowhere"))


def test_analyze_with_the_engine_from_the_environment_uses_spark(
    spark: Any, demo: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from loyalty import analytics
    from loyalty.cli import main

    monkeypatch.setenv("LOYALTY_DATABASE_URL", demo.url.render_as_string(hide_password=False))
    assert main(["analyze", "rfm", "--json"]) == 0
    default = capsys.readouterr().out
    called: list[str] = []
    monkeypatch.setenv("LOYALTY_ANALYTICS_ENGINE", "spark")
    real = analytics.spark.spark_rfm_analysis
    monkeypatch.setattr(analytics.spark, "spark_rfm_analysis", lambda *a, **k: called.append("spark") or real(*a, **k))
    assert main(["analyze", "rfm", "--json"]) == 0
    assert capsys.readouterr().out == default
    assert called == ["spark"]


def test_the_spark_engine_refuses_a_split_it_does_not_compute(spark: Any, demo_session: Session) -> None:
    from loyalty.analytics.metrics import compute_kpis
    from loyalty.analytics.spark import SparkAggregation

    with pytest.raises(InvalidInput, match="overall KPIs"):
        compute_kpis(demo_session, date(2026, 10, 1), date(2026, 11, 1), by="tier", aggregation=SparkAggregation())


def test_an_export_named_for_the_default_engine_is_refused_not_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOYALTY_ANALYTICS_ENGINE", raising=False)
    with pytest.raises(InvalidInput, match="add --engine spark"):
        rfm_analysis_on(None, None, lake="/data/lake")  # type: ignore[arg-type]  # refused before any read


def test_the_engine_comes_from_the_argument_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOYALTY_ANALYTICS_ENGINE", raising=False)
    assert analytics_engine() == "default"
    monkeypatch.setenv("LOYALTY_ANALYTICS_ENGINE", "spark")
    assert analytics_engine() == "spark"
    assert analytics_engine("default") == "default"
    monkeypatch.setenv("LOYALTY_ANALYTICS_ENGINE", "hadoop")
    with pytest.raises(InvalidInput, match="default, spark"):
        analytics_engine()


# --- the nightly KPI snapshot -----------------------------------------------------------------

AS_OF = date(2026, 11, 15)


def _snapshot_values(frames: list[Any]) -> list[tuple[Any, ...]]:
    """The snapshot rows without the moment they were computed, in one order."""
    import pandas as pd

    rows = pd.concat(frames, ignore_index=True).drop(columns=["computed_at"])
    return sorted(tuple(None if pd.isna(v) else v for v in row) for row in rows.itertuples(index=False))


def test_the_nightly_kpi_snapshot_on_spark_gives_every_split_the_default_engines_values(spark: Any, demo_session: Session) -> None:
    """Month, month to date and quarter, overall and by segment, tier and channel: every value to the last digit."""
    from loyalty.evaluation.kpis import kpi_snapshot_frames, snapshot_periods

    periods = [*snapshot_periods(AS_OF), ("month", date(2026, 6, 1), date(2026, 7, 1))]
    default = _snapshot_values(kpi_snapshot_frames(demo_session, periods, engine="default"))
    on_spark = _snapshot_values(kpi_snapshot_frames(demo_session, periods, engine="spark"))
    assert on_spark == default
    splits = {(row[4], row[5]) for row in default}
    for dimension in ("overall", "segment", "tier", "channel"):
        assert any(d == dimension for d, _ in splits), f"no {dimension} rows: the comparison would prove nothing"
    assert len({value for (_, dimension_value) in splits for value in [dimension_value] if dimension_value}) >= 6


def test_the_nightly_kpi_snapshot_on_spark_reads_the_parquet_export_not_the_large_tables(
    spark: Any, demo_session: Session, lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loyalty.analytics import metrics, segments
    from loyalty.analytics import spark as engine
    from loyalty.evaluation.kpis import kpi_snapshot_frames, snapshot_periods

    periods = snapshot_periods(AS_OF)
    default = _snapshot_values(kpi_snapshot_frames(demo_session, periods, engine="default"))
    monkeypatch.setenv("LOYALTY_PARQUET_DIR", str(lake))
    for module in (engine, metrics, segments):
        monkeypatch.setattr(module, "load_purchases", _not_the_database)
    for module in (engine, metrics):
        monkeypatch.setattr(module, "load_ledger_entries", _not_the_database)
    assert _snapshot_values(kpi_snapshot_frames(demo_session, periods, engine="spark")) == default


def test_the_kpi_snapshot_job_with_the_spark_engine_stores_what_the_default_engine_stores(
    spark: Any, demo: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The nightly job as the scheduler runs it, LOYALTY_ANALYTICS_ENGINE=spark: the same rows,
    the Overview's numbers included, and Spark did the KPIs' sums."""
    from sqlalchemy import text

    from db.engine import new_session
    from loyalty.analytics import spark as engine
    from loyalty.evaluation.jobs import run_job

    def stored() -> list[tuple[Any, ...]]:
        with new_session(demo) as session:
            return [
                tuple(row)
                for row in session.execute(
                    text(
                        "SELECT metric, period, period_start, period_end, dimension, dimension_value, value FROM kpi_snapshot ORDER BY 1, 2, 3, 5, 6"
                    )
                )
            ]

    monkeypatch.delenv("LOYALTY_ANALYTICS_ENGINE", raising=False)
    assert run_job("kpi-snapshot", as_of=AS_OF, engine=demo)["status"] == "succeeded"
    default = stored()
    called: list[str] = []
    real = engine.SparkAggregation.member_ledger_totals
    monkeypatch.setattr(engine.SparkAggregation, "member_ledger_totals", lambda *a, **k: called.append("spark") or real(*a, **k))
    monkeypatch.setenv("LOYALTY_ANALYTICS_ENGINE", "spark")
    assert run_job("kpi-snapshot", as_of=AS_OF, engine=demo)["status"] == "succeeded"
    assert stored() == default
    assert called, "Spark summed the ledger"
    assert any(row[4] == "headline" for row in default) and any(row[4] == "segment" for row in default)


def test_the_nightly_kpi_snapshot_refuses_an_export_older_than_the_ledger(
    spark: Any, demo_session: Session, lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export made before the day's last entries would store old sums beside live figures: refused, in words."""
    from loyalty.evaluation.kpis import kpi_snapshot_frames, snapshot_periods

    older = tmp_path / "older"
    shutil.copytree(lake, older)
    manifest = json.loads((older / "_manifest.json").read_text())
    last_month = max(manifest["tables"]["ledger"])
    manifest["tables"]["ledger"][last_month]["max_id"] -= 1  # as if the last entry came after the export
    (older / "_manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("LOYALTY_PARQUET_DIR", str(older))
    with pytest.raises(InvalidInput, match="export again"):
        kpi_snapshot_frames(demo_session, snapshot_periods(AS_OF), engine="spark")
    monkeypatch.setenv("LOYALTY_PARQUET_DIR", str(lake))
    assert kpi_snapshot_frames(demo_session, snapshot_periods(AS_OF), engine="spark"), "the current export is taken"
