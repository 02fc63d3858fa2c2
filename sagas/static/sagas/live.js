/* The run page, live: while the run is not finished, poll its JSON view (sagas/admin/live.py) and swap the
   parts that changed in place. No framework and no inline script, so a strict Content-Security-Policy holds. */
(function () {
  "use strict";

  var EVERY_MS = 3000; // while the run goes on
  var MAX_BACKOFF_MS = 60000; // after errors, doubling up to this
  var TIMEOUT_MS = 15000; // a request that hangs counts as an error

  var main = document.getElementById("content-main");
  var indicator = document.getElementById("live-indicator");
  var badge = document.getElementById("run-status");
  if (!main || !main.dataset.liveUrl || !indicator || !badge) {
    return;
  }
  var url = main.dataset.liveUrl;
  var version = main.dataset.liveVersion || "";
  var finished = main.dataset.liveFinished === "true";
  var delay = EVERY_MS;
  var timer = null;
  var inFlight = false;
  var stopped = false;

  function say(state, text) {
    indicator.dataset.state = state;
    indicator.textContent = text;
  }

  function clock() {
    return new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  // A person may have opened a traceback or an output: keep it open across the swap.
  function detailsKey(details) {
    var row = details.closest("[data-step]");
    var owner = row ? row.getAttribute("data-step") : "";
    var summary = details.querySelector("summary");
    return owner + "|" + (summary ? summary.textContent : "");
  }

  function swap(element, html) {
    var open = {};
    element.querySelectorAll("details[open]").forEach(function (details) {
      open[detailsKey(details)] = true;
    });
    element.innerHTML = html;
    element.querySelectorAll("details").forEach(function (details) {
      if (open[detailsKey(details)]) {
        details.open = true;
      }
    });
  }

  function apply(data) {
    document.querySelectorAll("[data-live-part]").forEach(function (element) {
      var name = element.getAttribute("data-live-part");
      if (!(name in data.parts)) {
        return;
      }
      // Buttons and forms are replaced only when what they offer changed, not to lose what a person types.
      if (element.hasAttribute("data-live-key")) {
        var key = (data.keys && data.keys[name]) || "";
        if (key === element.getAttribute("data-live-key")) {
          return;
        }
        element.setAttribute("data-live-key", key);
      }
      swap(element, data.parts[name]);
    });
    badge.textContent = data.status;
    badge.className = "saga-badge saga-" + data.status;
    version = data.version;
    finished = data.finished;
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = stopped || finished || document.hidden ? null : setTimeout(poll, ms);
  }

  function stop(text) {
    stopped = true;
    clearTimeout(timer);
    say("stopped", text);
  }

  function poll() {
    if (inFlight || stopped || finished || document.hidden) {
      return;
    }
    inFlight = true;
    var controller = new AbortController();
    var abort = setTimeout(function () {
      controller.abort();
    }, TIMEOUT_MS);
    fetch(url, {
      headers: { Accept: "application/json", "If-None-Match": '"' + version + '"' },
      credentials: "same-origin",
      cache: "no-store",
      signal: controller.signal,
    })
      .then(function (response) {
        if (response.status === 304) {
          return null;
        }
        var json = (response.headers.get("Content-Type") || "").indexOf("application/json") === 0;
        if (response.redirected || (response.ok && !json) || response.status === 403 || response.status === 404) {
          // Logged out, the permission withdrawn, the run gone: polling again will not help.
          throw { final: true, status: response.status };
        }
        if (!response.ok) {
          throw { final: false, status: response.status };
        }
        return response.json();
      })
      .then(function (data) {
        delay = EVERY_MS;
        if (data) {
          apply(data);
          say("updated", "live · updated " + clock());
        } else if (indicator.dataset.state !== "updated") {
          say("live", "live");
        }
        if (finished) {
          say("finished", "run finished · updated " + clock());
        }
      })
      .catch(function (error) {
        if (error && error.final) {
          stop("not updating: reload the page");
          return;
        }
        delay = Math.min(MAX_BACKOFF_MS, delay * 2);
        say("error", "not updating · retrying in " + Math.round(delay / 1000) + " s");
      })
      .finally(function () {
        clearTimeout(abort);
        inFlight = false;
        schedule(delay);
      });
  }

  // A hidden tab asks nothing; back in view, it catches up at once.
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      clearTimeout(timer);
      if (!finished && !stopped) {
        say("paused", "paused");
      }
    } else {
      poll();
    }
  });

  if (finished) {
    return; // nothing moves a finished run by itself: only a person, from a page that reloads
  }
  say("live", "live");
  schedule(EVERY_MS);
})();
