// Live length hint for new-password fields (progressive enhancement; the server checks
// everything again). Loaded as a self-hosted file so the CSP needs no inline script.
(function () {
  "use strict";
  var MIN = 12, MAX = 128;
  function describe(value) {
    var n = Array.from(value.normalize("NFKC")).length;
    if (n === 0) return "";
    if (n < MIN) return n + " characters: " + (MIN - n) + " more needed.";
    if (n > MAX) return n + " characters: " + (n - MAX) + " too many.";
    if (n < 16) return n + " characters: long enough. A few more words make it much stronger.";
    return n + " characters: a good length. Common passwords are still refused.";
  }
  document.querySelectorAll("input[data-password-hint]").forEach(function (input) {
    var out = document.createElement("p");
    out.className = "hint password-hint";
    out.setAttribute("aria-live", "polite");
    out.id = input.id + "-live";
    input.insertAdjacentElement("afterend", out);
    // Also a description, so the count is read again when the field gets focus back.
    var described = input.getAttribute("aria-describedby");
    input.setAttribute("aria-describedby", (described ? described + " " : "") + out.id);
    input.addEventListener("input", function () { out.textContent = describe(input.value); });
  });
})();
