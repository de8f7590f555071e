"""Django is configured once for these tests (``stepup_django_testproject``, beside this file);
the protected-route conformance table is printed at the end of a run that includes the suite."""

import sys
from pathlib import Path

from stepup_core.testing.protected import (
    pytest_runtest_logreport,
    pytest_runtest_setup,
    pytest_terminal_summary,
)

sys.path.insert(0, str(Path(__file__).parent))

import stepup_django_testproject

stepup_django_testproject.setup()

__all__ = ["pytest_runtest_logreport", "pytest_runtest_setup", "pytest_terminal_summary"]
