// @ts-check
// The browser half of `pin` (the template a third-party author copies): the person types their
// PIN. stepup.js loads this file from the server (GET {prefix}/methods/pin/browser.js) because the
// verifier names it in `browser_module`; nothing in stepup.js knows about PINs.

/** @type {import("stepup-browser").MethodModule} */
export default {
  name: "pin",
  label: "PIN",
  input: "code",
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
