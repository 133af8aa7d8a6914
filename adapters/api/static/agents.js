// The Agents page: every agent by cluster with its version (parsed), failover role and partner, and state;
// a warning for a cluster on mixed versions. An operator selects agents or a cluster and opens the Upgrade
// window for them, or starts an agent an upgrade left stopped.
import { $, act, api, can, el, say, startPage } from "./common.js";

function versionOf(cluster, name) {
  return cluster.versions.find((version) => version.agents.includes(name));
}

function failover(agent) {
  return agent.failover_role ? `${agent.failover_role} (partner ${agent.failover_partner || "none"})` : "none";
}

async function startAgent(name) {
  const agent = await api(`agents/${encodeURIComponent(name)}/start`, { method: "POST" });
  say(`Agent ${agent.name} started.`, "ok");
  await draw();
}

function state(agent) {
  if (!agent.needs_manual_start) return el("span", { class: "state completed" }, "running");
  const cell = el("span", { class: "state cancelled" }, "stopped: needs a manual start ");
  if (can("operator")) {
    const button = el("button", { type: "button", "aria-label": `Start ${agent.name}` }, "Start");
    button.addEventListener("click", () => act(button, () => startAgent(agent.name)));
    cell.append(button);
  }
  return cell;
}

function agentRow(agent, cluster) {
  const version = versionOf(cluster, agent.name) || { cu: null, build: null };
  const pick = can("operator")
    ? el("input", { type: "checkbox", class: "pick", value: agent.name, "aria-label": `Select ${agent.name}` })
    : "";
  return el("tr", { "data-agent": agent.name },
    el("td", {}, pick), el("td", { class: "agent" }, agent.name), el("td", {}, agent.address),
    el("td", {}, el("code", {}, agent.version)), el("td", {}, version.release || "not a version"),
    el("td", {}, version.track || ""), el("td", {}, version.cu === null ? "" : `CU${version.cu}`),
    el("td", {}, version.build === null ? "" : String(version.build)),
    el("td", {}, failover(agent)), el("td", {}, state(agent)));
}

function clusterSection(cluster, agents) {
  const title = cluster.cluster === null ? `Agent ${cluster.agents[0]} (in no cluster)` : `Cluster ${cluster.cluster}`;
  const id = `system-${cluster.cluster === null ? "agent-" + cluster.agents[0] : cluster.cluster}`;
  const head = ["", "Agent", "Address", "Version", "Release", "Track", "CU", "Build", "Failover", "State"]
    .map((label) => el("th", { scope: "col" }, label || el("span", { class: "visually-hidden" }, "Select")));
  const actions = el("div", { class: "actions" });
  if (can("operator") && cluster.cluster !== null) {
    const open = el("a", { class: "button", href: `upgrade?${new URLSearchParams({ cluster: cluster.cluster })}` },
                    `Upgrade cluster ${cluster.cluster}…`);
    actions.append(open);
  }
  return el("section", { class: "cluster", "aria-labelledby": id, "data-cluster": cluster.cluster || "" },
    el("h2", { id }, title),
    cluster.mixed ? el("p", { class: "warning", "data-mixed": "yes" },
      `Mixed versions: ${cluster.versions.map((v) => `${v.text} (${v.agents.join(", ")})`).join("; ")}. ` +
      "All agents of a cluster must run the same DataMiner version.") : null,
    el("table", { class: "list" }, el("thead", {}, el("tr", {}, head)),
       el("tbody", {}, cluster.agents.map((name) => agentRow(agents.get(name), cluster)))),
    actions);
}

function picked() {
  return [...document.querySelectorAll("input.pick:checked")].map((box) => box.value);
}

function selectionChanged() {
  const names = picked();
  $("upgrade-selected").disabled = names.length === 0;
  $("selected-count").textContent = names.length ? `${names.length} selected: ${names.join(", ")}` : "none selected";
}

async function draw() {
  const [agents, clusters] = await Promise.all([api("agents"), api("clusters")]);
  const byName = new Map(agents.map((agent) => [agent.name, agent]));
  $("clusters").replaceChildren(...clusters.map((cluster) => clusterSection(cluster, byName)));
  $("empty").hidden = agents.length > 0;
  selectionChanged();
}

startPage("agents", async () => {
  $("clusters").addEventListener("change", selectionChanged);
  $("upgrade-selected").addEventListener("click", () => {
    const query = new URLSearchParams(picked().map((name) => ["agent", name]));
    location.assign(`upgrade?${query}`);
  });
  await draw();
});
