"""The program's configuration: settings, tiers, the rewards catalogue, campaigns, goals, segments, and their archive/restore/clone life cycle."""
