// @ts-check
// The browser half of `recovery`: the person types one of their single-use recovery codes.
// Enrolment completes at once: the page shows enrollment.data.codes, once.

/** @type {import("stepup-browser").MethodModule} */
export default {
  name: "recovery",
  label: "Recovery code",
  input: "code",
  screen: { code: { inputMode: "text", autocomplete: "one-time-code", maxLength: 64 } },
  messages: {
    en: {
      label: "Recovery code",
      title: "Enter a recovery code",
      hint: "Use one of the recovery codes you saved. Each code works once.",
      field: "Recovery code",
    },
    fr: {
      label: "Code de récupération",
      title: "Saisissez un code de récupération",
      hint: "Utilisez l’un des codes de récupération que vous avez conservés. Chaque code ne sert qu’une fois.",
      field: "Code de récupération",
    },
    de: {
      label: "Wiederherstellungscode",
      title: "Wiederherstellungscode eingeben",
      hint: "Verwenden Sie einen Ihrer gespeicherten Wiederherstellungscodes. Jeder Code gilt nur einmal.",
      field: "Wiederherstellungscode",
    },
  },
  async answer(challenge, ctx) {
    return { response: { code: await ctx.code("Recovery code", challenge.data) } };
  },
  enrollmentParams() {
    return {};
  },
};
