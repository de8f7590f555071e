// @ts-check
// The browser half of `totp`: the person types the code their authenticator app shows.
// Enrolment: the page shows the QR code the server rendered (enrollment.data.qrSvg, a data: URI)
// or the secret, then sends the app's first code.

/** @type {import("stepup-browser").MethodModule} */
export default {
  name: "totp",
  label: "Authenticator app",
  input: "code",
  screen: { code: { inputMode: "numeric", autocomplete: "one-time-code", maxLength: 10 } },
  messages: {
    en: {
      label: "Authenticator app",
      title: "Enter the code from your authenticator app",
      hint: "Open your authenticator app and enter the code it shows for this account.",
      field: "Authentication code",
    },
    fr: {
      label: "Application d’authentification",
      title: "Saisissez le code de votre application d’authentification",
      hint: "Ouvrez votre application d’authentification et saisissez le code affiché pour ce compte.",
      field: "Code d’authentification",
    },
    de: {
      label: "Authenticator-App",
      title: "Code aus Ihrer Authenticator-App eingeben",
      hint: "Öffnen Sie Ihre Authenticator-App und geben Sie den Code ein, den sie für dieses Konto zeigt.",
      field: "Authentifizierungscode",
    },
  },
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
