"""The periodic evaluations: the scheduled jobs and their worker, KPI snapshots, tier re-evaluation, campaign results, alerts and reports."""
