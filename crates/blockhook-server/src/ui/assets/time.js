// Shows every <time datetime="…Z"> in the viewer's own time zone; the UTC text stays in `title`.
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
