// Shows why the last sign-in was refused.
"use strict";
const why = new URLSearchParams(location.search).get("error");
if (why) {
  const el = document.getElementById("error");
  el.textContent = why === "wait" ? "Too many attempts. Wait a minute and try again." : "That secret is not right.";
  el.hidden = false;
}
