"""Secrets never reach a log line: redaction at the logging boundary.

stepup itself never logs a token, a code or a secret, but the libraries under it may: aiohttp's
HTTP parser, refusing a malformed request, logs the offending raw line (``aiohttp.server`` at
ERROR), which can be a session token followed by a NUL byte or the folded second half of an
``X-Elevated-Access-Token``; its access log (``aiohttp.access``) writes query strings, which
carry a provider's ``code`` and ``state`` on the way back from a sign-in.

:class:`RedactingFilter` is a :class:`logging.Filter` for *handlers*: a handler sees every record
that reaches it, from any logger, so one filter on the handlers covers ``aiohttp.server``,
``aiohttp.access``, ``stepup.*`` and every other logger. It renders each record once, removes
what could be a secret (see :func:`redact`) from the message, the traceback and the stack, and
leaves the record holding only the redacted text, so later handlers and formatters cannot
reach the original. ``stepup serve`` installs it with :func:`configure_logging`; an application
that mounts stepup calls :func:`install_redaction` once its logging is set up.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from typing import Any, TextIO

#: What replaces a secret.
REDACTED = "[redacted]"

#: Headers whose values are credentials.
SECRET_HEADERS = (
    "authorization",
    "proxy-authorization",
    "x-elevated-access-token",
    "cookie",
    "set-cookie",
    "x-api-key",
)
#: Query and form parameters whose values are secrets (OAuth codes and state, tokens, codes).
SECRET_PARAMETERS = (
    "code",
    "state",
    "token",
    "access_token",
    "id_token",
    "refresh_token",
    "code_verifier",
    "client_secret",
    "session",
    "password",
    "secret",
    "pin",
    "otp",
)

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Raw bytes as Python shows them: aiohttp's parser errors quote the offending request line
    # this way. Whatever the line holds (a header, a folded continuation, a request line with a
    # query), it is dropped whole.
    (re.compile(r"""(?<![A-Za-z0-9_])b'(?:[^'\\\n]|\\.)*'?"""), f"b'{REDACTED}'"),
    (re.compile(r"""(?<![A-Za-z0-9_])b"(?:[^"\\\n]|\\.)*"?"""), f'b"{REDACTED}"'),
    # Elevated access tokens anywhere, whole or in part.
    (re.compile(r"sut_[A-Za-z0-9_-]*"), f"sut_{REDACTED}"),
    # A credential header and its value, in a raw request, a dict repr or prose.
    (
        re.compile(
            r"(?i)(?<![A-Za-z0-9-])(" + "|".join(re.escape(h) for h in SECRET_HEADERS) + r""")(['"]?\s*[:=]\s*['"]?)"""
            r"""[^'"\r\n]*"""
        ),
        rf"\1\2{REDACTED}",
    ),
    # Bearer and Basic credentials wherever they appear.
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s'\",;]+"), rf"\1\2{REDACTED}"),
    # Secret query and form parameters (a callback's code and state in the access log).
    (
        re.compile(r"(?i)([?&;](?:" + "|".join(SECRET_PARAMETERS) + r")=)[^&\s'\"#]*"),
        rf"\1{REDACTED}",
    ),
)


def redact(text: str) -> str:
    """``text`` without anything that could be a secret: raw request bytes as Python quotes them
    (``b'...'``), elevated tokens (``sut_...``), the values of credential headers and of
    ``Bearer``/``Basic`` credentials, and the values of secret query parameters (``code``,
    ``state``, ``token``...). Redacting twice changes nothing."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Redact every record that passes (see the module's documentation); never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def redact_record(record: logging.LogRecord) -> None:
    """Render ``record`` and keep only its redacted text: message, traceback and stack."""
    if getattr(record, "stepup_redacted", False):
        return
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a record whose arguments do not format is still logged
        message = f"{record.msg!r} {record.args!r}"
    record.msg = redact(message)
    record.args = None
    if record.exc_info:
        # The exception itself may carry the secret (aiohttp's parser errors do): keep only its
        # redacted text, which formatters append to the message.
        record.exc_text = redact(_exception_text(record.exc_info))
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    record.stepup_redacted = True


def _exception_text(exc_info: Any) -> str:
    """The traceback as logging writes it; for an HTTP parser error (whose message quotes the
    raw request), the frames and the error's kind only, never the quoted data."""
    from aiohttp.http_exceptions import HttpProcessingError

    error = exc_info[1]
    if not isinstance(error, HttpProcessingError):
        return logging.Formatter().formatException(exc_info)
    frames = "".join(traceback.TracebackException(*exc_info).stack.format())
    reason = str(error.message).strip().splitlines()[0] if str(error.message).strip() else ""
    kind = f"{type(error).__module__}.{type(error).__qualname__}"
    return f"Traceback (most recent call last):\n{frames}{kind}: {error.code}, {reason} (request data not logged)"


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Add a :class:`RedactingFilter` to every handler of ``logger`` (the root logger by default)
    that has none yet. Call it after logging is configured; handlers added later need it too."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def configure_logging(level: int | str = logging.WARNING, stream: TextIO | None = None) -> logging.Handler:
    """What ``stepup serve`` does: one handler on the root logger, writing to ``stream``
    (standard error by default) at ``level``, with a :class:`RedactingFilter`. Returns it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    return handler
