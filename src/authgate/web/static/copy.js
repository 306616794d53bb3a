// Progressive enhancement: a "Copy" button next to a value shown once. Without JavaScript the
// value stays selectable in its read-only field. Served from /static, as the CSP requires.
"use strict";
document.querySelectorAll("button[data-copy]").forEach(function (button) {
  var field = document.getElementById(button.getAttribute("data-copy"));
  var status = document.querySelector('[data-copy-status="' + button.getAttribute("data-copy") + '"]');
  if (!field) return;
  button.hidden = false;
  button.addEventListener("click", function () {
    var done = function (ok) {
      if (status) status.textContent = ok ? "Copied to the clipboard." : "Select the text and copy it by hand.";
    };
    field.select();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(function () { done(true); }, function () { done(false); });
    } else {
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      done(ok);
    }
  });
});
