"""docs/configuration.md is the full reference of stepup.toml: every key of the configuration
classes is documented with its type and default, nothing else is, and the example loads."""

from __future__ import annotations

import enum
import json
import re
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from stepup_core.config import StepUpConfig, config_from_mapping, load_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
#: How the reference writes the keys of a table of tables (any other: ``<key>``).
PLACEHOLDERS = {"scopes": '"<scope>"', "identify.tokens": '"<token>"', "plugins": "<name>"}
ROW = re.compile(r"^\| `([^`]+)` \| ([^|]+?) \| ([^|]+?) \| (.+) \|$")


def type_name(annotation: Any) -> str:
    """The reference's word for a type: string, integer, number, boolean, array of ..., table."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return " or ".join(type_name(a) for a in rest)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "string: " + ", ".join(str(m.value) for m in annotation)
    simple = {str: "string", bool: "boolean", int: "integer", float: "number"}
    if annotation in simple:
        return simple[annotation]
    if origin is tuple:
        return f"array of {type_name(args[0])}s"
    if origin is dict:
        return "table"
    raise TypeError(f"no reference word for {annotation!r}: extend type_name")


def default_text(field: attrs.Attribute[Any]) -> str:
    value = field.default
    if value is attrs.NOTHING:
        return "required"
    if isinstance(value, attrs.Factory):  # type: ignore[arg-type]
        value = value.factory()
    if value is None:
        return "unset"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (tuple, list, dict, bool, str)):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    return repr(value)


def expected_rows(cls: type, prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """(key, type, default) of every key ``cls`` reads, nested tables flattened with dots."""
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        if not field.init:
            continue
        annotation, key = hints[field.name], prefix + field.name
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        optional = [a for a in args if a is not type(None)] if origin in (typing.Union, types.UnionType) else []
        if attrs.has(annotation):
            yield from expected_rows(annotation, key + ".")
        elif len(optional) == 1 and attrs.has(optional[0]):
            yield key, "table", default_text(field)  # an optional table, documented as a whole
        elif origin is dict and attrs.has(args[1]):
            yield from expected_rows(args[1], f"{key}.{PLACEHOLDERS.get(key, '<key>')}.")
        elif origin is dict:
            yield f"{key}.{PLACEHOLDERS.get(key, '<key>')}", type_name(annotation), default_text(field)
        else:
            yield key, type_name(annotation), default_text(field)


def documented_rows() -> dict[str, tuple[str, str, str]]:
    text = DOC.read_text(encoding="utf-8")
    reference = text[text.index("## Reference") : text.index("## Production checklist")]
    rows: dict[str, tuple[str, str, str]] = {}
    for line in reference.splitlines():
        match = ROW.match(line)
        if match:
            key, kind, default, meaning = match.groups()
            assert key not in rows, f"{key} is documented twice"
            rows[key] = (kind.strip(), default.strip().strip("`"), meaning.strip())
    return rows


def test_every_key_is_documented_with_its_type_and_default() -> None:
    expected = {key: (kind, default) for key, kind, default in expected_rows(StepUpConfig)}
    documented = documented_rows()
    missing = sorted(set(expected) - set(documented))
    unknown = sorted(set(documented) - set(expected))
    assert not missing, f"keys of the configuration classes missing from docs/configuration.md: {missing}"
    assert not unknown, f"docs/configuration.md documents keys the configuration does not have: {unknown}"
    for key, (kind, default) in expected.items():
        assert documented[key][:2] == (kind, default), f"{key}: documented {documented[key][:2]}, is {(kind, default)}"
        assert len(documented[key][2]) > 20, f"{key}: say what it does"


@attrs.frozen
class _Server:
    prefix: str = "/stepup"
    cors_origins: tuple[str, ...] = ()


@attrs.frozen
class _Grown:
    server: _Server = _Server()


def test_the_reference_would_notice_a_new_key() -> None:
    assert list(expected_rows(_Grown)) == [
        ("server.prefix", "string", '"/stepup"'),
        ("server.cors_origins", "array of strings", "[]"),
    ]


def test_the_example_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    [example] = re.findall(r"```toml\n(.*?)```", text, flags=re.S)[:1]
    monkeypatch.setenv("STATE_DIR", str(tmp_path))
    monkeypatch.setenv("STEPUP_SECRET_KEY", "ab" * 32)
    config_file = tmp_path / "stepup.toml"
    config_file.write_text(example, encoding="utf-8")
    config = load_config(config_file)
    assert config.store == f"sqlite:{tmp_path}/stepup.sqlite3"
    assert config.secret_key_bytes() == bytes.fromhex("ab" * 32)
    assert config.scope_policies().policy_for("billing:refund").allowed_methods == ("passkey", "totp")
    assert config == config_from_mapping(tomllib.loads(example))


def test_documented_expansion_examples_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAME", "value")
    assert config_from_mapping({"app_name": "pa$$word"}).app_name == "pa$word"
    assert config_from_mapping({"app_name": "$${NAME}"}).app_name == "${NAME}"
