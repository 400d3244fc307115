// A wide table or a long line of code in an article scrolls sideways in its own box (its
// words stay whole). Safari's keyboard cannot reach such a box unless it is focusable
// (Chromium and Firefox focus it themselves), so while it overflows and holds nothing
// focusable it joins the tab order; arrow keys then scroll it (WCAG 2.1.1). Progressive
// enhancement: without script the box still scrolls with a pointer.
(function () {
  "use strict";
  var FOCUSABLE = "a[href], button, input, select, textarea, summary, [tabindex]:not([tabindex^=\"-\"])";
  var boxes = document.querySelectorAll(".prose table, .prose pre");
  function update() {
    boxes.forEach(function (box) {
      var reachable = box.scrollWidth > box.clientWidth && !box.querySelector(FOCUSABLE);
      if (reachable) box.setAttribute("tabindex", "0");
      else box.removeAttribute("tabindex");
    });
  }
  if (!boxes.length) return;
  update();
  window.addEventListener("resize", update);
})();
