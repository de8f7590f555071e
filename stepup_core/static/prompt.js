// @ts-check
// prompt.js: the built-in prompt of stepup.js, a framework-neutral custom element on <dialog>.
// Importing it defines <stepup-prompt> and installs it as the prompt of every client that was
// given none; stepup.js also loads it by itself when promptStepUpAuth, promptMfa or
// promptReauthenticate find no prompt. Each method's screen comes from that method's browser
// module (its `screen` and `messages`). Types: prompt.d.ts. Docs: docs/browser.md.

import { registerPrompt } from "./stepup.js";
import en from "./prompt-en.js";

/** @typedef {import("./stepup.d.ts").PromptRequest} PromptRequest */
/** @typedef {import("./stepup.d.ts").CredentialView} CredentialView */
/** @typedef {import("./stepup.d.ts").MethodModule} MethodModule */
/** @typedef {import("./stepup.d.ts").MethodInfo} MethodInfo */
/** @typedef {import("./stepup.d.ts").ChallengeStart} ChallengeStart */
/** @typedef {import("./stepup.d.ts").IssuedToken} IssuedToken */
/** @typedef {import("./prompt.d.ts").Catalog} Catalog */
/** @typedef {import("./prompt.d.ts").PromptOptions} PromptOptions */
/** @typedef {{credential: CredentialView, module: MethodModule, info: MethodInfo | undefined}} Choice */

export const TAG = "stepup-prompt";

/** The catalogs shipped beside this file (static specifiers: a bundler finds them). */
/** @type {Record<string, () => Promise<{default: Catalog}>>} */
const CATALOGS = {
  en: async () => ({ default: en }),
  fr: () => import("./prompt-fr.js"),
  de: () => import("./prompt-de.js"),
};
export const LOCALES = Object.keys(CATALOGS);

/** Problem codes (the server's and the client's own) -> catalog keys. */
/** @type {Record<string, string>} */
const ERRORS = {
  verification_failed: "error.failed",
  invalid_response: "error.failed",
  verifier_error: "error.failed",
  replay_detected: "error.replay",
  challenge_expired: "error.expired",
  challenge_not_found: "error.expired",
  challenge_used: "error.expired",
  attempts_exhausted: "error.exhausted",
  locked_out: "error.locked",
  rate_limited: "error.rateLimited",
  network_error: "error.network",
  user_cancelled: "error.cancelled",
  unsupported: "error.unsupported",
  popup_blocked: "error.popup",
  authenticator_failed: "error.authenticator",
  method_not_allowed: "error.notAllowed",
  origin_not_allowed: "error.notAllowed",
  no_eligible_credential: "error.noCredential",
  credential_not_found: "error.noCredential",
  method_not_installed: "error.unavailable",
  unknown_method: "error.unavailable",
  prompt_unavailable: "error.unavailable",
  delivery_failed: "error.delivery",
  provider_unavailable: "error.provider",
  unauthenticated: "error.session",
  insufficient_user_authentication: "error.session",
  challenge_pending: "error.pending",
  validation_error: "error.invalid",
  sign_in_not_completed: "error.cancelled",
  malformed_request: "error.invalid",
  invalid_scope: "error.invalid",
  store_unavailable: "error.server",
  server_error: "error.server",
  plugin_error: "error.server",
  config_error: "error.server",
  invalid_client: "error.server",
  enrollment_failed: "error.failed",
  security_key_not_found: "error.authenticator",
  not_found: "error.unavailable",
  http_method_not_allowed: "error.invalid",
  unsupported_media_type: "error.invalid",
  payload_too_large: "error.invalid",
  stepup_error: "error.generic",
};
/** Errors after which the challenge is gone: the person starts again. */
const RESTART = new Set(["challenge_expired", "challenge_not_found", "challenge_used", "attempts_exhausted"]);

/** The dark palette: chosen by theme="dark", or by the person's preference unless theme="light". */
const DARK = `
  --stepup-bg: #1c2128; --stepup-fg: #e6edf3; --stepup-muted: #a2aab3; --stepup-border: #4a525c;
  --stepup-accent: #6cb6ff; --stepup-accent-fg: #0d1117; --stepup-error: #ff8e86; --stepup-focus: #6cb6ff;
  --stepup-option-selected: #233247; --stepup-backdrop: rgb(0 0 0 / 0.7);`;

