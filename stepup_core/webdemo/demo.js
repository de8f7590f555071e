// The web demo's page: stepup.js and its built-in prompt, as any application would use them.
import { createStepUp } from "/stepup/static/stepup.js";
import { installPrompt } from "/stepup/static/prompt.js";

const $ = (id) => document.getElementById(id);
const result = $("result");
let state = { signedIn: false };

// --- the demo wallet: an EIP-1193 provider that asks before it signs --------------------------

const hexToText = (hex) =>
  new TextDecoder().decode(Uint8Array.from(hex.replace(/^0x/, "").match(/../g) ?? [], (b) => parseInt(b, 16)));

function approve(message) {
  const dialog = $("wallet-dialog");
  $("wallet-message").textContent = message;
  return new Promise((resolve) => {
    const done = (answer) => {
      $("wallet-sign").removeEventListener("click", sign);
      $("wallet-reject").removeEventListener("click", reject);
      dialog.removeEventListener("cancel", reject);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const sign = () => done(true);
    const reject = (event) => {
      event?.preventDefault?.();
      done(false);
    };
    $("wallet-sign").addEventListener("click", sign);
    $("wallet-reject").addEventListener("click", reject);
    dialog.addEventListener("cancel", reject);
    dialog.showModal();
  });
}

const demoWallet = {
  async request({ method, params = [] }) {
    const address = state.wallet?.address;
    if (!address) throw { code: 4100, message: "the demo wallet belongs to Bob" };
    if (method === "eth_requestAccounts" || method === "eth_accounts") return [address];
    if (method === "personal_sign") {
      const message = hexToText(String(params[0]));
      if (!(await approve(message))) throw { code: 4001, message: "User rejected the request." };
      const answer = await post("/demo/wallet/sign", { message });
      if (!answer.ok) throw { code: 4100, message: await answer.text() };
      return (await answer.json()).signature;
    }
    throw { code: 4200, message: `the demo wallet does not support ${method}` };
  },
};

// --- stepup -------------------------------------------------------------------------------------

installPrompt({ methodOptions: { wallet: { provider: demoWallet } } });
const stepUp = createStepUp(); // the session is the demo's cookie: same origin, nothing to add

function post(path, body = {}) {
  return fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

function say(text, failed = false) {
  result.textContent = text;
  result.classList.toggle("failed", failed);
}

function explain(error) {
  if (error?.code === "user_cancelled") return "Cancelled: nothing was done.";
  return `Failed: ${error?.message ?? error}`;
}

async function protectedAction(path, scope, describe) {
  say("");
  try {
    const answer = await stepUp.fetch(path, { method: "POST", scope });
    if (!answer.ok) return say(`Refused (${answer.status}).`, true);
    say(describe(await answer.json()));
  } catch (error) {
    say(explain(error), true);
  }
}

$("export").addEventListener("click", () =>
  protectedAction("/demo/wallet/export", "wallet:export", (body) => `Exported wallet key ${body.key.slice(0, 10)}… (single-use token spent).`),
);

$("profile").addEventListener("click", () =>
  protectedAction("/demo/profile", "user:update", () => `Profile updated at ${new Date().toLocaleTimeString()}.`),
);

$("link").addEventListener("click", async () => {
  say("");
  try {
    const { credential } = await stepUp.enroll({ method: "passkey", alias: "This device", userName: state.email });
    if (!$("device-list").hidden) await showDevices(false);
    say(`Linked a new device: ${credential.alias ?? "passkey"}.`);
  } catch (error) {
    say(explain(error), true);
  }
});

async function showDevices(count = true) {
  const list = $("device-list");
  const credentials = await stepUp.listCredentials();
  const labels = { totp: "Authenticator app", recovery: "Recovery codes", passkey: "Passkey", otp: "Email", wallet: "Wallet", social: "Sign-in provider" };
  list.replaceChildren(
    ...credentials.map((c) => {
      const item = document.createElement("li");
      item.dataset.method = c.method;
      item.textContent = `${labels[c.method] ?? c.method}: ${c.alias ?? c.id}${c.factor === "mfa" ? " (MFA)" : ""}`;
      return item;
    }),
  );
  list.hidden = false;
  if (count) say(`${credentials.length} devices and sign-in methods.`);
}

$("devices").addEventListener("click", () => showDevices().catch((error) => say(explain(error), true)));

// --- signing in, and the demo authenticators' panel ---------------------------------------------

async function signIn(user) {
  const answer = await post("/demo/sign-in", { user });
  render(await answer.json());
  say(`Signed in as ${state.name}.`);
  $("export").focus();
}

$("sign-in-alice").addEventListener("click", () => signIn("alice"));
$("sign-in-bob").addEventListener("click", () => signIn("bob"));
$("sign-out").addEventListener("click", async () => {
  await stepUp.logout().catch(() => {});
  render(await (await post("/demo/sign-out")).json());
  $("device-list").hidden = true;
  say("");
  $("sign-in-alice").focus();
});

function fillList(list, items) {
  list.replaceChildren(
    ...items.map((text) => {
      const item = document.createElement("li");
      item.textContent = text;
      return item;
    }),
  );
}

function render(next) {
  state = next;
  $("signed-out").hidden = state.signedIn;
  $("signed-in").hidden = !state.signedIn;
  $("authenticators").hidden = !state.signedIn;
  if (!state.signedIn) return;
  $("name").textContent = state.name;
  $("totp-panel").hidden = !state.totp;
  if (state.totp) {
    $("totp-code").textContent = state.totp.code;
    $("totp-left").textContent = `A new code in ${state.totp.secondsLeft} s.`;
  }
  $("recovery-panel").hidden = !state.recoveryCodes.length;
  fillList($("recovery-codes"), state.recoveryCodes);
  fillList($("inbox"), state.inbox.map((m) => `${m.code} to ${m.to}`));
  $("inbox-empty").hidden = state.inbox.length > 0;
  $("wallet-panel").hidden = !state.wallet;
  $("wallet-address").textContent = state.wallet?.address ?? "";
  $("provider-panel").hidden = !state.provider;
  $("provider-name").textContent = state.provider ?? "";
}

async function refresh() {
  try {
    render(await (await fetch("/demo/me")).json());
  } catch {
    // the demo stopped; the page stays as it was
  }
}

await refresh();
setInterval(() => state.signedIn && refresh(), 1000);
document.body.dataset.ready = "true";
