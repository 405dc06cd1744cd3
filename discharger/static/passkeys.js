// Passkeys (SPEC §15): the buttons that need the browser's WebAuthn API. Everything else on
// these pages works without JavaScript. Served from this origin (the pages' CSP allows no
// inline script).
"use strict";

async function sablePost(url, body) {
  const resp = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                 body: JSON.stringify(body), credentials: "same-origin"});
  const data = await resp.json().catch(() => ({message: "the server's answer could not be read"}));
  if (!resp.ok) throw new Error(data.message || "that did not work");
  return data;
}

function sableShow(text) {
  const el = document.getElementById("passkey-error");
  if (el) { el.textContent = text; el.hidden = false; }
}

// The browser's own errors in human terms; the server's messages are already.
function sableWords(e) {
  if (e && e.name === "NotAllowedError") {
    return "The passkey was not used: it was cancelled, timed out, or could not verify you. Try again.";
  }
  if (e && e.name === "InvalidStateError") return "This passkey is registered already.";
  if (e && e.name && e.name !== "Error") return "This browser could not use a passkey here.";
  return (e && e.message) || "That did not work; try again.";
}

async function sableSignIn(button) {
  const csrf = button.dataset.csrf, second = button.dataset.second === "1";
  const options = await sablePost("/login/passkey/options", {csrf});
  const credential = await navigator.credentials.get(
    {publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options)});
  const done = await sablePost("/login/passkey", {csrf, second, next: button.dataset.next,
                                                  credential: credential.toJSON()});
  window.location.assign(done.next);
}

async function sableAdd(button) {
  const csrf = button.dataset.csrf, password = document.getElementById("passkey-password").value;
  const options = await sablePost("/account/security/passkey/options", {csrf, password});
  const credential = await navigator.credentials.create(
    {publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options)});
  await sablePost("/account/security/passkey", {csrf, credential: credential.toJSON()});
  window.location.assign("/account/security?added=passkey");
}

document.addEventListener("DOMContentLoaded", () => {
  for (const [id, run] of [["passkey-sign-in", sableSignIn], ["add-passkey", sableAdd]]) {
    const button = document.getElementById(id);
    if (!button) continue;
    if (!window.PublicKeyCredential) { button.disabled = true; continue; }
    button.hidden = false;
    button.addEventListener("click", (ev) => {
      ev.preventDefault();
      run(button).catch((e) => sableShow(sableWords(e)));
    });
  }
});
