// durabus console: periodic refresh of a page's content, topic search,
// requeue buttons and the live tail. Plain JavaScript, no library.
"use strict";
(function () {
  var content = document.getElementById("content");
  var flash = document.getElementById("flash");
  var REFRESH_MS = 2000;

  function say(msg, bad) {
    flash.textContent = msg;
    flash.className = bad ? "bad" : "good";
  }

  // --- refresh: reload #content from data-refresh, keeping open details
  // and the search box as they are.
  var refreshing = false;
  function refresh() {
    var url = content.getAttribute("data-refresh");
    if (!url || refreshing || document.hidden) return;
    refreshing = true;
    var q = document.getElementById("q");
    if (q) url = withParam(url, "q", q.value);
    fetch(url, {credentials: "same-origin", cache: "no-store"}).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.text();
    }).then(function (html) {
      var open = {};
      content.querySelectorAll("details[open]").forEach(function (d) { open[d.id] = true; });
      var focused = document.activeElement && document.activeElement.id;
      var tmp = document.createElement("div");
      tmp.innerHTML = html;
      var newQ = tmp.querySelector("#q");
      if (q && newQ) { newQ.replaceWith(q); }
      content.replaceChildren.apply(content, Array.prototype.slice.call(tmp.childNodes));
      content.querySelectorAll("details").forEach(function (d) { if (open[d.id]) d.open = true; });
      if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
      filterRows();
      content.setAttribute("data-updated", String(Date.now()));
    }).catch(function (e) {
      say("Could not refresh: " + e.message + " (retrying)", true);
    }).finally(function () { refreshing = false; });
  }
  function withParam(url, k, v) {
    var u = new URL(url, location.href);
    if (v) u.searchParams.set(k, v); else u.searchParams.delete(k);
    return u.pathname.replace(/^.*\//, "") + "?" + u.searchParams.toString();
  }
  if (content.getAttribute("data-refresh")) setInterval(refresh, REFRESH_MS);

  // --- search on the topics page: filter rows at once, keep it in the URL.
  function globToRe(g) {
    return new RegExp("^" + g.replace(/[.+^${}()|\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$");
  }
  function filterRows() {
    var q = document.getElementById("q");
    if (!q) return;
    var v = q.value.trim(), re = null;
    if (/[*?[]/.test(v)) { try { re = globToRe(v); } catch (e) { re = null; } }
    content.querySelectorAll("tr[data-name]").forEach(function (tr) {
      var n = tr.getAttribute("data-name");
      tr.hidden = v !== "" && !(re ? re.test(n) : n.toLowerCase().indexOf(v.toLowerCase()) >= 0);
    });
  }
  content.addEventListener("input", function (e) {
    if (e.target.id !== "q") return;
    filterRows();
    var u = new URL(location.href);
    if (e.target.value) u.searchParams.set("q", e.target.value); else u.searchParams.delete("q");
    history.replaceState(null, "", u);
  });

  // --- the dead-letter topic chooser reloads the page.
  content.addEventListener("change", function (e) {
    if (e.target.id === "dead-topic") e.target.form.submit();
  });

  // --- requeue buttons: POST, then show the answer and refresh.
  content.addEventListener("click", function (e) {
    var b = e.target.closest("button[data-requeue]");
    if (!b) return;
    b.disabled = true;
    var body = new URLSearchParams({topic: b.getAttribute("data-requeue"), limit: b.getAttribute("data-limit")});
    fetch("api/requeue", {method: "POST", body: body, credentials: "same-origin",
      headers: {"X-Durabus-Console": "1"}}).then(function (r) {
      return r.json().then(function (j) { return {ok: r.ok, status: r.status, j: j}; });
    }).then(function (a) {
      say((a.ok ? "" : "Refused (" + a.status + "): ") + a.j.message, !a.ok);
      b.disabled = false;
      refresh();
    }).catch(function (err) {
      say("Requeue failed: " + err.message, true);
      b.disabled = false;
    });
  });

  // --- live tail over Server-Sent Events.
  var form = document.getElementById("tail-form");
  if (!form) return;
  var rows = document.getElementById("tail-rows");
  var status = document.getElementById("tail-status");
  var fromSel = document.getElementById("tail-from");
  var timeLabel = document.getElementById("tail-time-label");
  var timeIn = document.getElementById("tail-time");
  var stopBtn = document.getElementById("tail-stop");
  var pauseBtn = document.getElementById("tail-pause");
  var MAX_ROWS = 300;
  var es = null, pending = [], drawn = 0, total = 0, skipped = 0, paused = false, scheduled = false;
  var rateWin = [], startedAt = 0, desc = "";

  fromSel.addEventListener("change", function () {
    timeLabel.hidden = fromSel.value !== "time";
    if (fromSel.value === "time" && !timeIn.value) {
      var d = new Date(Date.now() - 5 * 60000);
      d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
      timeIn.value = d.toISOString().slice(0, 19);
    }
  });
  function since() {
    var v = fromSel.value;
    if (v !== "time") return v;
    var d = new Date(timeIn.value); // local time of the browser
    return isNaN(d) ? "new" : d.toISOString();
  }
  function stop(msg) {
    if (es) { es.close(); es = null; }
    stopBtn.disabled = true; pauseBtn.disabled = true;
    if (msg) status.textContent = msg;
  }
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    stop();
    rows.replaceChildren();
    pending = []; drawn = 0; total = 0; skipped = 0; rateWin = []; paused = false;
    pauseBtn.textContent = "Pause";
    var pattern = document.getElementById("tail-pattern").value.trim();
    var url = "api/tail?pattern=" + encodeURIComponent(pattern) + "&since=" + encodeURIComponent(since());
    var u = new URL(location.href); u.searchParams.set("pattern", pattern); history.replaceState(null, "", u);
    status.textContent = "Connecting…";
    startedAt = Date.now();
    es = new EventSource(url);
    stopBtn.disabled = false; pauseBtn.disabled = false;
    es.addEventListener("ready", function (ev) {
      var r = JSON.parse(ev.data);
      desc = r.pattern + ", " + r.start;
      showStatus();
    });
    es.addEventListener("batch", function (ev) {
      var b = JSON.parse(ev.data);
      total = b.total; skipped += b.skipped;
      rateWin.push([Date.now(), b.total]);
      while (rateWin.length > 2 && Date.now() - rateWin[0][0] > 5000) rateWin.shift();
      if (!paused) {
        Array.prototype.push.apply(pending, b.events);
        if (pending.length > MAX_ROWS) { skipped += pending.length - MAX_ROWS; pending = pending.slice(-MAX_ROWS); }
      } else {
        skipped += b.events.length;
      }
      (b.notices || []).forEach(function (n) { say("Tail: " + n, true); });
      if (b.ended) stop("The tail ended: " + (b.notices || []).join("; "));
      schedule();
    });
    es.onerror = function () {
      if (es && es.readyState === EventSource.CLOSED) stop("The connection to the console closed (see the message above, or reload).");
      else status.textContent = "Connection lost; reconnecting (the tail starts again from the chosen point)…";
    };
  });
  stopBtn.addEventListener("click", function () { stop("Stopped after " + total + " events."); });
  pauseBtn.addEventListener("click", function () {
    paused = !paused;
    pauseBtn.textContent = paused ? "Resume" : "Pause";
    showStatus();
  });

  function schedule() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(draw);
  }
  // draw renders what arrived since the last frame in one go.
  function draw() {
    scheduled = false;
    if (pending.length) {
      var frag = document.createDocumentFragment();
      for (var i = pending.length - 1; i >= 0; i--) frag.appendChild(row(pending[i]));
      rows.insertBefore(frag, rows.firstChild);
      drawn += pending.length;
      pending = [];
      while (rows.childElementCount > MAX_ROWS) rows.removeChild(rows.lastChild);
    }
    showStatus();
  }
  function showStatus() {
    var rate = 0;
    if (rateWin.length > 1) {
      var a = rateWin[0], b = rateWin[rateWin.length - 1];
      if (b[0] > a[0]) rate = (b[1] - a[1]) * 1000 / (b[0] - a[0]);
    }
    status.textContent = (paused ? "Paused (counting goes on). " : "") + "Tailing " + desc + ": " + total +
      " event(s) received, " + rate.toFixed(0) + "/s; " + drawn + " drawn, " + skipped +
      " not drawn (sampled)" + ".";
    status.setAttribute("data-total", String(total));
  }
  function cell(label, text, cls) {
    var td = document.createElement("td");
    td.setAttribute("data-label", label);
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }
  function row(e) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-id", e.id);
    tr.appendChild(cell("Time", e.time.replace("T", " ").slice(0, 23)));
    tr.appendChild(cell("Topic", e.topic));
    tr.appendChild(cell("Seq", e.seq + (e.replayed ? " ↺" : ""), "num"));
    tr.appendChild(cell("Type", e.type));
    tr.appendChild(cell("Id", e.id, "mono"));
    tr.appendChild(cell("Data", e.data, "mono wrap"));
    return tr;
  }
  var p0 = new URL(location.href).searchParams.get("pattern");
  if (p0 && new URL(location.href).searchParams.get("start") === "1") form.requestSubmit();
})();
