"""Example warm-start rules for the ``python:`` spec (see docs/warm-starts.md)."""
