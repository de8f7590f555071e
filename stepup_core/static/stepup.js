// @ts-check
// stepup.js: the browser client of stepup, the surface of the useStepUpAuthentication hook.
// One dependency-free ES module; each method's browser half is a module its plugin ships, loaded
// from the server (GET {prefix}/methods lists them). Types: stepup.d.ts. Docs: docs/browser.md.

/** @typedef {import("./stepup.d.ts").StepUp} StepUp */
/** @typedef {import("./stepup.d.ts").StepUpOptions} StepUpOptions */
/** @typedef {import("./stepup.d.ts").StepUpState} StepUpState */
/** @typedef {import("./stepup.d.ts").IssuedToken} IssuedToken */
/** @typedef {import("./stepup.d.ts").CheckResult} CheckResult */
/** @typedef {import("./stepup.d.ts").CredentialView} CredentialView */
/** @typedef {import("./stepup.d.ts").MethodInfo} MethodInfo */
/** @typedef {import("./stepup.d.ts").MethodModule} MethodModule */
/** @typedef {import("./stepup.d.ts").MethodContext} MethodContext */
/** @typedef {import("./stepup.d.ts").MethodAnswer} MethodAnswer */
/** @typedef {import("./stepup.d.ts").ChallengeStart} ChallengeStart */
/** @typedef {import("./stepup.d.ts").EnrollmentStart} EnrollmentStart */
/** @typedef {import("./stepup.d.ts").PromptFunction} PromptFunction */
/** @typedef {import("./stepup.d.ts").StepUpErrorDetails} StepUpErrorDetails */
/** @typedef {{token: IssuedToken, expiresAtMs: number}} HeldToken */
/** @typedef {{challengeId: string, credentialId: string | null, requestedScopes: string[]}} PendingOtp */

const TOKEN_HEADER = "X-Elevated-Access-Token";
const STEP_UP_ERROR = "insufficient_user_authentication";
const CALLBACK_MESSAGE = "stepup:callback";
/** Methods whose challenges a person answers by typing a code: no browser module needed. */
const CODE = "code";

export class StepUpError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {StepUpErrorDetails} [details]
   */
  constructor(code, message, details = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "StepUpError";
    this.code = code;
    this.status = details.status ?? 0;
    this.title = details.title;
    const problem = details.problem;
    this.problem = problem;
    const retry = details.retryAfter ?? problem?.retryAfter;
    /** @type {number | undefined} */
    this.retryAfter = typeof retry === "number" ? retry : undefined;
    /** @type {{path: string, message: string}[]} */
    this.errors = Array.isArray(problem?.errors) ? problem.errors : [];
    /** @type {CheckResult | undefined} */
    this.check = problem?.check && typeof problem.check === "object" ? problem.check : undefined;
  }
}

/** @type {PromptFunction | null} */
let registeredPrompt = null;

/** @param {PromptFunction} prompt */
export function registerPrompt(prompt) {
  registeredPrompt = prompt;
  return () => {
    if (registeredPrompt === prompt) registeredPrompt = null;
  };
}

/** @param {string} message */
const cancelled = (message) => new StepUpError("user_cancelled", message);

/** @param {unknown} value @returns {string[]} */
const list = (value) => (Array.isArray(value) ? value.map(String) : []);

/** @param {string[]} scopes */
const jarKey = (scopes) => [...new Set(scopes)].sort().join(" ");

/**
 * The parameters of a `Bearer` challenge in WWW-Authenticate (RFC 6750), or {}.
 * @param {string | null} value
 * @returns {Record<string, string>}
 */
function bearerParams(value) {
  const match = /^\s*bearer\s+(.*)$/i.exec(value ?? "");
  /** @type {Record<string, string>} */
  const params = {};
  if (!match) return params;
  for (const m of match[1].matchAll(/([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g)) {
    params[m[1].toLowerCase()] = m[2] ?? m[3];
  }
  return params;
}

/**
 * Wait `ms`, or less when `wake` is called, or reject when `signal` aborts.
 * @param {number} ms
 * @param {AbortSignal | undefined} signal
 * @param {(wake: () => void) => void} onWake
 */
function pause(ms, signal, onWake) {
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", abort);
      resolve(undefined);
    };
    const abort = () => {
      clearTimeout(timer);
      reject(cancelled("the step-up was cancelled"));
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", abort, { once: true });
    onWake(done);
  });
}

/**
 * Settle with `work`, or reject with user_cancelled as soon as `signal` aborts.
 * @template T
 * @param {Promise<T>} work
 * @param {AbortSignal | undefined} signal
 * @returns {Promise<T>}
 */
