"""A PIN method for stepup, written to be copied by plugin authors."""

__version__ = "0.1.0"
