"""Operability: request ids, structured logs and Prometheus metrics (DESIGN §7.5)."""
