// jobyard dashboard: local times, time zone of forms, charts. Pages work without it.
(function () {
  "use strict";
  function localTimes(root) {
    (root || document).querySelectorAll("time[datetime]").forEach(function (el) {
      if (el.dataset.local) return;
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) return;
      var opts = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" };
      if (d.getFullYear() !== new Date().getFullYear()) opts.year = "numeric";
      el.textContent = d.toLocaleString(undefined, opts);
      el.dataset.local = "1";
    });
  }
  function tzOffsets() {
    var m = -new Date().getTimezoneOffset(), s = m >= 0 ? "+" : "-", a = Math.abs(m);
    var off = s + String(Math.floor(a / 60)).padStart(2, "0") + ":" + String(a % 60).padStart(2, "0");
    document.querySelectorAll("input.tz-offset").forEach(function (el) { el.value = off; });
  }
  function charts() {
    document.querySelectorAll("[data-chart=job-resources]").forEach(function (el) {
      if (!window.uPlot || el.dataset.drawn) return;
      var raw = JSON.parse(document.getElementById("job-resources-data").textContent);
      el.dataset.drawn = "1";
      var w = Math.max(280, el.clientWidth - 10);
      new uPlot({ width: w, height: 220, series: [{}, { label: "CPU %", stroke: "#1f5fbf" }, { label: "Memory MiB", stroke: "#16794c", scale: "mb" }],
        axes: [{}, { label: "CPU %" }, { side: 1, scale: "mb", label: "MiB", grid: { show: false } }] },
        [raw.at, raw.cpu, raw.rss.map(function (b) { return b == null ? null : b / 1048576; })], el);
    });
    document.querySelectorAll("[data-chart=series]").forEach(function (el) {
      if (!window.uPlot || el.dataset.drawn) return;
      var raw = JSON.parse(document.getElementById(el.dataset.source).textContent);
      el.dataset.drawn = "1";
      var w = Math.max(280, el.clientWidth - 10);
      new uPlot({ width: w, height: 200, series: [{}, { label: el.dataset.label, stroke: "#1f5fbf", fill: "rgba(31,95,191,0.1)" }] },
        [raw.at, raw.values], el);
    });
  }
  // keep the log at its end while it grows, unless the reader scrolled up
  var pinned = true;
  function follow() {
    var log = document.getElementById("log");
    if (log && pinned) log.scrollTop = log.scrollHeight;
  }
  document.addEventListener("DOMContentLoaded", function () {
    localTimes(); tzOffsets(); charts();
    var log = document.getElementById("log");
    if (log) {
      log.scrollTop = log.scrollHeight;
      log.addEventListener("scroll", function () {
        pinned = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
      });
    }
  });
  // forms that ask first (without JavaScript they submit at once)
  document.addEventListener("submit", function (ev) {
    var msg = ev.target.getAttribute && ev.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) ev.preventDefault();
  });
  // the live parts' connection, for a reader (and the tests): body[data-live=open]
  document.addEventListener("htmx:sseOpen", function () { document.body.dataset.live = "open"; });
  document.addEventListener("htmx:sseError", function () { document.body.dataset.live = "error"; });
  document.addEventListener("htmx:afterSwap", function (ev) { localTimes(ev.target); });
  document.addEventListener("htmx:sseMessage", function () { localTimes(); follow(); });
})();
