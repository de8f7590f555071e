// @ts-check
// The browser half of `totp`: the person types the code their authenticator app shows.
// Enrolment: the page shows the QR code the server rendered (enrollment.data.qrSvg, a data: URI)
// or the secret, then sends the app's first code.

/** @type {import("stepup-browser").MethodModule} */
export default {
  name: "totp",
  label: "Authenticator app",
  input: "code",
  async answer(challenge, ctx) {
    return { response: { code: await ctx.code("Code from your authenticator app", challenge.data) } };
  },
  enrollmentParams(ctx) {
    /** @type {Record<string, unknown>} */
    const params = {};
    for (const key of ["alias", "accountName", "digits", "algorithm", "period"]) {
      if (ctx.options[key] != null) params[key] = ctx.options[key];
    }
    return params;
  },
  async answerEnrollment(enrollment, ctx) {
    return { response: { code: await ctx.code("Code your app shows for the new entry", enrollment.data) } };
  },
};
