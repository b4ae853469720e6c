"""Experiment reports, health checks and freshness: from counts to decisions."""
