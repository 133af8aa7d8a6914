// The Upgrade window's Schedule tab: a package (available, or a new .dmupgrade uploaded here with its
// validation errors inline), the agents (All Agents in cluster, or Individual Agents with add by IP), the
// advanced options (defaults from the settings), the failover policy (the default named), start now or at a
// time (entered in the browser's time zone, sent in UTC), a plan preview (the dry run), then Upgrade or Upload
// only: the confirmation is carried to the rollout's Progress tab.
import { $, OPTIONS, POLICIES, act, api, el, leaveNotice, say, startPage, timeZone, when } from "./common.js";

let defaults = {}; // the settings: option defaults and the default failover policy
const addresses = [];

const chosen = (name) => document.querySelector(`input[name="${name}"]:checked`).value;

function packageLabel(pkg) {
  return `${pkg.file_name} (${pkg.full_version}, ${pkg.kind}, uploaded by ${pkg.uploaded_by} ${when(pkg.uploaded_at)})`;
}

async function loadPackages(select) {
  const packages = (await api("packages")).filter((pkg) => pkg.status === "available");
  $("package").replaceChildren(...packages.map((pkg) => el("option", { value: pkg.sha256 }, packageLabel(pkg))));
  if (select) $("package").value = select;
  $("no-package").hidden = packages.length > 0;
}

function agentChoice(agent, wanted) {
  const id = `agent-${agent.name}`;
  return el("label", { class: "choice", for: id },
    el("input", { type: "checkbox", id, name: "agent", value: agent.name, checked: wanted.includes(agent.name) }),
    ` ${agent.name} (${agent.address}, ${agent.cluster || "no cluster"}, ${agent.version})`);
}

async function loadAgents(query) {
  const [agents, clusters] = await Promise.all([api("agents"), api("clusters")]);
  const names = clusters.filter((c) => c.cluster !== null).map((c) => c.cluster);
  $("cluster").replaceChildren(...names.map((name) => el("option", { value: name }, name)));
  const wanted = query.getAll("agent");
  $("agent-choices").replaceChildren(...agents.map((agent) => agentChoice(agent, wanted)));
  if (query.get("cluster")) $("cluster").value = query.get("cluster");
  if (wanted.length) {
    document.querySelector('input[name="scope"][value="agents"]').checked = true;
    $("agent-choices").closest("details").open = true;
  }
}

function loadDefaults(settings) {
  defaults = settings;
  for (const key of Object.keys(OPTIONS)) {
    $(`option-${key}`).checked = settings[key] === "on";
    $(`default-${key}`).textContent = `default ${settings[key]}`;
  }
  const policy = settings["failover-default-policy"];
  $("policy").replaceChildren(
    el("option", { value: "default" }, `Default policy (${POLICIES[policy] || policy})`),
    ...Object.entries(POLICIES).map(([value, label]) => el("option", { value }, label)));
}

// The start time as typed (browser's zone) in UTC, or null for "now".
function startAt() {
  if (chosen("when") !== "at") return null;
  const typed = $("start-at").value;
  if (!typed) throw new Error("Give the start time, or choose to start now.");
  return new Date(typed).toISOString();
}

function showUtc() {
  const typed = $("start-at").value;
  $("start-utc").textContent = typed ? `stored as ${new Date(typed).toISOString().replace(".000", "")} (UTC)` : "";
}

// The rollout the form asks for (an option equal to its default is left to the default).
function request(uploadOnly = false) {
  const body = { package: $("package").value, failover_policy: $("policy").value, upload_only: uploadOnly,
                 start_at: startAt() };
  if (!body.package) throw new Error("Choose a package, or upload a new one.");
  if (chosen("scope") === "cluster") {
    body.cluster = $("cluster").value;
  } else {
    body.agents = [...document.querySelectorAll('input[name="agent"]:checked')].map((box) => box.value);
    body.addresses = [...addresses];
    if (!body.agents.length && !body.addresses.length) throw new Error("Select agents, or add one by IP.");
  }
  for (const key of Object.keys(OPTIONS)) {
    const on = $(`option-${key}`).checked;
    if (on !== (defaults[key] === "on")) body[key.replaceAll("-", "_")] = on;
  }
  return body;
}

function planTable(plan) {
  const head = ["#", "Agent", "Cluster", "Role", "Current version", "Steps", "After"]
    .map((label) => el("th", { scope: "col" }, label));
  const rows = plan.agents.map((agent, index) => el("tr", { "data-agent": agent.name },
    el("td", {}, String(index + 1)), el("td", { class: "agent" }, agent.name), el("td", {}, agent.cluster || ""),
    el("td", {}, agent.failover_role || ""), el("td", {}, agent.current_version),
    el("td", { class: "steps" }, agent.steps.map((step) => step.replaceAll("_", " ")).join(" → ")),
    el("td", {}, agent.after.join(", "))));
  return el("table", { class: "list" }, el("thead", {}, el("tr", {}, head)), el("tbody", {}, rows));
}

