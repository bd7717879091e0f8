/* The conversations page: "select all" and a count for the bulk delete. Without this the
   checkboxes still work: the delete step names what would go and asks first. */
(function () {
  "use strict";

  var form = document.getElementById("bulk-delete");
  if (!form) return;
  var boxes = Array.prototype.slice.call(document.querySelectorAll('input[name="ids"][form="bulk-delete"]'));
  var all = form.querySelector("[data-select-all]");
  var button = form.querySelector("[data-bulk-delete]");
  var count = form.querySelector("[data-bulk-count]");

  function update() {
    var ticked = boxes.filter(function (box) { return box.checked; }).length;
    button.disabled = ticked === 0;
    count.textContent = ticked ? ticked + " selected" : "";
    all.checked = ticked > 0 && ticked === boxes.length;
    all.indeterminate = ticked > 0 && ticked < boxes.length;
  }

  all.closest("label").hidden = false;
  all.addEventListener("change", function () {
    boxes.forEach(function (box) { box.checked = all.checked; });
    update();
  });
  boxes.forEach(function (box) { box.addEventListener("change", update); });
  update();
})();
