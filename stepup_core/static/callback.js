// @ts-check
// The script of the redirect callback page (GET {prefix}/callback/{method}): when this window
// was opened by a page, tell that page the sign-in finished. The message goes only to the
// origins the server lists (this page's own and [server] cors_origins): postMessage delivers it
// only when the opener's origin is exactly one of them. It carries no token: the opener polls
// its challenge for the grant.
(() => {
  const script = document.currentScript;
  const opener = window.opener;
  if (!(script instanceof HTMLScriptElement) || !opener) return;
  /** @type {unknown} */
  let listed = [];
  try {
    listed = JSON.parse(script.dataset.targets || "[]");
  } catch {
    listed = [];
  }
  const targets = new Set([location.origin, ...(Array.isArray(listed) ? listed.map(String) : [])]);
  const message = { type: "stepup:callback", method: script.dataset.method || "" };
  for (const origin of targets) {
    try {
      opener.postMessage(message, origin);
    } catch {
      // a malformed origin in the list: skip it
    }
  }
})();
