// Search page: upload (picker, camera, drag and drop) -> verdict banner, matches, history.
let LAST = null;

function renderVerdict(res) {
  const d = res.decision;
  const box = document.getElementById("verdict");
  box.className = `verdict ${d.decision}`;
  box.dataset.decision = d.decision;
  const score = d.score === null ? "" :
    ` — ${t("score")} ${d.score.toFixed(3)} (${t("threshold")} ${d.threshold})`;
  const best = d.best_threat && d.decision !== "clear" ? ` · ${d.best_threat.label}` : "";
  box.textContent = t(d.decision) + best + score + (d.calibrated ? "" : " " + t("uncalibrated"));
}

function renderMatches(res) {
  const list = document.getElementById("matches");
  list.replaceChildren();
  for (const m of res.matches) {
    const li = el("li", { class: "match" + (m.threat ? " threat" : "") },
      el("img", { src: `/v1/gallery/items/${m.item_id}/thumbnail`, alt: m.label, loading: "lazy" }),
      el("div", {},
        el("b", { class: "label" }, m.label),
        m.threat ? el("span", { class: "tag" }, t("threat")) : "",
        el("div", {}, `${t("category")}: ${categoryName(m.category)}`),
        m.make_model ? el("div", {}, `${t("makeModel")}: ${m.make_model}`) : "",
        el("div", { class: "score" }, `${t("score")}: ${m.score.toFixed(3)}`)));
    if (SESSION && SESSION.role !== "station") {
      const fb = el("span", { class: "feedback" });
      for (const v of ["correct", "wrong"]) {
        fb.append(el("button", { type: "button", onclick: () => sendFeedback(res, m, v, fb) }, t(v)));
      }
      li.append(fb);
    }
    list.append(li);
  }
  const hist = document.getElementById("history");
  hist.replaceChildren(...(res.history.length ? res.history.map((h) =>
    el("li", {}, `${h.ts} · ${h.key_name} · ${t(h.decision) || h.decision}`)) :
    [el("li", {}, t("noHistory"))]));
}

async function sendFeedback(res, m, verdict, holder) {
  try {
    await api("/v1/feedback", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ query_id: res.query_id, item_id: m.item_id, verdict }),
    });
    holder.textContent = t("thanks");
  } catch (e) { showError(document.getElementById("error"), e); }
}

function drawBoxes(res) {
  const svg = document.getElementById("boxes");
  const img = document.getElementById("query-img");
  svg.replaceChildren();
  if (!res.regions || !img.naturalWidth) return;
  svg.setAttribute("viewBox", `0 0 ${img.naturalWidth} ${img.naturalHeight}`);
  for (const r of res.regions) {
    const [x, y, w, h] = r.box;
    const dec = typeof r.decision === "object" && r.decision ? r.decision.decision : r.decision;
    const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    Object.entries({ x, y, width: w, height: h, class: `region ${dec || "clear"}` })
      .forEach(([k, v]) => rect.setAttribute(k, v));
    // Hovering a box names its best threat match and, with a threat map, its part probability.
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    const best = r.threat_match ? `${r.threat_match.label} ${t("score")} ${r.threat_match.score.toFixed(3)}` : "";
    const map = r.map_score != null ? `${t("mapScore")} ${(r.map_score * 100).toFixed(0)}%` : "";
    title.textContent = [best, map].filter(Boolean).join(" · ");
    rect.append(title);
    svg.append(rect);
  }
}

function render() {
  if (!LAST) return;
  renderVerdict(LAST);
  renderMatches(LAST);
  drawBoxes(LAST);
  document.getElementById("result").hidden = false;
}

async function submit(file) {
  const status = document.getElementById("status");
  const error = document.getElementById("error");
  error.hidden = true;
  status.hidden = false;
  const img = document.getElementById("query-img");
  img.src = URL.createObjectURL(file);
  const form = new FormData();
  form.append("image", file, file.name || "camera.jpg");
  const modality = document.getElementById("modality").value;
  if (modality) form.append("modality", modality);
  form.append("k", document.getElementById("k").value || "5");
  const regions = document.getElementById("regions");
  if (!regions.disabled) form.append("regions", regions.checked ? "true" : "false");
  try {
    LAST = await api("/v1/search", { method: "POST", body: form });
    regions.checked = Array.isArray(LAST.regions);  // the setting the service used
    if (img.complete) render(); else img.onload = render;
    render();
  } catch (e) {
    document.getElementById("result").hidden = true;
    showError(error, e);
  } finally { status.hidden = true; }
}

function initUpload() {
  for (const id of ["file-input", "camera-input"]) {
    document.getElementById(id).addEventListener("change", (ev) => {
      if (ev.target.files.length) submit(ev.target.files[0]);
      ev.target.value = "";
    });
  }
  const drop = document.getElementById("drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    if (ev.dataTransfer.files.length) submit(ev.dataTransfer.files[0]);
  });
}

document.addEventListener("langchange", render);
initUpload();
// Region screening is for X-ray queries, on by default there: the box says what will be used.
function syncRegions() {
  const chosen = document.getElementById("modality").value || (INFO && INFO.modality) || "photo";
  const box = document.getElementById("regions");
  box.disabled = chosen !== "xray";
  box.checked = chosen === "xray";
}

document.getElementById("modality").addEventListener("change", syncRegions);
initSession(() => { document.getElementById("app").hidden = false; syncRegions(); });
