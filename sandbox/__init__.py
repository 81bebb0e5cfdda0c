"""Simulations of every upstream, served over real HTTP for development, tests and demos.

Nothing here imports production code: it is the other side of the wire.
"""
