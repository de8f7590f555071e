"""The test matrix: the core per Python, each plugin and each framework integration alone with
the core, all of them together.

Plugins are found by listing ``plugins/*/pyproject.toml``, integrations (the FastAPI, Django and
Flask guards) by listing ``integrations/*/pyproject.toml``. Installs are non-editable so tests
see the built packages, and each install is followed by an import check. ``PLUGINS`` (comma
list) keeps only those plugins, ``SKIP_PLUGINS`` drops some; ``INTEGRATIONS`` and
``SKIP_INTEGRATIONS`` do the same for integrations. A missing interpreter is an error, not a
skip (``--error-on-missing-interpreters`` is the default here).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
DEFAULT_PYTHON = "3.11"

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "typing", "core", "plugin", "integration", "tests", "docs", "js", "browser"]
#: The browser tests need Chromium and the npm packages: the ``browser`` session runs them.
BROWSER_TESTS = "tests/browser"


def _names(var: str) -> set[str]:
    return {n.strip() for n in os.environ.get(var, "").split(",") if n.strip()}


def _discover(kind: str, keep_var: str, skip_var: str) -> list[str]:
    found = sorted(p.parent.name for p in ROOT.glob(f"{kind}/*/pyproject.toml"))
    keep, skip = _names(keep_var), _names(skip_var)
    short = lambda folder: folder.removeprefix("stepup-")  # noqa: E731
    if keep:
        found = [f for f in found if f in keep or short(f) in keep]
    return [f for f in found if f not in skip and short(f) not in skip]


def discover_plugins() -> list[str]:
    """Plugin folder names (``stepup-otp``...), filtered by PLUGINS / SKIP_PLUGINS."""
    return _discover("plugins", "PLUGINS", "SKIP_PLUGINS")


def discover_integrations() -> list[str]:
    """Integration folder names (``stepup-fastapi``...), filtered by INTEGRATIONS / SKIP_INTEGRATIONS."""
    return _discover("integrations", "INTEGRATIONS", "SKIP_INTEGRATIONS")


def module_of(folder: str) -> str:
    return folder.replace("-", "_")


def install_core(session: nox.Session, extras: str = "test") -> None:
    session.install(f".[{extras}]")
    session.run("python", "-c", "import stepup_core, stepup_core.service, stepup_core.server, stepup_core.client")


def install_plugins(session: nox.Session, folders: list[str]) -> None:
    if not folders:
        return
    session.install(*[f"./plugins/{f}[test]" for f in folders])
    session.run("python", "-c", "; ".join(f"import {module_of(f)}.plugin" for f in folders))


def install_integrations(session: nox.Session, folders: list[str]) -> None:
    if not folders:
        return
    session.install(*[f"./integrations/{f}[test]" for f in folders])
    session.run("python", "-c", "; ".join(f"import {module_of(f)}" for f in folders))


@nox.session(python=PYTHONS, tags=["quick"])
def core(session: nox.Session) -> None:
    """The core alone, on each Python."""
    npm_ci(session)  # jose: the signed-grant tests verify JWTs with it
    install_core(session)
    session.run("pytest", "tests", f"--ignore={BROWSER_TESTS}", *session.posargs, env={"STEPUP_LOAD_PLUGINS": ""})


@nox.session(python=DEFAULT_PYTHON)
@nox.parametrize("folder", discover_plugins())
def plugin(session: nox.Session, folder: str) -> None:
    """One plugin alone with the core: its own tests."""
    install_core(session)
    install_plugins(session, [folder])
    session.run("pytest", f"plugins/{folder}/tests", "-p", "no:cacheprovider", *session.posargs)


@nox.session(python=DEFAULT_PYTHON)
@nox.parametrize("folder", discover_integrations())
def integration(session: nox.Session, folder: str) -> None:
    """One framework integration alone with the core: its own tests (the conformance suite)."""
    install_core(session)
    install_integrations(session, [folder])
    session.run("pytest", f"integrations/{folder}/tests", "-p", "no:cacheprovider", *session.posargs)


@nox.session(python=DEFAULT_PYTHON)
def tests(session: nox.Session) -> None:
    """Every plugin and integration installed together: the core tests again (installed plugins
    break nothing), every plugin's tests and every integration's. This is the README's test
    command."""
    folders = discover_plugins()
    integrations = discover_integrations()
    npm_ci(session)
    install_core(session)
    install_plugins(session, folders)
    install_integrations(session, integrations)
    session.run(
        "pytest", "tests", f"--ignore={BROWSER_TESTS}", *[f"plugins/{f}/tests" for f in folders],
        *[f"integrations/{f}/tests" for f in integrations], *session.posargs,
    )


@nox.session(python=DEFAULT_PYTHON, tags=["quick"])
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session(python=DEFAULT_PYTHON, tags=["quick"])
def typing(session: nox.Session) -> None:
    folders = discover_plugins()
    integrations = discover_integrations()
    session.install(
        "mypy", ".", *[f"./plugins/{f}" for f in folders], *[f"./integrations/{f}[test]" for f in integrations]
    )
    session.run(
        "mypy", "stepup_core", *[f"plugins/{f}/src" for f in folders], *[f"integrations/{f}/src" for f in integrations]
    )


#: Where ``nox -s build`` writes the distributions (``stepup_core.install.BUILT_FOLDER``).
DIST = ROOT / "dist"


@nox.session(python=DEFAULT_PYTHON)
def build(session: nox.Session) -> None:
    """A wheel and an sdist of every distribution (the core, each plugin and integration) in dist/, checked
    with ``twine check``. The distributions are not on PyPI: install from this folder (see
    docs/installing.md)."""
    session.install("uv", "twine")
    shutil.rmtree(DIST, ignore_errors=True)
    folders = [
        ".", *[f"plugins/{f}" for f in discover_plugins()], *[f"integrations/{f}" for f in discover_integrations()]
    ]
    for folder in folders:
        session.run("uv", "build", "--quiet", "--out-dir", str(DIST), folder)
    built = sorted(str(p) for p in DIST.iterdir() if p.name.endswith((".whl", ".tar.gz")))
    if len(built) != 2 * len(folders):
        session.error(f"expected a wheel and an sdist for each of {len(folders)} distributions, got {built}")
    session.run("twine", "check", "--strict", *built)
    session.log(f"{len(built)} files in {DIST}")


@nox.session(python=DEFAULT_PYTHON)
def docs(session: nox.Session) -> None:
    session.install("mkdocs", "pymdown-extensions", ".", *[f"./plugins/{f}" for f in discover_plugins()])
    session.run("mkdocs", "build", "--strict", "--site-dir", str(Path(session.create_tmp()) / "site"))


def npm_ci(session: nox.Session) -> None:
    """The pinned npm packages (package-lock.json): typescript, esbuild, react, and jose (the
    independent JOSE library the signed-grant tests verify with)."""
    session.run("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error", external=True)


@nox.session(python=False, tags=["quick"])
def js(session: nox.Session) -> None:
    """The browser code: tsc --noEmit over its JSDoc types and .d.ts files, then the size budget."""
    npm_ci(session)
    session.run("node_modules/.bin/tsc", "-p", "tsconfig.json", external=True)
    session.run("node", "benchmarks/js_size.mjs", external=True)


@nox.session(python=DEFAULT_PYTHON)
def browser(session: nox.Session) -> None:
    """stepup.js and every method's browser half in Debian's Chromium, driven by Playwright
    (no browser download: ``chromium`` on PATH, or ``STEPUP_CHROMIUM``)."""
    npm_ci(session)
    install_core(session, "test,browser-test")
    install_plugins(session, discover_plugins())
    session.run("pytest", BROWSER_TESTS, *session.posargs, env={"PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"})


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run with: nox")