const STYLE = `
:host {
  --stepup-font: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  --stepup-radius: 12px;
  --stepup-width: 26rem;
  --stepup-bg: #ffffff;
  --stepup-fg: #1f2328;
  --stepup-muted: #59636e;
  --stepup-border: #c8d1da;
  --stepup-accent: #0b57d0;
  --stepup-accent-fg: #ffffff;
  --stepup-error: #b42318;
  --stepup-focus: #0b57d0;
  --stepup-option-selected: #e8f0fe;
  --stepup-backdrop: rgb(15 20 25 / 0.55);
  --stepup-shadow: 0 12px 40px rgb(0 0 0 / 0.25);
}
:host([theme="dark"]) { ${DARK} }
@media (prefers-color-scheme: dark) {
  :host(:not([theme="light"])) { ${DARK} }
}
dialog {
  box-sizing: border-box; width: min(var(--stepup-width), calc(100vw - 2rem)); padding: 0;
  border: 1px solid var(--stepup-border); border-radius: var(--stepup-radius);
  background: var(--stepup-bg); color: var(--stepup-fg); box-shadow: var(--stepup-shadow);
  font: 1rem/1.5 var(--stepup-font);
}
dialog::backdrop { background: var(--stepup-backdrop); }
.panel { padding: 1.25rem 1.5rem 1.5rem; }
header { display: flex; align-items: flex-start; justify-content: space-between; gap: 1rem; }
h2 { margin: 0; font-size: 1.25rem; line-height: 1.3; }
p { margin: 0.5rem 0 0; }
.description { color: var(--stepup-muted); }
button, input { font: inherit; color: inherit; }
button { cursor: pointer; border-radius: 8px; padding: 0.55rem 1rem; border: 1px solid var(--stepup-border); background: transparent; }
button[aria-disabled="true"] { cursor: default; opacity: 0.7; }
button:disabled { cursor: default; opacity: 0.7; }
.primary { background: var(--stepup-accent); color: var(--stepup-accent-fg); border-color: var(--stepup-accent); font-weight: 600; }
.close { border: none; padding: 0.25rem 0.5rem; font-size: 1.4rem; line-height: 1; color: var(--stepup-muted); }
.link { border: none; padding: 0.25rem 0; color: var(--stepup-accent); text-decoration: underline; }
:focus-visible { outline: 3px solid var(--stepup-focus); outline-offset: 2px; }
form, .method { margin-top: 1rem; }
fieldset { border: none; margin: 0; padding: 0; }
legend { padding: 0; font-weight: 600; margin-bottom: 0.5rem; }
.option { display: flex; gap: 0.75rem; align-items: center; padding: 0.6rem 0.75rem; margin-top: 0.5rem; border: 1px solid var(--stepup-border); border-radius: 8px; cursor: pointer; }
.option:has(input:checked) { border-color: var(--stepup-accent); background: var(--stepup-option-selected); }
.option input { margin: 0; accent-color: var(--stepup-accent); }
.option .name { display: block; font-weight: 600; }
.option .detail { display: block; color: var(--stepup-muted); font-size: 0.9rem; }
label.field { display: block; font-weight: 600; margin-top: 0.5rem; }
input.code { display: block; box-sizing: border-box; width: 100%; margin-top: 0.35rem; padding: 0.6rem 0.75rem; border: 1px solid var(--stepup-border); border-radius: 8px; background: var(--stepup-bg); font-size: 1.25rem; letter-spacing: 0.15em; font-variant-numeric: tabular-nums; }
input.code[aria-invalid="true"] { border-color: var(--stepup-error); }
.actions { display: flex; flex-wrap: wrap; gap: 0.75rem; align-items: center; margin-top: 1rem; }
.actions .primary { flex: 1 1 auto; }
.error { color: var(--stepup-error); font-weight: 600; }
.error:empty, .status:empty { display: none; }
.status { color: var(--stepup-muted); }
.resend { margin-top: 0.75rem; }
.footer { margin-top: 1rem; }
`;

/** @type {CSSStyleSheet | null} */
let sheet = null;

/**
 * An element, built without HTML parsing (a page with Trusted Types or a strict CSP runs it).
 * @param {string} tag
 * @param {Record<string, any>} [props] attributes; `on<event>` listeners; false/null skipped
 * @param {...(Node | string | null | undefined | false)} children
 */
function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child != null && child !== false) node.append(child);
  return node;
}

/** The element that has focus, looking into shadow roots. */
function deepActiveElement() {
  let active = document.activeElement;
  while (active?.shadowRoot?.activeElement) active = active.shadowRoot.activeElement;
  return active;
}

