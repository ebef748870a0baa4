"""Settlement: baselines from telemetry history, delivered energy and payments per home."""
