"""Every method in a real browser: a page using stepup.js enrols, steps up against a real stepup
server and calls a protected route. Each method's browser half is the module its plugin ships."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parents[2]
EXPORT = 'stepUp.fetch("/app/wallet/export", { method: "POST", scope: "wallet:export" })'


async def virtual_authenticator(page: Any, *, verified: bool = True) -> tuple[Any, str]:
    """A CTAP2 platform authenticator with user verification, through the DevTools protocol."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable", {"enableUI": False})
    added = await cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": verified,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


async def expose_totp(page: Any, site: Any) -> None:
    """``totpCode(secret)``: the app's current code; ``nextTotp(secret)``: the next one (the
    person waits for the app to show a new code: the clock moves a time step on)."""

    async def next_code(secret: str) -> str:
        site.clock.advance(30)
        return site.totp_code(secret)

    await page.expose_function("totpCode", lambda secret: site.totp_code(secret))
    await page.expose_function("nextTotp", next_code)


# --- passkey ---------------------------------------------------------------------------------


async def test_passkey_registers_and_steps_up_with_the_virtual_authenticator(site: Any, page: Any) -> None:
    cdp, authenticator = await virtual_authenticator(page)
    await site.open(page, "alice")
    result = await page.evaluate(
        """async () => {
            const enrolled = await stepUp.enroll({ method: "passkey", alias: "Laptop", userName: "alice@example.com" });
            const token = await stepUp.verifyPasskeyMfa({ requestedScopes: ["wallet:export"] });
            const answer = await """ + EXPORT + """;
            return { credential: enrolled.credential, token, status: answer.status, body: await answer.json(),
                     stillHeld: !(await stepUp.isStepUpRequired({ scope: "wallet:export" })) };
        }"""
    )
    assert result["credential"]["method"] == "passkey"
    assert result["credential"]["alias"] == "Laptop"
    token = result["token"]
    assert token["elevatedAccessToken"].startswith("sut_") and token["singleUse"] is True
    assert token["method"] == "passkey"
    assert result["status"] == 200 and result["body"] == {"done": "/app/wallet/export", "user": "alice"}
    assert result["stillHeld"] is False  # the single-use token left the jar when it was attached
    assert site.calls == [("/app/wallet/export", token["elevatedAccessToken"])]
    held = (await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator}))["credentials"]
    assert len(held) == 1 and held[0]["signCount"] >= 1  # registered, then used to sign
    assert page.errors == []


async def test_passkey_without_user_verification_is_refused(site: Any, page: Any) -> None:
    cdp, authenticator = await virtual_authenticator(page)
    await site.open(page, "alice")
    await page.evaluate('() => stepUp.enroll({ method: "passkey" })')
    await cdp.send("WebAuthn.setUserVerified", {"authenticatorId": authenticator, "isUserVerified": False})

    # An honest browser does not even answer: the server asked for user verification.
    honest = await page.evaluate(
        """async () => {
            try { await stepUp.verifyPasskeyMfa({ requestedScopes: ["wallet:export"] }); return null; }
            catch (e) { return { code: e.code, isTyped: e instanceof StepUpError, state: stepUp.state.error.code }; }
        }"""
    )
    assert honest == {"code": "user_cancelled", "isTyped": True, "state": "user_cancelled"}

    # A client that drops the requirement gets an assertion without UV: the server refuses it.
    forged = await page.evaluate(
        """async () => {
            const get = navigator.credentials.get.bind(navigator.credentials);
            navigator.credentials.get = (options) => {
                options.publicKey.userVerification = "discouraged";
                return get(options);
            };
            try { await stepUp.verifyPasskeyMfa({ requestedScopes: ["wallet:export"] }); return null; }
            catch (e) { return { code: e.code, status: e.status, message: e.message }; }
        }"""
    )
    assert forged is not None and forged["code"] == "verification_failed" and forged["status"] == 400
    assert "verif" in forged["message"].lower()
    status = await page.evaluate(f"async () => (await {EXPORT}).status")
    assert status == 401 and site.calls == []


# --- TOTP ------------------------------------------------------------------------------------


