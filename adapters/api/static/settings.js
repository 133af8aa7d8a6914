// The Settings page (admin): the default failover policy and the upgrade options' defaults, as System
// Center > Settings > Upgrade; each change is one PUT /api/v1/settings/{key} (an event).
import { $, OPTIONS, POLICIES, act, api, can, el, say, startPage } from "./common.js";

let current = {};

function draw(settings) {
  current = settings;
  $("policy").replaceChildren(...Object.entries(POLICIES).map(([value, label]) =>
    el("option", { value, selected: settings["failover-default-policy"] === value }, label)));
  $("options").replaceChildren(...Object.entries(OPTIONS).map(([key, label]) =>
    el("label", { class: "choice" },
       el("input", { type: "checkbox", id: `option-${key}`, checked: settings[key] === "on" }), ` ${label}`)));
  $("delay").value = settings["delayed-start-seconds"];
}

function wanted() {
  const values = { "failover-default-policy": $("policy").value, "delayed-start-seconds": $("delay").value.trim() };
  for (const key of Object.keys(OPTIONS)) values[key] = $(`option-${key}`).checked ? "on" : "off";
  return values;
}

async function save() {
  const changed = Object.entries(wanted()).filter(([key, value]) => current[key] !== value);
  if (!changed.length) {
    say("Nothing changed.", "info");
    return;
  }
  let settings = current;
  for (const [key, value] of changed) {
    settings = await api(`settings/${encodeURIComponent(key)}`, { method: "PUT", json: { value } });
  }
  draw(settings);
  say(`Saved: ${changed.map(([key, value]) => `${key} = ${value}`).join(", ")}.`, "ok");
}

startPage("settings", async () => {
  if (!can("admin")) return;
  $("settings").addEventListener("submit", (event) => event.preventDefault());
  $("save").addEventListener("click", () => act($("save"), save));
  draw(await api("settings"));
});
