"""EIP-4361 (Sign-In with Ethereum) messages: build, format, parse and check.

:class:`SiweMessage` holds the fields and validates each against the EIP-4361 ABNF when it is
built, so :func:`format_message` can only produce a conforming message. :func:`parse_message`
reads a message back, strictly: fields in the specified order, one per line, nothing else.
:func:`check_message` applies the time window and the domain and nonce bindings.

Timestamps stay the exact text that appears in the message (RFC 3339 ``date-time``), so a
parsed message formats back to the same bytes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

import attrs

from .addresses import is_checksum_address

HEADER_SUFFIX = " wants you to sign in with your Ethereum account:"
VERSION = "1"

# RFC 3986 character classes (EIP-4361 builds on them).
_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = r"!$&'()*+,;="
_PCT_ENCODED = r"%[0-9A-Fa-f]{2}"
_PCHAR = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@]|{_PCT_ENCODED})"
_SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"

_SCHEME_RE = re.compile(_SCHEME)
_USERINFO_RE = re.compile(rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:]|{_PCT_ENCODED})*")
_REG_NAME_RE = re.compile(rf"(?:[{_UNRESERVED}{_SUB_DELIMS}]|{_PCT_ENCODED})*")
_PORT_RE = re.compile(r"[0-9]*")
_IPV_FUTURE_RE = re.compile(rf"[vV][0-9A-Fa-f]+\.[{_UNRESERVED}{_SUB_DELIMS}:]+")
_PATH_ABEMPTY_RE = re.compile(rf"(?:/{_PCHAR}*)*")
_PATH_ABSOLUTE_RE = re.compile(rf"/(?:{_PCHAR}+(?:/{_PCHAR}*)*)?")
_PATH_ROOTLESS_RE = re.compile(rf"{_PCHAR}+(?:/{_PCHAR}*)*")
_QUERY_RE = re.compile(rf"(?:{_PCHAR}|[/?])*")
_URI_RE = re.compile(rf"({_SCHEME}):([^?#]*)(?:\?([^#]*))?(?:#(.*))?", re.DOTALL)

#: statement = *( reserved / unreserved / " " ); reserved = gen-delims / sub-delims.
_STATEMENT_RE = re.compile(rf"[{_UNRESERVED}{_SUB_DELIMS}:/?#\[\]@ ]+")
_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
_NONCE_RE = re.compile(r"[A-Za-z0-9]{8,}")
_CHAIN_ID_RE = re.compile(r"[0-9]+")
_REQUEST_ID_RE = re.compile(rf"{_PCHAR}*")
_DATE_TIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


class MessageFormatError(ValueError):
    """A message, or one of its fields, does not conform to EIP-4361. ``field`` names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class MessageRejected(Exception):
    """A well-formed message that may not be accepted now. ``reason`` is one of ``expired``,
    ``not_yet_valid``, ``domain_mismatch``, ``scheme_mismatch``, ``nonce_mismatch``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# --- RFC 3986 pieces ---------------------------------------------------------------------


def _is_ip_literal(text: str) -> bool:
    if _IPV_FUTURE_RE.fullmatch(text):
        return True
    if "%" in text:  # zone identifiers are not part of RFC 3986's IP-literal
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def is_authority(value: str, *, require_host: bool = True) -> bool:
    """RFC 3986 ``authority``: ``[ userinfo "@" ] host [ ":" port ]``."""
    userinfo, at, hostport = value.rpartition("@")
    if at and not _USERINFO_RE.fullmatch(userinfo):
        return False
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or not _is_ip_literal(hostport[1:end]):
            return False
        rest = hostport[end + 1 :]
    else:
        host, colon, port = hostport.partition(":")
        if not _REG_NAME_RE.fullmatch(host) or (require_host and not host):
            return False
        rest = colon + port
    return not rest or (rest.startswith(":") and bool(_PORT_RE.fullmatch(rest[1:])))


def is_uri(value: str) -> bool:
    """RFC 3986 ``URI``: ``scheme ":" hier-part [ "?" query ] [ "#" fragment ]``."""
    match = _URI_RE.fullmatch(value)
    if not match:
        return False
    _, hier, query, fragment = match.groups()
    if hier.startswith("//"):
        authority, slash, path = hier[2:].partition("/")
        if not is_authority(authority, require_host=False) or not _PATH_ABEMPTY_RE.fullmatch(slash + path):
            return False
    elif hier and not (_PATH_ABSOLUTE_RE.fullmatch(hier) or _PATH_ROOTLESS_RE.fullmatch(hier)):
        return False
    return all(part is None or _QUERY_RE.fullmatch(part) for part in (query, fragment))


def is_statement(value: str) -> bool:
    """A non-empty EIP-4361 statement: printable URI characters and spaces, no line break."""
    return bool(_STATEMENT_RE.fullmatch(value))


# --- timestamps --------------------------------------------------------------------------


def parse_timestamp(value: str) -> datetime:
    """An RFC 3339 ``date-time`` (``2021-09-30T16:25:24.000Z``) as an aware datetime.

    Impossible dates (February 31st) and leap seconds are refused.
    """
    match = _DATE_TIME_RE.fullmatch(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"{value!r} is not an RFC 3339 date-time such as 2021-09-30T16:25:24.000Z")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, offset = match.group(7), match.group(8)
    if offset in ("Z", "z"):
        tz = timezone.utc
    else:
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(f"{value!r} has an impossible UTC offset")
        sign = 1 if offset[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a real date and time: {exc}") from None


def timestamp_seconds(value: str) -> float:
    """Seconds since the epoch of an RFC 3339 ``date-time``."""
    return parse_timestamp(value).timestamp()


def format_timestamp(seconds: float) -> str:
    """Seconds since the epoch as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC, milliseconds, truncated)."""
    moment = datetime.fromtimestamp(int(seconds * 1000) / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- the message -------------------------------------------------------------------------


def _check_date_time(field: str, value: str | None) -> None:
    if value is None:
        return
    try:
        parse_timestamp(value)
    except ValueError as exc:
        raise MessageFormatError(field, str(exc)) from None


def _as_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@attrs.frozen
class SiweMessage:
    """The fields of an EIP-4361 message. Building one validates every field."""

    domain: str
    address: str
    uri: str
    chain_id: int
    nonce: str
    issued_at: str
    version: str
    scheme: str | None = None
    statement: str | None = None
    expiration_time: str | None = None
    not_before: str | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = attrs.field(default=(), converter=_as_tuple)

    def __attrs_post_init__(self) -> None:
        if self.scheme is not None and not (isinstance(self.scheme, str) and _SCHEME_RE.fullmatch(self.scheme)):
            raise MessageFormatError("scheme", "must be an RFC 3986 scheme such as https")
        if not isinstance(self.domain, str) or not is_authority(self.domain):
            raise MessageFormatError("domain", "must be an RFC 3986 authority such as example.com or host:port")
        if not isinstance(self.address, str) or not _ADDRESS_RE.fullmatch(self.address):
            raise MessageFormatError("address", "must be 0x followed by 40 hexadecimal digits")
        if not is_checksum_address(self.address):
            raise MessageFormatError("address", "must be written in its EIP-55 checksum form")
        if self.statement is not None and not (isinstance(self.statement, str) and is_statement(self.statement)):
            raise MessageFormatError(
                "statement", "must be one non-empty line of letters, digits, spaces and URI punctuation"
            )
        if not isinstance(self.uri, str) or not is_uri(self.uri):
            raise MessageFormatError("uri", "must be an RFC 3986 URI")
        if self.version != VERSION:
            raise MessageFormatError("version", f"must be {VERSION!r}")
        if isinstance(self.chain_id, bool) or not isinstance(self.chain_id, int) or self.chain_id < 0:
            raise MessageFormatError("chain_id", "must be a non-negative integer (EIP-155 chain id)")
        if not isinstance(self.nonce, str) or not _NONCE_RE.fullmatch(self.nonce):
            raise MessageFormatError("nonce", "must be at least 8 letters and digits")
        _check_date_time("issued_at", self.issued_at)
        _check_date_time("expiration_time", self.expiration_time)
        _check_date_time("not_before", self.not_before)
        if self.request_id is not None and not (
            isinstance(self.request_id, str) and _REQUEST_ID_RE.fullmatch(self.request_id)
        ):
            raise MessageFormatError("request_id", "must consist of RFC 3986 path characters")
        for index, resource in enumerate(self.resources):
            if not isinstance(resource, str) or not is_uri(resource):
                raise MessageFormatError(f"resources[{index}]", "must be an RFC 3986 URI")

    def to_text(self) -> str:
        return format_message(self)


def format_message(message: SiweMessage) -> str:
    """The EIP-4361 text of ``message``: LF line ends, no trailing newline."""
    origin = f"{message.scheme}://{message.domain}" if message.scheme else message.domain
    lines = [origin + HEADER_SUFFIX, message.address, ""]
    if message.statement is not None:
        lines += [message.statement, ""]
    else:
        lines.append("")
    lines += [
        f"URI: {message.uri}",
        f"Version: {message.version}",
        f"Chain ID: {message.chain_id}",
        f"Nonce: {message.nonce}",
        f"Issued At: {message.issued_at}",
    ]
    if message.expiration_time is not None:
        lines.append(f"Expiration Time: {message.expiration_time}")
    if message.not_before is not None:
        lines.append(f"Not Before: {message.not_before}")
    if message.request_id is not None:
        lines.append(f"Request ID: {message.request_id}")
    if message.resources:
        lines.append("Resources:")
        lines += [f"- {resource}" for resource in message.resources]
    return "\n".join(lines)


class _Lines:
    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        self.index = 0

    def peek(self) -> str | None:
        return self.lines[self.index] if self.index < len(self.lines) else None

    def take(self) -> str | None:
        line = self.peek()
        self.index += 1
        return line

    def tagged(self, tag: str, field: str, required: bool) -> str | None:
        line = self.peek()
        if line is not None and line.startswith(tag):
            self.index += 1
            return line[len(tag) :]
        if required:
            raise MessageFormatError(field, f"expected a line starting {tag!r} as line {self.index + 1}")
        return None


def parse_message(text: str) -> SiweMessage:
    """Parse EIP-4361 text strictly; raise :class:`MessageFormatError` naming the bad field."""
    if not isinstance(text, str):
        raise MessageFormatError("message", "must be text")
    lines = _Lines(text)
    header = lines.take() or ""
    if not header.endswith(HEADER_SUFFIX):
        raise MessageFormatError("domain", f"the first line must end with {HEADER_SUFFIX.strip()!r}")
    origin = header[: -len(HEADER_SUFFIX)]
    scheme: str | None = None
    with_scheme = re.fullmatch(rf"({_SCHEME})://(.*)", origin, re.DOTALL)
    domain = origin
    if with_scheme:
        scheme, domain = with_scheme.group(1), with_scheme.group(2)
    address = lines.take()
    if address is None or not _ADDRESS_RE.fullmatch(address):
        raise MessageFormatError("address", "the second line must be the 0x-prefixed account address")
    if lines.take() != "":
        raise MessageFormatError("statement", "an empty line must follow the address")
    statement: str | None = None
    line = lines.take()
    if line is None:
        raise MessageFormatError("uri", "the message ends before its URI")
    if line != "":
        statement = line
        if lines.take() != "":
            raise MessageFormatError("statement", "the statement must be one line followed by an empty line")
    uri = lines.tagged("URI: ", "uri", True)
    version = lines.tagged("Version: ", "version", True)
    chain_text = lines.tagged("Chain ID: ", "chain_id", True) or ""
    if not _CHAIN_ID_RE.fullmatch(chain_text):
        raise MessageFormatError("chain_id", f"{chain_text!r} is not a decimal chain id")
    nonce = lines.tagged("Nonce: ", "nonce", True)
    issued_at = lines.tagged("Issued At: ", "issued_at", True)
    expiration_time = lines.tagged("Expiration Time: ", "expiration_time", False)
    not_before = lines.tagged("Not Before: ", "not_before", False)
    request_id = lines.tagged("Request ID: ", "request_id", False)
    resources: list[str] = []
    if lines.peek() == "Resources:":
        lines.take()
        while (line := lines.peek()) is not None and line.startswith("- "):
            resources.append(line[2:])
            lines.take()
    if lines.peek() is not None:
        raise MessageFormatError("message", f"unexpected text on line {lines.index + 1}: {lines.peek()!r}")
    return SiweMessage(
        domain=domain,
        address=address,
        uri=uri or "",
        version=version or "",
        chain_id=int(chain_text),
        nonce=nonce or "",
        issued_at=issued_at or "",
        scheme=scheme,
        statement=statement,
        expiration_time=expiration_time,
        not_before=not_before,
        request_id=request_id,
        resources=tuple(resources),
    )


def check_message(
    message: SiweMessage,
    *,
    now: float,
    domain: str | None = None,
    scheme: str | None = None,
    nonce: str | None = None,
) -> None:
    """Refuse a message outside its validity window or bound to another domain or nonce.

    :param now: the current time, seconds since the epoch (from the injected clock).
    :param domain: when given, the message's domain must equal it.
    :param scheme: when given, a scheme in the message must equal it.
    :param nonce: when given, the message's nonce must equal it.
    :raises MessageRejected: naming the reason.
    """
    if message.expiration_time is not None and now >= timestamp_seconds(message.expiration_time):
        raise MessageRejected("expired", f"the message expired at {message.expiration_time}")
    if message.not_before is not None and now < timestamp_seconds(message.not_before):
        raise MessageRejected("not_yet_valid", f"the message is not valid before {message.not_before}")
    if domain is not None and message.domain != domain:
        raise MessageRejected("domain_mismatch", f"the message is for {message.domain}, not {domain}")
    if scheme is not None and message.scheme is not None and message.scheme != scheme:
        raise MessageRejected("scheme_mismatch", f"the message is for scheme {message.scheme}, not {scheme}")
    if nonce is not None and message.nonce != nonce:
        raise MessageRejected("nonce_mismatch", "the message carries another nonce")
