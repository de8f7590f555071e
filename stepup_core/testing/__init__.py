"""Test support shipped with stepup, for this project and for third-party plugins.

- ``stepup_core.testing.stores.StoreConformanceSuite``: the pytest class a store backend subclasses.
- ``stepup_core.testing.verifiers.VerifierConformanceSuite``: the pytest class a method subclasses.
- ``stepup_core.testing.methods``: throwaway methods (PIN, HMAC key, redirect) and
  ``ThrowawayPlugin``, which registers them, records audit events and supplies the
  application's own credentials.
- ``stepup_core.testing.stack.StepUpStack``: a service served on loopback with OpenAPI-checked clients.
- ``stepup_core.testing.pytest_plugin``: opt-in fixtures
  (``pytest_plugins = ["stepup_core.testing.pytest_plugin"]``).
- ``stepup_core.testing.vectors``: loading the conformance vectors of ``tests/vectors/``.
"""
