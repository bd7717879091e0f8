// The compare page: one `compare` frame over the chat WebSocket, then a column per
// reply, each following its own message_id (docs/api.md "Compare").
(function () {
  "use strict";
  var form = document.getElementById("cmp-form");
  if (!form) return;
  var columns = document.getElementById("cmp-columns");
  var status = document.getElementById("cmp-status");
  var go = document.getElementById("cmp-go");
  var socket = null;
  var byId = {};

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function duration(ms) { return ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(1) + " s"; }
  function money(cost) { var n = Number(cost); return n ? "$" + n.toFixed(6).replace(/0+$/, "") : "$0"; }

  form.querySelectorAll("select[name=provider]").forEach(function (select) {
    function fill() {
      var option = select.selectedOptions[0];
      select.closest(".cmp-target").querySelector("input[name=model]").value = option && option.dataset.model || "";
    }
    select.addEventListener("change", fill);
    fill();
  });

  function targets() {
    var found = [];
    form.querySelectorAll(".cmp-target").forEach(function (row) {
      var provider = row.querySelector("select").value;
      var model = row.querySelector("input").value.trim();
      if (provider || model) found.push({ provider: provider || null, model: model || null });
    });
    return found;
  }

  function column(title) {
    var col = el("section", "cmp-column card");
    var head = el("header", "cmp-head");
    head.appendChild(el("h2", null, title));
    var stop = el("button", "link", "Stop");
    stop.type = "button";
    head.appendChild(stop);
    col.appendChild(head);
    var body = el("div", "cmp-body md streaming", "…");
    col.appendChild(body);
    var stats = el("p", "cmp-stats muted");
    col.appendChild(stats);
    columns.appendChild(col);
    return { col: col, body: body, stats: stats, stop: stop, text: null, started: performance.now() };
  }

  function connect(then) {
    if (socket && socket.readyState === WebSocket.OPEN) { then(); return; }
    socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/chat/");
    socket.onopen = then;
    socket.onmessage = function (e) { handle(JSON.parse(e.data)); };
    socket.onclose = function () { status.textContent = "Disconnected: the replies go on; reload to see them."; };
  }

  function handle(frame) {
    if (frame.type === "start") {
      var c = column(frame.provider + "/" + frame.model);
      c.conversation = frame.conversation_id;
      c.stop.addEventListener("click", function () {
        socket.send(JSON.stringify({ type: "stop", message_id: frame.message_id }));
      });
      byId[frame.message_id] = c;
      return;
    }
    if (frame.type === "error" && !frame.message_id) {
      // A column that could not start (not set up, a refusal), or the whole compare.
      var who = frame.target ? [frame.target.provider, frame.target.model].filter(Boolean).join("/") : "Compare";
      var failed = column(who);
      failed.stop.remove();
      failed.body.classList.remove("streaming");
      failed.body.textContent = frame.error.message;
      failed.col.classList.add("cmp-failed");
      return;
    }
    var c2 = byId[frame.message_id];
    if (!c2) return;
    if (frame.type === "delta") {
      if (c2.text === null) { c2.body.textContent = ""; c2.text = c2.body.appendChild(document.createTextNode("")); }
      c2.text.appendData(frame.text);
      if (!c2.ttft) c2.ttft = performance.now() - c2.started;
    } else if (frame.type === "waiting") {
      if (c2.text === null) c2.body.textContent = frame.ahead ? "waiting: " + frame.ahead + " ahead" : "waiting: next";
    } else if (frame.type === "done" || frame.type === "error") {
      finish(c2, frame);
    }
  }

  function finish(c, frame) {
    c.body.classList.remove("streaming");
    c.stop.remove();
    if (frame.type === "error") {
      c.col.classList.add("cmp-failed");
      c.body.appendChild(el("p", "msg-notice", frame.error.message));
    } else if (frame.html) {
      c.body.innerHTML = frame.html;  // markdown rendered and sanitized (nh3) on the server
    }
    if (frame.type === "done") {
      var usage = frame.usage || {};
      var who = frame.answered_by || {};
      if (frame.attempts && frame.attempts.length) {
        c.col.querySelector("h2").textContent = who.provider + "/" + who.model + " (fallback)";
      }
      c.stats.textContent = [
        (usage.input_tokens || 0) + " in · " + (usage.output_tokens || 0) + " out",
        money(frame.cost),
        "first token " + (frame.ttft_ms != null ? duration(frame.ttft_ms) : "—"),
        "total " + duration(frame.latency_ms || 0),
        frame.status === "stopped" ? "stopped" : ""
      ].filter(Boolean).join(" · ");
      var keep = el("button", "", "Continue with this one");
      keep.type = "button";
      keep.setAttribute("data-cw-open", String(c.conversation));  // the widget opens it
      c.col.appendChild(keep);
    }
    if (!columns.querySelector(".cmp-body.streaming")) { go.disabled = false; status.textContent = "Done."; }
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = document.getElementById("cmp-text").value;
    var wanted = targets();
    if (!text.trim()) { status.textContent = "Type a message to compare the models on."; return; }
    if (wanted.length < 2) { status.textContent = "Pick at least two models."; return; }
    columns.textContent = "";
    byId = {};
    go.disabled = true;
    status.textContent = "Asking " + wanted.length + " models…";
    connect(function () {
      socket.send(JSON.stringify({ type: "compare", text: text, targets: wanted, client_message_id: crypto.randomUUID ? crypto.randomUUID() : null }));
    });
  });
})();
