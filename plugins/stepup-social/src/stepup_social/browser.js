// @ts-check
// The browser half of `social`: the person signs in again at the provider in a popup window.
// The server's callback completes the challenge; stepup.js waits for the callback page's message
// (or polls) and picks up the token. Enrolment links an account the same way:
// enroll({method: "social", provider: "google"}).

/** @param {Record<string, any>} data @param {import("stepup-browser").MethodContext} ctx */
function open(data, ctx) {
  const url = data.authorizationUrl;
  if (typeof url !== "string") throw ctx.error("invalid_response", "the server sent no authorization URL");
  ctx.openWindow(url);
  return { completedElsewhere: true };
}

/** @type {import("stepup-browser").MethodModule} */
export default {
  name: "social",
  label: "Sign in again",
  input: "button",
  answer: (challenge, ctx) => open(challenge.data, ctx),
  enrollmentParams(ctx) {
    const provider = ctx.options.provider;
    if (typeof provider !== "string" || !provider) {
      throw ctx.error("validation_error", "linking a social account needs provider: the provider's name");
    }
    return { provider };
  },
  answerEnrollment: (enrollment, ctx) => open(enrollment.data, ctx),
};
