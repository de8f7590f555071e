"""The one cattrs converter: camelCase JSON on the wire and in the store.

``structure`` never lets a KeyError or TypeError escape: a malformed payload becomes one
:class:`~stepup_core.errors.ValidationError` listing every bad field path (in wire names).
"""

from __future__ import annotations

import enum
import json
import re
import typing
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from .errors import ValidationError

T = TypeVar("T")

_CAMEL_RE = re.compile(r"_([a-z0-9])")


def camel(name: str) -> str:
    """``sign_in_credential_id`` -> ``signInCredentialId``."""
    return _CAMEL_RE.sub(lambda m: m.group(1).upper(), name)


#: attrs field metadata naming a member on the wire as a standard spells it (``auth_time`` in
#: RFC 7662 answers) instead of in camelCase: ``attrs.field(metadata={WIRE_NAME: "auth_time"})``.
WIRE_NAME = "stepup_wire_name"


def wire_name(field: attrs.Attribute[Any]) -> str:
    """A field's member name in JSON: its ``WIRE_NAME`` metadata, else camelCase."""
    return str(field.metadata.get(WIRE_NAME) or camel(field.name))


def _structure_enum(value: Any, cls: type[enum.Enum]) -> enum.Enum:
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in cls)
        raise ValueError(f"expected one of {allowed}, got {value!r}") from None


def _strict(expected: type, name: str) -> Any:
    def structure(value: Any, target: Any) -> Any:
        if target is not expected and isinstance(target, type) and issubclass(target, enum.Enum):
            # str-based enums reach the str hook first (their MRO puts str before Enum).
            return _structure_enum(value, target)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
            raise TypeError(f"expected {name}, got {type(value).__name__}")
        return value

    return structure


def make_converter(*, camel_case: bool = True) -> cattrs.Converter:
    """The JSON converter (camelCase); ``camel_case=False`` gives the configuration file's twin."""
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(str, _strict(str, "a string"))
    conv.register_structure_hook(int, _strict(int, "an integer"))
    conv.register_structure_hook(float, _strict(float, "a number"))
    conv.register_structure_hook(bool, _strict(bool, "a boolean"))

    conv.register_structure_hook(enum.Enum, _structure_enum)

    def structure_object(value: Any, _: Any) -> dict[str, Any]:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise TypeError(f"expected an object, got {type(value).__name__}")
        return dict(value)

    conv.register_structure_hook_func(lambda t: t == dict[str, Any], structure_object)

    def is_homogeneous_sequence(t: Any) -> bool:
        args = typing.get_args(t)
        origin = typing.get_origin(t)
        return (origin is list and len(args) == 1) or (origin is tuple and len(args) == 2 and args[1] is ...)

    def sequence_factory(t: Any) -> Any:
        # A JSON string is iterable but is never an array: refuse it instead of splitting it into characters.
        item_type = typing.get_args(t)[0]
        container = typing.get_origin(t)

        def structure_sequence(value: Any, _: Any) -> Any:
            if not isinstance(value, list | tuple):
                raise TypeError(f"expected an array, got {type(value).__name__}")
            items, failures = [], []
            for index, item in enumerate(value):
                try:
                    items.append(conv.structure(item, item_type))
                except Exception as exc:  # noqa: BLE001 - collected and re-raised with the index
                    note = IterableValidationNote(f"Structuring {t} @ index {index}", index, item_type)
                    setattr(exc, "__notes__", [*getattr(exc, "__notes__", []), note])  # noqa: B010 - 3.10 too
                    failures.append(exc)
            if failures:
                raise IterableValidationError(f"While structuring {t!r}", failures, t)
            return container(items)

        return structure_sequence

    conv.register_structure_hook_factory(is_homogeneous_sequence, sequence_factory)

    def is_attrs(cls: Any) -> bool:
        return attrs.has(cls)

    def name_of(field: attrs.Attribute[Any]) -> str:
        return wire_name(field) if camel_case else field.name

    def unstructure_factory(cls: Any) -> Any:
        overrides = {a.name: override(rename=name_of(a)) for a in attrs.fields(cls)}
        return make_dict_unstructure_fn(cls, conv, **overrides)  # type: ignore[arg-type]

    def structure_factory(cls: Any) -> Any:
        overrides = {a.name: override(rename=name_of(a)) for a in attrs.fields(cls)}
        return make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=True, **overrides)  # type: ignore[arg-type]

    conv.register_unstructure_hook_factory(is_attrs, unstructure_factory)
    conv.register_structure_hook_factory(is_attrs, structure_factory)
    return conv


def make_stored_converter() -> cattrs.Converter:
    """The converter for records stepup wrote itself (:func:`loads`): the same camelCase shape
    and the same refusal of unknown keys, without the per-value type checks that guard the
    wire, which would only re-check what :func:`dumps` wrote (about three times faster)."""
    conv = cattrs.Converter(forbid_extra_keys=True)

    def structure_factory(cls: Any) -> Any:
        overrides = {a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)}
        return make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=True, **overrides)  # type: ignore[arg-type]

    conv.register_structure_hook_factory(attrs.has, structure_factory)
    return conv


converter = make_converter()
config_converter = make_converter(camel_case=False)
stored_converter = make_stored_converter()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    return str(exc) or type(exc).__name__


def _collect(exc: BaseException, path: str, out: list[dict[str, str]], rename: Any = camel) -> None:
    if isinstance(exc, ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields):
            out.append({"path": f"{path}.{key}" if path else key, "message": "unknown field"})
        return
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        for inner, note in with_notes:
            name = rename(note.name)
            _collect(inner, f"{path}.{name}" if path else name, out, rename)
        for inner in without:
            _collect(inner, path, out, rename)
        return
    if isinstance(exc, IterableValidationError):
        indexed, unindexed = exc.group_exceptions()
        for inner, index_note in indexed:
            _collect(inner, f"{path}[{index_note.index}]", out, rename)
        for inner in unindexed:
            _collect(inner, path, out, rename)
        return
    nested = getattr(exc, "exceptions", None)
    if isinstance(nested, tuple | list):
        for inner in nested:
            _collect(inner, path, out, rename)
        return
    out.append({"path": path or "$", "message": _describe(exc)})


def structure(data: Any, cls: type[T], *, conv: cattrs.Converter | None = None) -> T:
    """Structure wire data into ``cls`` or raise one ValidationError naming every bad field."""
    conv = conv or converter
    rename = camel if conv is converter or conv is stored_converter else (lambda name: name)
    if attrs.has(cls) and not isinstance(data, dict):
        raise ValidationError(
            f"expected a JSON object for {cls.__name__}",
            [{"path": "$", "message": f"expected an object, got {type(data).__name__}"}],
        )
    try:
        return conv.structure(data, cls)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one ValidationError
        errors: list[dict[str, str]] = []
        _collect(exc, "", errors, rename)
        listing = "; ".join(f"{e['path']}: {e['message']}" for e in errors)
        raise ValidationError(f"invalid {cls.__name__}: {listing}", errors) from None


def unstructure(value: Any) -> Any:
    return converter.unstructure(value)


def dumps(value: Any) -> str:
    return json.dumps(unstructure(value), separators=(",", ":"), sort_keys=True)


def loads(text: str | bytes, cls: type[T]) -> T:
    """A record stepup stored (written by :func:`dumps`) back as ``cls``."""
    return structure(json.loads(text), cls, conv=stored_converter)
