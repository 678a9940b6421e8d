// opsd web console: follows a running run's log and progress through
// server-sent events. Every page works without this script; with it, new
// lines appear as they happen instead of on the next refresh. Text is
// inserted with textContent only: nothing the plugin said becomes markup.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  var log = document.getElementById("log");
  var bar = document.getElementById("progress");
  var note = document.getElementById("progress-note");
  var state = document.getElementById("live-state");
  var from = log ? log.children.length : 0;
  var src = new EventSource(live.getAttribute("data-events") + "?from=" + from);
  function row(l) {
    var div = document.createElement("div");
    div.className = "lv-" + l.level;
    var head = document.createElement("span");
    head.className = "src";
    head.textContent = l.at + " " + l.level + " " + l.source + " ";
    div.appendChild(head);
    div.appendChild(document.createTextNode(l.message));
    log.appendChild(div);
  }
  src.addEventListener("line", function (e) { row(JSON.parse(e.data)); });
  src.addEventListener("progress", function (e) {
    var p = JSON.parse(e.data);
    if (bar) {
      if (p.total) { bar.max = p.total; bar.value = p.done; } else { bar.removeAttribute("value"); }
    }
    if (note) { note.textContent = p.done + (p.total ? " of " + p.total : "") + " " + p.message; }
  });
  src.addEventListener("done", function (e) {
    src.close();
    var d = JSON.parse(e.data);
    if (state) { state.textContent = "finished: " + d.status + "; reloading"; }
    window.setTimeout(function () { window.location.reload(); }, 600);
  });
  if (state) { state.textContent = "following live"; }
})();
