// @ts-check
// The browser half of `pin` (the template a third-party author copies): the person types their
// PIN. stepup.js loads this file from the server (GET {prefix}/methods/pin/browser.js) because the
// verifier names it in `browser_module`; nothing in stepup.js knows about PINs.

/** @type {import("stepup-browser").MethodModule} */
export default {
  name: "pin",
  label: "PIN",
  input: "code",
  // How the built-in prompt shows it: a masked numeric field (a PIN is a secret, not a one-time code).
  screen: { code: { inputMode: "numeric", autocomplete: "off", secret: true, maxLength: 12 } },
  // Its texts, by locale; English is the fallback of the others.
  messages: {
    en: { title: "Enter your PIN", hint: "The PIN you chose for this account.", field: "PIN" },
    fr: { title: "Saisissez votre code PIN", hint: "Le code PIN choisi pour ce compte.", field: "Code PIN" },
    de: { title: "PIN eingeben", hint: "Die PIN, die Sie für dieses Konto gewählt haben.", field: "PIN" },
  },
  async answer(challenge, ctx) {
    return { response: { pin: await ctx.code("PIN", challenge.data) } };
  },
  async enrollmentParams(ctx) {
    return { pin: await ctx.code("Choose a PIN") };
  },
  async answerEnrollment(enrollment, ctx) {
    return { response: { pin: await ctx.code("Repeat the PIN", enrollment.data) } };
  },
};
