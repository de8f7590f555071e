"""`stepup plugins` stays cheap with every installed plugin: no method library is imported."""

from __future__ import annotations

import json
import subprocess
import sys

METHOD_LIBRARIES = ("eth_account", "webauthn", "fido2", "redis", "aiosmtplib", "pyotp", "segno", "joserfc")

PROBE = """
import contextlib, io, json, sys
from stepup_core.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main(["plugins"], standalone_mode=False)
    except SystemExit:
        pass
print(json.dumps({"listing": json.loads(out.getvalue()),
                  "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def test_stepup_plugins_imports_no_method_library():
    result = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True)
    report = json.loads(result.stdout)
    loaded = set(report["modules"]) & set(METHOD_LIBRARIES)
    assert not loaded, f"`stepup plugins` imported {sorted(loaded)}"
    assert isinstance(report["listing"], list)
    for row in report["listing"]:
        assert set(row) >= {"name", "version", "hooks"}