/**
 * The best catalog language for `wanted` ("fr-CA" -> "fr"), among `available`.
 * @param {readonly string[]} wanted
 * @param {readonly string[]} available
 */
export function pickLocale(wanted, available = LOCALES) {
  for (const tag of wanted) {
    const lower = String(tag).toLowerCase();
    if (available.includes(lower)) return lower;
    const language = lower.split("-")[0];
    if (available.includes(language)) return language;
  }
  return "en";
}

/** @param {string} text @param {Record<string, unknown>} params */
const fill = (text, params) => text.replace(/\{(\w+)\}/g, (_, key) => String(params[key] ?? ""));

/** <stepup-prompt>: one step-up at a time; `run(request)` resolves with the token, or null when cancelled. */
export class StepUpPromptElement extends HTMLElement {
  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    if (!sheet) {
      sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLE);
    }
    root.adoptedStyleSheets = [sheet];
    /** @type {boolean} */
    this.busy = false;
  }

  /**
   * Ask the person: show the dialog until they step up (the token) or cancel (null).
   * @param {PromptRequest} request
   * @param {PromptOptions} [options]
   * @returns {Promise<IssuedToken | null>}
   */
  async run(request, options = {}) {
    if (this.busy) throw new Error("this <stepup-prompt> is already asking; use another element");
    this.busy = true;
    try {
      const flow = new Flow(this, request, options);
      return await flow.start();
    } finally {
      this.busy = false;
    }
  }
}

/** @typedef {{get(id: string): ChallengeStart | undefined, set(id: string, c: ChallengeStart): void, delete(id: string): void}} Challenges */

/** Challenges begun, per client: the prompt opened again for the same scopes answers the same
 * challenge (the code already sent) instead of asking the server for another too soon. */
/** @type {WeakMap<object, Map<string, ChallengeStart>>} */
const begun = new WeakMap();

/**
 * @param {object} client
 * @param {string[]} scopes
 * @returns {Challenges}
 */
function challengesOf(client, scopes) {
  let all = begun.get(client);
  if (!all) begun.set(client, (all = new Map()));
  const known = all;
  const scope = [...new Set(scopes)].sort().join(" ");
  return {
    get: (id) => known.get(`${id} ${scope}`),
    set: (id, challenge) => void known.set(`${id} ${scope}`, challenge),
    delete: (id) => void known.delete(`${id} ${scope}`),
  };
}

/** One run of the prompt: the dialog, its screens and what the person chose. */
class Flow {
  /**
   * @param {StepUpPromptElement} host
   * @param {PromptRequest} request
   * @param {PromptOptions} options
   */
  constructor(host, request, options) {
    this.host = host;
    this.root = /** @type {ShadowRoot} */ (host.shadowRoot);
    this.request = request;
    this.options = options;
    this.stepUp = request.stepUp;
    this.locale = "en";
    /** @type {Catalog} */
    this.catalog = en;
    /** @type {Choice[]} */
    this.choices = [];
    /** @type {Choice | null} */
    this.current = null;
    /** The challenge begun for each credential, answered again after a wrong code. */
    this.challenges = challengesOf(request.stepUp, request.requestedScopes);
    /** @type {Element | null} */
    this.opener = null;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.timer = undefined;
    this.controller = new AbortController();
    this.pending = false;
    this.generation = 0;
    /** @type {(value: IssuedToken | null) => void} */
    this.settle = () => {};
    this.dialog = /** @type {HTMLDialogElement} */ (
      h("dialog", { part: "dialog", "aria-labelledby": "stepup-title", "aria-describedby": "stepup-description" })
    );
    this.title = h("h2", { id: "stepup-title", part: "title" });
    this.body = h("div", { class: "body", part: "body" });
    this.closeButton = h(
      "button",
      { type: "button", class: "close", part: "close", onclick: () => this.cancel() },
      h("span", { "aria-hidden": "true" }, "×"),
    );
  }

