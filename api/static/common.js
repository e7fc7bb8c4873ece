// Shared by both pages: API calls (session cookie), sign-in box, category names.
let CATEGORIES = {};
let SESSION = null;
let INFO = null;  // GET /v1/gallery, once signed in

async function api(path, opts = {}) {
  const res = await fetch(path, { credentials: "same-origin", ...opts });
  let body = null;
  if (res.status !== 204) {
    const text = await res.text();
    try { body = text ? JSON.parse(text) : null; } catch { body = { detail: text }; }
  }
  if (!res.ok) {
    const err = new Error((body && body.detail) || res.statusText);
    err.status = res.status;
    throw err;
  }
  return body;
}

function el(tag, attrs = {}, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const kid of kids.flat()) node.append(kid instanceof Node ? kid : String(kid ?? ""));
  return node;
}

function categoryName(key) {
  const c = CATEGORIES[key];
  return c ? (lang() === "zh" ? c.zh : c.en) : key;
}

function showError(box, err) {
  box.hidden = false;
  box.textContent = t("errorPrefix") + (err.message || err);
}

async function loadCategories() {
  try {
    const info = await api("/v1/gallery");
    INFO = info;
    CATEGORIES = Object.fromEntries(info.categories.map((c) => [c.key, c]));
    return info;
  } catch { return null; }
}

async function initSession(onReady) {
  const box = document.getElementById("signin");
  const who = document.getElementById("who");
  const err = document.getElementById("signin-error");
  document.getElementById("lang-btn").addEventListener("click", toggleLang);
  async function ready(session) {
    SESSION = session;
    box.hidden = true;
    who.hidden = false;
    document.getElementById("who-name").textContent = `${session.name} (${session.role})`;
    document.querySelectorAll(".analyst-only").forEach((n) => {
      n.hidden = session.role === "station";
    });
    await loadCategories();
    onReady(session);
  }
  document.getElementById("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.hidden = true;
    try {
      const key = document.getElementById("key-input").value.trim();
      await ready(await api("/v1/session", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ api_key: key }),
      }));
      document.getElementById("key-input").value = "";
    } catch (e) { showError(err, e); }
  });
  document.getElementById("signout-btn").addEventListener("click", async () => {
    await api("/v1/session", { method: "DELETE" });
    location.reload();
  });
  applyI18n();
  try { await ready(await api("/v1/session")); } catch { box.hidden = false; }
}
