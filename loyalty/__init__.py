"""Loyalty Console's domain: ledger, earn engine, rewards, imports, analytics, jobs.

Plain functions over a SQLModel session; the pages, the command line, the scheduler
and the tests all call these. Nothing here imports Streamlit except ``loyalty.ui``.
"""