  /** @returns {Promise<IssuedToken | null>} */
  async start() {
    const { request, options } = this;
    const wanted = [options.locale ?? "", this.host.getAttribute("lang") ?? "", ...(globalThis.navigator?.languages ?? [])]
      .filter(Boolean);
    this.locale = pickLocale(wanted, Object.keys(CATALOGS));
    try {
      this.catalog = { ...en, ...(await CATALOGS[this.locale]()).default };
    } catch {
      this.locale = "en";
      this.catalog = en;
    }
    if (options.theme) this.host.setAttribute("theme", options.theme);
    this.choices = await this.loadChoices();

    return new Promise((resolve) => {
      this.settle = (value) => {
        this.settle = () => {};
        this.stopTimer();
        this.controller.abort();
        request.signal?.removeEventListener("abort", onAbort);
        if (this.dialog.open) this.dialog.close();
        this.dialog.remove();
        const opener = /** @type {HTMLElement | null} */ (this.opener);
        if (opener?.isConnected && typeof opener.focus === "function") opener.focus();
        resolve(value);
      };
      const onAbort = () => this.settle(null);
      if (request.signal?.aborted) return resolve(null);
      request.signal?.addEventListener("abort", onAbort, { once: true });
      this.open();
    });
  }

  /** The usable credentials, each with its method's browser module. */
  async loadChoices() {
    const { request } = this;
    /** @type {Map<string, MethodInfo>} */
    let infos = new Map();
    try {
      infos = new Map((await this.stepUp.methods()).map((m) => [m.name, m]));
    } catch {
      // the modules' loading reports it below
    }
    // Only credentials on the route the server chose: re-authentication never reaches a user with MFA.
    const usable = request.credentials.filter((c) => c.factor === request.route);
    const loaded = await Promise.all(
      usable.map(async (credential) => {
        try {
          const module = await this.stepUp.methodModule(credential.method);
          return { credential, module, info: infos.get(credential.method) };
        } catch {
          return null;
        }
      }),
    );
    return /** @type {Choice[]} */ (loaded.filter(Boolean));
  }

  // --- texts -----------------------------------------------------------------------------

  /** @param {string} key @param {Record<string, unknown>} [params] */
  t(key, params = {}) {
    const own = this.options.messages?.[key];
    return fill(own ?? this.catalog[key] ?? en[key] ?? key, params);
  }

  /** @param {string} key @param {number} count @param {Record<string, unknown>} [params] */
  plural(key, count, params = {}) {
    const category = new Intl.PluralRules(this.locale).select(count);
    const chosen = this.options.messages?.[`${key}.${category}`] ?? this.catalog[`${key}.${category}`] ?? en[`${key}.${category}`];
    return chosen ? fill(chosen, { ...params, count }) : this.t(`${key}.other`, { ...params, count });
  }

  /** @param {number} seconds */
  duration(seconds) {
    const s = Math.max(1, Math.ceil(seconds));
    const [value, unit] = s < 60 ? [s, "second"] : s < 3600 ? [Math.ceil(s / 60), "minute"] : [Math.ceil(s / 3600), "hour"];
    return new Intl.NumberFormat(this.locale, { style: "unit", unit, unitDisplay: "long" }).format(value);
  }

  /**
   * A method's own text: the page's `messages` ("otp.title"), then the module's messages in this
   * locale, then in English; `key.<format>` ("title.phoneNumber") before `key`.
   * @param {Choice} choice
   * @param {string} key
   * @param {Record<string, unknown>} [params]
   */
  m(choice, key, params = {}) {
    const { credential, module } = choice;
    const keys = [`${key}.${credential.format}`, key];
    const page = this.options.messages ?? {};
    const catalogs = [module.messages?.[this.locale], module.messages?.en];
    let text = keys.map((k) => page[`${module.name}.${k}`]).find(Boolean);
    for (const catalog of catalogs) text ??= keys.map((k) => catalog?.[k]).find(Boolean);
    if (!text && key === "label") text = module.label ?? this.t("method.label");
    const values = {
      method: module.name,
      alias: credential.alias ?? "",
      provider: credential.details?.providerName ?? credential.type ?? "",
      destination: this.challenges.get(credential.id)?.data?.destination ?? credential.alias ?? "",
      ...params,
    };
    return fill(text ?? this.t(`method.${key}`), values);
  }

  /** The words for a failure. @param {any} error @param {Choice | null} choice */
  describe(error, choice) {
    const code = String(error?.code ?? "");
    const wait = typeof error?.retryAfter === "number" ? this.duration(error.retryAfter) : null;
    if (code === "verification_failed" && this.isCode(choice)) {
      const left = error?.problem?.attemptsRemaining;
      const wrong = this.t("error.wrong");
      return typeof left === "number" ? `${wrong} ${this.plural("attempts", left)}` : wrong;
    }
    if (code === "attempts_exhausted" && choice?.info?.requiresChallenge === false && wait) {
      return this.t("error.exhausted.wait", { time: wait });
    }
    const key = ERRORS[code] ?? "error.generic";
    return this.t(key, { time: wait ?? this.duration(60) });
  }

