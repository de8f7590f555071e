"""Notice templates: built-in TOML files per locale (``locales/en.toml``, ``de``, ``fr``), each
key overridable from a directory of the operator's own ``<locale>.toml`` files.

A text is a :class:`string.Template` (``${app}``): values are substituted, never evaluated, and
are HTML-escaped in the ``html`` part. Lookup for a locale, each layer overriding the one before:
built-in English, the operator's English, the built-in locale, the operator's locale; a key a
translation leaves out falls back to English.
"""

from __future__ import annotations

import html
import string
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs

from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LOCALES_DIR = Path(__file__).parent / "locales"
BUILT_IN_LOCALES = tuple(sorted(p.stem for p in LOCALES_DIR.glob("*.toml")))
KINDS = ("credential_linked", "credential_unlinked", "credential_reset", "locked_out")
PARTS = ("subject", "text", "html", "sms")
PLACEHOLDERS = ("app", "credential", "label", "when", "minutes")


def _read(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
        return data
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"notification templates {path} are not valid TOML: {exc}") from None


def _layers(locale: str, templates_dir: str | None) -> list[dict[str, Any]]:
    def candidates(name: str) -> list[Path]:
        found = [LOCALES_DIR / f"{name}.toml"]
        if templates_dir is not None:
            found.append(Path(templates_dir) / f"{name}.toml")
        return found

    paths = candidates("en") + (candidates(locale) if locale != "en" else [])
    if not any(p.is_file() for p in candidates(locale)):
        where = f" or {templates_dir}" if templates_dir else ""
        raise ConfigError(
            f"no notification templates for locale {locale!r}: built in are {', '.join(BUILT_IN_LOCALES)}; "
            f"add {locale}.toml to templates_dir{where}"
        )
    return [_read(p) for p in paths if p.is_file()]


@attrs.frozen
class Rendered:
    subject: str
    text: str
    html: str
    sms: str


@attrs.frozen
class NoticeTemplates:
    """The merged templates of one locale."""

    locale: str
    texts: Mapping[str, Mapping[str, str]]
    formats: Mapping[str, str]

    @classmethod
    def load(cls, locale: str = "en", templates_dir: str | None = None) -> NoticeTemplates:
        if templates_dir is not None and not Path(templates_dir).is_dir():
            raise ConfigError(f"notification templates_dir {templates_dir!r} is not a directory")
        texts: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
        formats: dict[str, str] = {}
        for layer in _layers(locale, templates_dir):
            for section, values in layer.items():
                if section == "formats" and isinstance(values, dict):
                    formats.update({str(k): str(v) for k, v in values.items()})
                elif section in texts and isinstance(values, dict):
                    unknown = set(values) - set(PARTS)
                    if unknown:
                        raise ConfigError(
                            f"notification template [{section}] has unknown keys {sorted(unknown)}; "
                            f"use {', '.join(PARTS)}"
                        )
                    texts[section].update({str(k): str(v) for k, v in values.items()})
                else:
                    raise ConfigError(
                        f"notification templates: unknown table [{section}]; use [formats] and "
                        f"{', '.join(f'[{k}]' for k in KINDS)}"
                    )
        templates = cls(locale, texts, formats)
        templates.check()
        return templates

    def check(self) -> None:
        """Render every template once so a typo in a placeholder fails at startup, not at send."""
        sample = dict.fromkeys(PLACEHOLDERS, "x")
        for kind, parts in self.texts.items():
            for part in PARTS:
                if part not in parts:
                    raise ConfigError(f"notification template [{kind}] has no {part}")
                try:
                    string.Template(parts[part]).substitute(sample)
                except (KeyError, ValueError) as exc:
                    raise ConfigError(
                        f"notification template [{kind}] {part}: unknown or malformed placeholder {exc}; "
                        f"use {', '.join('${' + p + '}' for p in PLACEHOLDERS)}"
                    ) from None

    def describe(self, credential_format: str) -> str:
        return self.formats.get(credential_format) or self.formats.get("custom", credential_format)

    def render(
        self,
        kind: str,
        *,
        app: str,
        at: float,
        credential_format: str | None = None,
        alias: str | None = None,
        minutes: int = 0,
    ) -> Rendered:
        credential = self.describe(credential_format) if credential_format else ""
        values = {
            "app": app,
            "credential": credential,
            "label": f"{credential} ({alias})" if alias else credential,
            "when": datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "minutes": str(minutes),
        }
        escaped = {k: html.escape(v) for k, v in values.items()}
        parts = self.texts[kind]

        def fill(part: str, mapping: Mapping[str, str]) -> str:
            return string.Template(parts[part]).substitute(mapping).strip()

        return Rendered(
            subject=" ".join(fill("subject", values).split()),
            text=fill("text", values) + "\n",
            html=f'<!DOCTYPE html>\n<html><body style="font-family: sans-serif;">\n{fill("html", escaped)}\n'
            "</body></html>\n",
            sms=" ".join(fill("sms", values).split()),
        )
