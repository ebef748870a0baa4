"""Simulated homes: appliances and owners' terms, virtual homes, fleets, and the demo."""
