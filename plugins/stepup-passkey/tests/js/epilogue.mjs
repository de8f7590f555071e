// After the documentation's example: use its other function too.
const link = await stepUpWithPasskey("credential:link");
const second = await registerPasskey("Second key", link);
if (second.alias !== "Second key" || second.method !== "passkey") {
  throw new Error("unexpected credential " + JSON.stringify(second));
}
console.log("browser example ok");