function showPlan(plan) {
  const options = Object.entries(plan.options)
    .map(([key, on]) => `${OPTIONS[key.replaceAll("_", "-")] || key} ${on ? "on" : "off"}`);
  const facts = [
    ["Package", plan.package_version], ["Failover policy", POLICIES[plan.failover_policy] || plan.failover_policy],
    ["Start", plan.start_at ? `${when(plan.start_at)} (${timeZone()})` : "now"],
    ["At once", `${plan.max_concurrent} agents; stops after ${plan.max_errors} errors`],
    ["Options", options.join(", ")],
  ];
  $("plan-facts").replaceChildren(...facts.flatMap(([term, value]) => [el("dt", {}, term),
    el("dd", { "data-fact": term }, value)]));
  $("plan-agents").replaceChildren(planTable(plan));
  $("plan-warnings").replaceChildren(...plan.warnings.map((text) => el("li", {}, text)));
  $("plan-warnings").hidden = !plan.warnings.length;
  $("plan-notes").replaceChildren(...plan.notes.map((text) => el("li", {}, text)));
  $("plan-notes").hidden = !plan.notes.length;
  $("plan").hidden = false;
}

async function preview() {
  showPlan(await api("rollouts/plan", { method: "POST", json: request() }));
  say("");
  $("plan-title").focus();
}

async function start(uploadOnly) {
  const plan = await api("rollouts", { method: "POST", json: request(uploadOnly) });
  const what = uploadOnly ? "Upload-only rollout" : "Rollout";
  const start = plan.start_at ? `scheduled for ${when(plan.start_at)} (${timeZone()})` : "started";
  leaveNotice(`${what} ${plan.rollout_id} ${start}: ${plan.package_version} on ${plan.agents.length} agents.`);
  location.assign(`./?${new URLSearchParams({ rollout: plan.rollout_id })}`);
}

async function upload() {
  const file = $("package-file").files[0];
  $("upload-error").hidden = true;
  if (!file) throw new Error("Choose a .dmupgrade file first.");
  const form = new FormData();
  form.append("file", file, file.name);
  let pkg;
  try {
    pkg = await api("packages", { method: "POST", form });
  } catch (error) {
    $("upload-error").textContent = error.message;
    $("upload-error").hidden = false;
    return;
  }
  await loadPackages(pkg.sha256);
  document.querySelector('input[name="source"][value="available"]').checked = true;
  const refused = pkg.clusters.filter((c) => !c.accepted).map((c) => `${c.cluster || c.agents[0]}: ` +
                                                                     c.refusals.join("; "));
  $("upload-result").textContent = `Uploaded ${pkg.file_name} (${pkg.full_version}).` +
    (refused.length ? ` Not accepted by ${refused.join(" · ")}` : "");
}

function addAddress() {
  const address = $("address").value.trim();
  if (!address || addresses.includes(address)) return;
  addresses.push(address);
  const remove = el("button", { type: "button", "aria-label": `Remove ${address}` }, "Remove");
  const item = el("li", {}, `${address} `, remove);
  remove.addEventListener("click", () => {
    addresses.splice(addresses.indexOf(address), 1);
    item.remove();
    $("address").focus();
  });
  $("addresses").append(item);
  $("address").value = "";
  document.querySelector('input[name="scope"][value="agents"]').checked = true;
}

function wire() {
  const on = (id, work) => $(id).addEventListener("click", () => act($(id), work));
  $("schedule").addEventListener("submit", (event) => event.preventDefault());
  on("upload", upload);
  on("preview", preview);
  on("upgrade", () => start(false));
  on("upload-only", () => start(true));
  $("add-address").addEventListener("click", addAddress);
  $("address").addEventListener("keydown", (event) => {
    if (event.key === "Enter") addAddress();
  });
  $("start-at").addEventListener("input", () => {
    document.querySelector('input[name="when"][value="at"]').checked = true;
    showUtc();
  });
  $("package-file").addEventListener("change", () => {
    document.querySelector('input[name="source"][value="new"]').checked = true;
  });
}

startPage("upgrade", async () => {
  wire();
  const query = new URLSearchParams(location.search);
  const [settings] = await Promise.all([api("settings"), loadPackages(), loadAgents(query)]);
  loadDefaults(settings);
});
