/* Coppertone's floating chat. Talks to /ws/chat/ with the frames in API.md.
   Live tokens are appended as text nodes, never parsed as HTML; only the server's
   sanitized render of a finished reply is inserted as HTML. Panels that are plain
   HTML (model picker, conversation list, history) are htmx partials. */
(function () {
  "use strict";

  var root = document.getElementById("cw");
  if (!root) return;

  function $(id) { return document.getElementById(id); }
  var launcher = $("cw-launcher"), panel = $("cw-panel"), log = $("cw-log"), form = $("cw-form"),
      input = $("cw-input"), sendBtn = $("cw-send"), titleEl = $("cw-title"), connEl = $("cw-conn"),
      historyEl = $("cw-history"), pickerEl = $("cw-picker"), announceEl = $("cw-announce"),
      historyBtn = root.querySelector('[data-cw="history"]'), newBtn = root.querySelector('[data-cw="new"]');

  var STORE_KEY = "coppertone.chat." + root.dataset.user;
  var saved = load();
  var state = {
    conversationId: saved.conversationId || null,
    socket: null,
    attempts: 0,
    reconnectTimer: null,
    started: false,      // the panel has been opened once on this page
    reply: null,         // the reply that is streaming: {li, body, text, messageId, seq, userLi, userText, clientId, gotStart}
    attachOnOpen: false  // the socket dropped (or is not open yet) while a reply streams
  };

  // --- extensions (widget-attach.js) join in through these calls, each optional:
  // prepare(frame) adds fields to a send frame, or returns words that hold it back;
  // shown(userLi, frame) adds to the person's message in the log; started(frame) hears
  // that reply begin; refused(error, frame) a refusal before it began (true: handled
  // there, so the message leaves the log and its text goes back in the box).
  var extensions = [];
  window.Coppertone = window.Coppertone || {};
  window.Coppertone.chat = { extend: function (extension) { extensions.push(extension); } };
  function tell(name) {
    var args = Array.prototype.slice.call(arguments, 1), answer;
    extensions.forEach(function (extension) {
      if (typeof extension[name] === "function") answer = extension[name].apply(null, args) || answer;
    });
    return answer;
  }

  // --- persistence: which conversation and model, and whether the panel was open ---
  function load() {
    try { return JSON.parse(localStorage.getItem(STORE_KEY) || "{}") || {}; } catch (e) { return {}; }
  }
  function save() {
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify({
        conversationId: state.conversationId, open: !panel.hidden,
        provider: saved.provider, model: saved.model, preset: saved.preset
      }));
    } catch (e) { /* private mode: nothing to keep */ }
  }

  function announce(text) {
    announceEl.textContent = "";
    // A fresh text node after a tick makes screen readers read repeated words too.
    setTimeout(function () { announceEl.textContent = text; }, 30);
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 15) | 64; b[8] = (b[8] & 63) | 128;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = text;
    return node;
  }

  function nearBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 80; }
  function toBottom() { log.scrollTop = log.scrollHeight; }

  // --- opening and closing ---
  function openPanel(conversation) {
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    if (!state.started) {
      state.started = true;
      loadPicker();
      connect();
      if (conversation === undefined && state.conversationId) conversation = state.conversationId;
    }
    if (conversation === "new") newConversation();
    else if (conversation) openConversation(conversation);
    save();
    input.focus();
  }
  function closePanel() {
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    save();
    launcher.focus();
  }
  launcher.addEventListener("click", function () { panel.hidden ? openPanel() : closePanel(); });
  root.querySelector('[data-cw="close"]').addEventListener("click", closePanel);
  panel.addEventListener("keydown", function (e) {
    if (e.key !== "Escape") return;
    if (!historyEl.hidden) { toggleHistory(false); historyBtn.focus(); } else closePanel();
  });
  // Buttons anywhere on the page open the chat: data-cw-open="new" or a conversation id.
  document.addEventListener("click", function (e) {
    var opener = e.target.closest("[data-cw-open]");
    if (!opener) return;
    e.preventDefault();
    var which = opener.getAttribute("data-cw-open");
    openPanel(which === "new" ? "new" : Number(which));
  });

  // --- the model picker (an htmx partial) ---
  // Each panel is its own htmx source: htmx drops a request from a source that has one
  // in flight, so two panels loading at once must not share one (the default is <body>).
  function loadPicker() {
    htmx.ajax("GET", root.dataset.pickerUrl, { source: pickerEl, target: pickerEl, swap: "innerHTML" }).then(initPicker);
  }
  function initPicker() {
    var select = $("cw-provider");
    if (!select) return;
    if (saved.provider && select.querySelector('option[value="' + CSS.escape(saved.provider) + '"]')) {
      select.value = saved.provider;
    }
    fillModels(saved.provider === select.value ? saved.model : null);
    select.addEventListener("change", function () { fillModels(null); remember(); });
    $("cw-model").addEventListener("change", remember);
    initPreset();
  }
  function fillModels(model) {
    var option = $("cw-provider").selectedOptions[0];
    var list = $("cw-models");
    list.textContent = "";
    (option.dataset.models || "").split("|").forEach(function (name) {
      if (name) list.appendChild(el("option")).value = name;
    });
    $("cw-model").value = model || option.dataset.model || "";
  }
  function remember() {
    saved.provider = $("cw-provider").value;
    saved.model = $("cw-model").value.trim();
    save();
  }
  function choice() {
    var select = $("cw-provider"), model = $("cw-model");
    var preset = presetChoice();
    // A preset decides the provider and model: sending them too would override it.
    if (preset) return { preset: preset, provider: null, model: null };
    return {
      provider: select ? select.value : saved.provider || null,
      model: model ? model.value.trim() || null : saved.model || null
    };
  }

  // --- presets: the picker's Preset menu (present once the person has or sees one) ---
  // Picking one sends `preset` with each message; the provider and model fields rest.
  function initPreset() {
    var select = $("cw-preset");
    if (!select) { saved.preset = null; return; }
    if (saved.preset && select.querySelector('option[value="' + CSS.escape(String(saved.preset)) + '"]')) {
      select.value = String(saved.preset);
    }
    select.addEventListener("change", function () { saved.preset = select.value || null; save(); showPreset(); });
    showPreset();
  }
  function showPreset() {
    var select = $("cw-preset"), option = select.selectedOptions[0];
    var on = Boolean(select.value);
    $("cw-provider").disabled = on;
    $("cw-model").disabled = on;
    var tip = $("cw-preset-tip");
    if (!tip) {
      tip = el("p", "cw-tip");
      tip.id = "cw-preset-tip";
      select.closest(".cw-preset-field").after(tip);
    }
    tip.hidden = !on;
    tip.textContent = on ? "Uses " + (option.dataset.summary || "the preset's model") +
      " with the preset's system prompt and sampling." : "";
  }
  function presetChoice() {
    var select = $("cw-preset");
    return select && select.value ? Number(select.value) : null;
  }

  // --- conversations: list, open one, start a new one ---
  function toggleHistory(show) {
    historyEl.hidden = !show;
    historyBtn.setAttribute("aria-expanded", String(show));
    if (show) {
      htmx.ajax("GET", root.dataset.listUrl, { source: historyEl, target: historyEl, swap: "innerHTML" }).then(markCurrent);
    }
  }
  historyBtn.addEventListener("click", function () { toggleHistory(historyEl.hidden); });
  function markCurrent() {
    var current = historyEl.querySelector('[data-conversation="' + state.conversationId + '"]');
    if (current) current.setAttribute("aria-current", "true");
    var first = historyEl.querySelector("a");
    if (first && !historyEl.hidden) first.focus();
  }
  historyEl.addEventListener("click", function (e) {
    var link = e.target.closest("a[data-conversation]");
    if (!link) return;
    e.preventDefault();
    toggleHistory(false);
    openConversation(Number(link.dataset.conversation), link.dataset.title);
    input.focus();
  });
  newBtn.addEventListener("click", function () { newConversation(); input.focus(); });

  function setTitle(text) { titleEl.textContent = text || "New conversation"; }

  function newConversation() {
    if (state.reply) return;
    state.conversationId = null;
    setTitle(null);
    log.textContent = "";
    log.appendChild(el("li", "cw-empty cw-welcome",
      "Ask anything. The reply appears as it is written; press Stop to end it early."));
    toggleHistory(false);
    save();
  }

  function openConversation(id, title) {
    if (state.reply) return;
    state.conversationId = id;
    setTitle(title || "Loading…");
    save();
    var url = root.dataset.conversationUrl.replace("/0/", "/" + id + "/");
    log.textContent = "";
    log.appendChild(el("li", "cw-empty", "Loading…"));
    htmx.ajax("GET", url, { source: log, target: log, swap: "innerHTML" }).then(function () {
      var head = log.querySelector(".msg-start");
      // No history came back: the conversation is gone (deleted elsewhere). Start afresh.
      if (!head) { newConversation(); return; }
      setTitle(head.dataset.title);
      enhance(log);
      toBottom();
      var streaming = log.querySelectorAll(".msg-assistant.msg-streaming[data-seq]");
      if (streaming.length) adopt(streaming[streaming.length - 1]);
    });
  }

  // A reply still being written when the page loaded (another page, tab or worker asked
  // for it): show it streaming and follow it on from the text the page already has.
  function adopt(li) {
    if (state.reply) return;
    var body = li.querySelector(".msg-body");
    var userLi = li.previousElementSibling;
    while (userLi && !userLi.classList.contains("msg-user")) userLi = userLi.previousElementSibling;
    var meta = li.querySelector(".msg-meta");
    if (meta) while (meta.children.length > 1) meta.lastElementChild.remove();
    var existing = body.textContent;
    body.textContent = "";
    state.reply = { li: li, body: body, text: existing ? body.appendChild(document.createTextNode(existing)) : null,
                    messageId: Number(li.dataset.messageId), seq: Number(li.dataset.seq) || 0,
                    userLi: userLi, userText: userLi ? userLi.querySelector(".msg-body").textContent : "",
                    clientId: null, gotStart: true };
    setStreaming(true);
    attach();
  }

  function attach() {
    var reply = state.reply;
    if (!reply || !reply.messageId) return;
    if (!socketReady()) { state.attachOnOpen = true; return; }
    state.attachOnOpen = false;
    state.socket.send(JSON.stringify({ type: "attach", message_id: reply.messageId, after: reply.seq }));
  }

  // --- copy buttons on code blocks ---
  function enhance(scope) {
    scope.querySelectorAll(".md pre").forEach(function (pre) {
      if (pre.parentNode.classList.contains("code-wrap")) return;
      var wrap = el("div", "code-wrap");
      pre.parentNode.insertBefore(wrap, pre);
      wrap.appendChild(pre);
      var button = el("button", "code-copy", "Copy");
      button.type = "button";
      button.setAttribute("aria-label", "Copy code");
      wrap.appendChild(button);
    });
  }
  document.addEventListener("click", function (e) {
    var button = e.target.closest(".code-copy");
    if (!button) return;
    var text = button.parentNode.querySelector("pre").innerText;
    var done = function () {
      button.textContent = "Copied";
      announce("Code copied");
      setTimeout(function () { button.textContent = "Copy"; }, 1600);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(text); done(); });
    } else { fallbackCopy(text); done(); }
  });
  function fallbackCopy(text) {
    var area = el("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed"; area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* nothing more to try */ }
    area.remove();
  }
  enhance(document);

  // --- the socket, with reconnect and backoff ---
  function setConn(name, text) { connEl.dataset.state = name; connEl.textContent = text; }

  function connect() {
    clearTimeout(state.reconnectTimer);
    if (state.socket && state.socket.readyState <= 1) return;
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + root.dataset.ws);
    state.socket = socket;
    setConn("connecting", "Connecting…");
    socket.onopen = function () {
      state.attempts = 0;
      setConn("online", "Connected");
      if (state.attachOnOpen) attach();  // pick the reply up where this page left it
    };
    socket.onmessage = function (e) {
      var frame;
      try { frame = JSON.parse(e.data); } catch (err) { return; }
      handle(frame);
    };
    socket.onclose = function () {
      if (state.socket !== socket) return;
      state.socket = null;
      if (state.reply && state.reply.messageId) {
        state.attachOnOpen = true;  // the reply runs on in the server: follow it again
      } else if (state.reply) {
        failReply({ code: "disconnected",
          message: "The connection dropped before the reply began; try again." });
      }
      var wait = Math.min(30000, 500 * Math.pow(2, state.attempts)) * (0.75 + Math.random() / 2);
      state.attempts += 1;
      setConn("offline", "Offline · retrying in " + Math.ceil(wait / 1000) + " s");
      state.reconnectTimer = setTimeout(connect, wait);
    };
  }
  window.addEventListener("online", function () { if (state.started) { state.attempts = 0; connect(); } });

  function socketReady() { return state.socket && state.socket.readyState === WebSocket.OPEN; }

  // --- sending ---
  function setStreaming(on) {
    sendBtn.textContent = on ? "Stop" : "Send";
    sendBtn.classList.toggle("stop", on);
    sendBtn.disabled = false;
    historyBtn.disabled = on;
    newBtn.disabled = on;
    log.setAttribute("aria-busy", String(on));
  }

  function addUser(text) {
    var welcome = log.querySelector(".cw-welcome");
    if (welcome) welcome.remove();
    var li = el("li", "msg msg-user");
    li.appendChild(el("span", "visually-hidden", "You:"));
    li.appendChild(el("div", "msg-body msg-text", text));
    log.appendChild(li);
    return li;
  }

  function send(text) {
    if (state.reply || !text.trim()) return false;
    var clientId = uuid();
    var pick = choice();
    var frame = {
      type: "send", text: text, conversation_id: state.conversationId,
      provider: pick.provider, model: pick.model, preset: pick.preset || null, client_message_id: clientId
    };
    if (tell("prepare", frame)) return false;  // held back (an upload still running): the text stays
    var userLi = addUser(text);
    tell("shown", userLi, frame);
    if (!socketReady()) {
      connect();
      failBeforeStart(userLi, text, { code: "offline",
        message: "Not connected yet. Your message is kept: press Retry in a moment." });
      toBottom();
      return true;
    }
    var li = el("li", "msg msg-assistant");
    li.appendChild(el("span", "visually-hidden", "Assistant:"));
    var body = el("div", "msg-body md streaming");
    var typing = el("span", "typing");
    typing.setAttribute("aria-label", "The assistant is typing");
    typing.appendChild(el("span")); typing.appendChild(el("span")); typing.appendChild(el("span"));
    body.appendChild(typing);
    li.appendChild(body);
    log.appendChild(li);
    state.reply = { li: li, body: body, text: null, messageId: null, seq: 0, userLi: userLi,
                    userText: text, clientId: clientId, gotStart: false, frame: frame };
    setStreaming(true);
    announce("Sent. The assistant is typing.");
    state.socket.send(JSON.stringify(frame));
    toBottom();
    return true;
  }

  function stop() {
    var reply = state.reply;
    if (!reply) return;
    if (socketReady()) {
      // By id once it is known: the reply may have been started by another page or tab.
      state.socket.send(reply.messageId ? JSON.stringify({ type: "stop", message_id: reply.messageId })
                                        : '{"type":"stop"}');
    }
    sendBtn.disabled = true;
    sendBtn.textContent = "Stopping…";
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (state.reply) { stop(); return; }
    if (send(input.value)) {
      input.value = "";
      autosize();
    }
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      if (!state.reply) form.requestSubmit();
    }
  });
  function autosize() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight + 2, 160) + "px";
  }
  input.addEventListener("input", autosize);

  // --- frames from the server ---
  function handle(frame) {
    var reply = state.reply;
    if (reply && frame.seq && frame.message_id === reply.messageId) {
      if (frame.seq <= reply.seq) return;  // already shown (a replay after a reconnect)
      reply.seq = frame.seq;
    }
    if (frame.type === "delta") {
      if (!reply || frame.message_id !== reply.messageId) return;
      if (reply.text === null) {
        var follow = nearBottom();
        reply.body.textContent = "";
        reply.text = reply.body.appendChild(document.createTextNode(""));
        if (follow) toBottom();
      }
      var stick = nearBottom();
      reply.text.appendData(frame.text);
      if (stick) toBottom();
    } else if (frame.type === "thinking") {
      if (!reply || frame.message_id !== reply.messageId) return;
      var shown = thinkingOf(reply);
      var keep = nearBottom();
      shown.text.appendData(frame.text);
      if (keep) toBottom();
    } else if (frame.type === "waiting") {
      if (!reply || frame.message_id !== reply.messageId || reply.text !== null) return;
      // Queued for a server at its cap: say so where the reply will appear.
      reply.body.textContent = frame.ahead ? "waiting: " + frame.ahead + " ahead" : "waiting: next";
    } else if (frame.type === "start") {
      if (!reply || reply.gotStart) return;
      reply.messageId = frame.message_id;
      reply.seq = frame.seq || 1;
      reply.gotStart = true;
      reply.li.dataset.messageId = frame.message_id;
      if (reply.frame) tell("started", reply.frame);
      if (state.conversationId !== frame.conversation_id) {
        state.conversationId = frame.conversation_id;
        if (titleEl.textContent === "New conversation") {
          setTitle(reply.userText.trim().split("\n")[0].slice(0, 80));  // as the server titles it
        }
        save();
      }
      var meta = el("p", "msg-meta");
      meta.appendChild(el("span", null, frame.model || frame.provider));
      reply.li.appendChild(meta);
    } else if (frame.type === "done") {
      if (!reply || frame.message_id !== reply.messageId) return;
      finishReply(frame);
    } else if (frame.type === "error") {
      if (reply && (frame.message_id === null || frame.message_id === reply.messageId)) {
        failReply(frame.error, frame);
      } else if (!reply) {
        announce(frame.error.message);
      }
    }
  }

  // A reasoning model's thinking: collapsed above the answer, never part of it.
  function thinkingOf(reply) {
    if (!reply.thinking) {
      var details = reply.li.querySelector(".msg-thinking");
      if (!details) {
        details = el("details", "msg-thinking");
        details.appendChild(el("summary", null, "Thinking…"));
        details.appendChild(el("div", "msg-thinking-text"));
        reply.li.insertBefore(details, reply.body);
      }
      var box = details.querySelector(".msg-thinking-text");
      reply.thinking = { details: details, text: box.appendChild(document.createTextNode("")) };
      if (reply.text === null) reply.body.textContent = "";
    }
    return reply.thinking;
  }
  function attemptsTitle(attempts) {
    return (attempts || []).map(function (a) {
      return [a.provider, a.model].filter(Boolean).join("/") + ": " + ((a.error || {}).message || "failed");
    }).join("\n");
  }
  function answeredBy(meta, frame) {
    var who = frame.answered_by || {};
    // The start named the first choice; after a fallback another model answered.
    if (who.model && meta.firstElementChild) meta.firstElementChild.textContent = who.model;
    if (frame.attempts && frame.attempts.length) {
      var badge = meta.appendChild(el("span", "badge",
        "answered by " + [who.provider, who.model].filter(Boolean).join("/") + " after " + frame.attempts.length + " failed"));
      badge.title = attemptsTitle(frame.attempts);
    }
    if (frame.cached) {
      meta.appendChild(el("span", "badge", "cached")).title = "The same question was answered before: no tokens, no cost.";
    }
  }

  function costLabel(cost) {
    var n = Number(cost);
    if (!n) return "$0";
    return "$" + n.toFixed(6).replace(/0+$/, "").replace(/\.$/, "");
  }
  function duration(ms) { return ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(1) + " s"; }

  function finishReply(frame) {
    var reply = state.reply;
    state.reply = null;
    reply.body.classList.remove("streaming");
    reply.li.classList.remove("msg-streaming");
    if (frame.html) {
      // The one HTML insertion: markdown rendered and sanitized (nh3) on the server.
      reply.body.innerHTML = frame.html;
      enhance(reply.li);
    } else if (reply.text === null) {
      reply.body.textContent = "";
      reply.body.appendChild(el("em", "muted", "Stopped before any text arrived."));
    }
    var thought = reply.li.querySelector(".msg-thinking summary");
    if (thought) thought.textContent = frame.thinking_ms != null ? "Thought for " + duration(frame.thinking_ms) : "Thinking";
    var meta = reply.li.querySelector(".msg-meta") || reply.li.appendChild(el("p", "msg-meta"));
    answeredBy(meta, frame);
    var usage = frame.usage || {};
    meta.appendChild(el("span", null, (usage.input_tokens || 0) + " in · " + (usage.output_tokens || 0) + " out"));
    meta.appendChild(el("span", null, costLabel(frame.cost)));
    if (frame.latency_ms) meta.appendChild(el("span", null, duration(frame.latency_ms)));
    if (frame.status === "stopped") {
      reply.li.classList.add("msg-stopped");
      meta.appendChild(el("span", "badge warn", "Stopped"));
    }
    setStreaming(false);
    announce(frame.status === "stopped" ? "Reply stopped." : "Reply finished.");
    input.focus();
  }

  function failReply(error, frame) {
    var reply = state.reply;
    state.reply = null;
    setStreaming(false);
    if (!reply.gotStart) {
      reply.li.remove();
      failBeforeStart(reply.userLi, reply.userText, error, reply.frame);
      return;
    }
    reply.body.classList.remove("streaming");
    reply.li.classList.remove("msg-streaming");
    if (reply.text === null) {
      reply.body.textContent = "";
      reply.body.appendChild(el("em", "muted", "No text arrived."));
    }
    reply.li.classList.add("msg-error");
    var meta = reply.li.querySelector(".msg-meta");
    if (meta) {
      meta.appendChild(el("span", "badge bad", "Failed"));
      if (frame && frame.attempts && frame.attempts.length) {
        meta.appendChild(el("span", "badge", "also tried " + frame.attempts.length)).title = attemptsTitle(frame.attempts);
      }
    }
    reply.li.insertBefore(notice(error, { text: reply.userText }), meta);
    announce(error.message);
  }

  function failBeforeStart(userLi, text, error, frame) {
    if (frame && tell("refused", error, frame)) {
      userLi.remove();
      announce(error.message);
      return;
    }
    // Nothing was stored: Retry replaces this bubble with a fresh send of the same text.
    userLi.classList.add("msg-failed");
    userLi.appendChild(notice(error, { text: text, replace: userLi }));
    announce(error.message);
  }

  function notice(error, retry) {
    var p = el("p", "msg-notice");
    p.setAttribute("role", "alert");
    var words = error.message || "Something went wrong.";
    if (error.retry_after) words += " (try again in " + Math.ceil(error.retry_after) + " s)";
    p.appendChild(el("span", null, words));
    var button = el("button", "link", "Retry");
    button.type = "button";
    button.setAttribute("data-cw-retry", "");
    p.appendChild(button);
    p._retry = retry;
    return p;
  }

  // Retry: on a fresh notice, or on a failed reply loaded from history.
  log.addEventListener("click", function (e) {
    var button = e.target.closest("[data-cw-retry]");
    if (!button || state.reply) return;
    var p = button.closest(".msg-notice");
    var retry = p._retry;
    if (!retry) {
      var userLi = p.closest(".msg").previousElementSibling;
      while (userLi && !userLi.classList.contains("msg-user")) userLi = userLi.previousElementSibling;
      if (!userLi) return;
      retry = { text: userLi.querySelector(".msg-body").textContent };
    }
    if (retry.replace) retry.replace.remove(); else p.remove();
    send(retry.text);
  });

  // Reopen the panel as it was on the previous page, once htmx has set itself up
  // (its DOMContentLoaded handler was registered before this one).
  if (saved.open) {
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", function () { openPanel(); });
    } else openPanel();
  }
})();
