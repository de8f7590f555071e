// Types of react.js: useStepUpAuthentication() over a stepup.js client.
import type { ReactElement, ReactNode } from "react";
import type { StepUp, StepUpState } from "./stepup.d.ts";

/** The reference hook's return shape. */
export interface StepUpAuthentication {
  isStepUpRequired: StepUp["isStepUpRequired"];
  checkStepUpAuth: StepUp["checkStepUpAuth"];
  promptStepUpAuth: StepUp["promptStepUpAuth"];
  promptMfa: StepUp["promptMfa"];
  promptReauthenticate: StepUp["promptReauthenticate"];
  sendOtp: StepUp["sendOtp"];
  verifyOtp: StepUp["verifyOtp"];
  verifyWallet: StepUp["verifyWallet"];
  verifySocial: StepUp["verifySocial"];
  verifyPasskeyMfa: StepUp["verifyPasskeyMfa"];
  verifyTotpMfa: StepUp["verifyTotpMfa"];
  verifyRecoveryCode: StepUp["verifyRecoveryCode"];
  state: StepUpState;
  resetState: StepUp["resetState"];
}

export function StepUpProvider(props: { stepUp: StepUp; children?: ReactNode }): ReactElement;

export function useStepUpAuthentication(stepUp?: StepUp): StepUpAuthentication;