  // --- the dialog --------------------------------------------------------------------------

  open() {
    const { dialog } = this;
    dialog.setAttribute("lang", this.locale);
    this.closeButton.setAttribute("aria-label", this.t("close"));
    dialog.append(
      h(
        "div",
        { class: "panel", part: "panel" },
        h("header", { part: "header" }, this.title, this.closeButton),
        this.body,
      ),
    );
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault(); // Escape: we close it ourselves, and only once
      this.cancel();
    });
    dialog.addEventListener("close", () => this.settle(null));
    let pressedOutside = false;
    dialog.addEventListener("pointerdown", (event) => {
      pressedOutside = event.target === dialog && this.outside(/** @type {PointerEvent} */ (event));
    });
    dialog.addEventListener("click", (event) => {
      if (pressedOutside && event.target === dialog && this.outside(/** @type {MouseEvent} */ (event))) this.cancel();
      pressedOutside = false;
    });
    dialog.addEventListener("keydown", (event) => this.trapTab(/** @type {KeyboardEvent} */ (event)));
    this.root.append(dialog);
    this.opener = deepActiveElement();
    if (!this.host.isConnected) document.body.append(this.host);
    dialog.showModal();
    if (!this.choices.length) {
      this.showProblem(this.t("title"), this.t(this.request.credentials.length ? "error.unavailable" : "error.noCredential"));
    } else if (this.choices.length === 1) {
      this.showMethod(this.choices[0]);
    } else {
      this.showChoices();
    }
  }

  /** A click on the backdrop: outside the dialog's box. @param {MouseEvent} event */
  outside(event) {
    const box = this.dialog.getBoundingClientRect();
    return event.clientX < box.left || event.clientX > box.right || event.clientY < box.top || event.clientY > box.bottom;
  }

  cancel() {
    this.settle(null);
  }

  /** Keep Tab within the dialog, wrapping at both ends. @param {KeyboardEvent} event */
  trapTab(event) {
    if (event.key !== "Tab") return;
    const focusable = [...this.dialog.querySelectorAll("button, input, [tabindex]")].filter((node) => {
      const el = /** @type {HTMLElement & {disabled?: boolean, type?: string, checked?: boolean}} */ (node);
      if (el.disabled || el.tabIndex < 0 || el.closest("[hidden]") || !el.getClientRects().length) return false;
      return el.type !== "radio" || el.checked;
    });
    if (!focusable.length) return;
    const first = /** @type {HTMLElement} */ (focusable[0]);
    const last = /** @type {HTMLElement} */ (focusable[focusable.length - 1]);
    const active = this.root.activeElement;
    if (event.shiftKey && (active === first || !active)) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && (active === last || !active)) {
      event.preventDefault();
      first.focus();
    }
  }

  /**
   * Replace the screen.
   * @param {string} title
   * @param {string} description
   * @param {...(Node | null | false)} content
   */
  screen(title, description, ...content) {
    this.stopTimer();
    this.generation += 1;
    this.title.textContent = title;
    this.body.replaceChildren(h("p", { id: "stepup-description", class: "description", part: "description" }, description), ...content.filter((c) => c !== null && c !== false));
    this.dialog.dataset.screen = "";
    return this.generation;
  }

  /** @param {string} name */
  mark(name) {
    this.dialog.dataset.screen = name;
  }

  /** @param {HTMLElement | null | undefined} target */
  focus(target) {
    (target ?? this.closeButton).focus();
  }

  stopTimer() {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  // --- screens -----------------------------------------------------------------------------

  showChoices() {
    const preselected = this.choices.find((c) => c.credential.id === this.request.defaultCredentialId) ?? this.choices[0];
    const picked = this.current ?? preselected;
    const options = this.choices.map((choice) => {
      const detail = choice.credential.alias ?? "";
      const label = this.m(choice, "label");
      return h(
        "label",
        { class: "option", part: "option" },
        h("input", {
          type: "radio",
          name: "credential",
          value: choice.credential.id,
          checked: choice === picked,
          "data-method": choice.module.name,
        }),
        h("span", {}, h("span", { class: "name" }, label), detail && detail !== label ? h("span", { class: "detail" }, detail) : null),
      );
    });
    const form = h(
      "form",
      { part: "form", class: "choose" },
      h("fieldset", { part: "list" }, h("legend", {}, this.t("choose")), ...options),
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", part: "button primary" }, this.t("continue"))),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = /** @type {HTMLInputElement | null} */ (form.querySelector("input:checked"))?.value;
      const choice = this.choices.find((c) => c.credential.id === value);
      if (choice) this.showMethod(choice);
    });
    form.addEventListener("keydown", (event) => {
      const target = /** @type {HTMLInputElement} */ (event.target);
      if (event.key === "Enter" && target.type === "radio") {
        event.preventDefault();
        /** @type {HTMLFormElement} */ (form).requestSubmit();
      }
    });
    this.screen(this.t("title"), this.t(`intro.${this.request.route}`), form);
    this.mark("choose");
    this.focus(/** @type {HTMLElement} */ (form.querySelector("input:checked")));
  }

  /** @param {Choice | null} choice */
  isCode(choice) {
    if (!choice) return false;
    return (choice.module.screen?.input ?? choice.module.input ?? (choice.info?.interaction === "code" ? "code" : "button")) === "code";
  }

  /** The method's screen: a code field or a button, as its module describes. @param {Choice} choice */
  async showMethod(choice) {
    this.current = choice;
    const { credential } = choice;
    const generation = this.screen(this.m(choice, "title"), this.t("loading"));
    this.mark("loading");
    this.focus(null);
    if (choice.info?.requiresChallenge !== false && !this.liveChallenge(credential.id)) {
      try {
        await this.begin(choice);
      } catch (error) {
        if (generation !== this.generation) return;
        return this.showFailure(choice, error);
      }
    }
    if (generation !== this.generation) return;
    this.renderMethod(choice);
  }

  /** @param {string} credentialId */
  liveChallenge(credentialId) {
    const challenge = this.challenges.get(credentialId);
    if (challenge && (challenge.expiresAt ?? Infinity) * 1000 > Date.now() + 5000) return challenge;
    this.challenges.delete(credentialId);
    return undefined;
  }

  /** @param {Choice} choice */
  async begin(choice) {
    const { credential, module } = choice;
    const challenge = await this.stepUp.beginChallenge({
      method: module.name,
      credentialId: credential.id,
      requestedScopes: this.request.requestedScopes,
    });
    this.challenges.set(credential.id, challenge);
    return challenge;
  }

  /**
   * @param {Choice} choice
   * @param {{error?: string, restart?: boolean, status?: string, wait?: number}} [note]
   */
  renderMethod(choice, note = {}) {
    const code = this.isCode(choice);
    const error = h("p", { id: "stepup-error", class: "error", part: "error", role: "alert" });
    const status = h("p", { class: "status", part: "status", role: "status" });
    const other =
      this.choices.length > 1
        ? h("div", { class: "footer" }, h("button", { type: "button", class: "link", part: "link", onclick: () => this.showChoices() }, this.t("other")))
        : null;
    /** @type {HTMLElement} */
    let main;
    /** @type {HTMLElement | null} */
    let first = null;
    if (note.restart) {
      const again = h("button", { type: "button", class: "primary", part: "button primary" }, this.t("restart"));
      again.addEventListener("click", () => {
        this.challenges.delete(choice.credential.id);
        this.showMethod(choice);
      });
      main = h("div", { class: "actions method" }, again);
      first = again;
    } else if (code) {
      main = this.codeForm(choice, error, status);
      first = main.querySelector("input");
    } else {
      const action = h("button", { type: "button", class: "primary", part: "button primary" }, this.m(choice, "action"));
      action.addEventListener("click", () => this.verify(choice, {}, action, error, status));
      main = h("div", { class: "actions method" }, action);
      first = action;
    }
    if (note.restart) this.screen(this.m(choice, "title"), this.m(choice, "hint"), error, main, status, other);
    else this.screen(this.m(choice, "title"), this.m(choice, "hint"), main, status, error, other);
    this.mark(note.restart ? "restart" : code ? "code" : "button");
    if (note.error) {
      error.textContent = note.error;
      this.mark(note.restart ? "restart" : "error");
    }
    if (note.status) status.textContent = note.status;
    if (code && !note.restart && choice.module.screen?.resend) this.resend(choice, main, note.wait);
    this.focus(first);
  }

  /**
   * @param {Choice} choice
   * @param {HTMLElement} error
   * @param {HTMLElement} status
   */
  codeForm(choice, error, status) {
    const look = choice.module.screen?.code ?? {};
    const numeric = (look.inputMode ?? "numeric") === "numeric";
    const input = /** @type {HTMLInputElement} */ (
      h("input", {
        id: "stepup-code",
        class: "code",
        part: "input",
        name: "code",
        type: look.secret ? "password" : "text",
        autocomplete: look.autocomplete ?? "one-time-code",
        inputmode: numeric ? "numeric" : "text",
        maxlength: look.maxLength,
        autocapitalize: "off",
        spellcheck: "false",
        required: true,
        "aria-describedby": "stepup-description stepup-error",
      })
    );
    /** @param {string} text */
    const clean = (text) => (numeric ? text.replace(/[\s-]/g, "") : text.trim());
    input.addEventListener("paste", (event) => {
      const pasted = event.clipboardData?.getData("text");
      if (pasted == null) return;
      event.preventDefault();
      input.setRangeText(clean(pasted), input.selectionStart ?? input.value.length, input.selectionEnd ?? input.value.length, "end");
      input.dispatchEvent(new Event("input", { bubbles: true }));
    });
    input.addEventListener("input", () => input.removeAttribute("aria-invalid"));
    const submit = h("button", { type: "submit", class: "primary", part: "button primary" }, this.m(choice, "submit"));
    const form = h(
      "form",
      { part: "form", novalidate: true },
      h("label", { class: "field", part: "label", for: "stepup-code" }, this.m(choice, "field")),
      input,
      h("div", { class: "actions" }, submit),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = clean(input.value);
      if (!value) {
        input.setAttribute("aria-invalid", "true");
        error.textContent = this.t("error.invalid");
        input.focus();
        return;
      }
      this.verify(choice, { code: value }, submit, error, status, input);
    });
    return form;
  }

  /**
   * "Send a new code", paced by the server: `wait` seconds (a 429's retryAfter), else the
   * challenge's `resendAfter`.
   * @param {Choice} choice
   * @param {HTMLElement} form
   * @param {number} [wait]
   */
  resend(choice, form, wait) {
    const challenge = this.challenges.get(choice.credential.id);
    const seconds = wait ?? Number(challenge?.data?.resendAfter ?? 0);
    const until = Date.now() + seconds * 1000;
    const button = h("button", { type: "button", class: "secondary", part: "button secondary" }, this.t("resend"));
    const countdown = h("p", { class: "status countdown", part: "countdown" });
    const tick = () => {
      const left = (until - Date.now()) / 1000;
      if (left > 0.5) {
        button.setAttribute("aria-disabled", "true");
        countdown.textContent = this.t("resend.wait", { time: this.duration(left) });
      } else {
        button.removeAttribute("aria-disabled");
        countdown.textContent = "";
        this.stopTimer();
      }
    };
    button.addEventListener("click", async () => {
      if (button.getAttribute("aria-disabled") === "true" || this.pending) return;
      this.pending = true;
      button.setAttribute("aria-disabled", "true");
      const generation = this.generation;
      try {
        await this.begin(choice);
        if (generation !== this.generation) return;
        this.renderMethod(choice, { status: this.t("resend.sent") });
      } catch (failure) {
        if (generation !== this.generation) return;
        const code = /** @type {any} */ (failure)?.code;
        if (code === "rate_limited") {
          this.renderMethod(choice, { error: this.describe(failure, choice), wait: /** @type {any} */ (failure).retryAfter });
        } else {
          this.showFailure(choice, failure);
        }
      } finally {
        this.pending = false;
      }
    });
    form.append(h("div", { class: "resend" }, button, countdown));
    tick();
    if (until > Date.now()) this.timer = setInterval(tick, 1000);
  }

  /**
   * Run the method; close with the token, or say what went wrong.
   * @param {Choice} choice
   * @param {Record<string, unknown>} extra
   * @param {HTMLElement} trigger
   * @param {HTMLElement} error
   * @param {HTMLElement} status
   * @param {HTMLInputElement} [input]
   */
  verify(choice, extra, trigger, error, status, input) {
    if (this.pending) return;
    const { credential, module } = choice;
    this.pending = true;
    const generation = this.generation;
    trigger.setAttribute("aria-disabled", "true");
    input?.setAttribute("readonly", "");
    error.textContent = "";
    status.textContent = this.isCode(choice) ? this.t("working") : this.m(choice, "waiting");
    this.dialog.setAttribute("aria-busy", "true");
    // Called within the click: a redirect method's window opens now, before any await.
    const running = this.stepUp.verify({
      ...(this.options.methodOptions?.[module.name] ?? {}),
      ...extra,
      method: module.name,
      credentialId: credential.id,
      requestedScopes: this.request.requestedScopes,
      challenge: this.liveChallenge(credential.id),
      signal: this.controller.signal,
    });
    running.then(
      (token) => {
        this.pending = false;
        this.dialog.removeAttribute("aria-busy");
        this.challenges.delete(credential.id);
        status.textContent = this.t("verified");
        this.settle(token);
      },
      (failure) => {
        this.pending = false;
        this.dialog.removeAttribute("aria-busy");
        if (this.controller.signal.aborted || generation !== this.generation) return;
        trigger.removeAttribute("aria-disabled");
        input?.removeAttribute("readonly");
        status.textContent = "";
        const code = /** @type {any} */ (failure)?.code;
        if (code === "locked_out" || (RESTART.has(code) && choice.info?.requiresChallenge !== false)) {
          return this.showFailure(choice, failure);
        }
        error.textContent = this.describe(failure, choice);
        this.mark("error");
        if (input) {
          input.setAttribute("aria-invalid", "true");
          input.focus();
          input.select();
        } else {
          trigger.focus();
        }
      },
    );
  }

  /**
   * A failure that ends this screen: locked out (every method is), or a challenge that is gone
   * or could not begin (the person starts again).
   * @param {Choice} choice
   * @param {unknown} failure
   */
  showFailure(choice, failure) {
    const code = /** @type {any} */ (failure)?.code;
    if (code === "locked_out") return this.showLocked(failure);
    this.challenges.delete(choice.credential.id);
    return this.renderMethod(choice, { error: this.describe(failure, choice), restart: true });
  }

  /** @param {unknown} failure */
  showLocked(failure) {
    const close = h("button", { type: "button", class: "primary", part: "button primary", onclick: () => this.cancel() }, this.t("close"));
    this.screen(this.t("locked.title"), this.describe(failure, this.current), h("div", { class: "actions" }, close));
    const message = /** @type {HTMLElement} */ (this.body.querySelector("#stepup-description"));
    message.setAttribute("role", "alert");
    message.className = "error";
    message.setAttribute("part", "error");
    this.mark("locked");
    this.focus(close);
  }

  /** @param {string} title @param {string} text */
  showProblem(title, text) {
    const close = h("button", { type: "button", class: "primary", part: "button primary", onclick: () => this.cancel() }, this.t("close"));
    this.screen(title, text, h("div", { class: "actions" }, close));
    this.mark("problem");
    this.focus(close);
  }
}

