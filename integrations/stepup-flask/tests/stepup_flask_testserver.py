"""Werkzeug's threaded server (Flask's own) on loopback, for these tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask
from werkzeug.serving import make_server

from stepup_core.testing.servers import serving_in_thread


@contextmanager
def serve_werkzeug(app: Flask) -> Iterator[str]:
    """Flask's own server (Werkzeug), one thread per request, on loopback."""
    with serving_in_thread(make_server("127.0.0.1", 0, app, threaded=True)) as base_url:
        yield base_url
