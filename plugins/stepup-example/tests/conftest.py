pytest_plugins = ["stepup_core.testing.pytest_plugin"]
