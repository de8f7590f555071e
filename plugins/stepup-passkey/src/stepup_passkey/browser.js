// @ts-check
// The browser half of `passkey`: the server's WebAuthn options (JSON) go to
// navigator.credentials, the credential goes back as JSON. The platform's JSON helpers
// (parse*OptionsFromJSON, toJSON) are used where the browser has them.

/** @param {string} text */
const bytes = (text) =>
  Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(text.length / 4) * 4, "=")), (c) =>
    c.charCodeAt(0),
  );

/** @param {ArrayBuffer | null | undefined} buffer */
const text = (buffer) =>
  buffer ? btoa(String.fromCharCode(...new Uint8Array(buffer))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "") : null;

/** @param {any[] | undefined} descriptors */
const withIds = (descriptors) => (descriptors ?? []).map((d) => ({ ...d, id: bytes(d.id) }));

/** @param {any} json @returns {any} */
function requestOptions(json) {
  const P = /** @type {any} */ (PublicKeyCredential);
  if (typeof P.parseRequestOptionsFromJSON === "function") return P.parseRequestOptionsFromJSON(json);
  return { ...json, challenge: bytes(json.challenge), allowCredentials: withIds(json.allowCredentials) };
}

/** @param {any} json @returns {any} */
function creationOptions(json) {
  const P = /** @type {any} */ (PublicKeyCredential);
  if (typeof P.parseCreationOptionsFromJSON === "function") return P.parseCreationOptionsFromJSON(json);
  return {
    ...json,
    challenge: bytes(json.challenge),
    user: { ...json.user, id: bytes(json.user.id) },
    excludeCredentials: withIds(json.excludeCredentials),
  };
}

/** @param {any} credential */
function toJSON(credential) {
  if (typeof credential.toJSON === "function") return credential.toJSON();
  const r = credential.response;
  /** @type {Record<string, any>} */
  const response = { clientDataJSON: text(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = text(r.attestationObject);
    response.transports = r.getTransports?.() ?? [];
  } else {
    response.authenticatorData = text(r.authenticatorData);
    response.signature = text(r.signature);
    response.userHandle = text(r.userHandle);
  }
  return {
    id: credential.id,
    rawId: text(credential.rawId),
    type: credential.type,
    response,
    authenticatorAttachment: credential.authenticatorAttachment ?? undefined,
    clientExtensionResults: credential.getClientExtensionResults(),
  };
}

/**
 * @param {"get" | "create"} kind
 * @param {any} publicKey
 * @param {import("stepup-browser").MethodContext} ctx
 */
async function ceremony(kind, publicKey, ctx) {
  if (!publicKey) throw ctx.error("invalid_response", "the server sent no WebAuthn options (data.publicKey)");
  if (typeof PublicKeyCredential === "undefined" || !navigator.credentials) {
    throw ctx.error("unsupported", "this browser cannot use passkeys here (WebAuthn needs https or localhost)");
  }
  try {
    const options = kind === "get" ? requestOptions(publicKey) : creationOptions(publicKey);
    const credential = await navigator.credentials[kind]({ publicKey: options, signal: ctx.signal });
    if (!credential) throw ctx.error("authenticator_failed", "the authenticator gave no credential");
    return toJSON(credential);
  } catch (error) {
    if (!(error instanceof DOMException)) throw error;
    const why = {
      NotAllowedError: ["user_cancelled", "the passkey request was cancelled or timed out"],
      AbortError: ["user_cancelled", "the passkey request was cancelled"],
      InvalidStateError: ["authenticator_failed", "this authenticator already holds a passkey for this account"],
      SecurityError: ["authenticator_failed", `this page's origin cannot use passkeys of ${publicKey.rpId ?? publicKey.rp?.id}`],
      NotSupportedError: ["unsupported", "no authenticator here supports what the server asks for"],
    }[error.name] ?? ["authenticator_failed", `the authenticator failed: ${error.message}`];
    throw ctx.error(why[0], why[1], { cause: error });
  }
}

/** @type {import("stepup-browser").MethodModule} */
export default {
  name: "passkey",
  label: "Passkey",
  input: "button",
  messages: {
    en: {
      label: "Passkey",
      title: "Use your passkey",
      hint: "Your browser will ask you to confirm with your fingerprint, face, screen lock or security key.",
      action: "Use passkey",
      waiting: "Follow the instructions from your browser…",
    },
    fr: {
      label: "Clé d’accès",
      title: "Utilisez votre clé d’accès",
      hint: "Votre navigateur vous demandera de confirmer avec votre empreinte, votre visage, le verrouillage de l’écran ou une clé de sécurité.",
      action: "Utiliser la clé d’accès",
      waiting: "Suivez les instructions de votre navigateur…",
    },
    de: {
      label: "Passkey",
      title: "Passkey verwenden",
      hint: "Ihr Browser bittet Sie, mit Fingerabdruck, Gesicht, Bildschirmsperre oder Sicherheitsschlüssel zu bestätigen.",
      action: "Passkey verwenden",
      waiting: "Folgen Sie den Anweisungen Ihres Browsers …",
    },
  },
  async answer(challenge, ctx) {
    return { response: { credential: await ceremony("get", challenge.data.publicKey, ctx) } };
  },
  enrollmentParams(ctx) {
    /** @type {Record<string, unknown>} */
    const params = {};
    if (ctx.options.userName) params.userName = String(ctx.options.userName);
    if (ctx.options.displayName) params.displayName = String(ctx.options.displayName);
    return params;
  },
  async answerEnrollment(enrollment, ctx) {
    return { response: { credential: await ceremony("create", enrollment.data.publicKey, ctx) } };
  },
};