if (globalThis.customElements && !customElements.get(TAG)) customElements.define(TAG, StepUpPromptElement);

/** The prompts waiting for the one on screen. @type {Promise<unknown>} */
let queue = Promise.resolve();

/**
 * A prompt function for createStepUp({prompt}) or registerPrompt(): shows <stepup-prompt>.
 * @param {PromptOptions} [options]
 * @returns {import("./stepup.d.ts").PromptFunction}
 */
export function createPrompt(options = {}) {
  return (request) => {
    // One dialog at a time: a second step-up (two requests refused at once) waits its turn.
    const turn = queue.then(() => show(request, options));
    queue = turn.catch(() => {});
    return turn;
  };
}

/**
 * @param {PromptRequest} request
 * @param {PromptOptions} options
 */
async function show(request, options) {
  /** @type {StepUpPromptElement} */
  let element;
  let made = false;
  if (options.element) {
    element = options.element;
  } else {
    const idle = [...document.querySelectorAll(TAG)].find((el) => el instanceof StepUpPromptElement && !el.busy);
    element = /** @type {StepUpPromptElement} */ (idle ?? document.createElement(TAG));
    made = !idle;
  }
  try {
    return await element.run(request, options);
  } finally {
    if (made) element.remove();
  }
}

/** The built-in prompt with its defaults (the locale from `navigator.languages`). */
export const prompt = createPrompt();

/**
 * Install a built-in prompt with these options for every client given no prompt of its own
 * (importing this module installs one with the defaults). Returns the uninstall function.
 * @param {PromptOptions} [options]
 */
export function installPrompt(options = {}) {
  return registerPrompt(Object.keys(options).length ? createPrompt(options) : prompt);
}

installPrompt();
