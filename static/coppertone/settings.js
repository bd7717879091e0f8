// Settings page niceties htmx cannot do: show/hide a key, the temperature slider, copy a token.
// Everything works without this file; it only adds conveniences.
(function () {
  "use strict";

  function enhance(root) {
    root.querySelectorAll("[data-toggle-secret]").forEach(function (button) {
      button.hidden = false;
    });
    root.querySelectorAll("[data-slider-for]").forEach(function (slider) {
      var number = document.getElementById(slider.dataset.sliderFor);
      if (!number || slider.dataset.enhanced) return;
      slider.dataset.enhanced = "1";
      slider.hidden = false;
      if (number.value !== "") slider.value = number.value;
      slider.addEventListener("input", function () { number.value = slider.value; });
      number.addEventListener("input", function () { slider.value = number.value; });
    });
    root.querySelectorAll("[data-copy]").forEach(function (button) {
      button.hidden = false;
    });
  }

  document.addEventListener("click", function (event) {
    var toggle = event.target.closest("[data-toggle-secret]");
    if (toggle) {
      var input = document.getElementById(toggle.dataset.toggleSecret);
      var show = input.type === "password";
      input.type = show ? "text" : "password";
      toggle.textContent = show ? "Hide" : "Show";
      toggle.setAttribute("aria-pressed", show ? "true" : "false");
      return;
    }
    var copy = event.target.closest("[data-copy]");
    if (copy) {
      var source = document.getElementById(copy.dataset.copy);
      var done = function () {
        copy.textContent = "Copied";
        setTimeout(function () { copy.textContent = "Copy"; }, 2000);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(source.value || source.textContent).then(done);
      } else {
        source.select();
        document.execCommand("copy");
        done();
      }
    }
  });

  // A new token is selected as soon as it is focused, ready to copy (no inline handler:
  // the Content-Security-Policy forbids them).
  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches("[data-select-on-focus]")) event.target.select();
  });

  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  document.addEventListener("htmx:load", function (event) { enhance(event.detail.elt); });
})();
