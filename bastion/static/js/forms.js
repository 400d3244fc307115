// Two guards for forms (progressive enhancement: without script every form works as
// before, one click and no warning). Self-hosted, so the CSP needs no inline script.
// - form[data-confirm]: asks before a destructive action (delete, disable).
// - form[data-unsaved]: warns before the page is left with typed changes that were not
//   sent; uploading an image reloads the editor, which lost the text being written.
//   A form sent back refused (data-refused: a missing title, an edit conflict) starts
//   changed: what it holds was not saved either.
(function () {
  "use strict";
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });
  var dirty = false;
  document.querySelectorAll("form[data-unsaved]").forEach(function (form) {
    if (form.hasAttribute("data-refused")) dirty = true;
    form.addEventListener("input", function () { dirty = true; });
    form.addEventListener("submit", function () { dirty = false; });
  });
  window.addEventListener("beforeunload", function (event) {
    if (dirty) {
      event.preventDefault();
      event.returnValue = "";  // older browsers show the prompt only when this is set
    }
  });
})();
