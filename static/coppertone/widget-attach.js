/* Attachments in the floating chat: the paperclip button, dropping files on the panel and
   pasting an image into the message box each upload the file (POST /api/v1/files, with
   the page's CSRF token) and show it as a chip with its name, its size and a remove ×.
   Send carries the chips' ids (`attachments` in the send frame, through the widget's
   extension hooks in widget.js); once the reply starts they belong to the message. A
   refusal (a limit, a model that cannot read images) is shown in words beside the
   chips, the message text goes back in the box, and the chips stay for another try.
   What a file is, and what is allowed, the server decides (llm/attachments.py). */
(function () {
  "use strict";

  var root = document.getElementById("cw");
  var panel = document.getElementById("cw-panel");
  var form = document.getElementById("cw-form");
  var input = document.getElementById("cw-input");
  var script = document.currentScript;
  var filesUrl = script && script.dataset.filesUrl;
  if (!root || !panel || !form || !input || !filesUrl || !window.Coppertone) return;

  var chips = [];  // {id, name, size, node, uploading, request}

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = text;
    return node;
  }

  // As the server words sizes (llm/attachments.py size_label): decimal units.
  function sizeLabel(size) {
    var units = [["MB", 1e6], ["kB", 1e3]];
    for (var i = 0; i < units.length; i++) {
      if (size >= units[i][1]) return (size / units[i][1]).toFixed(1).replace(/\.0$/, "") + " " + units[i][0];
    }
    return size + (size === 1 ? " byte" : " bytes");
  }

  function csrfToken() {
    try { return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || ""; }
    catch (e) { return ""; }
  }

  // --- the tray above the message box, and the button in it ---
  var tray = el("div", "cw-attach");
  tray.hidden = true;
  var list = el("ul", "cw-chips");
  list.setAttribute("aria-label", "Files to send");
  var status = el("p", "cw-attach-status");
  status.setAttribute("role", "status");
  tray.appendChild(list);
  tray.appendChild(status);
  form.parentNode.insertBefore(tray, form);

  var picker = el("input");
  picker.type = "file";
  picker.multiple = true;
  picker.hidden = true;
  picker.tabIndex = -1;
  picker.accept = "image/png,image/jpeg,image/webp,image/gif,application/pdf,text/*,.md,.csv,.json,.py,.js,.ts,.go,.rs,.java,.c,.h,.cpp,.rb,.sh,.sql,.yaml,.yml,.toml";
  var button = el("button", "cw-attach-button");
  button.type = "button";
  button.title = "Attach files (or drop them on the chat, or paste an image)";
  button.setAttribute("aria-label", "Attach files");
  button.innerHTML = '<svg aria-hidden="true" viewBox="0 0 24 24" width="20" height="20"><path fill="none" ' +
    'stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" d="M21 11.5l-8.6 ' +
    '8.6a5 5 0 0 1-7.1-7.1l8.6-8.6a3.3 3.3 0 0 1 4.7 4.7l-8.6 8.6a1.7 1.7 0 0 1-2.4-2.4l7.9-7.9"/></svg>';
  form.insertBefore(button, input);
  form.appendChild(picker);
  form.classList.add("cw-can-attach");

  button.addEventListener("click", function () { picker.click(); });
  picker.addEventListener("change", function () {
    addFiles(picker.files);
    picker.value = "";
  });

  function say(words, bad) {
    status.textContent = words || "";
    status.classList.toggle("bad", Boolean(bad));
    show();
  }
  function show() { tray.hidden = !chips.length && !status.textContent; }

  // --- chips ---
  function addFiles(files) {
    if (!files || !files.length) return;
    say("");
    Array.prototype.forEach.call(files, upload);
  }

  function chipNode(chip) {
    var li = el("li", "cw-chip");
    var name = el("span", "cw-chip-name", chip.name);
    name.title = chip.name;
    li.appendChild(name);
    chip.sizeNode = li.appendChild(el("span", "cw-chip-size", "uploading…"));
    var remove = el("button", "cw-chip-remove", "×");
    remove.type = "button";
    remove.setAttribute("aria-label", "Remove " + chip.name);
    remove.addEventListener("click", function () { drop(chip); input.focus(); });
    li.appendChild(remove);
    return li;
  }

  function upload(file) {
    var chip = { id: null, name: file.name || "pasted image", size: file.size, uploading: true, request: null };
    chip.node = list.appendChild(chipNode(chip));
    chip.node.classList.add("cw-chip-uploading");
    chips.push(chip);
    show();
    var body = new FormData();
    body.append("file", file, file.name || "pasted-image");
    chip.request = new AbortController();
    fetch(filesUrl, {
      method: "POST", body: body, credentials: "same-origin", signal: chip.request.signal,
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" }
    }).then(function (response) {
      return response.json().then(function (data) { return { ok: response.ok, data: data }; },
        function () { return { ok: false, data: {} }; });
    }).then(function (result) {
      if (chips.indexOf(chip) === -1) return;  // removed while it uploaded
      if (!result.ok) {
        forget(chip);
        say(chip.name + ": " + ((result.data.error || {}).message || "the upload failed."), true);
        return;
      }
      chip.id = result.data.id;
      chip.name = result.data.name;
      chip.size = result.data.size;
      chip.uploading = false;
      chip.node.classList.remove("cw-chip-uploading");
      chip.sizeNode.textContent = sizeLabel(chip.size);
    }).catch(function (error) {
      if (error && error.name === "AbortError") return;
      forget(chip);
      say(chip.name + ": the upload failed; check the connection and attach it again.", true);
    });
  }

  function forget(chip) {
    var at = chips.indexOf(chip);
    if (at !== -1) chips.splice(at, 1);
    chip.node.remove();
    show();
  }

  function drop(chip) {
    if (chip.uploading && chip.request) chip.request.abort();
    if (chip.id) {
      // The upload was never sent with a message: delete it rather than leave it stored.
      fetch(filesUrl + "/" + chip.id, {
        method: "DELETE", credentials: "same-origin", headers: { "X-CSRFToken": csrfToken() }
      }).catch(function () { /* it stays unsent; nothing else depends on it */ });
    }
    forget(chip);
    if (!chips.length) say("");
  }

  // --- drag and drop onto the panel, paste into the message box ---
  function hasFiles(e) {
    return e.dataTransfer && Array.prototype.indexOf.call(e.dataTransfer.types || [], "Files") !== -1;
  }
  panel.addEventListener("dragover", function (e) {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
    panel.classList.add("cw-dropping");
  });
  panel.addEventListener("dragleave", function (e) {
    if (!panel.contains(e.relatedTarget)) panel.classList.remove("cw-dropping");
  });
  panel.addEventListener("drop", function (e) {
    panel.classList.remove("cw-dropping");
    if (!hasFiles(e)) return;
    e.preventDefault();
    addFiles(e.dataTransfer.files);
    input.focus();
  });
  input.addEventListener("paste", function (e) {
    var files = e.clipboardData && e.clipboardData.files;
    if (!files || !files.length) return;  // text pastes as text
    e.preventDefault();
    addFiles(files);
  });

  // --- the widget's hooks: what a send carries, and how it went ---
  var sent = [];  // the chips of the message on its way
  window.Coppertone.chat.extend({
    prepare: function (frame) {
      if (chips.some(function (c) { return c.uploading; })) {
        say("Wait a moment: a file is still uploading.", true);
        return "uploading";
      }
      sent = chips.slice();
      if (sent.length) frame.attachments = sent.map(function (c) { return c.id; });
      say("");
      return null;
    },
    shown: function (userLi, frame) {
      if (!frame.attachments) return;
      var files = el("ul", "msg-files");
      files.setAttribute("aria-label", "Attached files");
      sent.forEach(function (chip) {
        var item = files.appendChild(el("li", "file-chip"));
        var link = item.appendChild(el("a"));
        link.href = filesUrl + "/" + chip.id;
        link.setAttribute("download", chip.name);
        link.title = "Download " + chip.name;
        link.appendChild(el("span", "file-chip-name", chip.name));
        link.appendChild(document.createTextNode(" "));
        link.appendChild(el("span", "file-chip-size", sizeLabel(chip.size)));
      });
      userLi.appendChild(files);
    },
    started: function (frame) {
      // They belong to the message now: off the tray (files added meanwhile stay).
      (frame.attachments ? sent : []).forEach(function (chip) {
        var at = chips.indexOf(chip);
        if (at !== -1) chips.splice(at, 1);
        chip.node.remove();
      });
      sent = [];
      show();
    },
    refused: function (error, frame) {
      if (!frame.attachments) return false;
      sent = [];
      say(error.message || "The message was not sent.", true);
      if (!input.value) {
        input.value = frame.text;
        input.dispatchEvent(new Event("input"));  // the box grows to fit it again
      }
      input.focus();
      return true;
    }
  });
})();
