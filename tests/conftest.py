"""Test settings: seeded, CPU, reproducible property tests."""

from hypothesis import settings

settings.register_profile("tbptt", derandomize=True, database=None, deadline=None)
settings.load_profile("tbptt")
