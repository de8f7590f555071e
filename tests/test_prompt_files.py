"""The built-in prompt's files, without a browser: served and packaged from one place, every
problem code put into words, every catalog and every method complete in every shipped locale."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

from stepup_core import errors
from stepup_core.server.browser import STATIC_FILES

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "stepup_core" / "static"
PROMPT = (STATIC / "prompt.js").read_text(encoding="utf-8")
LOCALES = ("en", "fr", "de")
METHOD_MODULES = sorted(ROOT.glob("plugins/*/src/*/browser.js"))


def catalog_keys(path: Path) -> set[str]:
    """The keys of a catalog module (one `key: "text",` per line)."""
    text = path.read_text(encoding="utf-8")
    return set(re.findall(r'^\s+"?([\w.]+)"?: "', text, re.MULTILINE))


def server_codes() -> set[str]:
    return {
        cls.code
        for cls in vars(errors).values()
        if inspect.isclass(cls) and issubclass(cls, errors.StepUpError) and isinstance(cls.code, str)
    }


def test_every_browser_file_is_served_and_packaged() -> None:
    shipped = sorted(p.name for p in STATIC.glob("*.js"))
    assert sorted(STATIC_FILES) == shipped
    package = json.loads((STATIC / "package.json").read_text(encoding="utf-8"))
    assert set(shipped) <= set(package["files"])
    for listed in package["files"]:
        assert (STATIC / listed).exists(), listed
    assert package["exports"]["./prompt"] == {"types": "./prompt.d.ts", "default": "./prompt.js"}
    assert package["sideEffects"] == ["./prompt.js"]  # importing it installs the prompt


def test_stepup_js_loads_the_prompt_beside_itself() -> None:
    source = (STATIC / "stepup.js").read_text(encoding="utf-8")
    assert 'import("./prompt.js")' in source
    for locale in LOCALES[1:]:
        assert f'import("./prompt-{locale}.js")' in PROMPT


def test_every_problem_code_has_words() -> None:
    mapped = dict(re.findall(r"^\s+(\w+): \"(error\.\w+)\",$", PROMPT, re.MULTILINE))
    browser_codes = {"network_error", "user_cancelled", "prompt_unavailable", "method_not_installed",
                     "unsupported", "popup_blocked", "authenticator_failed", "security_key_not_found"}
    missing = sorted((server_codes() | browser_codes) - set(mapped))
    assert missing == [], f"problem codes without a message in prompt.js: {missing}"
    english = catalog_keys(STATIC / "prompt-en.js")
    assert set(mapped.values()) <= english


@pytest.mark.parametrize("locale", LOCALES[1:])
def test_every_catalog_translates_every_key(locale: str) -> None:
    english = catalog_keys(STATIC / "prompt-en.js")
    translated = catalog_keys(STATIC / f"prompt-{locale}.js")
    assert len(english) > 40
    assert translated - english == set(), "keys English does not have"
    # "method.label" is "{method}" in every language.
    assert english - translated <= {"method.label"}, f"{locale} lacks {sorted(english - translated)}"


@pytest.mark.parametrize("module", METHOD_MODULES, ids=lambda p: p.parts[-4])
def test_every_method_module_brings_its_words_in_every_locale(module: Path) -> None:
    text = module.read_text(encoding="utf-8")
    blocks = dict(re.findall(r"^\s+(en|fr|de): \{(.*?)\},?$", text, re.MULTILINE | re.DOTALL))
    assert set(blocks) == set(LOCALES), module
    keys = {locale: set(re.findall(r'"?([\w.]+)"?: "', body)) for locale, body in blocks.items()}
    assert "title" in keys["en"] or {"title.email", "title.phoneNumber"} <= keys["en"]
    for locale in LOCALES[1:]:
        assert keys[locale] == keys["en"], f"{module}: {locale} differs from en"


def test_the_prompt_builds_no_html_from_strings() -> None:
    # Texts (aliases, providers, server messages) reach the page as text nodes only.
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert banned not in PROMPT
    assert "adoptedStyleSheets" in PROMPT  # styles without a <style> element: style-src 'self' holds
