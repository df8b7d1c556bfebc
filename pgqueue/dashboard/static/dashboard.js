// pgqueue dashboard: live queue counts and the hour's charts (overview and queue pages).
// Polls the JSON endpoint named by #queues[data-api] every 2 s. Every value goes into the
// page through textContent (never innerHTML): job data cannot inject markup.
(function () {
  "use strict";
  var table = document.getElementById("queues");
  if (!table || !table.dataset.api) { return; }
  var api = table.dataset.api;
  var charts = {};

  function ago(seconds) {
    if (seconds === null || seconds === undefined) { return "-"; }
    var s = Math.floor(seconds);
    if (s < 60) { return s + "s"; }
    if (s < 3600) { return Math.floor(s / 60) + "m " + (s % 60) + "s"; }
    if (s < 86400) { return Math.floor(s / 3600) + "h " + Math.floor(s % 3600 / 60) + "m"; }
    return Math.floor(s / 86400) + "d " + Math.floor(s % 86400 / 3600) + "h";
  }

  function cellText(q, field) {
    if (field === "oldest") { return ago(q.oldest_queued_age_seconds); }
    if (field === "paused") { return q.paused ? "paused" : ""; }
    if (field === "limits") { return q.limits; }
    return String(q[field]);
  }

  function updateTable(queues) {
    var body = table.tBodies[0];
    var rows = {};
    Array.prototype.forEach.call(body.rows, function (tr) {
      if (tr.dataset.queue !== undefined) { rows[tr.dataset.queue] = tr; }
    });
    var fields = Array.prototype.map.call(
      table.querySelectorAll("tbody tr[data-queue]:first-child td[data-field]"),
      function (td) { return td.dataset.field; });
    queues.forEach(function (q) {
      var tr = rows[q.queue];
      if (!tr) {
        if (!table.dataset.queueUrl) { return; }  // a one-queue page
        tr = document.createElement("tr");
        tr.dataset.queue = q.queue;
        var name = document.createElement("td");
        var link = document.createElement("a");
        link.href = table.dataset.queueUrl + encodeURIComponent(q.queue);
        link.textContent = q.queue;
        name.appendChild(link);
        tr.appendChild(name);
        (fields.length ? fields : ["queued", "running", "failed"]).forEach(function (f) {
          var td = document.createElement("td");
          td.dataset.field = f;
          tr.appendChild(td);
        });
        var empty = body.querySelector("tr.empty");
        if (empty) { empty.remove(); }
        body.appendChild(tr);
      }
      tr.querySelectorAll("td[data-field]").forEach(function (td) {
        td.textContent = cellText(q, td.dataset.field);
      });
    });
  }

  function chart(id, label, series, data) {
    var el = document.getElementById(id);
    if (!el || typeof uPlot === "undefined") { return; }
    if (charts[id]) { charts[id].setData(data); return; }
    var opts = {
      width: Math.max(320, Math.min(640, el.clientWidth || 520)), height: 220,
      series: [{}].concat(series),
      axes: [{}, { label: label }],
      scales: { x: { time: true } }
    };
    charts[id] = new uPlot(opts, data, el);
  }

  function updateCharts(history) {
    var xs = history.map(function (r) { return Date.parse(r.minute) / 1000; });
    chart("chart-throughput", "jobs / min", [
      { label: "succeeded", stroke: "#2a7", width: 2 },
      { label: "failed", stroke: "#c33", width: 2 }
    ], [xs, history.map(function (r) { return r.succeeded; }),
        history.map(function (r) { return r.failed; })]);
    chart("chart-wait", "seconds", [{ label: "mean wait", stroke: "#36c", width: 2,
                                      points: { show: true, size: 5 } }],
      [xs, history.map(function (r) { return r.wait_seconds; })]);
  }

  function poll() {
    fetch(api, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (body) {
        updateTable(body.queues);
        updateCharts(body.history);
        var count = document.getElementById("worker-count");
        if (count) { count.textContent = String(body.workers); }
        var updated = document.getElementById("updated");
        if (updated) { updated.textContent = new Date().toLocaleTimeString(); }
        document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
      })
      .catch(function (err) {
        var updated = document.getElementById("updated");
        if (updated) { updated.textContent = "failed (" + err + "), retrying"; }
      })
      .finally(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
