// The Progress tab: reads /api/v1/progress every second with a viewer token and draws each rollout,
// a row and a bar per agent, and the totals (as `dma-upgrade progress --follow` does in a terminal).
// The token comes from the form or the URL fragment (#token=...), never the query string, and is kept
// in sessionStorage (this tab only). Data is only ever written with textContent.
"use strict";

(() => {
  const POLL_MS = 1000;
  const TOKEN_KEY = "dma-upgrade.viewer-token";
  const ENDED = new Set(["Completed", "Failed", "Cancelled"]);
  const COLUMNS = ["agent", "role", "state", "progress", "activity", "resumed"];
  const ASK = "Enter a viewer token to follow the rollouts.";
  const LATE_START_TOLERANCE_SECONDS = 1; // engine/rollout_events.py: a start later than this is late

  const $ = (id) => document.getElementById(id);
  const drawn = new Map(); // rollout id -> the JSON it was last drawn from
  let generation = 0; // bumped when the token changes: answers to older polls are dropped
  let timer = null;

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value !== null && value !== undefined) node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function clock(iso) {
    return iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "";
  }

  function when(iso) {
    if (!iso) return "";
    const at = new Date(iso);
    const pad = (n) => String(n).padStart(2, "0");
    return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())} ${clock(iso)}`;
  }

  // How far one agent's upgrade is: planned steps done, all of it once completed.
  function fraction(agent) {
    if (agent.state === "Completed") return 1;
    return Math.min(agent.steps_done / Math.max(agent.steps_planned, 1), 1);
  }

  // What the agent is doing or why it stopped, in a few words.
  function activity(agent) {
    if (agent.state === "Failed") return agent.last_error || "failed";
    if (agent.state === "Completed") return agent.manual_start_needed ? "needs a manual start" : "done";
    if (agent.in_doubt) {
      return `in doubt: ${(agent.step || "a step").replaceAll("_", " ")} (attempt ${agent.step_attempt || 1}): ` +
             `${agent.last_error || "no answer"} — ask pending; resolve with dma-upgrade upgrade resolve`;
    }
    if (agent.phase) return `Installing: ${agent.phase}`;
    if (agent.step) return `${agent.step.replaceAll("_", " ")} (attempt ${agent.step_attempt || 1})`;
    if (agent.awaiting_manual_start) {
      return `waiting for a manual start of ${agent.awaiting_manual_start} before the switch-over`;
    }
    if (agent.waiting_until) return `waiting until ${clock(agent.waiting_until)}`;
    return "waiting";
  }

  function tone(state) {
    if (ENDED.has(state)) return state.toLowerCase();
    if (state === "Paused") return "paused";
    return state === "Scheduled" || state === "Planned" ? "scheduled" : "active";
  }

  function bar(agent) {
    const percent = Math.round(fraction(agent) * 100);
    const fill = el("span", { class: "fill" });
    fill.style.width = `${percent}%`;
    return el("span", { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
                        "aria-valuenow": String(percent), "aria-label": `${agent.agent} ${percent}%` },
              el("span", { class: "track" }, fill), el("span", { class: "percent" }, `${percent}%`));
  }

  function agentRow(agent) {
    const cells = {
      agent: agent.agent,
      role: agent.failover_role || "",
      state: el("span", { class: `state ${tone(agent.state)}` }, agent.state),
      progress: bar(agent),
      activity: activity(agent),
      resumed: agent.resumes ? `${agent.resumes}x` : "",
    };
    const classes = [tone(agent.state), agent.in_doubt ? "in-doubt" : null].filter(Boolean).join(" ");
    const row = el("tr", { "data-agent": agent.agent, "data-state": agent.state, class: classes });
    for (const column of COLUMNS) row.append(el("td", { class: column }, cells[column]));
    if (agent.state === "Failed" && agent.last_error) row.title = agent.last_error;
    else if (agent.notes && agent.notes.length) row.title = agent.notes.join("\n");
    return row;
  }

  // Whole seconds from 10 s, else to the tenth (as adapters/read/progress_view.py seconds_text).
  function seconds(value) {
    return value >= 10 ? value.toFixed(0) : String(Number(value.toFixed(1)));
  }

  // A scheduled rollout: "scheduled for T" while it waits, "scheduled T, started T2 (N s late)" once started.
  function scheduledStart(rollout) {
    if (!rollout.started_at) {
      return `scheduled for ${when(rollout.start_at)}` + (rollout.state === "Planned" ? "" : ", never started");
    }
    const late = rollout.start_lateness_seconds || 0;
    const how = late > LATE_START_TOLERANCE_SECONDS ? `${seconds(late)} s late` : "on time";
    return `scheduled ${when(rollout.start_at)}, started ${when(rollout.started_at)} (${how})`;
  }

  function totals(rollout) {
    const parts = [`${rollout.completed} completed`, `${rollout.failed} failed`, `${rollout.in_flight} in flight`,
                   `${rollout.waiting} waiting`, `${rollout.cancelled} cancelled`];
    if (rollout.end_reason) parts.push(rollout.end_reason);
    return parts.join(" · ");
  }

  function rolloutSection(rollout) {
    const meta = [`policy ${rollout.failover_policy}`, `${rollout.agents_total} agents`,
                  `planned by ${rollout.planned_by} at ${when(rollout.planned_at)}`];
    if (rollout.start_at) meta.push(scheduledStart(rollout));
    else if (rollout.started_at) meta.push(`started ${when(rollout.started_at)}`);
    if (rollout.ended_at) meta.push(`ended ${when(rollout.ended_at)}`);
    if (rollout.upload_only) meta.push("upload only");
    const warnings = (rollout.warnings || []).map((text) => el("li", {}, text));
    const notes = (rollout.notes || []).map((text) => el("li", {}, text));
    const head = el("tr", {}, ...COLUMNS.map((column) => el("th", { scope: "col", class: column }, column)));
    return el("section", { class: "rollout", "data-rollout": rollout.rollout_id, "data-state": rollout.state },
      el("h2", {}, "Rollout ", el("code", {}, rollout.rollout_id), ` · ${rollout.package_version} · `,
         el("span", { class: `state ${tone(rollout.state)}` }, rollout.state)),
      el("p", { class: "meta" }, meta.join(" · ")),
      warnings.length ? el("ul", { class: "warnings" }, ...warnings) : null,
      notes.length ? el("ul", { class: "notes" }, ...notes) : null,
      el("table", {}, el("thead", {}, head), el("tbody", {}, ...rollout.agents.map(agentRow))),
      el("p", { class: "totals" }, totals(rollout)));
  }

  // Newest first; a rollout is redrawn only when its data changed (so a selection survives a poll).
  function render(rollouts) {
    const list = $("rollouts");
    const ids = new Set(rollouts.map((rollout) => rollout.rollout_id));
    for (const section of [...list.children]) {
      if (!ids.has(section.dataset.rollout)) {
        drawn.delete(section.dataset.rollout);
        section.remove();
      }
    }
    [...rollouts].reverse().forEach((rollout, index) => {
      const id = rollout.rollout_id;
      const json = JSON.stringify(rollout);
      let section = list.querySelector(`section[data-rollout="${CSS.escape(id)}"]`);
      if (drawn.get(id) !== json) {
        const fresh = rolloutSection(rollout);
        if (section) section.replaceWith(fresh);
        section = fresh;
        drawn.set(id, json);
      }
      if (list.children[index] !== section) list.insertBefore(section, list.children[index] || null);
    });
    $("empty").hidden = rollouts.length > 0;
  }

  function clear() {
    $("rollouts").replaceChildren();
    drawn.clear();
    $("empty").hidden = true;
  }

  function say(text, kind = "error") {
    $("message").textContent = text;
    $("message").className = `message ${kind}`;
    $("message").hidden = !text;
  }

  function status(text, live) {
    $("status").textContent = text;
    $("status").classList.toggle("live", live);
  }

  function askForToken(why, kind = "error") {
    clearTimeout(timer);
    generation += 1;
    sessionStorage.removeItem(TOKEN_KEY);
    clear();
    say(why, kind);
    status("", false);
    $("forget").hidden = true;
    $("token-form").hidden = false;
    $("token").value = "";
    $("token").focus();
  }

  function useToken(token) {
    clearTimeout(timer);
    generation += 1;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token-form").hidden = true;
    $("forget").hidden = false;
    say("");
    status("connecting…", false);
    poll();
  }

  async function detail(response) {
    try {
      const body = await response.json();
      return body.detail || response.statusText;
    } catch {
      return response.statusText;
    }
  }

  async function poll() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) {
      askForToken(ASK, "info");
      return;
    }
    const mine = generation;
    let response;
    try {
      response = await fetch("api/v1/progress", {
        headers: { Authorization: `Bearer ${token}`, Accept: "application/json" }, cache: "no-store" });
    } catch {
      if (mine === generation) {
        status(`cannot reach the server at ${clock(new Date().toISOString())}; retrying`, false);
        timer = setTimeout(poll, POLL_MS);
      }
      return;
    }
    if (mine !== generation) return;
    if (response.status === 401) {
      askForToken(`The server refused the token (401 Unauthorized: ${await detail(response)}). ` +
                  "Enter a valid viewer token.");
      return;
    }
    if (response.status === 403) {
      askForToken(`This token may not read progress (403 Forbidden: ${await detail(response)}).`);
      return;
    }
    if (!response.ok) {
      say(`The server answered ${response.status}: ${await detail(response)}. Retrying every second.`);
      status("", false);
    } else {
      const rollouts = await response.json();
      if (mine !== generation) return;
      render(rollouts);
      say("");
      status(`live · updated ${clock(new Date().toISOString())}`, true);
    }
    timer = setTimeout(poll, POLL_MS);
  }

  // A token in the URL fragment (#token=...) is taken, then removed from the address bar and history.
  function takeFragmentToken() {
    const token = new URLSearchParams(location.hash.slice(1)).get("token");
    if (token) {
      history.replaceState(null, "", location.pathname + location.search);
      sessionStorage.setItem(TOKEN_KEY, token);
    }
    return token;
  }

  function start() {
    takeFragmentToken();
    window.addEventListener("hashchange", () => {
      const token = takeFragmentToken();
      if (token) useToken(token);
    });
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token").value.trim();
      if (token) useToken(token);
    });
    $("forget").addEventListener("click", () => askForToken("Token forgotten.", "info"));
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) {
      useToken(token);
    } else {
      askForToken(ASK, "info");
    }
  }

  start();
})();
