"""The protected-route conformance table, printed at the end of a run that includes the suite."""

from stepup_core.testing.protected import (
    pytest_runtest_logreport,
    pytest_runtest_setup,
    pytest_terminal_summary,
)

__all__ = ["pytest_runtest_logreport", "pytest_runtest_setup", "pytest_terminal_summary"]
