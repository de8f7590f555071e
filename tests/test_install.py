"""Installing without PyPI: every "not installed" message names the checkout folder or the built
folder, never a PyPI name (the distributions are not published), and the list of distributions
stays in step with the repository, docs/installing.md and ``nox -s build``."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from stepup_core import install
from stepup_core.client.registry import missing

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
#: ``pip install stepup-otp`` or ``pip install -U 'stepup'``: a PyPI name where none exists. A
#: folder (``./plugins/stepup-otp``) or ``--find-links dist stepup-otp`` does not match.
PYPI_INSTALL = re.compile(r"pip install (?:-[-\w]+ )*['\"]?stepup(?:-[a-z]+)?\b(?![/\w.-])")

#: A line that names the PyPI command to say it does not work.
NEGATIVE_EXAMPLE = re.compile(r"finds nothing|never says")


def _distribution_name(folder: Path) -> str:
    return str(tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"]["name"])


def test_every_distribution_of_the_repository_is_known_with_its_folder() -> None:
    found = {_distribution_name(ROOT): "."}
    for pyproject in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        found[_distribution_name(pyproject.parent)] = f"./plugins/{pyproject.parent.name}"
    assert found == install.CHECKOUT_FOLDERS


def test_installing_md_lists_every_distribution_with_its_folder() -> None:
    text = (ROOT / "docs" / "installing.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(stepup-[a-z]+)` \| `([./\w-]+)` \|", text, flags=re.M))
    assert rows == install.CHECKOUT_FOLDERS


@pytest.mark.parametrize("package", sorted(install.CHECKOUT_FOLDERS))
def test_the_hint_names_the_checkout_folder_and_the_built_folder(package: str) -> None:
    hint = install.install_hint(package)
    folder = install.CHECKOUT_FOLDERS[package]
    assert f"pip install {folder} " in hint and (ROOT / folder / "pyproject.toml").is_file()
    assert f"pip install --find-links {install.BUILT_FOLDER} {package} " in hint
    assert not PYPI_INSTALL.search(hint)


def test_a_third_party_distribution_is_named_as_it_is() -> None:
    assert install.install_hint("stepup-acme") == "pip install stepup-acme"


def test_the_client_names_the_folder_of_a_missing_client_half() -> None:
    message = str(missing("wallet"))
    assert "pip install ./plugins/stepup-wallet" in message
    assert not PYPI_INSTALL.search(message)


def _texts() -> list[Path]:
    paths = [ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("plugins/*/README.md")]
    paths += [*ROOT.glob("stepup_core/**/*.py"), *ROOT.glob("plugins/*/src/**/*.py")]
    return paths


def test_no_doc_or_message_suggests_installing_from_pypi() -> None:
    offenders = []
    for path in _texts():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if PYPI_INSTALL.search(line) and not NEGATIVE_EXAMPLE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_the_pattern_finds_what_it_should() -> None:
    assert PYPI_INSTALL.search("pip install stepup-otp")
    assert PYPI_INSTALL.search("run `pip install -U 'stepup-totp'` first")
    assert PYPI_INSTALL.search("pip install stepup")
    assert not PYPI_INSTALL.search("pip install ./plugins/stepup-otp")
    assert not PYPI_INSTALL.search("pip install --find-links dist stepup-otp")
    assert not PYPI_INSTALL.search("pip install -e 'plugins/stepup-otp[test]'")


def test_nox_build_builds_and_checks_every_distribution() -> None:
    """``nox -s build`` exists, builds the core and every plugin folder, and runs twine check (CI
    runs it and installs from what it wrote)."""
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    [session] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build"]
    assert any("session" in ast.unparse(d) for d in session.decorator_list)
    body = ast.unparse(session)
    assert "discover_plugins()" in body and "'.'" in body
    assert "'twine', 'check', '--strict'" in body
    assert (ROOT / "dist").name == install.BUILT_FOLDER
    assert re.search(r"python3 -m nox -s [\w ]*\bbuild\b", (ROOT / ".ci" / "run").read_text(encoding="utf-8"))
