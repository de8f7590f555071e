// Verifies a stepup signed grant with an independent JOSE library (jose, from npm), fetching the
// keys from the server's jwks.json as any service would.
//
//   node tests/js/verify_jwt.mjs <token> <jwks url> <issuer> <epoch seconds "now">
//
// Prints one JSON line: {"ok": true, "header": ..., "payload": ...} or {"ok": false, "code": ...}.
import { createRemoteJWKSet, jwtVerify } from "jose";

const [token, jwksUrl, issuer, now] = process.argv.slice(2);
const keys = createRemoteJWKSet(new URL(jwksUrl), { cacheMaxAge: 0, cooldownDuration: 0 });
try {
  const { payload, protectedHeader } = await jwtVerify(token, keys, {
    issuer,
    algorithms: ["ES256", "EdDSA"],
    typ: "stepup-grant+jwt",
    currentDate: new Date(Number(now) * 1000),
  });
  console.log(JSON.stringify({ ok: true, header: protectedHeader, payload }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, code: error.code ?? error.name, message: error.message }));
  process.exitCode = 1;
}
