"""Upstream clients (one package per upstream) and the shared resilience layer."""
