"""How to install a stepup distribution, for every "not installed" message.

stepup's distributions are not published on PyPI (and the name ``stepup`` there belongs to an
unrelated project), so a message never says ``pip install stepup-otp``. It names the folder of
the distribution in a checkout of the repository (``pip install ./plugins/stepup-otp``, run from
the checkout's root) and the folder ``nox -s build`` writes every wheel and sdist to
(:data:`BUILT_FOLDER`). docs/installing.md says the same at length.

A distribution that is not built from this repository (a third party's ``stepup-<name>``) is
named as it is: its author says where it comes from.
"""

from __future__ import annotations

#: Every distribution built from the repository: its folder, relative to the checkout's root.
CHECKOUT_FOLDERS: dict[str, str] = {
    "stepup-core": ".",
    "stepup-example": "./plugins/stepup-example",
    "stepup-otel": "./plugins/stepup-otel",
    "stepup-otp": "./plugins/stepup-otp",
    "stepup-passkey": "./plugins/stepup-passkey",
    "stepup-postgres": "./plugins/stepup-postgres",
    "stepup-recovery": "./plugins/stepup-recovery",
    "stepup-redis": "./plugins/stepup-redis",
    "stepup-social": "./plugins/stepup-social",
    "stepup-totp": "./plugins/stepup-totp",
    "stepup-wallet": "./plugins/stepup-wallet",
    "stepup-webhooks": "./plugins/stepup-webhooks",
}
#: Where ``nox -s build`` puts the wheels and sdists, relative to the checkout's root.
BUILT_FOLDER = "dist"


def install_command(*packages: str) -> str:
    """``pip install ./plugins/stepup-otp ./plugins/stepup-totp``: the checkout folders of the
    repository's distributions, the names of any others."""
    return "pip install " + " ".join(CHECKOUT_FOLDERS.get(p, p) for p in packages)


def install_hint(*packages: str) -> str:
    """What to run to install ``packages``, from a checkout or from the built folder.

    ``pip install ./plugins/stepup-otp (from a stepup checkout; or pip install --find-links dist
    stepup-otp with the distributions `nox -s build` made)``. A third party's distribution is
    just ``pip install <name>``.
    """
    if not any(p in CHECKOUT_FOLDERS for p in packages):
        return install_command(*packages)
    return (
        f"{install_command(*packages)} (from a stepup checkout; or pip install --find-links {BUILT_FOLDER} "
        f"{' '.join(packages)} with the distributions `nox -s build` made)"
    )
