// @ts-check
// The browser half of `wallet`: the server's EIP-4361 message is signed with personal_sign by
// an EIP-1193 provider (the `provider` option, else window.ethereum). The message is signed only
// when it names an account the wallet holds: a signature is consent.

/** @param {import("stepup-browser").MethodContext} ctx @returns {import("stepup-browser").Eip1193Provider} */
function provider(ctx) {
  const found = ctx.options.provider ?? /** @type {any} */ (globalThis).ethereum;
  if (!found || typeof found.request !== "function") {
    throw ctx.error("unsupported", "no wallet found in this browser: install one, or pass provider (EIP-1193)");
  }
  return found;
}

/**
 * @param {import("stepup-browser").Eip1193Provider} wallet
 * @param {{method: string, params?: unknown[]}} call
 * @param {import("stepup-browser").MethodContext} ctx
 */
async function ask(wallet, call, ctx) {
  try {
    return await wallet.request(call);
  } catch (error) {
    const code = /** @type {any} */ (error)?.code;
    if (code === 4001) throw ctx.error("user_cancelled", "the request was rejected in the wallet", { cause: error });
    throw ctx.error("authenticator_failed", `the wallet failed: ${/** @type {any} */ (error)?.message ?? error}`, {
      cause: error,
    });
  }
}

/** @param {import("stepup-browser").MethodContext} ctx @returns {Promise<string[]>} */
async function accounts(ctx) {
  const held = await ask(provider(ctx), { method: "eth_requestAccounts" }, ctx);
  return Array.isArray(held) ? held.map(String) : [];
}

/** @param {string} message */
const hex = (message) =>
  "0x" + Array.from(new TextEncoder().encode(message), (b) => b.toString(16).padStart(2, "0")).join("");

/** @param {string} message @param {import("stepup-browser").MethodContext} ctx */
async function sign(message, ctx) {
  if (typeof message !== "string" || !message) throw ctx.error("invalid_response", "the server sent no message to sign");
  const address = message.split("\n")[1] ?? "";
  if (!/^0x[0-9a-fA-F]{40}$/.test(address)) {
    throw ctx.error("invalid_response", "refusing to sign: the message names no account (EIP-4361)");
  }
  const held = (await accounts(ctx)).map((a) => a.toLowerCase());
  if (!held.includes(address.toLowerCase())) {
    throw ctx.error("verification_failed", `the message is for wallet ${address}, which this wallet does not hold`);
  }
  const signature = await ask(provider(ctx), { method: "personal_sign", params: [hex(message), address] }, ctx);
  return { response: { message, signature: String(signature) } };
}

/** @type {import("stepup-browser").MethodModule} */
export default {
  name: "wallet",
  label: "Wallet signature",
  input: "button",
  messages: {
    en: {
      label: "Wallet",
      title: "Sign with your wallet",
      hint: "Your wallet {alias} will ask you to sign a message. Signing is free and moves no funds.",
      action: "Sign with wallet",
      waiting: "Confirm in your wallet…",
    },
    fr: {
      label: "Portefeuille",
      title: "Signez avec votre portefeuille",
      hint: "Votre portefeuille {alias} vous demandera de signer un message. La signature est gratuite et ne déplace aucun fonds.",
      action: "Signer avec le portefeuille",
      waiting: "Confirmez dans votre portefeuille…",
    },
    de: {
      label: "Wallet",
      title: "Mit Ihrer Wallet signieren",
      hint: "Ihre Wallet {alias} bittet Sie, eine Nachricht zu signieren. Das ist kostenlos und bewegt kein Guthaben.",
      action: "Mit Wallet signieren",
      waiting: "Bestätigen Sie in Ihrer Wallet …",
    },
  },
  answer: (challenge, ctx) => sign(challenge.data.message, ctx),
  async enrollmentParams(ctx) {
    const address = ctx.options.address ?? (await accounts(ctx))[0];
    if (!address) throw ctx.error("unsupported", "the wallet shares no account");
    /** @type {Record<string, unknown>} */
    const params = { address: String(address) };
    if (ctx.options.chainId != null) params.chainId = ctx.options.chainId;
    return params;
  },
  answerEnrollment: (enrollment, ctx) => sign(enrollment.data.message, ctx),
};
