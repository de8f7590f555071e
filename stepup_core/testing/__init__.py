"""Test support shipped with stepup, for this project and for third-party plugins.

- ``stepup_core.testing.stores.StoreConformanceSuite``: the pytest class a store backend subclasses
  (and ``StoreScanSuite`` when it offers ``scan``).
- ``stepup_core.testing.coalescing.ReadCoalescingSuite``: for a store whose ``get`` goes through a
  ``ReadCoalescer`` (concurrent gets share round trips and still see every completed write).
- ``stepup_core.testing.multi_instance.MultiInstanceSuite``: two server processes on one shared
  store (Redis, PostgreSQL): sharing, single use, replay, lockout, outage and recovery.
- ``stepup_core.testing.rotation.KeyRotationSuite``: live TOTP, passkeys and recovery codes
  through a secret-key rotation on a store.
- ``stepup_core.testing.verifiers.VerifierConformanceSuite``: the pytest class a method subclasses.
- ``stepup_core.testing.methods``: throwaway methods (PIN, HMAC key, redirect) and
  ``ThrowawayPlugin``, which registers them, records audit events and supplies the
  application's own credentials.
- ``stepup_core.testing.stack.StepUpStack``: a service served on loopback with OpenAPI-checked clients.
- ``stepup_core.testing.pytest_plugin``: opt-in fixtures
  (``pytest_plugins = ["stepup_core.testing.pytest_plugin"]``).
- ``stepup_core.testing.vectors``: loading the conformance vectors of ``tests/vectors/``.
"""
