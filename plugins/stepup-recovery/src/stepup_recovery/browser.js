// @ts-check
// The browser half of `recovery`: the person types one of their single-use recovery codes.
// Enrolment completes at once: the page shows enrollment.data.codes, once.

/** @type {import("stepup-browser").MethodModule} */
export default {
  name: "recovery",
  label: "Recovery code",
  input: "code",
  async answer(challenge, ctx) {
    return { response: { code: await ctx.code("Recovery code", challenge.data) } };
  },
  enrollmentParams() {
    return {};
  },
};
