// connector-control console: dialogs, their forms, and the live table.
// Every decision is the server's: this script fetches the server's HTML,
// shows it, and follows the server's event stream. Without it the console
// still works, page by page. The names it shares with the server (headers,
// events, row ids) come from the page (<body data-names>, written from
// src/console/contract.rs), never from this file.
(function () {
  "use strict";

  const names = JSON.parse(document.body.dataset.names || "{}");
  const events = names.events || {};
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
  const dialog = document.getElementById("dialog");
  const banner = document.getElementById("banner");
  const toast = document.getElementById("toast");
  let opener = null;

  function showBanner(text) {
    if (!banner) return;
    banner.textContent = text;
    banner.hidden = false;
  }

  function hideBanner() {
    if (banner) banner.hidden = true;
  }

  function say(text) {
    if (!toast) return;
    toast.textContent = text;
    toast.classList.add("shown");
    clearTimeout(say.timer);
    say.timer = setTimeout(() => toast.classList.remove("shown"), 8000);
  }

  // A row from the server updates the one on the page cell by cell: what
  // did not change (a focused button, a ticked box) stays as it is.
  function putRow(fresh) {
    const old = document.getElementById(fresh.id);
    if (!old) return false;
    if (old.cells.length !== fresh.cells.length) {
      old.replaceWith(fresh);
      return true;
    }
    for (const name of fresh.getAttributeNames()) {
      old.setAttribute(name, fresh.getAttribute(name));
    }
    old.classList.remove("left-filter");
    Array.from(fresh.cells).forEach((cell, i) => {
      const current = old.cells[i];
      if (current.classList.contains("select")) return;
      if (current.innerHTML !== cell.innerHTML) {
        const focused = current.contains(document.activeElement) ? document.activeElement : null;
        const key = focused && (focused.getAttribute("href") || focused.textContent);
        current.replaceWith(cell);
        if (key) {
          const same = Array.from(cell.querySelectorAll("a, button"))
            .find((el) => (el.getAttribute("href") || el.textContent) === key);
          (same || old).focus();
        }
      }
    });
    return true;
  }

  function rowFromHtml(html) {
    const template = document.createElement("template");
    template.innerHTML = "<table><tbody>" + html + "</tbody></table>";
    return template.content.querySelector("tr");
  }

  function applyDone(root) {
    // A live table hears of the change from its stream, in order: the
    // answer's copy of the row (PAUSING, say) could be older than what the
    // stream already showed (STOPPED).
    const live = document.getElementById("live");
    if (live && !live.hidden) return;
    root.querySelectorAll("template[data-row]").forEach((template) => {
      const fresh = template.content.querySelector("tr");
      if (fresh) putRow(document.importNode(fresh, true));
    });
  }

  // Dialogs -----------------------------------------------------------

  function wire(root) {
    root.querySelectorAll('input[name="pull_back"]').forEach((radio) => {
      radio.addEventListener("change", () => syncPullBack(radio.form));
    });
    root.querySelectorAll("input[data-utc-target]").forEach((input) => {
      input.addEventListener("input", () => syncUtc(input));
      syncUtc(input);
    });
    const offset = -new Date().getTimezoneOffset();
    const sign = offset >= 0 ? "+" : "-";
    const abs = Math.abs(offset);
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
    const label =
      "(your time zone, " + zone + ", UTC" + sign +
      String(Math.floor(abs / 60)).padStart(2, "0") + ":" + String(abs % 60).padStart(2, "0") + ")";
    root.querySelectorAll("[data-tz-label]").forEach((el) => (el.textContent = label));
    root.querySelectorAll("form").forEach(syncPullBack);
  }

  function syncPullBack(form) {
    if (!form) return;
    const yes = form.querySelector('input[name="pull_back"][value="yes"]');
    const block = form.querySelector("[data-pull-back-time]");
    if (!yes || !block) return;
    block.hidden = !yes.checked;
    const input = block.querySelector('input[type="datetime-local"]');
    if (input) input.required = yes.checked;
  }

  // The typed time is in the browser's zone; the server gets it in UTC.
  function syncUtc(input) {
    const target = document.getElementById(input.dataset.utcTarget);
    const text = input.closest("[data-pull-back-time]")?.querySelector("[data-utc-text]");
    if (!target) return;
    if (!input.value) {
      target.value = "";
      if (text) text.textContent = "";
      return;
    }
    const when = new Date(input.value);
    if (isNaN(when.getTime())) return;
    target.value = when.toISOString();
    if (text) text.textContent = "= " + when.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  async function openDialog(url, from) {
    opener = from || null;
    let response;
    try {
      response = await fetch(url, {
        headers: { [names.fragmentHeader]: names.fragmentValue },
        credentials: "same-origin",
      });
    } catch (error) {
      showBanner("The console cannot reach the server: " + error.message);
      return;
    }
    if (response.status === 401) {
      location.href = response.headers.get("Location") || "/login";
      return;
    }
    show(await response.text());
  }

  function show(html) {
    dialog.innerHTML = html;
    wire(dialog);
    if (!dialog.open) dialog.showModal();
    const first = dialog.querySelector(
      ".failure, select, input:not([type=hidden]):not([disabled]), textarea, button.primary");
    if (first) {
      if (first.classList.contains("failure")) first.setAttribute("tabindex", "-1");
      first.focus();
    }
  }

  async function submit(form, submitter) {
    const data = new FormData(form);
    if (submitter && submitter.name) data.set(submitter.name, submitter.value);
    // The bulk form on the page: the selected rows' boxes belong to it.
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    let response;
    try {
      // Not form.action: a field named "action" shadows it.
      response = await fetch(form.getAttribute("action"), {
        method: "POST",
        body: new URLSearchParams(data),
        headers: { [names.csrfHeader]: csrf(), [names.fragmentHeader]: names.fragmentValue },
        credentials: "same-origin",
      });
    } catch (error) {
      buttons.forEach((b) => (b.disabled = false));
      showBanner("The console cannot reach the server: " + error.message);
      return;
    }
    const html = await response.text();
    const done = response.headers.get(names.doneHeader);
    if (done === names.done.close) {
      const holder = document.createElement("div");
      holder.innerHTML = html;
      applyDone(holder);
      const message = holder.querySelector(".done");
      if (message) say(message.textContent);
      dialog.close();
      return;
    }
    show(html);
    if (done === names.done.keep) applyDone(dialog);
    buttons.forEach((b) => (b.disabled = false));
  }

  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-dialog]");
    if (link) {
      event.preventDefault();
      openDialog(link.getAttribute("href"), link);
      return;
    }
    if (event.target.closest("[data-close]")) {
      event.preventDefault();
      dialog.close();
    }
  });

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!form.matches("form[data-dialog-form]")) return;
    // A dialog opened as a page of its own posts as a page.
    if (form.closest("[data-standalone]")) return;
    event.preventDefault();
    submit(form, event.submitter);
  });

  if (dialog) {
    dialog.addEventListener("close", () => {
      dialog.innerHTML = "";
      if (opener && document.body.contains(opener)) opener.focus();
    });
  }

  // Shared links stay short: empty filters are left out of the URL.
  document.querySelectorAll("form.filters").forEach((form) => {
    form.addEventListener("submit", () => {
      Array.from(form.elements).forEach((el) => {
        if (el.name && !el.value) el.disabled = true;
      });
      setTimeout(() => Array.from(form.elements).forEach((el) => (el.disabled = false)), 0);
    });
  });

  // Filters submit when a selector changes.
  document.querySelectorAll("[data-autosubmit]").forEach((el) => {
    el.addEventListener("change", () => el.form.requestSubmit());
  });

  // Selection ---------------------------------------------------------

  function countSelected() {
    const count = document.getElementById("selected-count");
    if (!count) return;
    const all = document.getElementById("all-matching");
    count.textContent = all && all.checked
      ? "all " + (all.dataset.total || "") + " matching"
      : document.querySelectorAll('input[name="ids"]:checked').length;
  }
  document.addEventListener("change", (event) => {
    if (event.target.id === "select-page") {
      document.querySelectorAll('#connectors input[name="ids"]').forEach((box) => {
        box.checked = event.target.checked;
      });
    }
    if (["ids"].includes(event.target.name) || ["select-page", "all-matching"].includes(event.target.id)) {
      countSelected();
    }
  });

  // Live table --------------------------------------------------------

  const table = document.querySelector("table[data-watch]");
  if (table) {
    const live = document.getElementById("live");
    const source = new EventSource(table.dataset.watch);
    source.addEventListener(events.ready, () => {
      hideBanner();
      if (live) live.hidden = false;
    });
    source.addEventListener(events.row, (event) => {
      const fresh = rowFromHtml(event.data);
      if (fresh) putRow(fresh);
    });
    source.addEventListener(events.removed, (event) => {
      const row = document.getElementById(names.rowIdPrefix + event.data);
      if (row) row.classList.add("left-filter");
    });
    source.addEventListener(events.unavailable, (event) => {
      if (live) live.hidden = true;
      showBanner("Live updates paused: " + event.data + " Retrying…");
    });
    source.addEventListener(events.failure, (event) => {
      if (live) live.hidden = true;
      showBanner(event.data);
    });
    source.addEventListener(events.expired, () => location.reload());
    source.addEventListener(events.reload, () => {
      source.close();
      location.reload();
    });
    source.onerror = () => {
      if (live) live.hidden = true;
      if (source.readyState === EventSource.CLOSED) {
        location.reload();
      } else {
        showBanner("Connection to the server lost; reconnecting…");
      }
    };
  } else if (document.querySelector(".failure[data-reason]") && banner) {
    // A page that failed because the service was unavailable retries.
    const unavailable = Array.from(document.querySelectorAll(".failure .reason"))
      .some((el) => /UNAVAILABLE/.test(el.textContent));
    if (unavailable) {
      showBanner("The service is unavailable (is the database down?). This page retries by itself.");
      setTimeout(() => location.reload(), 3000);
    }
  }
})();
