"""Tests of the scale-out: real NATS, real PostgreSQL, real aggregator processes."""
