// Types of prompt.js, the built-in prompt of stepup.js: <stepup-prompt>, a custom element on <dialog>.

import type { IssuedToken, PromptFunction, PromptRequest } from "./stepup.d.ts";

/** Messages by key. `{name}` is replaced; `key.one` / `key.other` (Intl.PluralRules) choose by count. */
export type Catalog = Record<string, string>;

export interface PromptOptions {
  /** A BCP 47 tag ("fr", "de-CH"); default: the element's `lang`, then `navigator.languages`, then English. */
  locale?: string;
  /**
   * Texts that win over the catalogs: any catalog key ("title", "error.locked"), or a method's
   * own key prefixed by its name ("otp.title", "totp.field", "social.action.oauth").
   */
  messages?: Catalog;
  /** `light`, `dark`, or the person's preference (`auto`, the default). */
  theme?: "light" | "dark" | "auto";
  /** Show this element instead of one the prompt adds to the page (and removes after). */
  element?: StepUpPromptElement;
  /** Extra options for a method's browser half, by method: `{wallet: {provider}}`. */
  methodOptions?: Record<string, Record<string, unknown>>;
}

/** `<stepup-prompt theme="dark" lang="fr">`: themable with CSS custom properties and `::part()`. */
export class StepUpPromptElement extends HTMLElement {
  readonly busy: boolean;
  /** Ask the person: the token when they step up, null when they cancel. */
  run(request: PromptRequest, options?: PromptOptions): Promise<IssuedToken | null>;
}

/** The element's tag: `stepup-prompt`. */
export const TAG: string;
/** The locales whose catalogs ship beside prompt.js. */
export const LOCALES: string[];
/** The best shipped locale for a list of wanted tags ("fr-CA" -> "fr"), else "en". */
export function pickLocale(wanted: readonly string[], available?: readonly string[]): string;
/** A prompt function showing <stepup-prompt> with these options. */
export function createPrompt(options?: PromptOptions): PromptFunction;
/** The built-in prompt with its defaults. */
export const prompt: PromptFunction;
/** Install a built-in prompt for every client given none (importing prompt.js installs the default). */
export function installPrompt(options?: PromptOptions): () => void;
