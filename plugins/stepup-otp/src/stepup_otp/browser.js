// @ts-check
// The browser half of `otp`: a code sent by email or SMS, typed by the person.
// Enrolment links an address: enroll({method: "otp", email}) or ({method: "otp", phoneNumber});
// the server sends a code there and the person types it.

/** @type {import("stepup-browser").MethodModule} */
export default {
  name: "otp",
  label: "Email or SMS code",
  input: "code",
  screen: { code: { inputMode: "numeric", autocomplete: "one-time-code", maxLength: 12 }, resend: true },
  messages: {
    en: {
      "label.email": "Code by email",
      "label.phoneNumber": "Code by text message",
      "title.email": "Check your email",
      "title.phoneNumber": "Check your phone",
      hint: "Enter the code we sent to {destination}.",
      field: "Code",
    },
    fr: {
      "label.email": "Code par e-mail",
      "label.phoneNumber": "Code par SMS",
      "title.email": "Consultez vos e-mails",
      "title.phoneNumber": "Consultez votre téléphone",
      hint: "Saisissez le code envoyé à {destination}.",
      field: "Code",
    },
    de: {
      "label.email": "Code per E-Mail",
      "label.phoneNumber": "Code per SMS",
      "title.email": "Sehen Sie in Ihre E-Mails",
      "title.phoneNumber": "Sehen Sie auf Ihr Telefon",
      hint: "Geben Sie den Code ein, den wir an {destination} gesendet haben.",
      field: "Code",
    },
  },
  async answer(challenge, ctx) {
    const to = challenge.data.destination;
    return { response: { code: await ctx.code(to ? `Code sent to ${to}` : "Code we sent you", challenge.data) } };
  },
  enrollmentParams(ctx) {
    const { email, phoneNumber } = ctx.options;
    if ((email == null) === (phoneNumber == null)) {
      throw ctx.error("validation_error", "to link an address pass exactly one of email or phoneNumber");
    }
    return email != null ? { email: String(email) } : { phoneNumber: String(phoneNumber) };
  },
  async answerEnrollment(enrollment, ctx) {
    const to = enrollment.data.destination;
    return { response: { code: await ctx.code(to ? `Code sent to ${to}` : "Code we sent you", enrollment.data) } };
  },
};
