// Types of stepup.js, the browser client of stepup. The wire shapes are the server's
// (camelCase JSON, see docs/http-api.md); the surface is the useStepUpAuthentication hook's.

export type Factor = "mfa" | "reauth";
export type Route = "mfa" | "reauth";
export type Interaction = "code" | "options" | "message" | "redirect";

/** A credential as the server shows it (never secrets). */
export interface CredentialView {
  id: string;
  method: string;
  format: string;
  factor: Factor;
  type: string | null;
  alias: string | null;
  signIn: boolean;
  isDefault: boolean;
  createdAt: number;
  lastUsedAt: number | null;
  details: Record<string, unknown>;
}

/** `POST /check`: the reference's `{isRequired, credentials, defaultCredentialId}` and more. */
export interface CheckResult {
  scope: string;
  isRequired: boolean;
  route: Route;
  credentials: CredentialView[];
  defaultCredentialId: string | null;
  reasons: string[];
  methods: string[];
}

/** An elevated access token as `POST /verify` issues it. */
export interface IssuedToken {
  elevatedAccessToken: string;
  scopes: string[];
  /** Seconds since the epoch, by the server's clock. */
  expiresAt: number;
  singleUse: boolean;
  method: string;
}

/** `GET /methods`: one installed method. */
export interface MethodInfo {
  name: string;
  factor: Factor;
  formats: string[];
  interaction: Interaction;
  fallback: boolean;
  requiresChallenge: boolean;
  plugin: string | null;
  /** Path of the method's browser half on the server, when its plugin ships one. */
  browserModule: string | null;
}

/** `POST /challenges`: the method's public data is in `data`. */
export interface ChallengeStart {
  challengeId: string | null;
  method: string;
  expiresAt?: number;
  interaction: Interaction;
  credentialId: string | null;
  requestedScopes: string[];
  data: Record<string, any>;
}

/** `POST /enrollments`: `credential` is set when the enrolment completed at once. */
export interface EnrollmentStart {
  enrollmentId: string;
  method: string;
  expiresAt: number;
  data: Record<string, any>;
  credential: CredentialView | null;
}

/** What `enroll` resolves with: the new credential and what the person must see (codes). */
export interface EnrollmentResult {
  credential: CredentialView;
  data: Record<string, any>;
}

/** What `sendOtp` resolves with. */
export interface OtpVerification {
  verificationType: string;
  credentialId: string;
  destination: string | null;
}

export interface StepUpState {
  isLoading: boolean;
  error: StepUpError | null;
}

/** The server's problem codes, and the client's own. */
export type StepUpErrorCode =
  | "malformed_request" | "unsupported_media_type" | "http_method_not_allowed" | "payload_too_large"
  | "validation_error" | "invalid_scope" | "sign_in_not_completed" | "not_found" | "unknown_method"
  | "credential_not_found"
  | "challenge_not_found" | "unauthenticated" | "insufficient_user_authentication"
  | "challenge_expired" | "challenge_used" | "challenge_pending" | "verification_failed"
  | "invalid_response" | "verifier_error" | "replay_detected" | "attempts_exhausted" | "locked_out"
  | "rate_limited" | "method_not_allowed" | "origin_not_allowed" | "no_eligible_credential"
  | "enrollment_failed" | "delivery_failed" | "provider_unavailable" | "store_unavailable"
  | "config_error" | "plugin_error" | "server_error" | "stepup_error"
  // raised in the browser
  | "network_error" | "user_cancelled" | "prompt_unavailable" | "method_not_installed"
  | "unsupported" | "popup_blocked" | "authenticator_failed";

export interface StepUpErrorDetails {
  status?: number;
  title?: string;
  retryAfter?: number;
  problem?: Record<string, any>;
  cause?: unknown;
}

/** Every failure: `code` is the server's stable problem code (or the client's own). */
export class StepUpError extends Error {
  constructor(code: StepUpErrorCode | (string & {}), message: string, details?: StepUpErrorDetails);
  readonly code: StepUpErrorCode | (string & {});
  /** The HTTP status, 0 for failures in the browser. */
  readonly status: number;
  readonly title: string | undefined;
  /** Seconds to wait before trying again (`rate_limited`, `locked_out`...). */
  readonly retryAfter: number | undefined;
  /** The whole problem+json body. */
  readonly problem: Record<string, any> | undefined;
  /** `validation_error`: every bad field. */
  readonly errors: { path: string; message: string }[];
  /** `insufficient_user_authentication`: the check result the server sent along. */
  readonly check: CheckResult | undefined;
}

