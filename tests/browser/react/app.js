// The React test page: useStepUpAuthentication() rendered by real React (bundled for the test
// by esbuild from npm). Every render's state is recorded in window.renders.
import { createElement as h } from "react";
import { createRoot } from "react-dom/client";
import { createStepUp } from "../../../stepup_core/static/stepup.js";
import { StepUpProvider, useStepUpAuthentication } from "../../../stepup_core/static/react.js";

window.renders = [];

function Panel() {
  const auth = useStepUpAuthentication();
  window.auth = auth;
  window.renders.push({ isLoading: auth.state.isLoading, error: auth.state.error && auth.state.error.code });
  return h(
    "section",
    null,
    h("output", { id: "loading" }, String(auth.state.isLoading)),
    h("output", { id: "error" }, auth.state.error ? auth.state.error.code : ""),
    h("button", { id: "reset", onClick: () => auth.resetState() }, "Reset"),
  );
}

window.mountApp = (token) => {
  const stepUp = createStepUp({ headers: { Authorization: "Bearer " + token } });
  const root = document.createElement("div");
  document.body.append(root);
  createRoot(root).render(h(StepUpProvider, { stepUp }, h(Panel)));
};
