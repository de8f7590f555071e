"""Test support shipped with stepup: conformance suites, fixtures, vectors.

``StoreConformanceSuite`` and ``VerifierConformanceSuite`` are pytest classes a backend or a
method subclasses; ``stepup_core.testing.pytest_plugin`` is an opt-in pytest plugin
(``pytest_plugins = ["stepup_core.testing.pytest_plugin"]``).
"""
