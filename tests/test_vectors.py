"""The conformance vectors ship in the repository (``tests/vectors/``), are found from any clone,
and a missing file fails the test that needs it, never the collection."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stepup_core.testing import vectors

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "vectors"
#: Folders of a working tree that are not the project's own files.
NOT_OURS = {".git", ".nox", ".venv", ".ci-venv", ".ci-demo-venv", "node_modules", "site", "dist", "build"}


def test_every_vector_file_is_listed_with_its_source() -> None:
    readme = (VECTORS / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"`([\w/.-]+\.json)`", readme))
    present = {p.relative_to(VECTORS).as_posix() for p in VECTORS.rglob("*.json")}
    assert present, "tests/vectors holds no vector file"
    assert listed == present, f"README and folder differ: only listed {listed - present}, unlisted {present - listed}"
    for row in readme.splitlines():
        if row.startswith("| `"):
            source = row.rstrip("|").rsplit("|", 1)[-1].strip()
            assert source, f"a vector file without a source: {row}"


def test_only_json_data_is_copied() -> None:
    other = [p.name for p in VECTORS.rglob("*") if p.is_file() and p.suffix != ".json" and p.name != "README.md"]
    assert not other


def test_vectors_are_found_in_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(vectors.ENV_VAR, raising=False)
    monkeypatch.chdir(ROOT)
    assert vectors.vectors_dir() == VECTORS
    monkeypatch.chdir(ROOT / "plugins")  # a plugin's tests run from below the root too
    assert vectors.vectors_dir() == VECTORS
    assert len(vectors.load_vectors("totp_rfc6238_appendix_b.json")["cases"]) == 18


def test_a_missing_folder_is_an_error_naming_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(vectors.ENV_VAR, str(tmp_path))
    with pytest.raises(vectors.VectorsNotFound, match=re.escape(str(tmp_path))) as caught:
        vectors.load_vectors("totp_rfc6238_appendix_b.json")
    assert vectors.ENV_VAR in str(caught.value)


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "README.md").write_text("vectors\n")
    monkeypatch.setenv(vectors.ENV_VAR, str(tmp_path))
    with pytest.raises(vectors.VectorsNotFound, match=r"'siwe/eip1271\.json' is missing"):
        vectors.load_vectors("siwe/eip1271.json")


def test_each_load_is_a_fresh_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(vectors.ENV_VAR, str(VECTORS))
    first = vectors.load_vectors("hotp_rfc4226_appendix_d.json")
    first["cases"].clear()
    assert len(vectors.load_vectors("hotp_rfc4226_appendix_d.json")["cases"]) == 10


def test_vector_cases_name_each_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(vectors.ENV_VAR, str(VECTORS))
    params = vectors.vector_cases("webauthn_derived_negative.json", lambda data: data["cases"])
    assert len(params) == 13
    assert all(p.id == p.values[0]["id"] for p in params)


PROBE = '''
import pytest
from stepup_core.testing.vectors import load_vectors, vector_cases

@pytest.mark.parametrize("case", vector_cases("totp_rfc6238_appendix_b.json", lambda data: data["cases"]))
def test_each_case(case):
    assert case["totp"]

def test_whole_file():
    assert load_vectors("hotp_rfc4226_appendix_d.json")["cases"]

def test_unrelated():
    assert True
'''


def test_missing_vectors_fail_their_tests_and_collection_goes_on(tmp_path: Path) -> None:
    """In a folder with no vectors anywhere: the run collects every test, runs the others, and
    the vector tests fail naming the file (never a skip, never an aborted collection)."""
    (tmp_path / "test_probe.py").write_text(textwrap.dedent(PROBE))
    empty = tmp_path / "no-vectors-here"
    empty.mkdir()
    env = {**os.environ, vectors.ENV_VAR: str(empty)}
    env.pop("PYTEST_ADDOPTS", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "test_probe.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out  # tests failed; 2 or 4 would be an interrupted collection
    assert "1 passed" in out and "2 failed" in out, out
    assert "skipped" not in out
    assert "test_each_case[vectors-missing]" in out
    assert "VectorsNotFound: conformance vectors not found" in out
    assert str(empty) in out


def test_nothing_reads_vectors_from_outside_the_repository() -> None:
    outside = ".." + "/shared"
    offenders = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if d not in NOT_OURS and not d.endswith(".egg-info")]
        for name in files:
            path = Path(folder) / name
            if path.suffix not in {".py", ".md", ".toml", ".yml", ".cfg", ".js", ".json", ""}:
                continue
            if outside in path.read_text(encoding="utf-8", errors="replace"):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"files that reach outside the clone for test data: {offenders}"


def test_ci_runs_the_test_command_in_a_clone_alone_in_an_empty_folder() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    isolated = script.index('ISOLATED=$(mktemp -d)')
    clone = script.index('git clone --quiet --no-hardlinks "$PWD" "$ISOLATED/stepup"', isolated)
    enter = script.index('cd "$ISOLATED/stepup"', clone)
    run = script.index('eval "$TEST_COMMAND"', enter)
    assert script.count('eval "$TEST_COMMAND"') == 1, "the full suite runs once, in the isolated clone"
    assert run > enter


def test_vector_files_are_json() -> None:
    for path in VECTORS.rglob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))
