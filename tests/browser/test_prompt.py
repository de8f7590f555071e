"""The built-in prompt (prompt.js, <stepup-prompt>) in Chromium, driven by the keyboard alone.

Every method steps up through it against a real server (passkeys with a DevTools virtual
authenticator, email codes read from a real SMTP server, a wallet provider in the page, social
sign-in at an OpenID Connect provider on loopback); cancelling rejects; a user with MFA is never
offered re-authentication; the locked-out, wrong-code and expired-challenge screens say so in
words; axe-core (from npm, loaded into the page) finds no violation on any screen. Each screen
is saved as a PNG: into ``$STEPUP_SCREENSHOTS`` when set (``STEPUP_SCREENSHOTS=docs/img``
refreshes the pictures in docs/browser.md), else into the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from .conftest import ROOT, missing
from .harness import SiteRunner
from .test_methods import click_and_wait, expose_totp, virtual_authenticator

pytestmark = pytest.mark.asyncio(loop_scope="session")

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
#: Every prompt screen the tests save, by name: docs/browser.md shows each (tests/test_docs.py
#: checks that each is saved by a test here, is in docs/img and is shown).
SCREENS = (
    "choose", "passkey", "totp", "wrong-code", "recovery", "otp", "wallet", "social",
    "expired", "locked", "cancel-focus", "pin-fr", "choose-dark",
)
RESEND = 2.0


def axe_source() -> bytes:
    if not AXE.exists():
        missing("axe-core is not installed: run `npm ci` in the repository")
    return AXE.read_bytes()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("STEPUP_SCREENSHOTS") or tmp_path)
    if not target.is_absolute():
        target = ROOT / target
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest_asyncio.fixture(loop_scope="session")
async def psite(provider: Any) -> AsyncIterator[Any]:
    async with SiteRunner(
        users=("alice", "bob", "carol"),
        provider=provider,
        files={"/axe.js": axe_source()},
        overrides={"plugins": {"otp": {"resend_interval": RESEND}}},
    ) as running:
        yield running


# --- helpers ---------------------------------------------------------------------------------


async def start_prompt(page: Any, call: str = "promptStepUpAuth", scopes: tuple[str, ...] = ("wallet:export",)) -> None:
    """Put a button in the page that calls ``stepUp[call]``, focus it and press Enter."""
    await page.evaluate(
        """([call, scopes]) => {
            window.outcome = undefined;
            const button = document.createElement("button");
            button.id = "opener";
            button.textContent = "Do the sensitive thing";
            button.addEventListener("click", () => {
                window.outcome = null;
                stepUp[call]({ requestedScopes: scopes }).then(
                    (token) => { window.outcome = { token: token ?? null }; },
                    (e) => { window.outcome = { error: e.code, message: e.message }; });
            });
            const main = document.createElement("main");
            main.append(button);
            document.body.replaceChildren(main);
            button.focus();
        }""",
        [call, list(scopes)],
    )
    await page.keyboard.press("Enter")


async def screen(page: Any, name: str) -> None:
    await page.wait_for_selector(f'stepup-prompt dialog[open][data-screen="{name}"]', timeout=10_000)


async def outcome(page: Any) -> dict[str, Any]:
    await page.wait_for_function("() => window.outcome", timeout=15_000)
    return dict(await page.evaluate("() => window.outcome"))


async def focused(page: Any) -> dict[str, Any] | None:
    """What has focus: inside the prompt's shadow root, or the page's own element."""
    return await page.evaluate(
        """() => {
            const host = document.querySelector("stepup-prompt");
            const inside = host && host.shadowRoot && host.shadowRoot.activeElement;
            const el = inside || document.activeElement;
            if (!el || el === document.body) return null;
            const label = el.labels && el.labels[0] ? el.labels[0].textContent : null;
            return { inPrompt: !!inside, tag: el.tagName.toLowerCase(), id: el.id, type: el.type || null,
                     text: (el.textContent || "").trim(), value: el.value ?? null, label,
                     ariaLabel: el.getAttribute("aria-label"), method: el.dataset ? el.dataset.method || null : null,
                     autocomplete: el.getAttribute("autocomplete"), inputmode: el.getAttribute("inputmode") };
        }"""
    )


async def prompt_text(page: Any) -> dict[str, Any]:
    return await page.evaluate(
        """() => {
            const root = document.querySelector("stepup-prompt").shadowRoot;
            const text = (sel) => { const el = root.querySelector(sel); return el ? el.textContent.trim() : null; };
            const dialog = root.querySelector("dialog");
            return {
                title: text("h2"), description: text("#stepup-description"), error: text(".error"),
                status: text('[role="status"]'), countdown: text(".countdown"), lang: dialog.getAttribute("lang"),
                labelledBy: dialog.getAttribute("aria-labelledby"), modal: dialog.matches(":modal"),
                options: [...root.querySelectorAll('input[type="radio"]')].map((r) => ({
                    method: r.dataset.method, checked: r.checked,
                    label: r.closest("label").textContent.trim() })),
                buttons: [...root.querySelectorAll("button")].map((b) => (b.getAttribute("aria-label") || b.textContent).trim()),
            };
        }"""
    )


async def check_screen(page: Any, shots: Path, name: str) -> None:
    """axe-core finds no violation (the whole page, the prompt's shadow root included); save a PNG."""
    if not await page.evaluate("() => !!window.axe"):
        await page.add_script_tag(url="/axe.js")
    violations = await page.evaluate(
        """async () => {
            const result = await axe.run(document, { resultTypes: ["violations"] });
            return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map((n) => JSON.stringify(n.target) + ": " + n.failureSummary) }));
        }"""
    )
    assert violations == [], f"{name}: {json.dumps(violations, indent=1)}"
    assert name in SCREENS
    path = shots / f"prompt-{name}.png"
    await page.locator("stepup-prompt dialog").screenshot(path=str(path), animations="disabled")
    assert path.stat().st_size > 2000


async def tab_to(page: Any, text: str, limit: int = 12) -> None:
    """Press Tab until the control whose text or label is ``text`` has focus."""
    for _ in range(limit):
        now = await focused(page)
        if now and (now["text"] == text or now["ariaLabel"] == text):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {text!r}")


async def choose(page: Any, method: str) -> None:
    """On the list of methods, move the radio selection with the arrow keys to ``method``, then Enter."""
    await screen(page, "choose")
    for _ in range(8):
        now = await focused(page)
        assert now is not None and now["type"] == "radio", now
        if now["method"] == method:
            await page.keyboard.press("Enter")
            return
        await page.keyboard.press("ArrowDown")
    raise AssertionError(f"no {method} in the list")


async def enrol_totp(page: Any) -> None:
    await page.evaluate(
        """async () => {
            await stepUp.enroll({ method: "totp", alias: "Phone", getCode: async ({ data }) => {
                window.secret = data.secret;
                return window.totpCode(data.secret);
            } });
        }"""
    )


async def link_token_by_totp(page: Any) -> None:
    await page.evaluate(
        """async () => stepUp.verifyTotpMfa({ code: await window.nextTotp(window.secret),
                                              requestedScopes: ["credential:link"] })"""
    )


# --- MFA: passkey, authenticator app, recovery code -----------------------------------------------


async def test_mfa_methods_step_up_by_keyboard_only(psite: Any, page: Any, shots: Path) -> None:
    await virtual_authenticator(page)
    await expose_totp(page, psite)
    await psite.open(page, "alice")
    await enrol_totp(page)
    await link_token_by_totp(page)
    codes = await page.evaluate(
        """async () => {
            const recovery = await stepUp.enroll({ method: "recovery" });
            await stepUp.enroll({ method: "passkey", alias: "Laptop" });
            return recovery.data.codes;
        }"""
    )
    check = await page.evaluate("() => stepUp.checkStepUpAuth({ scope: 'wallet:export' })")
    passkey = next(c for c in check["credentials"] if c["method"] == "passkey")
    assert check["defaultCredentialId"] == passkey["id"]  # the newest MFA device

    # 1. The list, the default preselected and focused; Enter goes on with it.
    await start_prompt(page, scopes=("wallet:export",))
    await screen(page, "choose")
    shown = await prompt_text(page)
    assert shown["modal"] is True and shown["labelledBy"] == "stepup-title"
    assert shown["title"] == "Verify it\u2019s you"
    assert shown["description"] == "Confirm with one of your security methods to continue."
    assert [o["method"] for o in shown["options"]] == ["totp", "passkey", "recovery"]
    assert [o["method"] for o in shown["options"] if o["checked"]] == ["passkey"]
    assert "Close" in shown["buttons"]
    now = await focused(page)
    assert now is not None and now["inPrompt"] and now["method"] == "passkey"
    await check_screen(page, shots, "choose")
    await page.keyboard.press("Enter")
    await screen(page, "button")
    shown = await prompt_text(page)
    assert shown["title"] == "Use your passkey"
    assert (await focused(page) or {}).get("text") == "Use passkey"
    await check_screen(page, shots, "passkey")
    await page.keyboard.press("Enter")
    done = await outcome(page)
    assert done["token"].startswith("sut_"), done
    assert await page.locator("stepup-prompt").count() == 0  # the element left the page
    assert (await focused(page) or {}).get("id") == "opener"  # focus is back where it was
    assert (await page.evaluate(f"async () => (await {EXPORT}).status")) == 200

    # 2. The authenticator app: a wrong code says so with the attempts left; a pasted code is cleaned.
    await start_prompt(page, scopes=("user:update",))
    await choose(page, "totp")
    await screen(page, "code")
    now = await focused(page)
    assert now is not None and now["tag"] == "input" and now["label"] == "Authentication code"
    assert now["autocomplete"] == "one-time-code" and now["inputmode"] == "numeric"
    assert (await prompt_text(page))["title"] == "Enter the code from your authenticator app"
    await check_screen(page, shots, "totp")
    wrong = "000000" if psite.totp_code(await page.evaluate("() => window.secret")) != "000000" else "111111"
    await page.keyboard.type(wrong)
    await page.keyboard.press("Enter")
    await screen(page, "error")
    shown = await prompt_text(page)
    assert shown["error"] == "That code is not right. 4 attempts left."
    now = await focused(page)
    assert now is not None and now["tag"] == "input"  # back in the field, ready for another try
    await check_screen(page, shots, "wrong-code")
    code = await page.evaluate("() => window.nextTotp(window.secret)")
    spaced = f"{code[:3]} {code[3:]}"
    await page.evaluate(
        """(text) => {
            const input = document.querySelector("stepup-prompt").shadowRoot.querySelector("input");
            input.select();
            const data = new DataTransfer();
            data.setData("text/plain", text);
            input.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
        }""",
        spaced,
    )
    assert (await focused(page) or {}).get("value") == code
    await page.keyboard.press("Enter")
    done = await outcome(page)
    assert done["token"].startswith("sut_"), done

    # 3. A recovery code, typed.
    await start_prompt(page, scopes=("wallet:sign",))
    await choose(page, "recovery")
    await screen(page, "code")
    assert (await prompt_text(page))["title"] == "Enter a recovery code"
    await check_screen(page, shots, "recovery")
    await page.keyboard.type(codes[0])
    await page.keyboard.press("Enter")
    done = await outcome(page)
    assert done["token"].startswith("sut_"), done
    assert page.errors == []


EXPORT = 'stepUp.fetch("/app/wallet/export", { method: "POST", scope: "wallet:export" })'


# --- re-authentication: email code, wallet, social -----------------------------------------------


async def test_reauthentication_methods_step_up_by_keyboard_only(
    psite: Any, page: Any, shots: Path, provider: Any
) -> None:
    from eth_account import Account
    from eth_account.messages import encode_defunct

    account = Account.from_key("0x" + "5e" * 32)  # a fixed test key: the screenshot stays the same

    def personal_sign(message_hex: str, address: str) -> str:
        message = bytes.fromhex(message_hex.removeprefix("0x")).decode("utf-8")
        return "0x" + bytes(account.sign_message(encode_defunct(text=message)).signature).hex()

    async def read_mail(to: str, seen: int) -> str:
        return await psite.mailbox.next_code(to, seen)

    await page.expose_function("walletSign", personal_sign)
    await page.expose_function("readMail", read_mail)
    await page.add_init_script(
        """window.ethereum = { request: async ({ method, params }) => {
            if (method === "eth_requestAccounts") return [ADDRESS];
            if (method === "personal_sign") return window.walletSign(params[0], params[1]);
            throw { code: 4200, message: "unsupported" };
        } };""".replace("ADDRESS", json.dumps(account.address))
    )
    await psite.open(page, "bob", extra=json.dumps({"pollInterval": 200, "maxPollInterval": 400}))
    await page.evaluate(
        """async () => {
            await stepUp.enroll({ method: "otp", email: "bob@example.com", getCode: () => window.readMail("bob@example.com", 0) });
            await stepUp.sendOtp({ requestedScopes: ["credential:link"] });
            await stepUp.verifyOtp({ verificationToken: await window.readMail("bob@example.com", 1) });
            await stepUp.enroll({ method: "wallet" });
        }"""
    )
    linked = await click_and_wait(page, 'return stepUp.enroll({ method: "social", provider: "idp" });')
    assert "error" not in linked, linked
    await asyncio.sleep(RESEND + 0.2)  # the link code's send limit passes

    # 1. The email code: sent when its screen opens, with where it went and when another may be asked for.
    await start_prompt(page, scopes=("wallet:export",))
    await screen(page, "choose")
    shown = await prompt_text(page)
    assert shown["description"] == "Sign in again to continue."
    assert [o["method"] for o in shown["options"]] == ["otp", "wallet", "social"]
    assert shown["options"][0]["checked"] is True and "b***@example.com" in shown["options"][0]["label"]
    await choose(page, "otp")
    await screen(page, "code")
    shown = await prompt_text(page)
    assert shown["title"] == "Check your email"
    assert shown["description"] == "Enter the code we sent to b***@example.com."
    assert shown["countdown"] in ("You can ask for a new code in 2 seconds.", "You can ask for a new code in 1 second.")
    await check_screen(page, shots, "otp")
    code = await psite.mailbox.next_code("bob@example.com", 2)
    await page.keyboard.type(code)
    await page.keyboard.press("Enter")
    done = await outcome(page)
    assert done["token"].startswith("sut_"), done

    # 2. The wallet: one button, the provider in the page signs.
    await start_prompt(page, scopes=("user:update",))
    await choose(page, "wallet")
    await screen(page, "button")
    assert (await prompt_text(page))["title"] == "Sign with your wallet"
    assert (await focused(page) or {}).get("text") == "Sign with wallet"
    await check_screen(page, shots, "wallet")
    await page.keyboard.press("Enter")
    done = await outcome(page)
    assert done["token"].startswith("sut_"), done

    # 3. Social: Enter on the button opens the provider's window, which completes by itself.
    await start_prompt(page, scopes=("wallet:sign",))
    await choose(page, "social")
    await screen(page, "button")
    assert (await prompt_text(page))["title"] == "Sign in again with idp"
    assert (await focused(page) or {}).get("text") == "Continue with idp"
    await check_screen(page, shots, "social")
    async with page.expect_popup():
        await page.keyboard.press("Enter")
    done = await outcome(page)
    assert done["token"].startswith("sut_"), done
    assert len(provider.token_requests) == 2  # the link, then this step-up
    assert page.errors == []


# --- resend, expiry, lockout ------------------------------------------------------------------


async def test_resend_waits_for_the_server_and_an_expired_code_starts_again(psite: Any, page: Any, shots: Path) -> None:
    async def read_mail(to: str, seen: int) -> str:
        return await psite.mailbox.next_code(to, seen)

    await page.expose_function("readMail", read_mail)
    await psite.open(page, "bob")
    await page.evaluate(
        """() => stepUp.enroll({ method: "otp", email: "bob@example.com",
                                 getCode: () => window.readMail("bob@example.com", 0) })"""
    )
    await asyncio.sleep(RESEND + 0.2)
    await start_prompt(page, scopes=("wallet:export",))
    await screen(page, "code")  # one credential: its screen at once
    first = await psite.mailbox.next_code("bob@example.com", 1)
    # Closed and opened again for the same action: the code already sent still counts, none is resent.
    await page.keyboard.press("Escape")
    assert (await outcome(page))["error"] == "user_cancelled"
    await start_prompt(page, scopes=("wallet:export",))
    await screen(page, "code")
    assert len(psite.mailbox.codes()) == 2
    assert (await prompt_text(page))["countdown"].startswith("You can ask for a new code in ")
    # The button waits for the server's pace; then the keyboard reaches it and a new code goes out.
    await page.wait_for_function(
        """() => !document.querySelector("stepup-prompt").shadowRoot.querySelector(".countdown").textContent""",
        timeout=5000,
    )
    await tab_to(page, "Send a new code")
    await page.keyboard.press("Enter")
    await page.wait_for_function(
        """() => document.querySelector("stepup-prompt").shadowRoot.querySelector('[role="status"]').textContent
                 === "We sent a new code." """
    )
    second = await psite.mailbox.next_code("bob@example.com", 2)
    assert len(psite.mailbox.codes()) == 3

    # Asked for again at once: the server's retryAfter paces the button.
    await tab_to(page, "Send a new code")
    await page.keyboard.press("Enter")
    await page.wait_for_function(
        """() => document.querySelector("stepup-prompt").shadowRoot.querySelector(".countdown").textContent !== "" """
    )
    assert len(psite.mailbox.codes()) == 3  # nothing sent

    # The code's time runs out while the person looks away: the screen says so and starts again.
    psite.clock.advance(601)
    await page.locator("stepup-prompt input").focus()
    await page.keyboard.type(second)
    await page.keyboard.press("Enter")
    await screen(page, "restart")
    shown = await prompt_text(page)
    assert shown["error"] == "This request has expired. Start again to get a new one."
    assert (await focused(page) or {}).get("text") == "Start again"
    await check_screen(page, shots, "expired")
    await page.keyboard.press("Enter")
    await screen(page, "code")
    third = await psite.mailbox.next_code("bob@example.com", 3)
    assert len(psite.mailbox.codes()) == 4 and third != first
    await page.keyboard.type(third)
    await page.keyboard.press("Enter")
    done = await outcome(page)
    assert done["token"].startswith("sut_"), done


async def test_locked_out_says_for_how_long(provider: Any, page: Any, shots: Path) -> None:
    async with SiteRunner(
        provider=provider, files={"/axe.js": axe_source()}, overrides={"limits": {"lockout_failures": 3}}
    ) as site:
        await expose_totp(page, site)
        await site.open(page, "alice")
        await enrol_totp(page)
        await start_prompt(page, scopes=("wallet:export",))
        await screen(page, "code")
        left = []
        for _ in range(4):
            await page.keyboard.type("000000" if site.totp_code(await page.evaluate("() => window.secret")) != "000000" else "111111")
            await page.keyboard.press("Enter")
            await page.wait_for_selector('stepup-prompt dialog[data-screen="error"], stepup-prompt dialog[data-screen="locked"]')
            shown = await prompt_text(page)
            if await page.locator('stepup-prompt dialog[data-screen="locked"]').count():
                break
            left.append(shown["error"])
            await page.evaluate("() => { document.querySelector('stepup-prompt').shadowRoot.querySelector('dialog').dataset.screen = 'code'; }")
        assert left == [
            "That code is not right. 4 attempts left.",
            "That code is not right. 3 attempts left.",
            "That code is not right. 2 attempts left.",
        ]
        await screen(page, "locked")
        shown = await prompt_text(page)
        assert shown["title"] == "Try again later"
        assert shown["description"] == (
            "Too many failed attempts. For your security, verification is paused. Try again in 15 minutes."
        )
        assert (await focused(page) or {}).get("text") == "Close"
        await check_screen(page, shots, "locked")
        await page.keyboard.press("Enter")
        done = await outcome(page)
        assert done == {"error": "user_cancelled", "message": "user cancelled"}


# --- cancelling, focus, routing ----------------------------------------------------------------


async def test_cancel_rejects_by_escape_close_button_and_backdrop(psite: Any, page: Any, shots: Path) -> None:
    await expose_totp(page, psite)
    await psite.open(page, "alice")
    await enrol_totp(page)

    # Escape.
    await start_prompt(page, scopes=("user:update",))
    await screen(page, "code")
    await page.keyboard.press("Escape")
    assert await outcome(page) == {"error": "user_cancelled", "message": "user cancelled"}
    assert (await focused(page) or {}).get("id") == "opener"
    assert await page.evaluate("() => stepUp.state.error.code") == "user_cancelled"

    # Tab stays within the dialog, around and around; the close button is reached and pressed.
    await start_prompt(page, scopes=("user:update",))
    await screen(page, "code")
    seen = set()
    for _ in range(7):
        await page.keyboard.press("Tab")
        now = await focused(page)
        assert now is not None and now["inPrompt"], now
        seen.add(now["ariaLabel"] or now["text"] or now["tag"])
    assert seen == {"Close", "input", "Verify"}
    for _ in range(3):
        await page.keyboard.press("Shift+Tab")
        assert (await focused(page) or {}).get("inPrompt") is True
    await tab_to(page, "Close")
    await check_screen(page, shots, "cancel-focus")
    await page.keyboard.press("Enter")
    assert await outcome(page) == {"error": "user_cancelled", "message": "user cancelled"}
    assert (await focused(page) or {}).get("id") == "opener"

    # A click on the backdrop.
    await start_prompt(page, scopes=("user:update",))
    await screen(page, "code")
    await page.mouse.click(5, 5)
    assert await outcome(page) == {"error": "user_cancelled", "message": "user cancelled"}
    # The page aborts: the dialog closes and the call rejects; two prompts at once show one dialog at a time.
    result = await page.evaluate(
        """async () => {
            const controller = new AbortController();
            const first = stepUp.promptMfa({ requestedScopes: ["user:update"], signal: controller.signal })
                .then(() => "resolved", (e) => e.code);
            const second = stepUp.promptMfa({ requestedScopes: ["wallet:sign"] }).then(() => "resolved", (e) => e.code);
            const root = () => document.querySelector("stepup-prompt");
            while (!root() || !root().shadowRoot.querySelector("dialog[open]")) await new Promise((r) => setTimeout(r, 20));
            const dialogs = document.querySelectorAll("stepup-prompt").length;
            controller.abort();
            const aborted = await first;
            while (!root() || !root().shadowRoot.querySelector("dialog[open]")) await new Promise((r) => setTimeout(r, 20));
            root().shadowRoot.querySelector("button.close").click();
            return { dialogs, aborted, second: await second, left: document.querySelectorAll("stepup-prompt").length };
        }"""
    )
    assert result == {"dialogs": 1, "aborted": "user_cancelled", "second": "user_cancelled", "left": 0}

    # A click inside the dialog does not cancel.
    await start_prompt(page, scopes=("user:update",))
    await screen(page, "code")
    await page.locator("stepup-prompt h2").click()
    await page.keyboard.press("Escape")
    assert await outcome(page) == {"error": "user_cancelled", "message": "user cancelled"}


async def test_an_mfa_user_is_never_offered_reauthentication(psite: Any, page: Any) -> None:
    async def read_mail(to: str, seen: int) -> str:
        return await psite.mailbox.next_code(to, seen)

    await page.expose_function("readMail", read_mail)
    await expose_totp(page, psite)
    await psite.open(page, "alice")
    await page.evaluate(
        """async () => {
            await stepUp.enroll({ method: "otp", email: "alice@example.com", getCode: () => window.readMail("alice@example.com", 0) });
            await stepUp.sendOtp({ requestedScopes: ["credential:link"] });
            await stepUp.verifyOtp({ verificationToken: await window.readMail("alice@example.com", 1) });
        }"""
    )
    await enrol_totp(page)
    mails = len(psite.mailbox.codes())
    for call in ("promptStepUpAuth", "promptMfa"):
        await start_prompt(page, call=call, scopes=("user:update",))
        await screen(page, "code")  # the app is the only method shown: no list with the email
        shown = await prompt_text(page)
        assert shown["title"] == "Enter the code from your authenticator app" and shown["options"] == []
        await page.keyboard.press("Escape")
        assert (await outcome(page))["error"] == "user_cancelled"
    await start_prompt(page, call="promptReauthenticate", scopes=("user:update",))
    done = await outcome(page)
    assert done["error"] == "method_not_allowed"
    assert await page.locator("stepup-prompt").count() == 0  # no dialog at all
    assert len(psite.mailbox.codes()) == mails  # and no code went to the email address


# --- locales, themes, a third-party method ---------------------------------------------------------


async def test_locale_theme_and_a_third_party_methods_own_screen(browser: Any, psite: Any, shots: Path) -> None:
    context = await browser.new_context(locale="fr-FR")
    try:
        page = await context.new_page()
        await psite.open(page, "carol")
        await page.evaluate('() => stepUp.enroll({ method: "pin", code: "246810" })')
        # navigator.language picks the catalog; the PIN's screen comes from stepup-example's module.
        await start_prompt(page, scopes=("wallet:export",))
        await screen(page, "code")
        shown = await prompt_text(page)
        assert shown["lang"] == "fr" and shown["title"] == "Saisissez votre code PIN"
        now = await focused(page)
        assert now is not None and now["label"] == "Code PIN" and now["type"] == "password"
        await page.keyboard.type("135790")
        await page.keyboard.press("Enter")
        await screen(page, "error")
        assert (await prompt_text(page))["error"] == "Ce code est incorrect. Il reste 4 essais."
        await check_screen(page, shots, "pin-fr")
        await page.keyboard.press("Control+A")
        await page.keyboard.type("246810")
        await page.keyboard.press("Enter")
        assert (await outcome(page))["token"].startswith("sut_")

        # An option chooses the locale and the theme; the page's messages win over the catalog.
        await expose_totp(page, psite)
        await page.evaluate(
            """async () => {
                const { installPrompt } = await import("/stepup/static/prompt.js");
                window.uninstall = installPrompt({ locale: "de", theme: "dark", messages: { title: "Kurz bestätigen" } });
                await stepUp.verify({ method: "pin", code: "246810", requestedScopes: ["credential:link"] });
                await stepUp.enroll({ method: "totp", getCode: async ({ data }) => {
                    window.secret = data.secret; return window.totpCode(data.secret); } });
            }"""
        )
        await start_prompt(page, scopes=("user:update",))
        await screen(page, "choose")
        shown = await prompt_text(page)
        assert shown["lang"] == "de" and shown["title"] == "Kurz bestätigen"
        assert [o["method"] for o in shown["options"]] == ["pin", "totp"]
        assert shown["options"][1]["label"].startswith("Authenticator-App")
        assert await page.evaluate("() => document.querySelector('stepup-prompt').getAttribute('theme')") == "dark"
        await check_screen(page, shots, "choose-dark")
        await page.keyboard.press("Escape")
        assert (await outcome(page))["error"] == "user_cancelled"
    finally:
        await context.close()