/** What a prompt is asked to do: step up for `requestedScopes` on `route`. */
export interface PromptRequest {
  /** Which call asked: `promptStepUpAuth`, `promptMfa` or `promptReauthenticate`. */
  kind: "stepUp" | "mfa" | "reauth";
  route: Route;
  requestedScopes: string[];
  /** The user's credentials usable on this route. */
  credentials: CredentialView[];
  defaultCredentialId: string | null;
  check: CheckResult;
  /** The client: the prompt verifies through it (verifyTotpMfa, verify...). */
  stepUp: StepUp;
  signal?: AbortSignal;
}

/** Asks the person and verifies; resolve with the token (or nothing, or reject) when done. */
export type PromptFunction = (request: PromptRequest) => Promise<IssuedToken | string | null | undefined>;

export interface StepUpOptions {
  /** Where the stepup routes are mounted: `"/stepup"` (default) or `"https://auth.example.com/stepup"`. */
  baseUrl?: string;
  /** Headers sent with every call (the session: `{Authorization: "Bearer ..."}`). */
  headers?: Record<string, string>;
  /** Or headers computed per call (a fresh session token). */
  getHeaders?: () => Record<string, string> | Promise<Record<string, string>>;
  /** The fetch to use (default: the page's). */
  fetch?: typeof fetch;
  /** `credentials` of every call: `"include"` to send cookies to another origin. */
  credentials?: RequestCredentials;
  /** The page's prompt; without it the built-in prompt is used when loaded. */
  prompt?: PromptFunction;
  /** Milliseconds to wait for a redirect sign-in (social) to finish; default 300000. */
  redirectTimeout?: number;
  /** First and longest interval between polls of a redirect challenge, in ms (1000, 5000). */
  pollInterval?: number;
  maxPollInterval?: number;
}

export interface ScopesParams {
  requestedScopes?: string[];
  signal?: AbortSignal;
}

export interface PromptParams extends ScopesParams {
  /** Offer only this method. */
  method?: string;
}

/** Options a method's browser half reads, besides the named ones. */
export interface VerifyParams extends ScopesParams {
  method: string;
  credentialId?: string;
  /** Answer this challenge (from `beginChallenge`, answered again after a wrong code) instead of beginning one. */
  challenge?: ChallengeStart;
  /** Sent with `POST /challenges` as `params`. */
  params?: Record<string, unknown>;
  /** A code the person typed, for code methods. */
  code?: string;
  /** Asks the person for a code when none was given. */
  getCode?: (request: { method: string; label: string; data: Record<string, any> }) => Promise<string> | string;
  [option: string]: unknown;
}

export interface EnrollParams {
  method: string;
  alias?: string;
  /** `POST /enrollments` params; by default the method's browser half builds them. */
  params?: Record<string, unknown>;
  code?: string;
  getCode?: VerifyParams["getCode"];
  signal?: AbortSignal;
  [option: string]: unknown;
}

export interface StepUpFetchInit extends RequestInit {
  /** The step-up scope the route needs: its token is attached. */
  scope?: string;
  /** On an RFC 9470 401, prompt and retry once (default true when a prompt is available). */
  retry?: boolean;
}

/** The hook's surface, in the reference's names and shapes. */
export interface StepUp {
  isStepUpRequired(params: { scope: string }): Promise<boolean>;
  checkStepUpAuth(params: { scope: string }): Promise<CheckResult>;
  promptStepUpAuth(params?: PromptParams): Promise<string | undefined>;
  promptMfa(params?: PromptParams): Promise<string | undefined>;
  promptReauthenticate(params?: PromptParams): Promise<string | undefined>;
  sendOtp(params?: { credentialId?: string; requestedScopes?: string[] }): Promise<OtpVerification | null>;
  verifyOtp(params: { verificationToken: string; requestedScopes?: string[] }): Promise<IssuedToken | undefined>;
  verifyWallet(params?: { walletId?: string; requestedScopes?: string[]; provider?: Eip1193Provider; signal?: AbortSignal }): Promise<IssuedToken | undefined>;
  verifySocial(params: { provider: string; requestedScopes?: string[]; signal?: AbortSignal }): Promise<IssuedToken | undefined>;
  verifyPasskeyMfa(params?: { credentialId?: string; requestedScopes?: string[]; signal?: AbortSignal }): Promise<IssuedToken>;
  verifyTotpMfa(params: { code: string; deviceId?: string; requestedScopes?: string[] }): Promise<IssuedToken>;
  verifyRecoveryCode(params: { code: string; requestedScopes?: string[] }): Promise<IssuedToken>;
  /** Any installed method, a third party's too, through its browser half. */
  verify(params: VerifyParams): Promise<IssuedToken>;
  /** `POST /challenges` alone: a prompt shows the challenge (where the code went) before the person answers it with `verify({challenge})`. */
  beginChallenge(params: { method: string; credentialId?: string; requestedScopes?: string[]; params?: Record<string, unknown> }): Promise<ChallengeStart>;
  /** The method's browser half (its label, screen and messages), loaded from the server. */
  methodModule(name: string): Promise<MethodModule>;
  readonly state: StepUpState;
  resetState(): void;
  subscribe(listener: (state: StepUpState) => void): () => void;

