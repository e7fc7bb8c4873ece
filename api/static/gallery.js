// Analyst gallery page: add, edit, delete references; review feedback.
const FIELDS = ["label", "category", "make_model", "calibre", "notes"];

function categoryOptions(select, current) {
  select.replaceChildren(...Object.values(CATEGORIES).map((c) =>
    el("option", { value: c.key, ...(c.key === current ? { selected: "" } : {}) }, categoryName(c.key))));
}

function itemRow(it) {
  const row = el("tr", { "data-item": it.item_id },
    el("td", {}, it.thumbnail_url ? el("img", { src: it.thumbnail_url, alt: it.label, loading: "lazy" }) : ""),
    el("td", {}, el("b", {}, it.label), it.threat ? el("span", { class: "tag" }, t("threat")) : ""),
    el("td", {}, categoryName(it.category)),
    el("td", {}, it.make_model), el("td", {}, it.calibre), el("td", {}, it.notes),
    el("td", {},
      el("button", { type: "button", onclick: () => editRow(row, it) }, t("edit")),
      el("button", { type: "button", class: "danger", onclick: () => removeItem(it) }, t("del"))));
  return row;
}

function editRow(row, it) {
  const inputs = {};
  const cells = FIELDS.map((f) => {
    const input = f === "category" ? el("select") : el("input", { value: it[f] || "" });
    if (f === "category") categoryOptions(input, it.category);
    inputs[f] = input;
    return el("td", {}, input);
  });
  const threat = el("input", { type: "checkbox", ...(it.threat ? { checked: "" } : {}) });
  row.replaceChildren(el("td", {}, el("label", {}, threat, t("threat"))), ...cells,
    el("td", {},
      el("button", { type: "button", onclick: async () => {
        const body = Object.fromEntries(FIELDS.map((f) => [f, inputs[f].value]));
        body.threat = threat.checked;
        try {
          await api(`/v1/gallery/items/${it.item_id}`, {
            method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
          loadItems();
        } catch (e) { showError(document.getElementById("error"), e); }
      } }, t("save")),
      el("button", { type: "button", onclick: loadItems }, t("cancel"))));
}

async function removeItem(it) {
  if (!confirm(t("confirmDelete"))) return;
  try {
    await api(`/v1/gallery/items/${it.item_id}`, { method: "DELETE" });
    loadItems();
  } catch (e) { showError(document.getElementById("error"), e); }
}

async function loadItems() {
  const page = await api("/v1/gallery/items?limit=500");
  document.getElementById("count").textContent = page.total;
  document.querySelector("#items tbody").replaceChildren(...page.items.map(itemRow));
}

async function loadFeedback() {
  const fb = await api("/v1/feedback?limit=200");
  document.querySelector("#feedback tbody").replaceChildren(...fb.feedback.reverse().map((f) =>
    el("tr", {}, el("td", {}, f.created_at), el("td", {}, f.key_name), el("td", {}, f.query_id),
      el("td", {}, t(f.verdict)), el("td", {}, f.correct_label || f.added_item_id || ""))));
}

document.getElementById("add-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = new FormData(ev.target);
  if (!form.get("threat")) form.set("threat", "false");
  try {
    await api("/v1/gallery/items", { method: "POST", body: form });
    ev.target.reset();
    loadItems();
  } catch (e) { showError(document.getElementById("error"), e); }
});

// Admins: adapt the threat map to this scanner on the scans the service declared clear.
let adaptTimer = null;

function adaptText(st) {
  const secs = (v) => `${Math.round(v)} s`;
  if (st.state === "running") return `${t("adaptRunning")} ${t("adaptPhase_" + st.phase)} · ${st.scans} ${t("adaptScansUsed")} · ${secs(st.elapsed_s)} / ${secs(st.budget_s)}`;
  if (st.state === "failed") return t("adaptFailed") + st.error;
  if (!st.report) return "";
  const r = st.report, before = r.before.station, after = r.after.station;
  const change = (key) => `${before[key].toFixed(3)} → ${after[key].toFixed(3)}`;
  // Small parts and larger objects apart, as the gate judges them (none drawn: left out).
  const sizes = [["auc_small", "adaptSmall"], ["auc_large", "adaptLarge"]]
    .filter(([key]) => before[key] != null && after[key] != null)
    .map(([key, name]) => `${t(name)} ${change(key)}`);
  const apart = sizes.length ? ` (${sizes.join(", ")})` : "";
  return `${t(st.state === "done" ? "adaptDone" : "adaptRefused")} ${change("auc")}${apart}${scansUsed(r)}${alertRate(r)}`;
}

// The installed alert threshold: how many cleared scans it was measured on and the share of
// clean parcels expected to alert with it (above 1% where too few scans were left for 1%).
function alertRate(r) {
  const m = r.screening_calibration && r.screening_calibration.metrics;
  if (!m || m.expected_false_alarm == null) return "";
  const pct = `${(100 * m.expected_false_alarm).toFixed(1)}%`;
  return t("adaptAlertRate").replace("{n}", m.scans).replace("{p}", pct);
}

// How many scans adapt trained on and held out, and how many were offered where its time
// budget held fewer; nothing for a report that does not say.
function scansUsed(r) {
  if (r.training_scans == null) return "";
  const offered = r.cleared_scans_unread > 0 ? t("adaptOffered").replace("{n}", r.cleared_scans_given) : "";
  return `${t("adaptUsed")}${r.training_scans} / ${r.held_out_scans}${offered}`;
}

async function pollAdapt() {
  clearTimeout(adaptTimer);
  let st;
  try { st = await api("/v1/admin/adapt"); } catch (e) { showError(document.getElementById("error"), e); return; }
  const bar = document.getElementById("adapt-progress");
  bar.hidden = st.state !== "running";
  if (st.budget_s) bar.value = Math.min(st.elapsed_s / st.budget_s, 1);
  document.getElementById("adapt-btn").disabled = st.state === "running";
  const box = document.getElementById("adapt-status");
  box.textContent = adaptText(st);
  box.className = st.state === "failed" || st.state === "refused" ? "error" : "";
  if (st.state === "running") adaptTimer = setTimeout(pollAdapt, 2000);
}

document.getElementById("adapt-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = new FormData(ev.target);
  const body = { minutes: Number(form.get("minutes")), max_scans: Number(form.get("max_scans")) };
  try {
    await api("/v1/admin/adapt", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    pollAdapt();
  } catch (e) { showError(document.getElementById("error"), e); }
});

function refresh() {
  document.querySelectorAll(".category-select").forEach((s) => categoryOptions(s, "other"));
  loadItems();
  loadFeedback();
}

document.addEventListener("langchange", () => { if (SESSION && SESSION.role !== "station") refresh(); });
initSession((session) => {
  if (session.role === "station") { document.getElementById("need-analyst").hidden = false; return; }
  document.getElementById("app").hidden = false;
  refresh();
  if (session.role === "admin" && INFO && INFO.modality === "xray") {
    document.getElementById("adapt").hidden = false;
    pollAdapt();
  }
});
