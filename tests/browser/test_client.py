"""stepup.js as a page uses it: the token jar, the automatic step-up on an RFC 9470 401,
cancelling, logging out, state transitions and typed errors. The person answers with an
authenticator app whose codes the test computes."""

from __future__ import annotations

from typing import Any

import pytest

from .test_methods import EXPORT, expose_totp

pytestmark = pytest.mark.asyncio(loop_scope="session")

TOTP_PROMPT = """
    window.prompts = (window.prompts || []);
    window.prompts.push({ kind: request.kind, route: request.route, scopes: request.requestedScopes,
                          methods: request.credentials.map((c) => c.method),
                          preselected: request.defaultCredentialId });
    if (window.cancelPrompt) return null;
    const code = await window.nextTotp(window.secret);
    return request.stepUp.verifyTotpMfa({ code, requestedScopes: request.requestedScopes });
"""

ENROL_TOTP = """async () => {
    await stepUp.enroll({ method: "totp", getCode: async ({ data }) => {
        window.secret = data.secret;
        return window.totpCode(data.secret);
    } });
}"""


async def open_with_totp(site: Any, page: Any, prompt: str | None = TOTP_PROMPT) -> None:
    await expose_totp(page, site)
    await site.open(page, "alice", prompt=prompt)
    await page.evaluate(ENROL_TOTP)


async def test_a_401_from_a_protected_route_prompts_then_retries_once(site: Any, page: Any) -> None:
    await open_with_totp(site, page)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.headers.get("x-elevated-access-token", "")) if r.url.endswith(
        "/app/wallet/export") else None)
    result = await page.evaluate(
        f"""async () => {{
            const answer = await {EXPORT};
            return {{ status: answer.status, body: await answer.json(), prompts: window.prompts }};
        }}"""
    )
    assert result["status"] == 200 and result["body"]["user"] == "alice"
    [asked] = result["prompts"]
    assert asked["route"] == "mfa" and asked["scopes"] == ["wallet:export"] and asked["methods"] == ["totp"]
    assert asked["preselected"] is not None
    # First without a token (refused, 401), then once more with the new one.
    assert len(posts) == 2 and posts[0] == "" and posts[1].startswith("sut_")
    assert site.calls == [("/app/wallet/export", posts[1])]


async def test_a_single_use_token_cannot_be_used_twice(site: Any, page: Any) -> None:
    await open_with_totp(site, page, prompt=None)
    result = await page.evaluate(
        f"""async () => {{
            const token = await stepUp.verifyTotpMfa({{ code: await window.nextTotp(window.secret),
                                                        requestedScopes: ["wallet:export"] }});
            const first = await {EXPORT};
            // Replayed by hand, as a stolen copy would be.
            const replay = await fetch("/app/wallet/export", {{ method: "POST", headers: {{
                Authorization: "Bearer " + "alice-browser-session-token".padEnd(32, "0"),
                "X-Elevated-Access-Token": token.elevatedAccessToken }} }});
            // Through the client: the jar no longer holds it, and with no prompt the 401 comes back.
            const again = await {EXPORT};
            return {{ first: first.status, replay: replay.status, challenge: replay.headers.get("WWW-Authenticate"),
                      problem: await replay.json(), again: again.status,
                      required: await stepUp.isStepUpRequired({{ scope: "wallet:export" }}) }};
        }}"""
    )
    assert result["first"] == 200
    assert result["replay"] == 401
    assert result["challenge"].startswith('Bearer error="insufficient_user_authentication"')
    assert result["problem"]["code"] == "insufficient_user_authentication"
    assert result["again"] == 401 and result["required"] is True
    assert len(site.calls) == 1


async def test_cancelling_the_prompt_rejects(site: Any, page: Any) -> None:
    await open_with_totp(site, page)
    result = await page.evaluate(
        f"""async () => {{
            window.cancelPrompt = true;
            const outcome = {{}};
            try {{ await stepUp.promptStepUpAuth({{ requestedScopes: ["user:update"] }}); outcome.prompt = "resolved"; }}
            catch (e) {{ outcome.prompt = e.code; outcome.typed = e instanceof StepUpError; }}
            try {{ await {EXPORT}; outcome.fetch = "resolved"; }} catch (e) {{ outcome.fetch = e.code; }}
            outcome.state = stepUp.state.error.code;
            // A page aborts a prompt that waits for the person.
            window.cancelPrompt = false;
            window.promptImpl = () => new Promise(() => {{}});
            const controller = new AbortController();
            const waiting = stepUp.promptMfa({{ requestedScopes: ["user:update"], signal: controller.signal }});
            setTimeout(() => controller.abort(), 50);
            try {{ await waiting; outcome.aborted = "resolved"; }} catch (e) {{ outcome.aborted = e.code; }}
            return outcome;
        }}"""
    )
    assert result == {
        "prompt": "user_cancelled",
        "typed": True,
        "fetch": "user_cancelled",
        "state": "user_cancelled",
        "aborted": "user_cancelled",
    }
    assert site.calls == []


