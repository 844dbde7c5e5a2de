// The dashboard's one script; every page works without it.
// 1. Shows every <time datetime="…Z"> in the viewer's own time zone; the UTC text stays in `title`.
// 2. Reveals the copy buttons (hidden without a script) and copies what `data-copy` points at.
"use strict";
document.querySelectorAll("time[datetime]").forEach(function (el) {
  var d = new Date(el.getAttribute("datetime"));
  if (isNaN(d.getTime())) return;
  el.title = el.getAttribute("datetime") + " (" + el.title + ")";
  el.textContent = d.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
  });
});
function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
  // Plain HTTP on a non-local address: the Clipboard API is unavailable there.
  var area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "absolute";
  area.style.left = "-9999px";
  document.body.appendChild(area);
  area.select();
  var ok = document.execCommand("copy");
  document.body.removeChild(area);
  return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
}
document.querySelectorAll("button[data-copy]").forEach(function (button) {
  button.hidden = false;
  var label = button.textContent;
  button.addEventListener("click", function () {
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var text = "value" in source && source.tagName !== "BUTTON" ? source.value : source.textContent;
    copyText(text).then(function () {
      button.textContent = "Copied";
      button.setAttribute("data-copied", "true");
    }, function () {
      button.textContent = "Copy failed: select and copy by hand";
      button.setAttribute("data-copied", "false");
    });
    setTimeout(function () { button.textContent = label; }, 2000);
  });
});
