// The Progress tab: reads /api/v1/progress every second and draws each rollout, a row and a bar per agent,
// and the totals (as `dma-upgrade progress --follow` does in a terminal); a scheduled rollout counts down to
// its start. An operator also gets the rollout's controls: pause, resume, cancel, retry failed, continue.
import { $, api, act, can, clock, el, say, startPage, status, timeZone, when } from "./common.js";

const POLL_MS = 1000;
const ENDED = new Set(["Completed", "Failed", "Cancelled"]);
const COLUMNS = ["agent", "role", "state", "progress", "activity", "resumed"];
const LATE_START_TOLERANCE_SECONDS = 1; // engine/rollout_events.py: a start later than this is late
const CONTROLS = [ // engine/rollout.py ROLLOUT_TRANSITIONS: the states each command applies to
  { command: "pause", label: "Pause", from: ["Running"] },
  { command: "resume", label: "Resume", from: ["Paused"] },
  { command: "cancel", label: "Cancel", from: ["Planned", "Running", "Paused", "Failed"] },
  { command: "retry-failed", label: "Retry failed", from: ["Failed"] },
  { command: "continue", label: "Continue", from: ["Failed", "Cancelled"] },
];

const drawn = new Map(); // rollout id -> the JSON it was last drawn from
const focusOn = new URLSearchParams(location.search).get("rollout");
let timer = null;

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

// "starts in 1 min 05 s" until a scheduled rollout starts; empty otherwise.
function countdown(startAt, startedAt, state) {
  if (!startAt || startedAt || state !== "Planned") return "";
  const left = Math.max(0, Math.ceil((new Date(startAt) - Date.now()) / 1000));
  const minutes = Math.floor(left / 60);
  const text = minutes ? `${minutes} min ${String(left % 60).padStart(2, "0")} s` : `${left} s`;
  return left > 0 ? `Starts in ${text} (at ${clock(startAt)}, ${timeZone()})` : "Starting now…";
}

async function control(rollout, command, label) {
  if (command === "cancel" && !window.confirm(`Cancel rollout ${rollout.rollout_id}?`)) return;
  const done = await api(`rollouts/${rollout.rollout_id}/${command}`, { method: "POST" });
  say(`${label}: rollout ${done.rollout_id} is now ${done.state}.`, "ok");
  clearTimeout(timer);
  poll();
}

function controls(rollout) {
  const shown = can("operator") ? CONTROLS.filter((c) => c.from.includes(rollout.state)) : [];
  const box = el("div", { class: "controls", "data-key": shown.map((c) => c.command).join(" "),
                          role: "group", "aria-label": `Controls of rollout ${rollout.rollout_id}` });
  for (const { command, label } of shown) {
    const button = el("button", { type: "button", "data-command": command }, label);
    button.addEventListener("click", () => act(button, () => control(rollout, command, label)));
    box.append(button);
  }
  return box;
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
  return el("section", { class: "rollout", "data-rollout": rollout.rollout_id, "data-state": rollout.state,
                         "aria-labelledby": `rollout-${rollout.rollout_id}` },
    el("h2", { id: `rollout-${rollout.rollout_id}`, tabindex: "-1" }, "Rollout ", el("code", {}, rollout.rollout_id),
       ` · ${rollout.package_version} · `, el("span", { class: `state ${tone(rollout.state)}` }, rollout.state)),
    el("p", { class: "meta" }, meta.join(" · ")),
    el("p", { class: "countdown", role: "timer", "data-start-at": rollout.start_at || "",
              "data-started-at": rollout.started_at || "", "data-state": rollout.state }),
    controls(rollout),
    warnings.length ? el("ul", { class: "warnings", "aria-label": "Warnings" }, ...warnings) : null,
    notes.length ? el("ul", { class: "notes", "aria-label": "Notes" }, ...notes) : null,
    el("table", {}, el("thead", {}, head), el("tbody", {}, ...rollout.agents.map(agentRow))),
    el("p", { class: "totals" }, totals(rollout)));
}

// Redraw a rollout in place, keeping its controls (and the keyboard focus on them) while they stay the same.
function redraw(section, fresh) {
  const kept = section.querySelector(":scope > .controls");
  const offered = fresh.querySelector(":scope > .controls");
  if (!kept || kept.dataset.key !== offered.dataset.key) {
    section.replaceWith(fresh);
    return fresh;
  }
  const children = [...fresh.children];
  const at = children.indexOf(offered);
  for (const child of [...section.children]) if (child !== kept) child.remove();
  kept.before(...children.slice(0, at));
  kept.after(...children.slice(at + 1));
  section.dataset.state = fresh.dataset.state;
  return section;
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
      section = section ? redraw(section, fresh) : fresh;
      drawn.set(id, json);
    }
    if (list.children[index] !== section) list.insertBefore(section, list.children[index] || null);
  });
  for (const line of list.querySelectorAll(".countdown")) {
    line.textContent = countdown(line.dataset.startAt, line.dataset.startedAt, line.dataset.state);
    line.hidden = !line.textContent;
  }
  $("empty").hidden = rollouts.length > 0;
}

// The rollout named by ?rollout=ID (the Upgrade window sends people here) gets the focus once drawn.
function focusRequested() {
  const heading = focusOn && document.getElementById(`rollout-${focusOn}`);
  if (heading && !heading.dataset.focused) {
    heading.dataset.focused = "yes";
    heading.focus();
  }
}

async function poll() {
  try {
    render(await api("progress"));
    focusRequested();
    status(`live · updated ${clock(new Date().toISOString())}`, true);
  } catch (error) {
    if (error.status === 401) return; // back to the token form
    say(`${error.message}. Retrying every second.`);
    status("", false);
  }
  timer = setTimeout(poll, POLL_MS);
}

startPage("./", poll);
