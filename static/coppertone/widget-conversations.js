/* The widget's conversation list (templates/llm/conversations.html, widget partials):
   search, rename and pin are htmx; this keeps the rest in step. The header follows a
   rename of the open conversation, Escape cancels a rename (instead of closing the
   list), focus returns to the row, and the open conversation stays marked. */
(function () {
  "use strict";

  var root = document.getElementById("cw");
  if (!root) return;
  var history = document.getElementById("cw-history");
  var focusAfter = null;  // the row whose rename just ended

  function openId() {
    // widget.js keeps the open conversation here; the loaded history says it too.
    try {
      var saved = JSON.parse(localStorage.getItem("coppertone.chat." + root.dataset.user) || "{}");
      if (saved && saved.conversationId) return String(saved.conversationId);
    } catch (e) { /* private mode */ }
    var head = document.querySelector("#cw-log .msg-start[data-conversation]");
    return head ? head.dataset.conversation : null;
  }

  function markOpen() {
    var id = openId();
    history.querySelectorAll('a[aria-current="true"]').forEach(function (a) { a.removeAttribute("aria-current"); });
    if (!id) return;
    var link = history.querySelector('a[data-conversation="' + CSS.escape(id) + '"]');
    if (link) link.setAttribute("aria-current", "true");
  }

  document.body.addEventListener("cw-renamed", function (e) {
    var detail = e.detail || {};
    if (String(detail.id) !== openId()) return;
    var title = document.getElementById("cw-title");
    if (title) title.textContent = detail.title;
    var head = document.querySelector('#cw-log .msg-start[data-conversation="' + CSS.escape(String(detail.id)) + '"]');
    if (head) head.dataset.title = detail.title;
  });

  // By the form, not its row: while htmx settles a swapped row, the row still wears the
  // classes of the one it replaced.
  history.addEventListener("submit", function (e) {
    var form = e.target.closest(".cw-rename");
    if (form) focusAfter = form.closest("li").id;
  });
  history.addEventListener("click", function (e) {
    var cancel = e.target.closest("[data-cw-rename-cancel]");
    if (cancel) focusAfter = cancel.closest("li").id;
  });
  history.addEventListener("keydown", function (e) {
    if (e.key !== "Escape") return;
    var form = e.target.closest(".cw-rename");
    if (!form) return;
    e.stopPropagation();  // the panel's Escape would close the whole list
    e.preventDefault();
    // As Cancel does; asked directly, since htmx may not have wired a just-swapped button yet.
    var search = document.getElementById("cw-search");
    focusAfter = form.closest("li").id;
    htmx.ajax("GET", root.dataset.listUrl + "?q=" + encodeURIComponent(search ? search.value : ""),
              { source: form, target: "#cw-conv-results", swap: "innerHTML" });
  }, true);

  // On the body: a row swapped out (outerHTML) is no longer inside the list.
  document.body.addEventListener("htmx:afterSettle", function () {
    markOpen();
    if (!focusAfter) return;
    var row = document.getElementById(focusAfter);
    focusAfter = null;
    var link = row && row.querySelector("a[data-conversation]");
    if (link) link.focus();
  });
})();
