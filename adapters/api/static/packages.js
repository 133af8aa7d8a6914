// The Packages page: the available packages, then the completed ones (a package that executed an upgrade
// is completed and stays listed: the list is the upgrade history), each with the rollouts that used it
// (who, when, how they ended) and whether each cluster accepted it on upload.
import { $, api, el, startPage, when } from "./common.js";

function acceptance(pkg) {
  if (!pkg.clusters.length) return el("span", { class: "hint" }, "not judged (no agents when uploaded)");
  return el("ul", {}, pkg.clusters.map((judged) => {
    const who = judged.cluster !== null ? `cluster ${judged.cluster}` : `agent ${judged.agents[0]}`;
    return judged.accepted
      ? el("li", { class: "verdict-ok" }, `accepted by ${who}`)
      : el("li", { class: "verdict-broken" }, `not accepted by ${who}: ${judged.refusals.join("; ")}`);
  }));
}

function rollouts(pkg) {
  if (!pkg.rollouts.length) return el("span", { class: "hint" }, "none");
  return el("ul", {}, pkg.rollouts.map((rollout) => {
    const parts = [rollout.upload_only ? "upload only" : "upgrade", rollout.outcome];
    if (rollout.used_by) {
      parts.push(`used by ${rollout.used_by} at ${when(rollout.used_at)} (first on ${rollout.used_agent})`);
    }
    for (const again of rollout.continued) parts.push(`continued by ${again.by} at ${when(again.at)}`);
    // an id's last digits are random; its first ones are its time, the same for rollouts a minute apart
    return el("li", {}, el("a", { href: `./?${new URLSearchParams({ rollout: rollout.rollout_id })}` },
                           rollout.rollout_id.slice(-8)), ` · ${parts.join(" · ")}`);
  }));
}

function packageTable(packages) {
  const head = ["Package", "Version", "Kind", "Uploaded", "Acceptance", "Rollouts"]
    .map((label) => el("th", { scope: "col" }, label));
  return el("table", { class: "list" }, el("thead", {}, el("tr", {}, head)), el("tbody", {}, packages.map((pkg) =>
    el("tr", { "data-package": pkg.file_name, "data-status": pkg.status },
      el("td", { class: "agent" }, pkg.file_name), el("td", {}, el("code", {}, pkg.version)),
      el("td", {}, pkg.kind), el("td", {}, `${pkg.uploaded_by}, ${when(pkg.uploaded_at)}`),
      el("td", {}, acceptance(pkg)), el("td", {}, rollouts(pkg))))));
}

async function draw() {
  const packages = await api("packages/history");
  for (const status of ["available", "completed"]) {
    const group = packages.filter((pkg) => pkg.status === status);
    const empty = el("p", { class: "empty" }, `No ${status} packages.`);
    $(status).replaceChildren(group.length ? packageTable(group) : empty);
  }
}

startPage("packages", draw);
