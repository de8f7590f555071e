// @ts-check
// The browser half of `otp`: a code sent by email or SMS, typed by the person.
// Enrolment links an address: enroll({method: "otp", email}) or ({method: "otp", phoneNumber});
// the server sends a code there and the person types it.

/** @type {import("stepup-browser").MethodModule} */
export default {
  name: "otp",
  label: "Email or SMS code",
  input: "code",
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
