"""Storage: the SQLModel tables, the engine and session factory, the migrations."""

from db.engine import get_engine, new_session, upgrade_to_head, write_transaction

__all__ = ["get_engine", "new_session", "upgrade_to_head", "write_transaction"]
