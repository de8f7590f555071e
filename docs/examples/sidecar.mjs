// A Node application guarding its own routes with stepup running beside it (`stepup serve`).
// Node's built-in `http` and `fetch` only: no framework, no package.
//
//   STEPUP_URL=http://127.0.0.1:8080/stepup STEPUP_SERVICE_CREDENTIAL=sis_... PORT=3000 node sidecar.mjs
//
// For each protected request it asks stepup `POST {prefix}/introspect` (RFC 7662) whether the
// elevated access token in X-Elevated-Access-Token lets this user and session act under the
// route's scope. `consume: true` spends a single-use token on the server, atomically: of many
// concurrent requests with one token, exactly one gets through. When the answer is no, stepup
// hands back the exact refusal to send (the RFC 9470 401 with its problem body); when stepup
// cannot be asked, the answer is 503 and the handler does not run.

import http from "node:http";

const STEPUP_URL = (process.env.STEPUP_URL ?? "http://127.0.0.1:8080/stepup").replace(/\/+$/, "");
const CREDENTIAL = process.env.STEPUP_SERVICE_CREDENTIAL ?? "";
const PORT = Number(process.env.PORT ?? 3000);
const TIMEOUT_MS = 5000;

/** The application's own routes and the scope each needs. */
const PROTECTED = {
  "/wallet/export": "wallet:export",
  "/profile": "user:update",
};

/**
 * Who is calling. A stand-in for the application's session lookup: here the session travels as
 * `Authorization: Bearer <user>:<session>`. Return null for an anonymous caller.
 * @param {http.IncomingMessage} req
 * @returns {{userId: string, sessionId: string} | null}
 */
function identify(req) {
  const [scheme, value = ""] = (req.headers.authorization ?? "").split(" ", 2);
  const [userId, sessionId] = value.split(/:(.*)/s);
  if (scheme !== "Bearer" || !userId || !sessionId) return null;
  return { userId, sessionId };
}

/** Problems this application answers itself, as stepup's own guards do. */
const PROBLEMS = {
  unauthenticated: {
    status: 401,
    headers: { "Cache-Control": "no-store", "WWW-Authenticate": 'Bearer realm="stepup"' },
    body: {
      type: "urn:stepup:problem:unauthenticated",
      title: "Sign-in required",
      status: 401,
      detail: "sign in first: this route needs the application's session",
      code: "unauthenticated",
    },
  },
  storeUnavailable: {
    status: 503,
    headers: { "Cache-Control": "no-store" },
    body: {
      type: "urn:stepup:problem:store_unavailable",
      title: "Store unavailable",
      status: 503,
      detail: "the step-up service cannot reach its store right now; try again shortly",
      code: "store_unavailable",
    },
  },
};

function sendProblem(res, problem) {
  res.writeHead(problem.status, {
    "Content-Type": "application/problem+json; charset=utf-8",
    ...problem.headers,
  });
  res.end(JSON.stringify(problem.body));
}

/**
 * Ask stepup whether `token` lets `principal` act under `scope`, spending it if single-use.
 * @returns {Promise<{allow: true, grant: object} | {allow: false, refusal: {status: number, headers: object, body: string}}>}
 */
async function guard(scope, principal, token) {
  const response = await fetch(`${STEPUP_URL}/introspect`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${CREDENTIAL}` },
    body: JSON.stringify({ scope, sub: principal.userId, sid: principal.sessionId, token, consume: true }),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  if (response.status === 200) {
    const answer = await response.json();
    if (answer.allow === true) return { allow: true, grant: answer };
    if (answer.challenge) return { allow: false, refusal: answer.challenge };
  }
  // stepup's own trouble (503 store_unavailable) or anything unexpected: never a grant.
  throw new Error(`stepup answered ${response.status}`);
}

const server = http.createServer(async (req, res) => {
  const path = new URL(req.url ?? "/", "http://localhost").pathname;
  const scope = PROTECTED[path];
  if (req.method !== "POST" || scope === undefined) {
    res.writeHead(404, { "Content-Type": "text/plain" });
    res.end("not found");
    return;
  }
  const principal = identify(req);
  if (principal === null) {
    sendProblem(res, PROBLEMS.unauthenticated);
    return;
  }
  const token = (req.headers["x-elevated-access-token"] ?? "").trim() || null;
  let decision;
  try {
    decision = await guard(scope, principal, token);
  } catch (error) {
    console.error(`stepup could not decide for ${path}: ${error.message}`);
    sendProblem(res, PROBLEMS.storeUnavailable);
    return;
  }
  if (!decision.allow) {
    res.writeHead(decision.refusal.status, decision.refusal.headers);
    res.end(decision.refusal.body);
    return;
  }
  // The protected action runs only here. `grant` says how the person stepped up.
  const grant = decision.grant;
  res.writeHead(200, { "Content-Type": "application/json" });
  res.end(JSON.stringify({
    scope,
    user: principal.userId,
    session: principal.sessionId,
    method: grant.method,
    singleUse: grant.singleUse,
  }));
});

server.listen(PORT, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
