// Stands in for the browser around the documentation's example.
// fetch resolves paths against the server and sends the session; navigator.credentials checks the
// options as a browser does (byte members must be BufferSources), converts them back to JSON, has
// the software authenticator (behind a test route) answer, and returns browser-shaped credentials.
const BASE = process.env.STEPUP_BASE;
const realFetch = globalThis.fetch;
globalThis.fetch = (path, init = {}) =>
  realFetch(BASE + path, {
    ...init,
    headers: { ...(init.headers || {}), Authorization: "Bearer " + process.env.STEPUP_SESSION },
  });

const isBytes = (v) => v instanceof ArrayBuffer || ArrayBuffer.isView(v);
const enc = (v) => {
  if (isBytes(v)) return Buffer.from(v).toString("base64url");
  if (Array.isArray(v)) return v.map(enc);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, enc(x)]));
  return v;
};
const buf = (s) => {
  const b = Buffer.from(s, "base64url");
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
};

async function authenticator(kind, publicKey) {
  const byteMembers = [["challenge", publicKey.challenge]];
  if (kind === "create") byteMembers.push(["user.id", publicKey.user.id]);
  for (const c of publicKey.allowCredentials || []) byteMembers.push(["allowCredentials[].id", c.id]);
  for (const c of publicKey.excludeCredentials || []) byteMembers.push(["excludeCredentials[].id", c.id]);
  for (const [name, value] of byteMembers) {
    if (!isBytes(value)) throw new TypeError(`${name} is not a BufferSource`);
  }
  if (kind === "create" && (publicKey.excludeCredentials || []).length === 0) throw new Error("nothing excluded");
  if (kind === "get" && (publicKey.allowCredentials || []).length === 0) throw new Error("nothing allowed");

  const answer = await realFetch(`${BASE}/authenticator/${kind}`, {
    method: "POST",
    body: JSON.stringify(enc(publicKey)),
  });
  if (!answer.ok) throw new Error(await answer.text());
  const json = await answer.json();
  const r = json.response;
  const response = { clientDataJSON: buf(r.clientDataJSON) };
  if (kind === "create") {
    response.attestationObject = buf(r.attestationObject);
    response.getTransports = () => r.transports;
  } else {
    response.authenticatorData = buf(r.authenticatorData);
    response.signature = buf(r.signature);
    response.userHandle = r.userHandle ? buf(r.userHandle) : null;
  }
  return {
    id: json.id,
    rawId: buf(json.rawId),
    type: json.type,
    authenticatorAttachment: json.authenticatorAttachment,
    getClientExtensionResults: () => ({}),
    response,
  };
}

Object.defineProperty(globalThis, "navigator", {
  configurable: true,
  value: {
    credentials: {
      create: ({ publicKey }) => authenticator("create", publicKey),
      get: ({ publicKey }) => authenticator("get", publicKey),
    },
  },
});
