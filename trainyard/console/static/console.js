// Trainyard console: live updates without reloading, and model decisions.
// The server renders every page; this only swaps in a fresh <main> every few
// seconds (keeping focus and anything being typed) and posts approve/reject.
(function () {
  "use strict";
  var main = document.getElementById("main");
  var pause = document.getElementById("pause");
  var updated = document.getElementById("updated");
  var connection = document.getElementById("connection");
  var token = document.querySelector('meta[name="console-token"]').content;
  var seconds = Number(main.dataset.refresh || 3);
  var paused = false;
  var busy = false;

  function typing() {
    var el = document.activeElement;
    return el && main.contains(el) && (el.tagName === "INPUT" || el.tagName === "SELECT") &&
      el.type !== "hidden" && el.value !== "" && el.value !== el.defaultValue;
  }

  function refresh(force) {
    if (busy || (!force && (paused || document.hidden || typing()))) return Promise.resolve();
    busy = true;
    return fetch(location.pathname + location.search, {
      headers: { "X-Console-Fragment": "1" }, cache: "no-store"
    }).then(function (response) {
      return response.text().then(function (html) {
        connection.textContent = "";
        if (html !== main.dataset.last) {
          var focused = document.activeElement && document.activeElement.id;
          var notice = document.getElementById("notice");
          var keep = notice ? notice.textContent : "";
          main.innerHTML = html;
          main.dataset.last = html;
          var again = document.getElementById("notice");
          if (again && keep && !again.textContent) again.textContent = keep;
          if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
        }
        updated.textContent = "Updated " + new Date().toISOString().slice(11, 19) + " UTC";
      });
    }).catch(function () {
      connection.textContent = "The console's server does not answer; retrying.";
    }).finally(function () { busy = false; });
  }

  pause.addEventListener("click", function () {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume live updates" : "Pause live updates";
    if (!paused) refresh(true);
  });

  // Approve or reject a model version without leaving the page.
  var lastButton = null;
  document.addEventListener("click", function (event) {
    var target = event.target;
    if (target && target.matches && target.matches("form.decision button")) lastButton = target;
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form.decision")) return;
    event.preventDefault();
    var button = event.submitter || lastButton;
    var action = (button && button.getAttribute("formaction")) || form.getAttribute("action");
    var reason = form.querySelector('input[name="reason"]').value;
    form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    var notice = document.getElementById("notice");
    fetch("/api" + action, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Console-Token": token },
      body: JSON.stringify(reason ? { reason: reason } : {})
    }).then(function (response) {
      return response.json().then(function (body) {
        var version = action.split("/")[4];
        var decision = action.split("/")[5];
        if (response.ok) {
          notice.textContent = "Model version " + version + ": " + decision + "d; status " + (body.status || "?");
        } else {
          var error = body.error || {};
          notice.textContent = "Model version " + version + " was not " + decision + "d: " +
            (error.message || ("HTTP " + response.status));
        }
      });
    }).catch(function () {
      notice.textContent = "The console's server does not answer.";
    }).finally(function () {
      main.dataset.last = "";
      refresh(true);
    });
  });

  setInterval(function () { refresh(false); }, seconds * 1000);
})();
