// What Back shows on a shared computer, the server cannot decide alone: a history
// navigation may show a page without asking the server, and Chromium keeps typed values.
// - A page rendered for a signed-in user (this script loaded with data-session-check):
//   Chromium keeps even "Cache-Control: no-store" pages in its back/forward cache and
//   shows them again on Back as long as no cookie changed. Sign-out changes the cookie,
//   but "sign out everywhere" on another device, an admin's sign-out or an ended session
//   do not: Back would show the account page, an admin page or the editor with its unsent
//   text to whoever sits down next. So a page restored from that cache stays hidden until
//   the server says the session is still live (the session check answers 204; 401 when
//   it ended); otherwise it is loaded again, and the server sends sign-in. The check
//   renders no page, so a message waiting for the next page stays for it.
//   A live session sees its page as it left it, unsent text included.
// - form[data-forget-on-back] (sign-in, registration, reset): Chromium fills in again on
//   Back what was typed (not passwords), so the next person at the computer would find the
//   last one's username or email address; the form goes back to what the server sent.
(function () {
  "use strict";
  var script = document.currentScript;
  var check = script && script.getAttribute("data-session-check");
  var root = document.documentElement;

  function forgetTyped() {
    document.querySelectorAll("form[data-forget-on-back]").forEach(function (form) {
      form.reset();
    });
  }

  function loadAgain() {
    // Without its fragment: replacing with the same URL and a "#part" would only scroll.
    window.location.replace(window.location.href.split("#")[0]);
  }

  var entry = window.performance && performance.getEntriesByType ?
    performance.getEntriesByType("navigation")[0] : null;
  var fromHistory = Boolean(entry && entry.type === "back_forward");

  window.addEventListener("pageshow", function (event) {
    // Chromium fills a form in again after "load", before "pageshow": reset here.
    if (fromHistory || event.persisted) forgetTyped();
    if (!event.persisted || !check) return;
    root.hidden = true;
    fetch(check, {redirect: "manual", cache: "no-store", credentials: "same-origin"})
      .then(function (response) {
        if (response.status === 204) root.hidden = false; else loadAgain();
      }, loadAgain);
  });
})();
