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
  messages: {
    en: {
      label: "Sign in with {provider}",
      title: "Sign in again with {provider}",
      hint: "A window opens where you sign in to {provider}.",
      action: "Continue with {provider}",
      waiting: "Finish signing in in the window that opened…",
    },
    fr: {
      label: "Connexion avec {provider}",
      title: "Reconnectez-vous avec {provider}",
      hint: "Une fenêtre s’ouvre pour vous connecter à {provider}.",
      action: "Continuer avec {provider}",
      waiting: "Terminez la connexion dans la fenêtre ouverte…",
    },
    de: {
      label: "Anmeldung mit {provider}",
      title: "Erneut mit {provider} anmelden",
      hint: "Es öffnet sich ein Fenster, in dem Sie sich bei {provider} anmelden.",
      action: "Weiter mit {provider}",
      waiting: "Schließen Sie die Anmeldung im geöffneten Fenster ab …",
    },
  },
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
