// A browser that still holds a session (a link followed from another site does not send
// a SameSite=Strict cookie, this page's own request does) goes straight to the dashboard.
"use strict";
fetch("/ui/session", {credentials: "same-origin"}).then((r) => {
  if (r.ok && !document.getElementById("login-error").textContent.trim()) {
    location.replace("/ui/");
  }
}).catch(() => {});
