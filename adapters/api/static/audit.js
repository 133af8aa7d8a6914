// The Audit page: the hash chain's verdict with its head (HASH@POSITION), and exports of the trail for a
// range (JSON lines or CSV), fetched with the token and handed to the browser as a download.
import { $, act, api, el, startPage } from "./common.js";

async function verify() {
  const verdict = await api("audit/verify");
  const line = verdict.ok
    ? el("p", { class: "verdict-ok" }, `The chain is intact: ${verdict.verified} events verified.`)
    : el("p", { class: "verdict-broken" }, `The chain is broken at position ${verdict.broken_at}: ${verdict.problem}`);
  const head = el("p", {}, "Head: ", el("code", { class: "hash", id: "head" }, verdict.head || "no events yet"));
  $("verdict").replaceChildren(line, head);
}

// The export's query: format, and each bound typed in the browser's zone sent in UTC.
function exportQuery() {
  const query = new URLSearchParams({ format: $("format").value });
  for (const [id, name] of [["from", "from"], ["to", "to"]]) {
    if ($(id).value) query.set(name, new Date($(id).value).toISOString());
  }
  if ($("rollout").value.trim()) query.set("rollout", $("rollout").value.trim());
  return query;
}

async function download() {
  const query = exportQuery();
  const response = await api(`audit/export?${query}`, { raw: true });
  const blob = await response.blob();
  const name = `audit.${query.get("format")}`;
  const link = el("a", { href: URL.createObjectURL(blob), download: name });
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  $("exported").textContent = `Downloaded ${name}: ${blob.size} bytes.`;
}

startPage("audit", async () => {
  $("export").addEventListener("submit", (event) => event.preventDefault());
  $("verify").addEventListener("click", () => act($("verify"), verify));
  $("download").addEventListener("click", () => act($("download"), download));
  await verify();
});
