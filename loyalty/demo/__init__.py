"""The demo program: a realistic synthetic loyalty program, deterministic for a seed."""
