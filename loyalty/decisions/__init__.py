"""Decisions before acting: the what-if simulator, campaign planner, liability forecast, win-back list and entry barrier."""
