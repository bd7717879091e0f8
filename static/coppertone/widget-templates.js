/* The chat's prompt templates: "/" at the start of the message box lists the person's
   templates and the published ones (GET /api/v1/templates), filtered as they type.
   Arrow keys move, Enter or a click picks, Esc closes. A template with placeholders asks
   for each in a small form, then fills the message box; nothing is sent until Send.
   The list is a listbox the message box points into (aria-activedescendant), so focus
   stays where the person types. The API gives each template's parts in order, so the
   brace rules live on the server only. */
(function () {
  "use strict";

  var root = document.getElementById("cw");
  var input = document.getElementById("cw-input");
  var form = document.getElementById("cw-form");
  if (!root || !input || !form || !root.dataset.templatesUrl) return;

  var templates = null;   // the last list fetched
  var shown = [];         // the templates the list shows now
  var active = -1;        // which of them is highlighted
  var dismissed = false;  // Esc closed the list for this "/..."; it stays closed until "/" goes

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = text;
    return node;
  }

  // The list and the placeholder form sit just above the message box.
  var box = el("div", "cw-tpl");
  box.hidden = true;
  var list = el("ul", "cw-tpl-list");
  list.id = "cw-tpl-list";
  list.setAttribute("role", "listbox");
  list.setAttribute("aria-label", "Templates");
  var status = el("p", "cw-tpl-status");
  status.setAttribute("role", "status");
  box.appendChild(list);
  box.appendChild(status);
  var fill = el("form", "cw-tpl-fill");
  fill.hidden = true;
  fill.noValidate = true;
  form.parentNode.insertBefore(box, form);
  form.parentNode.insertBefore(fill, form);
  input.setAttribute("aria-controls", list.id);
  input.setAttribute("aria-autocomplete", "list");

  function load() {
    return fetch(root.dataset.templatesUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (body) { templates = body.templates || []; });
  }

  function query() {
    var value = input.value;
    if (value.charAt(0) !== "/" || value.indexOf("\n") !== -1) return null;
    return value.slice(1).trim().toLowerCase();
  }

  function isOpen() { return !box.hidden; }

  function close() {
    box.hidden = true;
    active = -1;
    input.removeAttribute("aria-activedescendant");
  }

  function render(q) {
    list.textContent = "";
    shown = (templates || []).filter(function (t) { return t.name.toLowerCase().indexOf(q) !== -1; });
    shown.forEach(function (t, i) {
      var li = el("li", "cw-tpl-option");
      li.id = "cw-tpl-" + t.id;
      li.setAttribute("role", "option");
      li.dataset.index = String(i);
      li.appendChild(el("span", "cw-tpl-name", t.name));
      if (!t.mine) li.appendChild(el("span", "cw-tpl-badge", "published"));
      li.appendChild(el("span", "cw-tpl-preview", t.text));
      list.appendChild(li);
    });
    if (templates === null) status.textContent = "Loading your templates…";
    else if (!templates.length) status.textContent = "No templates yet: add some under Settings → Templates.";
    else if (!shown.length) status.textContent = "No template matches “" + q + "”. Esc closes this list.";
    else status.textContent = shown.length + " template" + (shown.length === 1 ? "" : "s") +
      ": ↑ ↓ to choose, Enter to use, Esc to close.";
    highlight(shown.length ? Math.min(Math.max(active, 0), shown.length - 1) : -1);
  }

  function highlight(i) {
    active = i;
    Array.prototype.forEach.call(list.children, function (li, n) {
      li.setAttribute("aria-selected", n === i ? "true" : "false");
    });
    if (i < 0) { input.removeAttribute("aria-activedescendant"); return; }
    var li = list.children[i];
    input.setAttribute("aria-activedescendant", li.id);
    li.scrollIntoView({ block: "nearest" });
  }

  function update() {
    var q = query();
    if (q === null) { dismissed = false; close(); return; }
    if (dismissed || !fill.hidden) return;
    var opening = !isOpen();
    box.hidden = false;
    if (opening) active = 0;
    render(q);
    if (opening) {
      load().then(function () { if (isOpen()) render(query() || ""); }, function () {
        if (isOpen() && templates === null) status.textContent = "Could not load your templates: try again in a moment.";
      });
    }
  }

  // Set the message box as if typed (widget.js resizes it on "input"), without reopening the
  // list: `dismissed` holds until the text no longer starts with "/".
  function setMessage(text) {
    input.value = text;
    dismissed = true;
    input.dispatchEvent(new Event("input", { bubbles: true }));
    input.focus();
    input.setSelectionRange(text.length, text.length);
  }

  function compose(template, values) {
    return template.parts.map(function (part) {
      return part.placeholder !== undefined ? values[part.placeholder] || "" : part.text;
    }).join("");
  }

  function pick(template) {
    close();
    if (!template.placeholders.length) { setMessage(compose(template, {})); return; }
    askFor(template);
  }

  // One labelled input per placeholder, inside the widget.
  function askFor(template) {
    fill.textContent = "";
    var title = el("p", "cw-tpl-title", "Fill in “" + template.name + "”");
    title.id = "cw-tpl-fill-title";
    fill.setAttribute("aria-labelledby", title.id);
    fill.appendChild(title);
    template.placeholders.forEach(function (name, i) {
      var label = el("label", "cw-field cw-tpl-field");
      label.appendChild(el("span", null, name.replace(/_/g, " ")));
      var field = el("input");
      field.type = "text";
      field.name = name;
      field.id = "cw-tpl-value-" + i;
      field.autocomplete = "off";
      label.appendChild(field);
      fill.appendChild(label);
    });
    var actions = el("div", "cw-tpl-actions");
    var insert = el("button", "primary", "Insert");
    insert.type = "submit";
    var cancel = el("button", null, "Cancel");
    cancel.type = "button";
    cancel.addEventListener("click", cancelFill);
    actions.appendChild(insert);
    actions.appendChild(cancel);
    fill.appendChild(actions);
    fill._template = template;
    fill.hidden = false;
    fill.querySelector("input").focus();
  }

  function cancelFill() {
    fill.hidden = true;
    fill.textContent = "";
    input.focus();
  }

  fill.addEventListener("submit", function (e) {
    e.preventDefault();
    var values = {};
    fill.querySelectorAll("input").forEach(function (field) { values[field.name] = field.value; });
    var template = fill._template;
    fill.hidden = true;
    fill.textContent = "";
    setMessage(compose(template, values));
  });
  fill.addEventListener("keydown", function (e) {
    if (e.key !== "Escape") return;
    e.preventDefault();
    e.stopPropagation(); // Esc leaves the form, not the chat
    cancelFill();
  });

  input.addEventListener("input", update);

  // Capture, on the form: these keys reach the list before widget.js's Enter-sends handler
  // on the message box and its Esc-closes-the-chat handler on the panel.
  form.addEventListener("keydown", function (e) {
    if (!isOpen() || e.target !== input || e.isComposing) return;
    var n = shown.length;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      if (!n) return;
      e.preventDefault();
      highlight((active + (e.key === "ArrowDown" ? 1 : n - 1)) % n);
    } else if (e.key === "Enter" && !e.shiftKey && active >= 0 && shown[active]) {
      // With nothing to pick, Enter sends the "/..." text as it is.
      e.preventDefault();
      e.stopPropagation();
      pick(shown[active]);
    } else if (e.key === "Escape") {
      e.preventDefault();
      e.stopPropagation();
      dismissed = true;
      close();
    }
  }, true);

  list.addEventListener("mousedown", function (e) { e.preventDefault(); }); // keep focus in the box
  list.addEventListener("click", function (e) {
    var li = e.target.closest(".cw-tpl-option");
    if (li) pick(shown[Number(li.dataset.index)]);
  });
  input.addEventListener("blur", function () {
    // A click elsewhere closes the list (the list's own clicks keep focus in the box).
    setTimeout(function () { if (document.activeElement !== input) close(); }, 0);
  });
})();