async def test_totp_enrolment_shows_the_servers_qr_code_then_steps_up(site: Any, page: Any) -> None:
    await site.open(page, "alice")
    start = await page.evaluate(
        """async () => {
            const start = await stepUp.beginEnrollment({ method: "totp", params: { accountName: "alice@example.com" } });
            const img = document.createElement("img");
            img.alt = "QR code";
            img.src = start.data.qrSvg;
            document.body.append(img);
            await img.decode();
            return { id: start.enrollmentId, secret: start.data.secret, width: img.naturalWidth, uri: start.data.otpauthUri };
        }"""
    )
    assert start["width"] > 0 and start["uri"].startswith("otpauth://totp/")
    credential = await page.evaluate(
        "([id, code]) => stepUp.completeEnrollment({ enrollmentId: id, response: { code } })",
        [start["id"], site.totp_code(start["secret"])],
    )
    assert credential["method"] == "totp" and credential["factor"] == "mfa"

    site.clock.advance(30)  # the app's next code: the enrolment's code never steps up
    result = await page.evaluate(
        """async (code) => {
            const token = await stepUp.verifyTotpMfa({ code, requestedScopes: ["user:update"] });
            const first = await stepUp.fetch("/app/profile", { method: "POST", scope: "user:update" });
            const again = await stepUp.fetch("/app/profile", { method: "POST", scope: "user:update" });
            return { token, statuses: [first.status, again.status] };
        }""",
        site.totp_code(start["secret"]),
    )
    token = result["token"]["elevatedAccessToken"]
    assert result["token"]["singleUse"] is False
    assert result["statuses"] == [200, 200]  # time-bound: it stays in the jar
    assert site.calls == [("/app/profile", token), ("/app/profile", token)]


# --- OTP by email, the code read from a real SMTP server ---------------------------------------


async def test_email_code_from_a_real_smtp_server(site: Any, page: Any) -> None:
    async def read_mail(to: str, seen: int) -> str:
        return await site.mailbox.next_code(to, seen)

    await page.expose_function("readMail", read_mail)
    await site.open(page, "bob")
    result = await page.evaluate(
        """async () => {
            const linked = await stepUp.enroll({
                method: "otp", email: "bob@example.com",
                getCode: () => window.readMail("bob@example.com", 0),
            });
            const check = await stepUp.checkStepUpAuth({ scope: "wallet:export" });
            const sent = await stepUp.sendOtp({ requestedScopes: ["wallet:export"] });
            const code = await window.readMail("bob@example.com", 1);
            const wrong = await stepUp.verifyOtp({ verificationToken: code === "000000" ? "111111" : "000000" });
            const wrongError = stepUp.state.error && stepUp.state.error.code;
            const token = await stepUp.verifyOtp({ verificationToken: code });
            const answer = await """ + EXPORT + """;
            const again = await stepUp.sendOtp({ requestedScopes: ["wallet:export"] });
            const limited = stepUp.state.error;
            return { linked: linked.credential, route: check.route, sent, wrong: wrong === undefined, wrongError,
                     token, status: answer.status, again,
                     limited: { code: limited.code, retryAfter: limited.retryAfter, status: limited.status } };
        }"""
    )
    assert result["linked"]["format"] == "email" and result["linked"]["alias"] == "b***@example.com"
    assert result["route"] == "reauth"
    assert result["sent"] == {
        "verificationType": "email",
        "credentialId": result["linked"]["id"],
        "destination": "b***@example.com",
    }
    assert result["wrong"] is True and result["wrongError"] == "verification_failed"
    assert result["token"]["method"] == "otp" and result["status"] == 200
    assert len(site.mailbox.codes()) == 2  # the link code and the step-up code
    # A second code at once is refused; the wait is surfaced.
    assert result["again"] is None
    assert result["limited"]["code"] == "rate_limited" and result["limited"]["status"] == 429
    assert 0 < result["limited"]["retryAfter"] <= 30


# --- recovery codes --------------------------------------------------------------------------


async def test_recovery_codes_are_shown_once_and_each_steps_up_once(site: Any, page: Any) -> None:
    await expose_totp(page, site)
    prompt = """
        window.prompts = (window.prompts || 0) + 1;
        const app = request.credentials.find((c) => c.method === "totp");
        return request.stepUp.verifyTotpMfa({ code: await window.nextTotp(window.secret), deviceId: app.id,
                                              requestedScopes: request.requestedScopes });
    """
    await site.open(page, "alice", prompt=prompt)
    result = await page.evaluate(
        """async () => {
            await stepUp.enroll({ method: "totp", getCode: async ({ data }) => {
                window.secret = data.secret;
                return window.totpCode(data.secret);
            } });
            // A second credential needs a credential:link token: the prompt runs, then the call again.
            const recovery = await stepUp.enroll({ method: "recovery" });
            const codes = recovery.data.codes;
            const token = await stepUp.verifyRecoveryCode({ code: codes[0], requestedScopes: ["wallet:export"] });
            const answer = await """ + EXPORT + """;
            let reused = null;
            try { await stepUp.verifyRecoveryCode({ code: codes[0], requestedScopes: ["wallet:export"] }); }
            catch (e) { reused = e.code; }
            return { count: codes.length, credential: recovery.credential, token, status: answer.status,
                     reused, prompts: window.prompts };
        }"""
    )
    assert result["count"] >= 8 and result["credential"]["method"] == "recovery"
    assert result["prompts"] == 1
    assert result["token"]["method"] == "recovery" and result["status"] == 200
    assert result["reused"] == "verification_failed"