function abortable(work, signal) {
  if (!signal) return work;
  if (signal.aborted) return Promise.reject(cancelled("the step-up was cancelled"));
  return new Promise((resolve, reject) => {
    const abort = () => reject(cancelled("the step-up was cancelled"));
    signal.addEventListener("abort", abort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", abort));
  });
}

/**
 * The client. Every function is a closure: destructure freely (`const { verifyOtp } = stepUp`).
 * @param {StepUpOptions} [options]
 * @returns {StepUp}
 */
export function createStepUp(options = {}) {
  const pageUrl = globalThis.location?.href;
  const base = new URL(options.baseUrl ?? "/stepup", pageUrl).href.replace(/\/+$/, "");
  const serverOrigin = new URL(base).origin;
  const send = options.fetch ?? globalThis.fetch.bind(globalThis);
  const credentials = options.credentials ?? "same-origin";
  const redirectTimeout = options.redirectTimeout ?? 300_000;
  const firstPoll = options.pollInterval ?? 1000;
  const maxPoll = options.maxPollInterval ?? 5000;

  /** @type {StepUpState} */
  let state = Object.freeze({ isLoading: false, error: null });
  let loading = 0;
  /** @type {Set<(state: StepUpState) => void>} */
  const listeners = new Set();
  /** @type {Map<string, HeldToken>} */
  const jar = new Map();
  /** Server clock minus ours, in ms, from the Date header: token expiry survives a skewed clock. */
  let skew = 0;
  /** @type {CheckResult | null} */
  let lastCheck = null;
  /** @type {string[]} */
  let lastScopes = [];
  /** @type {PendingOtp | null} */
  let pendingOtp = null;
  /** @type {Promise<Map<string, MethodInfo>> | null} */
  let methodsLoaded = null;
  /** The method table once it arrived: a popup must open in the click, before any await. */
  /** @type {Map<string, MethodInfo>} */
  let knownMethods = new Map();
  /** @type {Map<string, Promise<MethodModule>>} */
  const modules = new Map();

  // --- state ---------------------------------------------------------------------------

  /** @param {Partial<StepUpState>} change */
  function setState(change) {
    const next = { ...state, ...change };
    if (next.isLoading === state.isLoading && next.error === state.error) return;
    state = Object.freeze(next);
    for (const listener of [...listeners]) listener(state);
  }

  /**
   * Run one public operation: isLoading while it runs; its failure becomes state.error.
   * @template T
   * @param {() => Promise<T>} work
   * @returns {Promise<T>}
   */
  async function operation(work) {
    loading += 1;
    setState({ isLoading: true, error: null });
    /** @type {StepUpError | null} */
    let failure = null;
    try {
      return await work();
    } catch (error) {
      failure = asStepUpError(error);
      throw failure;
    } finally {
      loading -= 1;
      setState(failure ? { isLoading: loading > 0, error: failure } : { isLoading: loading > 0 });
    }
  }

  /**
   * Like operation, but a failure resolves undefined (verifyOtp, verifyWallet, verifySocial).
   * A method the server lacks still rejects: the page cannot fix that by retrying.
   * @template T
   * @param {() => Promise<T>} work
   */
  async function softOperation(work) {
    try {
      return await operation(work);
    } catch (error) {
      if (error instanceof StepUpError && error.code === "method_not_installed") throw error;
      return undefined;
    }
  }

  /** @param {unknown} error */
  function asStepUpError(error) {
    if (error instanceof StepUpError) return error;
    if (error instanceof DOMException && error.name === "AbortError") return cancelled("the step-up was cancelled");
    return new StepUpError("stepup_error", error instanceof Error ? error.message : String(error), { cause: error });
  }

  // --- the token jar -------------------------------------------------------------------

  /** @param {IssuedToken} token */
  function keep(token) {
    jar.set(jarKey(token.scopes), { token, expiresAtMs: token.expiresAt * 1000 - skew - 1000 });
  }

  /** The held token to attach for `scope`: time-bound before single-use, then the longest-lived. */
  function best(/** @type {string} */ scope) {
    const now = Date.now();
    /** @type {[string, HeldToken] | null} */
    let found = null;
    for (const [key, held] of [...jar]) {
      if (held.expiresAtMs <= now) {
        jar.delete(key);
        continue;
      }
      if (!held.token.scopes.includes(scope)) continue;
      const better =
        !found ||
        Number(held.token.singleUse) < Number(found[1].token.singleUse) ||
        (held.token.singleUse === found[1].token.singleUse && held.expiresAtMs > found[1].expiresAtMs);
      if (better) found = [key, held];
    }
    return found;
  }

  /** @param {string} scope */
  function peek(scope) {
    return best(scope)?.[1].token;
  }

  /** @param {string} scope */
  function take(scope) {
    const found = best(scope);
    if (!found) return undefined;
    if (found[1].token.singleUse) jar.delete(found[0]);
    return found[1].token;
  }

  /** @param {string} value */
  function discard(value) {
    for (const [key, held] of [...jar]) if (held.token.elevatedAccessToken === value) jar.delete(key);
  }

  // --- HTTP ----------------------------------------------------------------------------

  async function sessionHeaders() {
    return { ...(options.headers ?? {}), ...((await options.getHeaders?.()) ?? {}) };
  }

  /** @param {Response} response */
  function noteClock(response) {
    const date = Date.parse(response.headers.get("Date") ?? "");
    if (!Number.isNaN(date)) skew = date - Date.now();
  }

  /**
   * The problem an answer carries, as a StepUpError.
   * @param {Response} response
   * @param {any} body
   */
  function problemOf(response, body) {
    const header = Number(response.headers.get("Retry-After"));
    const retryAfter = Number.isFinite(header) && header > 0 ? header : undefined;
    if (!body || typeof body.code !== "string") {
      return new StepUpError("server_error", `the server answered ${response.status} without a problem document`, {
        status: response.status,
        retryAfter,
      });
    }
    const message = String(body.detail || body.title || `the server answered ${response.status} (${body.code})`);
    return new StepUpError(body.code, message, { status: response.status, title: body.title, retryAfter, problem: body });
  }

  /**
   * Call a stepup route. `scope`: attach that scope's token; on an RFC 9470 401, step up through
   * the prompt (when there is one) and call once more.
   * @param {string} verb
   * @param {string} path
   * @param {unknown} [body]
   * @param {{scope?: string, retry?: boolean, token?: IssuedToken}} [how] `token`: attach it, leave it held
   * @returns {Promise<any>}
   */
  async function api(verb, path, body, how = {}) {
    const url = base + path;
    const headers = new Headers(await sessionHeaders());
    headers.set("Accept", "application/json");
    if (body !== undefined) headers.set("Content-Type", "application/json");
    const token = how.token ?? (how.scope ? take(how.scope) : undefined);
    if (token) headers.set(TOKEN_HEADER, token.elevatedAccessToken);
    /** @type {Response} */
    let response;
    try {
      response = await send(url, {
        method: verb,
        headers,
        credentials,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new StepUpError(
        "network_error",
        `could not reach the step-up server at ${url}` +
          (new URL(url).origin === globalThis.location?.origin
            ? ""
            : `; on another origin it must list ${globalThis.location?.origin} in [server] cors_origins`),
        { cause: error },
      );
    }
    noteClock(response);
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (response.ok) {
      if (text && data === null) throw new StepUpError("server_error", `the answer to ${verb} ${path} is not JSON`);
      return data;
    }
    const error = problemOf(response, data);
    if (token && !how.token && error.code === STEP_UP_ERROR) discard(token.elevatedAccessToken);
    if (how.scope && how.retry !== false && error.code === STEP_UP_ERROR && promptFor()) {
      await stepUpFromRefusal(error.check, how.scope);
      return api(verb, path, body, { ...how, retry: false });
    }
    throw error;
  }

  // --- methods and their browser halves ---------------------------------------------------

  function methodTable() {
    if (!methodsLoaded) {
      methodsLoaded = api("GET", "/methods").then(
        (items) => (knownMethods = new Map((Array.isArray(items) ? items : []).map((m) => [m.name, m]))),
        (error) => {
          methodsLoaded = null;
          throw error;
        },
      );
    }
    return methodsLoaded;
  }

  /** @param {string} name */
  async function methodInfo(name) {
    const table = await methodTable();
    const info = table.get(name);
    if (!info) {
      throw new StepUpError(
        "unknown_method",
        `the server does not offer the ${name} method; it offers ${[...table.keys()].join(", ") || "none"}` +
          ` (install stepup-${name} on the server)`,
      );
    }
    return info;
  }

  /** @type {MethodModule} */
  const codeModule = {
    name: CODE,
    input: "code",
    async answer(challenge, ctx) {
      return { response: { code: await ctx.code(`Code for ${challenge.method}`, challenge.data) } };
    },
  };

  /** @param {MethodInfo} info @returns {Promise<MethodModule>} */
  function loadModule(info) {
    let loaded = modules.get(info.name);
    if (!loaded) {
      loaded = importModule(info);
      modules.set(info.name, loaded);
      loaded.catch(() => modules.delete(info.name));
    }
    return loaded;
  }

  /** @param {MethodInfo} info @returns {Promise<MethodModule>} */
  async function importModule(info) {
    if (!info.browserModule) {
      if (info.interaction === CODE) return codeModule;
      throw new StepUpError(
        "method_not_installed",
        `the server's ${info.name} method ships no browser module; upgrade ${info.plugin ?? "its plugin"} on the server`,
      );
    }
    const url = new URL(info.browserModule, base + "/");
    if (url.origin !== serverOrigin) {
      throw new StepUpError("method_not_installed", `refusing the ${info.name} module from another origin: ${url}`);
    }
    /** @type {any} */
    let loaded;
    try {
      loaded = await import(/* webpackIgnore: true */ /* @vite-ignore */ url.href);
    } catch (error) {
      throw new StepUpError("method_not_installed", `could not load the ${info.name} module from ${url}`, { cause: error });
    }
    const module = loaded?.default;
    if (!module || module.name !== info.name || typeof module.answer !== "function") {
      throw new StepUpError("method_not_installed", `${url} is not the browser half of the ${info.name} method`);
    }
    return module;
  }

  /**
   * A sign-in window, opened now (while the click that asked for it still counts) and sent to
   * the provider later.
   */
  function openBlankWindow() {
    const width = 500;
    const height = 640;
    const left = Math.max(0, (globalThis.screenX ?? 0) + ((globalThis.outerWidth ?? width) - width) / 2);
    const top = Math.max(0, (globalThis.screenY ?? 0) + ((globalThis.outerHeight ?? height) - height) / 2);
    return globalThis.open?.("about:blank", "", `popup,width=${width},height=${height},left=${left},top=${top}`) ?? null;
  }

  /**
   * @typedef {object} RunContext
   * @property {MethodContext} ctx
   * @property {Window | null} window
   */

  /**
   * @param {string} method
   * @param {Record<string, any>} given
   * @param {Window | null} popup
   * @returns {RunContext}
   */
  function context(method, given, popup) {
    const { signal, ...rest } = given;
    /** @type {RunContext} */
    const run = { window: popup, ctx: /** @type {any} */ (null) };
    run.ctx = {
      method,
      options: rest,
      signal,
      error: (code, message, details) => new StepUpError(code, message, details),
      async code(label, data = {}) {
        let value = rest.code;
        if (value == null && typeof rest.getCode === "function") {
          value = await abortable(Promise.resolve(rest.getCode({ method, label, data })), signal);
        }
        if (value == null || String(value).trim() === "") {
          if (rest.getCode) throw cancelled(`no ${label.toLowerCase()} was entered`);
          throw new StepUpError("validation_error", `${label} is needed: pass code (or getCode) for ${method}`);
        }
        return String(value).trim();
      },
      openWindow(url) {
        if (!/^https?:\/\//.test(url)) throw new StepUpError("invalid_response", "the sign-in URL is not http(s)");
        if (run.window && !run.window.closed) {
          run.window.location.href = url;
          return;
        }
        run.window = globalThis.open?.(url, "", "popup,width=500,height=640") ?? null;
        if (!run.window) {
          throw new StepUpError("popup_blocked", "the browser blocked the sign-in window; allow pop-ups for this site");
        }
      },
    };
    return run;
  }

  /**
   * @param {string} scope
   * @param {string[] | undefined} requested
   */
  function scopesOf(scope, requested) {
    const scopes = requested?.length ? list(requested) : scope ? [scope] : lastScopes;
    if (!scopes.length) {
      throw new StepUpError(
        "invalid_scope",
        "no scope to step up for: pass requestedScopes, or call checkStepUpAuth first",
      );
    }
    return scopes;
  }

  /**
   * Step up with one method through its browser half.
   * @param {string} method
   * @param {{requestedScopes?: string[], credentialId?: string | null, params?: Record<string, unknown>, popup?: Window | null} & Record<string, any>} given
   * @returns {Promise<IssuedToken>}
   */
  async function runMethod(method, given) {
    const { requestedScopes, credentialId, params, popup = null, challenge: begun, ...rest } = given;
    const scopes = scopesOf("", begun?.requestedScopes?.length ? begun.requestedScopes : requestedScopes);
    const run = context(method, rest, popup);
    try {
      const info = await methodInfo(method);
      const module = await loadModule(info);
      /** @type {ChallengeStart} */
      let challenge;
      if (begun?.challengeId) {
        if (begun.method !== method) {
          throw new StepUpError("validation_error", `that challenge belongs to ${begun.method}, not ${method}`);
        }
        challenge = begun; // begun by beginChallenge: answered again after a wrong code
      } else if (info.requiresChallenge) {
        challenge = await beginOn(method, scopes, credentialId, params);
      } else {
        challenge = {
          challengeId: null,
          method,
          interaction: info.interaction,
          credentialId: credentialId ?? null,
          requestedScopes: scopes,
          data: {},
        };
      }
      if (method === "otp" && challenge.challengeId) {
        pendingOtp = { challengeId: challenge.challengeId, credentialId: challenge.credentialId, requestedScopes: scopes };
      }
      const answer = await abortable(Promise.resolve(module.answer(challenge, run.ctx)), rest.signal);
      if (answer.completedElsewhere) {
        if (!challenge.challengeId) throw new StepUpError("invalid_response", `${method} completes elsewhere without a challenge`);
        const done = await awaitRedirect(`/challenges/${encodeURIComponent(challenge.challengeId)}`, run, (s) => s.grant);
        keep(done.grant);
        return done.grant;
      }
      const token = await api("POST", "/verify", {
        method,
        response: answer.response ?? {},
        requestedScopes: scopes,
        ...(challenge.challengeId ? { challengeId: challenge.challengeId } : {}),
        ...(!info.requiresChallenge && credentialId ? { credentialId } : {}),
      });
      keep(token);
      if (pendingOtp && pendingOtp.challengeId === challenge.challengeId) pendingOtp = null;
      return token;
    } finally {
      closeWindow(run.window);
    }
  }

  /**
   * POST /challenges for `method`.
   * @param {string} method
   * @param {string[]} scopes
   * @param {string | null | undefined} credentialId
   * @param {Record<string, unknown> | undefined} params
   * @returns {Promise<ChallengeStart>}
   */
  async function beginOn(method, scopes, credentialId, params) {
    /** @type {ChallengeStart} */
    const challenge = await api("POST", "/challenges", {
      method,
      requestedScopes: scopes,
      ...(credentialId ? { credentialId } : {}),
      ...(params ? { params } : {}),
    });
    if (!challenge.requestedScopes?.length) challenge.requestedScopes = scopes;
    return challenge;
  }

  /** @param {Window | null} window */
  function closeWindow(window) {
    try {
      window?.close();
    } catch {
      // another origin's window may refuse; the person closes it
    }
  }

  /**
   * Poll a challenge (or enrolment) that the provider's redirect completes on the server, until
   * `ready` picks something from its state. The callback page's message (from the server's
   * origin, from this very window) makes the next poll happen at once.
   * @template T
   * @param {string} path
   * @param {RunContext} run
   * @param {(state: any) => T} ready
   * @returns {Promise<any>}
   */
  async function awaitRedirect(path, run, ready) {
    const signal = run.ctx.signal;
    const deadline = Date.now() + redirectTimeout;
    let interval = firstPoll;
    /** @type {() => void} */
    let wake = () => {};
    /** @param {MessageEvent} event */
    const onMessage = (event) => {
      if (event.origin === serverOrigin && event.source === run.window && event.data?.type === CALLBACK_MESSAGE) wake();
    };
    globalThis.addEventListener?.("message", onMessage);
    let closedSeen = false;
    try {
      for (;;) {
        const status = await api("GET", path);
        if (ready(status)) return status;
        if (status.status === "failed") {
          throw new StepUpError(
            "verification_failed",
            `the ${status.method} sign-in failed: ${status.failure ?? "no reason given"}`,
            { problem: status },
          );
        }
        if (status.status === "consumed") {
          throw new StepUpError("challenge_used", "the sign-in finished, but its token was already picked up");
        }
        if (closedSeen) throw cancelled("the sign-in window was closed before the sign-in finished");
        if (Date.now() >= deadline) {
          throw new StepUpError("challenge_pending", "the sign-in did not finish in time; start again");
        }
        if (run.window?.closed) {
          closedSeen = true; // one more look: the callback may have just finished
          continue;
        }
        await pause(interval, signal, (w) => {
          wake = w;
        });
        interval = Math.min(interval * 1.5, maxPoll);
      }
    } finally {
      globalThis.removeEventListener?.("message", onMessage);
    }
  }

  // --- prompts -------------------------------------------------------------------------

  function promptFor() {
    return options.prompt ?? registeredPrompt;
  }

  /**
   * The built-in prompt (prompt.js beside this file), loaded when a prompt call finds none.
   * @returns {Promise<PromptFunction>}
   */
  async function builtInPrompt() {
    try {
      const loaded = await import("./prompt.js");
      return registeredPrompt ?? loaded.prompt;
    } catch (error) {
      throw new StepUpError(
        "prompt_unavailable",
        "no prompt to ask the person: pass createStepUp({prompt}), or serve prompt.js beside stepup.js",
        { cause: error },
      );
    }
  }

  /**
   * @param {"stepUp" | "mfa" | "reauth"} kind
   * @param {CheckResult} check
   * @param {string[]} scopes
   * @param {{signal?: AbortSignal, method?: string}} given
   * @returns {Promise<string>}
   */
  async function runPrompt(kind, check, scopes, given) {
    const prompt = promptFor() ?? (await builtInPrompt());
    const route = kind === "mfa" ? "mfa" : kind === "reauth" ? "reauth" : check.route;
    const usable = check.credentials.filter(
      (c) =>
        c.factor === route &&
        (!check.methods?.length || check.methods.includes(c.method)) &&
        (!given.method || c.method === given.method),
    );
    if (!usable.length) {
      throw new StepUpError(
        "no_eligible_credential",
        `this user has no ${route === "mfa" ? "MFA" : "re-authentication"} credential that can step up for ${scopes.join(", ")}`,
      );
    }
    const answer = await abortable(
      Promise.resolve(
        prompt({
          kind,
          route,
          requestedScopes: scopes,
          credentials: usable,
          defaultCredentialId: check.defaultCredentialId,
          check,
          stepUp: api_,
          signal: given.signal,
        }),
      ),
      given.signal,
    );
    const value = typeof answer === "string" ? answer : answer?.elevatedAccessToken;
    if (!value) throw cancelled("user cancelled");
    return value;
  }

  /**
   * @param {"stepUp" | "mfa" | "reauth"} kind
   * @param {import("./stepup.d.ts").PromptParams} [params]
   * @returns {Promise<string | undefined>}
   */
  async function prompt(kind, params = {}) {
    const scopes = scopesOf("", params.requestedScopes);
    const check = await operation(() => strictCheck(scopes[0]));
    lastScopes = scopes;
    if (kind === "mfa" && !check.credentials.some((c) => c.factor === "mfa")) {
      throw record(new StepUpError("no_eligible_credential", "this user has no MFA device registered; enrol one first"));
    }
    if (kind === "reauth" && check.route === "mfa") {
      throw record(
        new StepUpError(
          "method_not_allowed",
          "re-authentication is refused because this user has MFA devices; use promptMfa",
        ),
      );
    }
    if (kind === "stepUp" && !check.isRequired) {
      const held = scopes.map(peek);
      if (held.every(Boolean) && new Set(held.map((t) => t?.elevatedAccessToken)).size === 1) {
        return held[0]?.elevatedAccessToken;
      }
      if (!held.some(Boolean)) return undefined;
    }
    try {
      return await runPrompt(kind, check, scopes, params);
    } catch (error) {
      throw record(asStepUpError(error));
    }
  }

  /** @param {StepUpError} error */
  function record(error) {
    setState({ error });
    return error;
  }

  /**
   * After a 401 that asks for step-up: prompt with the check the server sent along.
   * @param {CheckResult | undefined} check
   * @param {string} scope
   */
  async function stepUpFromRefusal(check, scope) {
    lastScopes = [scope];
    if (!check) return prompt("stepUp", { requestedScopes: [scope] });
    lastCheck = check;
    try {
      return await runPrompt("stepUp", check, [scope], {});
    } catch (error) {
      throw record(asStepUpError(error));
    }
  }

  // --- the check -------------------------------------------------------------------------

  /** @param {string} scope @returns {Promise<CheckResult>} */
  async function strictCheck(scope) {
    lastScopes = [scope];
    // The check only looks at the token: a single-use one stays in the jar, valid.
    const result = await api("POST", "/check", { scope }, { token: peek(scope), retry: false });
    lastCheck = result;
    return result;
  }

  // --- the public surface ------------------------------------------------------------------

  /** @type {StepUp} */
  const api_ = {
    async isStepUpRequired({ scope }) {
      return !peek(scope);
    },

    async checkStepUpAuth({ scope }) {
      try {
        return await operation(() => strictCheck(scope));
      } catch {
        lastCheck = null;
        return {
          scope,
          isRequired: true,
          route: "reauth",
          credentials: [],
          defaultCredentialId: null,
          reasons: ["check_failed"],
          methods: [],
        };
      }
    },

    promptStepUpAuth: (params) => prompt("stepUp", params),
    promptMfa: (params) => prompt("mfa", params),
    promptReauthenticate: (params) => prompt("reauth", params),

    async sendOtp(params = {}) {
      const sent = await softOperation(async () => {
        const scopes = scopesOf("", params.requestedScopes);
        const codes = (lastCheck?.credentials ?? []).filter((c) => c.format === "email" || c.format === "phoneNumber");
        const chosen = params.credentialId ?? (codes.find((c) => c.signIn) ?? codes[0])?.id;
        const challenge = await api("POST", "/challenges", {
          method: "otp",
          requestedScopes: scopes,
          ...(chosen ? { credentialId: chosen } : {}),
        });
        const data = challenge.data ?? {};
        const credentialId = data.credentialId ?? challenge.credentialId ?? chosen ?? null;
        pendingOtp = { challengeId: challenge.challengeId, credentialId, requestedScopes: scopes };
        return {
          verificationType: String(data.verificationType ?? "email"),
          credentialId: String(credentialId ?? ""),
          destination: data.destination ?? null,
        };
      });
      return sent ?? null;
    },

    async verifyOtp({ verificationToken, requestedScopes }) {
      const pending = pendingOtp;
      if (!pending) {
        throw record(new StepUpError("challenge_not_found", "no code was sent yet: call sendOtp() before verifyOtp()"));
      }
      return softOperation(async () => {
        try {
          const token = await api("POST", "/verify", {
            method: "otp",
            challengeId: pending.challengeId,
            response: { code: String(verificationToken).trim() },
            requestedScopes: requestedScopes?.length ? requestedScopes : pending.requestedScopes,
          });
          keep(token);
          pendingOtp = null;
          return /** @type {IssuedToken} */ (token);
        } catch (error) {
          const code = error instanceof StepUpError ? error.code : "";
          if (["challenge_expired", "challenge_used", "challenge_not_found", "attempts_exhausted"].includes(code)) {
            pendingOtp = null;
          }
          throw error;
        }
      });
    },

    verifyWallet(params = {}) {
      const { walletId, ...rest } = params;
      return softOperation(() => runMethod("wallet", { ...rest, credentialId: walletId }));
    },

    verifySocial(params) {
      const popup = openBlankWindow(); // now, while the click still counts
      const { provider, ...rest } = params;
      return softOperation(() => runMethod("social", { ...rest, params: { provider }, provider, popup })).finally(
        () => closeWindow(popup),
      );
    },

    verifyPasskeyMfa(params = {}) {
      return operation(() => runMethod("passkey", params));
    },

    verifyTotpMfa({ code, deviceId, requestedScopes }) {
      return operation(() => runMethod("totp", { code, credentialId: deviceId, requestedScopes }));
    },

    verifyRecoveryCode({ code, requestedScopes }) {
      return operation(() => runMethod("recovery", { code, requestedScopes }));
    },

    beginChallenge({ method, credentialId, requestedScopes, params }) {
      return operation(async () => {
        const challenge = await beginOn(method, scopesOf("", requestedScopes), credentialId, params);
        if (method === "otp" && challenge.challengeId) {
          pendingOtp = {
            challengeId: challenge.challengeId,
            credentialId: challenge.credentialId,
            requestedScopes: challenge.requestedScopes,
          };
        }
        return challenge;
      });
    },

    async methodModule(name) {
      return loadModule(await methodInfo(name));
    },

    verify(params) {
      const { method, ...rest } = params;
      const popup = knownMethods.get(method)?.interaction === "redirect" ? openBlankWindow() : null;
      return operation(() => runMethod(method, { ...rest, popup })).finally(() => closeWindow(popup));
    },

    get state() {
      return state;
    },

    resetState() {
      pendingOtp = null;
      setState({ isLoading: loading > 0, error: null });
    },

    subscribe(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },

    async fetch(input, init = {}) {
      const { scope, retry = true, ...rest } = init;
      const original = input instanceof Request ? input.clone() : input;
      /** @param {RequestInfo | URL} target */
      const attempt = async (target) => {
        const headers = new Headers(rest.headers ?? (target instanceof Request ? target.headers : undefined));
        for (const [name, value] of Object.entries(await sessionHeaders())) {
          if (!headers.has(name)) headers.set(name, value);
        }
        const token = scope ? take(scope) : undefined;
        if (token) headers.set(TOKEN_HEADER, token.elevatedAccessToken);
        const response = await send(target, { credentials, ...rest, headers });
        return { response, token };
      };
      const first = await attempt(input);
      const refusal = await stepUpRefusal(first.response);
      if (!refusal) return first.response;
      if (first.token) discard(first.token.elevatedAccessToken);
      const needed = refusal.scope || scope;
      if (!retry || !needed || !promptFor()) return first.response;
      await stepUpFromRefusal(refusal.check, needed);
      const second = await attempt(original instanceof Request ? original : input);
      return second.response;
    },

    takeToken({ scope }) {
      return take(scope)?.elevatedAccessToken;
    },

    async logout() {
      jar.clear();
      pendingOtp = null;
      await operation(() => api("DELETE", "/grants"));
    },

    async methods() {
      return [...(await methodTable()).values()];
    },

    listCredentials() {
      return operation(() => api("GET", "/credentials"));
    },

    async deleteCredential({ credentialId }) {
      await operation(() =>
        api("DELETE", `/credentials/${encodeURIComponent(credentialId)}`, undefined, { scope: "credential:unlink" }),
      );
    },

    updateCredential({ credentialId, ...change }) {
      return operation(() =>
        api("PATCH", `/credentials/${encodeURIComponent(credentialId)}`, change, { scope: "credential:update" }),
      );
    },

    beginEnrollment({ method, params = {}, alias }) {
      return operation(() =>
        api("POST", "/enrollments", { method, params, ...(alias ? { alias } : {}) }, { scope: "credential:link" }),
      );
    },

    completeEnrollment({ enrollmentId, response }) {
      return operation(() =>
        api("POST", `/enrollments/${encodeURIComponent(enrollmentId)}`, { response }, { scope: "credential:link" }),
      );
    },

    enroll(params) {
      const { method, alias, params: given, ...rest } = params;
      const popup = knownMethods.get(method)?.interaction === "redirect" ? openBlankWindow() : null;
      return operation(async () => {
        const run = context(method, rest, popup);
        try {
          const module = await loadModule(await methodInfo(method));
          const body = given ?? (await module.enrollmentParams?.(run.ctx)) ?? {};
          /** @type {EnrollmentStart} */
          const start = await api(
            "POST",
            "/enrollments",
            { method, params: body, ...(alias ? { alias } : {}) },
            { scope: "credential:link" },
          );
          if (start.credential) return { credential: start.credential, data: start.data };
          if (!module.answerEnrollment) {
            throw new StepUpError("method_not_installed", `the ${method} browser module cannot complete an enrolment`);
          }
          const answer = await abortable(Promise.resolve(module.answerEnrollment(start, run.ctx)), rest.signal);
          if (answer.completedElsewhere) {
            const done = await awaitRedirect(`/challenges/${encodeURIComponent(start.enrollmentId)}`, run, (s) => s.credentialId);
            /** @type {CredentialView[]} */
            const all = await api("GET", "/credentials");
            const credential = all.find((c) => c.id === done.credentialId);
            if (!credential) throw new StepUpError("enrollment_failed", "the linked credential is not listed");
            return { credential, data: start.data };
          }
          /** @type {CredentialView} */
          const credential = await api(
            "POST",
            `/enrollments/${encodeURIComponent(start.enrollmentId)}`,
            { response: answer.response ?? {} },
            { scope: "credential:link" },
          );
          return { credential, data: start.data };
        } finally {
          closeWindow(run.window);
        }
      });
    },
  };

  /**
   * Whether an answer is the RFC 9470 refusal: a 401 with error="insufficient_user_authentication"
   * (WWW-Authenticate, or the problem body when another origin hides the header).
   * @param {Response} response
   * @returns {Promise<{scope: string, check: CheckResult | undefined} | null>}
   */
  async function stepUpRefusal(response) {
    if (response.status !== 401) return null;
    const params = bearerParams(response.headers.get("WWW-Authenticate"));
    /** @type {any} */
    let body = null;
    try {
      body = await response.clone().json();
    } catch {
      body = null;
    }
    if (params.error !== STEP_UP_ERROR && body?.code !== STEP_UP_ERROR) return null;
    const check = body?.check && typeof body.check === "object" ? body.check : undefined;
    return { scope: params.scope || body?.scope || "", check };
  }

  // The method table, early: a redirect method's popup must open within the click, before any await.
  methodTable().catch(() => {});
  return api_;
}
