// The calls page, live: asks /ui/calls-rows for the rows after the newest one shown and puts them on top.
// Rows come as HTML rendered by the page's own template macro (escaped exactly as the page is); this
// script only moves those elements into the table. It pauses while the filters are being edited (the
// rows would not be the ones asked for) and while the tab is hidden; without it the page is the same,
// only not live. Served from the dashboard itself, as the CSP's script-src 'self' requires.
"use strict";

(() => {
  const table = document.querySelector("table.calls[data-rows]");
  const status = document.querySelector("p.live");
  if (table === null || status === null) return;
  const body = table.tBodies[0];
  const form = document.querySelector("form.filters");
  const every = Number(table.dataset.every) || 3000;
  const MAX_NEW = 2000; // rows added before the page asks to be reloaded (it would only grow)
  const MAX_OPEN = 20; // rows still "started" asked about again per poll (views.MAX_OPEN)
  let newest = Number(table.dataset.newest) || 0;
  let added = 0;
  let failures = 0;
  let timer = 0;
  let busy = false; // one request at a time: `newest` only moves forward, so no row comes twice
  let stopped = false;

  const say = (text) => { status.textContent = text; };

  const changed = (el) => {
    if (el instanceof HTMLInputElement) return el.value !== el.defaultValue;
    if (el instanceof HTMLSelectElement) return [...el.options].some((o) => o.selected !== o.defaultSelected);
    return false;
  };

  const pausedFor = () => {
    if (document.hidden) return "paused while the tab is hidden";
    if (form !== null && (form.contains(document.activeElement) || [...form.elements].some(changed))) {
      return "paused while the filters are being edited (apply or clear them to go on)";
    }
    return "";
  };

  const schedule = (ms) => {
    window.clearTimeout(timer);
    timer = stopped ? 0 : window.setTimeout(poll, ms);
  };

  const stop = (text) => {
    stopped = true;
    window.clearTimeout(timer);
    say(text);
  };

  function apply(html) {
    const parsed = document.createElement("template");
    parsed.innerHTML = html;
    const fresh = parsed.content.querySelector("tbody[data-part=new]");
    const done = parsed.content.querySelector("tbody[data-part=done]");
    if (fresh === null || done === null) throw new Error("unexpected answer");
    for (const row of [...done.children]) {
      body.querySelector(`tr[data-id="${Number(row.dataset.id)}"]`)?.replaceWith(row);
    }
    const rows = [...fresh.children];
    if (rows.length > 0) {
      body.querySelector("tr.empty")?.remove();
      for (const row of rows) if (row.classList.contains("call")) row.classList.add("arrived");
      body.prepend(...rows);
      added += rows.filter((row) => row.classList.contains("call")).length;
    }
    newest = Math.max(newest, Number(fresh.dataset.newest) || 0);
  }

  async function poll() {
    timer = 0;
    if (busy || stopped) return; // the request under way schedules the next
    const paused = pausedFor();
    if (paused) {
      say(`Live: ${paused}.`);
      schedule(every);
      return;
    }
    const url = new URL(table.dataset.rows, document.baseURI);
    url.searchParams.set("after", String(newest));
    const open = [...body.querySelectorAll(":scope > tr[data-outcome=started]")].slice(0, MAX_OPEN);
    if (open.length > 0) url.searchParams.set("open", open.map((row) => row.dataset.id).join(","));
    busy = true;
    try {
      const answer = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (answer.status === 401 || answer.status === 403) {
        stop("Live updates stopped: the session ended (reload the page to sign in again).");
        return;
      }
      if (!answer.ok) throw new Error(`answered ${answer.status}`);
      apply(await answer.text());
      failures = 0;
    } catch (error) {
      failures += 1;
      say(`Live: the gateway did not answer (${error instanceof Error ? error.message : "no answer"}); trying again.`);
      schedule(Math.min(every * 2 ** failures, 60000));
      return;
    } finally {
      busy = false;
    }
    if (added >= MAX_NEW) {
      stop(`Live updates stopped after ${added} new calls: reload the page for the newest.`);
      return;
    }
    say(`Live: new calls appear at the top as they are made (checked every ${every / 1000} s).`);
    schedule(every);
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && !stopped) schedule(0); // at once when the tab is shown again
  });
  form?.addEventListener("focusout", () => { if (!stopped) schedule(100); });
  status.hidden = false;
  say("Live: new calls appear at the top as they are made.");
  schedule(every);
})();
