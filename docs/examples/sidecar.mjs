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
//
// A payment is bound to its details (transaction binding): the handler sends the JSON object it
// is about to act on as `transaction`, and stepup lets the request through only with a token
// bound to the same details (RFC 8785 canonical form: key order and white space do not matter).
// A token bound to other details is refused with 403 `transaction_mismatch` and not spent.

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
/** Routes bound to the details of their action: the JSON request body. */
const BOUND = {
  "/payments/send": "payments:send",
};
const MAX_BODY_BYTES = 64 * 1024;

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
  invalidTransaction: {
    status: 422,
    headers: { "Cache-Control": "no-store" },
    body: {
      type: "urn:stepup:problem:invalid_transaction",
      title: "Invalid transaction details",
      status: 422,
      detail: "could not read this action's transaction details from the request; check the request body",
      code: "invalid_transaction",
      errors: [{ path: "transaction", message: "could not read this action's transaction details from the request; check the request body" }],
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

/** The request body as JSON: the details of a bound action (null when it is not an object). */
async function readDetails(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return null;
    chunks.push(chunk);
  }
  try {
    const details = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    return details !== null && typeof details === "object" && !Array.isArray(details) ? details : null;
  } catch {
    return null;
  }
}

/**
 * Ask stepup whether `token` lets `principal` act under `scope` (on exactly `transaction`, when
 * the route is bound), spending it if single-use.
 * @returns {Promise<{allow: true, grant: object} | {allow: false, refusal: {status: number, headers: object, body: string}}>}
 */
async function guard(scope, principal, token, transaction) {
  const request = { scope, sub: principal.userId, sid: principal.sessionId, token, consume: true };
  if (transaction !== undefined) request.transaction = transaction;
  const response = await fetch(`${STEPUP_URL}/introspect`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${CREDENTIAL}` },
    body: JSON.stringify(request),
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
  const bound = Object.hasOwn(BOUND, path);
  const scope = bound ? BOUND[path] : Object.hasOwn(PROTECTED, path) ? PROTECTED[path] : undefined;
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
  let transaction;
  if (bound) {
    transaction = await readDetails(req);
    if (transaction === null) {
      sendProblem(res, PROBLEMS.invalidTransaction);
      return;
    }
  }
  const token = (req.headers["x-elevated-access-token"] ?? "").trim() || null;
  let decision;
  try {
    decision = await guard(scope, principal, token, transaction);
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
  // The protected action runs only here, on `transaction` (the details stepup checked), never
  // on a second reading of the request. `grant` says how the person stepped up.
  const grant = decision.grant;
  res.writeHead(200, { "Content-Type": "application/json" });
  res.end(JSON.stringify({
    scope,
    user: principal.userId,
    session: principal.sessionId,
    method: grant.method,
    singleUse: grant.singleUse,
    transaction: transaction ?? null,
  }));
});

server.listen(PORT, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