# --- wallet: an EIP-1193 provider in the page, signing with a test key ---------------------------


async def test_wallet_signs_the_servers_message_through_an_eip1193_provider(site: Any, page: Any) -> None:
    from eth_account import Account
    from eth_account.messages import encode_defunct

    account = Account.create()
    signed: list[str] = []

    def personal_sign(message_hex: str, address: str) -> str:
        assert address.lower() == account.address.lower()
        message = bytes.fromhex(message_hex.removeprefix("0x")).decode("utf-8")
        signed.append(message)
        return "0x" + bytes(account.sign_message(encode_defunct(text=message)).signature).hex()

    await page.expose_function("walletSign", personal_sign)
    await page.add_init_script(
        """window.ethereum = { request: async ({ method, params }) => {
            if (method === "eth_requestAccounts") return [ADDRESS];
            if (method === "personal_sign") {
                if (window.rejectNext) { window.rejectNext = false; throw { code: 4001, message: "User rejected the request." }; }
                return window.walletSign(params[0], params[1]);
            }
            throw { code: 4200, message: "unsupported: " + method };
        } };""".replace("ADDRESS", json.dumps(account.address))
    )
    await site.open(page, "bob")
    result = await page.evaluate(
        """async () => {
            const linked = await stepUp.enroll({ method: "wallet" });
            window.rejectNext = true;
            const rejected = await stepUp.verifyWallet({ requestedScopes: ["wallet:export"] });
            const rejectedError = stepUp.state.error.code;
            const token = await stepUp.verifyWallet({ walletId: linked.credential.id, requestedScopes: ["wallet:export"] });
            const answer = await """ + EXPORT + """;
            return { linked: linked.credential, rejected: rejected === undefined, rejectedError, token, status: answer.status };
        }"""
    )
    assert result["linked"]["format"] == "blockchain"
    assert result["rejected"] is True and result["rejectedError"] == "user_cancelled"
    assert result["token"]["method"] == "wallet" and result["status"] == 200
    assert len(signed) == 2  # the link, then the step-up (the rejected one was never signed)
    host = site.base_url.split("//", 1)[1]
    assert signed[1].startswith(f"{host} wants you to sign in with your Ethereum account:\n{account.address}\n")
    assert "wallet:export" in signed[1]


# --- social: a real OpenID Connect provider on loopback, in a popup ------------------------------


async def click_and_wait(page: Any, script: str) -> Any:
    """Run ``script`` (an async function body) from a real click, so the popup counts as asked for."""
    await page.evaluate(
        """(body) => {
            const button = document.createElement("button");
            button.textContent = "Go";
            button.id = "go";
            const run = new Function("return (async () => {" + body + "})()");
            button.addEventListener("click", () => { window.outcome = run().then(
                (value) => ({ value }), (e) => ({ error: e.code || String(e) })); });
            document.body.replaceChildren(button);
        }""",
        script,
    )
    await page.click("#go")
    return await page.evaluate("() => window.outcome")


async def test_social_sign_in_in_a_popup_completed_by_the_callback_message(
    site: Any, page: Any, provider: Any
) -> None:
    await site.open(page, "bob", extra=json.dumps({"pollInterval": 60000, "maxPollInterval": 60000}))
    await page.evaluate("() => stepUp.methods()")
    popups: list[Any] = []
    page.on("popup", lambda popup: popups.append(popup))
    linked = await click_and_wait(page, 'return stepUp.enroll({ method: "social", provider: "idp" });')
    assert "error" not in linked, linked
    assert linked["value"]["credential"]["format"] == "oauth"
    outcome = await click_and_wait(
        page,
        """const token = await stepUp.verifySocial({ provider: "idp", requestedScopes: ["wallet:export"] });
           const answer = await """ + EXPORT + """;
           return { token, status: answer.status, error: stepUp.state.error && stepUp.state.error.message };""",
    )
    assert "error" not in outcome, outcome
    assert outcome["value"]["token"]["method"] == "social", outcome
    assert outcome["value"]["status"] == 200
    # Polls are a minute apart: only the callback page's message can have finished these so soon.
    assert len(popups) == 2 and all(p.is_closed() for p in popups)
    assert len(provider.token_requests) == 2
    assert page.errors == []