  /** fetch that attaches the scope's token and steps up once on an RFC 9470 401. */
  fetch(input: RequestInfo | URL, init?: StepUpFetchInit): Promise<Response>;
  /** The token for `scope` to send yourself (a single-use one leaves the jar). */
  takeToken(params: { scope: string }): string | undefined;
  /** Forget every token here and revoke the session's tokens on the server. */
  logout(): Promise<void>;

  methods(): Promise<MethodInfo[]>;
  listCredentials(): Promise<CredentialView[]>;
  deleteCredential(params: { credentialId: string }): Promise<void>;
  updateCredential(params: { credentialId: string; alias?: string; isDefault?: boolean }): Promise<CredentialView>;
  beginEnrollment(params: { method: string; params?: Record<string, unknown>; alias?: string }): Promise<EnrollmentStart>;
  completeEnrollment(params: { enrollmentId: string; response: Record<string, unknown> }): Promise<CredentialView>;
  enroll(params: EnrollParams): Promise<EnrollmentResult>;
}

/** EIP-1193: what a browser wallet puts at `window.ethereum`. */
export interface Eip1193Provider {
  request(args: { method: string; params?: unknown[] }): Promise<any>;
}

/** What a method's browser half gets from stepup.js. */
export interface MethodContext {
  method: string;
  options: Record<string, any>;
  signal?: AbortSignal;
  /** A typed error to throw. */
  error(code: StepUpErrorCode | (string & {}), message: string, details?: StepUpErrorDetails): StepUpError;
  /** The code the page gave (`code`), or the one `getCode` asks the person for. */
  code(label: string, data?: Record<string, any>): Promise<string>;
  /** Send the person's sign-in window to `url` (redirect methods). */
  openWindow(url: string): void;
}

/** How the built-in prompt shows a method; every field is optional. */
export interface MethodScreen {
  /** A field for a code the person types, or one button that starts the method (default: `input`). */
  input?: "code" | "button";
  /** The code field. */
  code?: {
    /** `autocomplete`; default `one-time-code` (the platform offers a code it received). */
    autocomplete?: string;
    /** `numeric` (the default: spaces and dashes are dropped, from a paste too) or `text`. */
    inputMode?: "numeric" | "text";
    maxLength?: number;
    /** Masked, like a password (a PIN). */
    secret?: boolean;
  };
  /** A new challenge may be asked for (a new code sent): "Send a new code", paced by the
   * challenge's `data.resendAfter` and the server's `retryAfter`. */
  resend?: boolean;
}

/**
 * A method's texts, by locale ("en", "fr"...) then key: `label` (in the list of methods),
 * `title`, `hint`, `field` (the code field's label), `submit` (the code form's button), `action`
 * (the button of a button method), `waiting` (while it runs). `key.<format>` ("title.phoneNumber")
 * wins over `key`. Placeholders: `{alias}`, `{provider}` (`details.providerName`, else the credential's type), `{destination}`
 * (where the challenge sent a code), `{method}`.
 */
export type MethodMessages = Record<string, Record<string, string>>;

export interface MethodAnswer {
  /** Sent as `response` to `POST /verify` or `POST /enrollments/{id}`. */
  response?: Record<string, unknown>;
  /** The server completes the challenge itself (a redirect callback): poll it. */
  completedElsewhere?: boolean;
}

/** The default export of a method's browser module (`{prefix}/methods/{name}/browser.js`). */
export interface MethodModule {
  /** The method's name on the wire. */
  name: string;
  /** A label for prompts ("Authenticator app"). */
  label?: string;
  /** What a prompt shows: a code field, or a button that starts the method. */
  input?: "code" | "button";
  /** How the built-in prompt shows it (optional: `input` and `label` suffice). */
  screen?: MethodScreen;
  /** Its texts for the built-in prompt, by locale. */
  messages?: MethodMessages;
  answer(challenge: ChallengeStart, ctx: MethodContext): Promise<MethodAnswer> | MethodAnswer;
  enrollmentParams?(ctx: MethodContext): Promise<Record<string, unknown>> | Record<string, unknown>;
  answerEnrollment?(enrollment: EnrollmentStart, ctx: MethodContext): Promise<MethodAnswer> | MethodAnswer;
}

export function createStepUp(options?: StepUpOptions): StepUp;

/** Install a prompt used by every client that was given none (the built-in prompt calls it). */
export function registerPrompt(prompt: PromptFunction): () => void;
