"""The thin Streamlit-aware layer: cached engine, sign-in, error display, chart builders.

The only part of ``loyalty`` that imports Streamlit; pages import from here and from
the domain modules.
"""