async def test_social_without_an_opener_completes_by_polling(site: Any, page: Any, context: Any) -> None:
    # A provider page that severs the opener (or a sign-in finished elsewhere): no message comes.
    await context.add_init_script("if (location.pathname.includes('/callback/')) window.opener = null;")
    await site.open(page, "bob", extra=json.dumps({"pollInterval": 200, "maxPollInterval": 400}))
    await page.evaluate("() => stepUp.methods()")
    linked = await click_and_wait(page, 'return stepUp.enroll({ method: "social", provider: "idp" });')
    assert "error" not in linked, linked
    outcome = await click_and_wait(
        page, 'return stepUp.verifySocial({ provider: "idp", requestedScopes: ["user:update"] });'
    )
    assert outcome["value"]["method"] == "social", outcome


async def test_closing_the_sign_in_window_cancels(site: Any, page: Any, context: Any, provider: Any) -> None:
    await site.open(page, "bob", extra=json.dumps({"pollInterval": 100, "maxPollInterval": 200}))
    await page.evaluate("() => stepUp.methods()")
    linked = await click_and_wait(page, 'return stepUp.enroll({ method: "social", provider: "idp" });')
    assert "error" not in linked, linked

    # The person looks at the provider's sign-in page, then closes the window.
    async def sign_in_page(route: Any) -> None:
        await route.fulfill(status=200, content_type="text/html", body="<!doctype html><title>Sign in</title>")

    await context.route(re.compile(re.escape(provider.issuer) + r"/authorize.*"), sign_in_page)
    async with page.expect_popup() as opened:
        await page.evaluate(
            """() => {
                const button = document.createElement("button");
                button.id = "social";
                button.addEventListener("click", () => {
                    window.outcome = stepUp.verifySocial({ provider: "idp", requestedScopes: ["user:update"] })
                        .then((token) => ({ token: token ?? null, error: stepUp.state.error && stepUp.state.error.code }));
                });
                document.body.replaceChildren(button);
            }"""
        )
        await page.click("#social")
    popup = await opened.value
    await popup.wait_for_url(re.compile(r".*/authorize.*"))
    await popup.close()
    outcome = await page.evaluate("() => window.outcome")
    assert outcome == {"token": None, "error": "user_cancelled"}


# --- a third-party method: stepup-example's PIN ---------------------------------------------------


async def test_a_third_party_method_reaches_the_browser_through_its_own_module(site: Any, page: Any) -> None:
    source = (ROOT / "stepup_core" / "static" / "stepup.js").read_text(encoding="utf-8")
    assert not re.search(r"\bpin\b", source, re.IGNORECASE)  # stepup.js knows nothing of PINs
    loaded: list[str] = []
    page.on("request", lambda request: loaded.append(request.url))
    prompt = """
        const pin = request.credentials.find((c) => c.method === "pin");
        return request.stepUp.verify({ method: pin.method, credentialId: pin.id, code: "246810",
                                       requestedScopes: request.requestedScopes });
    """
    await site.open(page, "alice", prompt=prompt)
    result = await page.evaluate(
        """async () => {
            const enrolled = await stepUp.enroll({ method: "pin", code: "246810" });
            const direct = await stepUp.verify({ method: "pin", code: "246810", requestedScopes: ["user:update"] });
            const prompted = await stepUp.promptStepUpAuth({ requestedScopes: ["wallet:export"] });
            const answer = await """ + EXPORT + """;
            let wrong = null;
            try { await stepUp.verify({ method: "pin", code: "135790", requestedScopes: ["user:update"] }); }
            catch (e) { wrong = e.code; }
            return { credential: enrolled.credential, direct, prompted, status: answer.status, wrong };
        }"""
    )
    assert result["credential"]["method"] == "pin"
    assert result["direct"]["method"] == "pin"
    assert result["prompted"].startswith("sut_") and result["status"] == 200
    assert result["wrong"] == "verification_failed"
    assert any(url.endswith("/stepup/methods/pin/browser.js") for url in loaded)
