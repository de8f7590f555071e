"""How long `stepup plugins` takes with every installed plugin, next to `import aiohttp`.

Runs each command several times in fresh interpreters and prints the median wall time, then
lists which method libraries the CLI imported (there must be none). Target: under 0.5 s.

    python benchmarks/plugins_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time

METHOD_LIBRARIES = ("eth_account", "webauthn", "fido2", "redis", "aiosmtplib", "pyotp", "segno", "joserfc")
TARGET_SECONDS = 0.5

PROBE = f"""
import sys
from stepup_core.cli import main
try:
    main(["plugins"], standalone_mode=False)
except SystemExit:
    pass
print("\\n" + "MODULES " + ",".join(sorted(m for m in sys.modules if m.split(".")[0] in {METHOD_LIBRARIES!r})))
"""


def median_seconds(command: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    stepup = shutil.which("stepup") or f"{sys.prefix}/bin/stepup"
    listing = json.loads(subprocess.run([stepup, "plugins"], check=True, capture_output=True, text=True).stdout)
    probe = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True).stdout
    imported = [m for m in probe.rsplit("MODULES ", 1)[-1].strip().split(",") if m]

    plugins_time = median_seconds([stepup, "plugins"], args.runs)
    aiohttp_time = median_seconds([sys.executable, "-c", "import aiohttp"], args.runs)
    bare_time = median_seconds([sys.executable, "-c", "pass"], args.runs)

    print(f"plugins installed: {len(listing)} ({', '.join(str(p['name']) for p in listing)})")
    rows = [("command", "median s"), ("python -c pass", f"{bare_time:.3f}"),
            ('python -c "import aiohttp"', f"{aiohttp_time:.3f}"), ("stepup plugins", f"{plugins_time:.3f}")]
    for name, value in rows:
        print(f"{name:<28}{value:>10}")
    print(f"method libraries imported by `stepup plugins`: {', '.join(imported) or 'none'}")
    ok = plugins_time < TARGET_SECONDS and not imported
    print(f"target: < {TARGET_SECONDS} s and no method library -> {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
