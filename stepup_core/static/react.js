// @ts-check
// useStepUpAuthentication(): the React face of stepup.js, with the reference hook's return
// shape. A thin adapter: state comes from stepUp.subscribe through useSyncExternalStore.
import { createContext, createElement, useContext, useMemo, useSyncExternalStore } from "react";

/** @typedef {import("./stepup.d.ts").StepUp} StepUp */
/** @typedef {import("./react.d.ts").StepUpAuthentication} StepUpAuthentication */

const StepUpContext = createContext(/** @type {StepUp | null} */ (null));

/**
 * Makes `stepUp` the client of every useStepUpAuthentication() below it.
 * @param {{stepUp: StepUp, children?: import("react").ReactNode}} props
 */
export function StepUpProvider({ stepUp, children }) {
  return createElement(StepUpContext.Provider, { value: stepUp }, children);
}

/**
 * @param {StepUp} [stepUp] the client; by default the nearest StepUpProvider's
 * @returns {StepUpAuthentication}
 */
export function useStepUpAuthentication(stepUp) {
  const provided = useContext(StepUpContext);
  const client = stepUp ?? provided;
  if (!client) {
    throw new Error(
      "useStepUpAuthentication needs a client: wrap the tree in <StepUpProvider stepUp={createStepUp(...)}> or pass one",
    );
  }
  const snapshot = () => client.state;
  const state = useSyncExternalStore(client.subscribe, snapshot, snapshot);
  return useMemo(
    () => ({
      isStepUpRequired: client.isStepUpRequired,
      checkStepUpAuth: client.checkStepUpAuth,
      promptStepUpAuth: client.promptStepUpAuth,
      promptMfa: client.promptMfa,
      promptReauthenticate: client.promptReauthenticate,
      sendOtp: client.sendOtp,
      verifyOtp: client.verifyOtp,
      verifyWallet: client.verifyWallet,
      verifySocial: client.verifySocial,
      verifyPasskeyMfa: client.verifyPasskeyMfa,
      verifyTotpMfa: client.verifyTotpMfa,
      verifyRecoveryCode: client.verifyRecoveryCode,
      state,
      resetState: client.resetState,
    }),
    [client, state],
  );
}