async def test_prompts_route_as_the_reference_does(site: Any, page: Any) -> None:
    await open_with_totp(site, page)
    result = await page.evaluate(
        """async () => {
            const out = {};
            try { await stepUp.promptReauthenticate({ requestedScopes: ["user:update"] }); }
            catch (e) { out.reauth = e.code; }
            out.mfa = await stepUp.promptMfa({ requestedScopes: ["user:update"] });
            // Held and still valid: no prompt, the same token.
            out.again = await stepUp.promptStepUpAuth({ requestedScopes: ["user:update"] });
            out.prompts = window.prompts.length;
            return out;
        }"""
    )
    assert result["reauth"] == "method_not_allowed"  # a user with MFA never re-authenticates
    assert result["mfa"].startswith("sut_") and result["again"] == result["mfa"]
    assert result["prompts"] == 1
    other = await page.context.new_page()
    await site.open(other, "bob", prompt="return null;")
    refused = await other.evaluate(
        """async () => {
            try { await stepUp.promptMfa({ requestedScopes: ["user:update"] }); } catch (e) { return e.code; }
        }"""
    )
    assert refused == "no_eligible_credential"


async def test_logout_forgets_and_revokes_the_tokens(site: Any, page: Any) -> None:
    await open_with_totp(site, page, prompt=None)
    result = await page.evaluate(
        """async () => {
            const token = await stepUp.verifyTotpMfa({ code: await window.nextTotp(window.secret),
                                                       requestedScopes: ["user:update"] });
            await stepUp.logout();
            const replay = await fetch("/app/profile", { method: "POST", headers: {
                Authorization: "Bearer " + "alice-browser-session-token".padEnd(32, "0"),
                "X-Elevated-Access-Token": token.elevatedAccessToken } });
            return { required: await stepUp.isStepUpRequired({ scope: "user:update" }), replay: replay.status };
        }"""
    )
    assert result == {"required": True, "replay": 401}


async def test_state_and_errors(site: Any, page: Any) -> None:
    await open_with_totp(site, page, prompt=None)
    result = await page.evaluate(
        """async () => {
            window.events.length = 0;
            const out = {};
            try { await stepUp.verifyTotpMfa({ code: "000000", requestedScopes: ["user:update"] }); }
            catch (e) { out.wrong = { code: e.code, status: e.status, typed: e instanceof StepUpError }; }
            out.afterWrong = [...window.events];
            try { await stepUp.verifyTotpMfa({ code: "12", requestedScopes: ["user:update"] }); }
            catch (e) { out.malformed = { code: e.code, status: e.status }; }
            try { await stepUp.verifyTotpMfa({ code: "123456", requestedScopes: ["no such scope!"] }); }
            catch (e) { out.scope = { code: e.code, status: e.status, errors: e.errors.length }; }
            stepUp.resetState();
            out.reset = { ...stepUp.state };
            const failedCheck = await createStepUp_({ baseUrl: "http://localhost:9/stepup" })
                .checkStepUpAuth({ scope: "user:update" });
            out.failedCheck = failedCheck.isRequired;
            try { await stepUp.verifyOtp({ verificationToken: "123456" }); } catch (e) { out.otpFirst = e.code; }
            return out;
        }""".replace("createStepUp_", "(await import('/stepup/static/stepup.js')).createStepUp")
    )
    assert result["wrong"] == {"code": "verification_failed", "status": 400, "typed": True}
    assert result["afterWrong"] == [
        {"isLoading": True, "error": None},
        {"isLoading": False, "error": "verification_failed"},
    ]
    assert result["malformed"] == {"code": "invalid_response", "status": 400}
    assert result["scope"]["code"] == "invalid_scope" and result["scope"]["errors"] >= 1
    assert result["reset"] == {"isLoading": False, "error": None}
    assert result["failedCheck"] is True  # a check that fails counts as required
    assert result["otpFirst"] == "challenge_not_found"  # verifyOtp before sendOtp


async def test_browser_files_are_served_with_etags(site: Any, page: Any) -> None:
    await site.open(page, "alice")
    result = await page.evaluate(
        """async () => {
            const first = await fetch("/stepup/static/stepup.js");
            const etag = first.headers.get("ETag");
            const again = await fetch("/stepup/static/stepup.js", { headers: { "If-None-Match": etag } });
            const module = await fetch("/stepup/methods/totp/browser.js");
            return { status: first.status, type: first.headers.get("Content-Type"), etag,
                     cache: first.headers.get("Cache-Control"), again: again.status,
                     module: module.status, moduleType: module.headers.get("Content-Type") };
        }"""
    )
    assert result["status"] == 200 and result["type"].startswith("text/javascript")
    assert result["etag"].startswith('"') and result["cache"] == "no-cache"
    assert result["again"] == 304
    assert result["module"] == 200 and result["moduleType"].startswith("text/javascript")
