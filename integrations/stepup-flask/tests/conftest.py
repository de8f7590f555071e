"""The protected-route conformance table, printed at the end of a run that includes the suite;
``stepup_flask_testserver`` (beside this file) serves the applications."""

import sys
from pathlib import Path

from stepup_core.testing.protected import (
    pytest_runtest_logreport,
    pytest_runtest_setup,
    pytest_terminal_summary,
)

__all__ = ["pytest_runtest_logreport", "pytest_runtest_setup", "pytest_terminal_summary"]

sys.path.insert(0, str(Path(__file__).parent))
