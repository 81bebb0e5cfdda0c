// The hall kiosk's web app. Plain ES modules, no build step, no third-party fetches.
//
// What this page holds: a short kiosk session (access + refresh token, in memory only) and what the
// current screen shows. What it never holds: the device key (the local bridge signs each request) and
// the card read (the bridge sends the login itself; the page sees only masked names and numbers). Nothing is written to localStorage,
// sessionStorage, cookies or the URL; the idle timer (the session's own lifetime) wipes the rest.
import { TEXTS } from "./i18n.js";

const LETTERS = "QWERTYUIOPASDFGHJKLZXCVBNM".split("");
const HALL_INDICATORS = ["整体满意度", "服务效率", "服务水平", "服务态度"];
// Until the e-licence library route (/api/v1/licences) lands, an e-licence material is referenced by
// its type and this marker: "the holder's current licence of this type", resolved by the department.
// KIOSK-TODO(licences): pick the resident's licence from GET /api/v1/licences instead.
const params = new URLSearchParams(location.search);
const BRIDGE = safeBridge(params.get("bridge")) || "http://127.0.0.1:8765";
const REGION = /^\d{6}$/.test(params.get("region") || "") ? params.get("region") : "430000";
// The start URL's parameters are configuration, not personal data; still, keep the address bar bare.
history.replaceState(null, "", location.pathname);

const state = {
  lang: "zh",
  elder: false,
  session: null, // { token, refresh, expiresIn, issuedAt }
  me: null, // { name (masked) }
  screen: "login",
  args: {},
  lastActivity: Date.now(),
};
const intents = new Map(); // intended action -> Idempotency-Key (reused on retry)
let ticker = null;

function safeBridge(value) {
  if (!value) return null;
  try {
    const url = new URL(value);
    if (url.protocol === "http:" && ["127.0.0.1", "localhost", "[::1]"].includes(url.hostname)) return url.origin;
  } catch { /* not a URL */ }
  return null;
}

const t = (key, ...args) => {
  const value = TEXTS[state.lang][key];
  return typeof value === "function" ? value(...args) : value;
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "onclick") node.addEventListener("click", value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function intent(name) {
  if (!intents.has(name)) intents.set(name, randomKey());
  return intents.get(name);
}

// ---- the bridge and the API -------------------------------------------------------------------------

async function bridge(path, body) {
  const response = await fetch(BRIDGE + path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
    credentials: "omit",
    cache: "no-store",
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw Object.assign(new Error(data.code || "bridge"), { code: data.code || "bridge" });
  return data;
}

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.title || String(status));
    this.status = status;
    this.problem = problem;
  }
}

async function send(method, path, text, extra, type = "application/json") {
  const headers = { Accept: "application/json", "Accept-Language": state.lang === "en" ? "en" : "zh-CN", ...extra };
  if (state.elder) headers["X-UI-Mode"] = "elder";
  if (text) headers["Content-Type"] = type;
  if (state.session) {
    headers.Authorization = `Bearer ${state.session.token}`;
    Object.assign(headers, (await bridge("/bridge/sign", { method, path, body: text })).headers);
  }
  return fetch(path, { method, headers, body: text || undefined, credentials: "omit", cache: "no-store" });
}

async function refreshIfOld() {
  const s = state.session;
  if (!s || !s.refresh || Date.now() - s.issuedAt < s.expiresIn * 500) return;
  const response = await send("POST", "/api/v1/auth/refresh", JSON.stringify({ refreshToken: s.refresh }), {});
  if (response.ok) {
    const data = await response.json();
    if (state.session === s) {
      state.session = { token: data.accessToken, refresh: data.refreshToken, expiresIn: data.expiresIn, issuedAt: Date.now() };
    }
  }
}

// One API call: signed by the bridge when a session exists; POSTs carry the intent's Idempotency-Key.
async function api(method, path, { body, action, raw, type } = {}) {
  await refreshIfOld();
  const text = raw !== undefined ? raw : body === undefined ? "" : JSON.stringify(body);
  const extra = action ? { "Idempotency-Key": intent(action) } : {};
  const response = await send(method, path, text, extra, type);
  const data = response.status === 204 ? {} : await response.json().catch(() => ({}));
  const settled = response.status < 500 && data.code !== "idempotency_in_progress";
  if (action && settled) intents.delete(action);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

const query = (pairs) => new URLSearchParams(Object.entries(pairs).filter(([, v]) => v)).toString();

// ---- the session and the idle wipe ------------------------------------------------------------------

function idleLimit() {
  return state.session ? state.session.expiresIn : 0;
}

function touch() {
  state.lastActivity = Date.now();
}

function startTicker() {
  stopTicker();
  ticker = setInterval(tick, 1000);
}

function stopTicker() {
  if (ticker) clearInterval(ticker);
  ticker = null;
}

function tick() {
  if (!state.session) return;
  const limit = idleLimit();
  const left = Math.ceil(limit - (Date.now() - state.lastActivity) / 1000);
  const warnAt = Math.min(30, Math.floor(limit / 3));
  const dialog = document.getElementById("idle");
  if (left <= 0) {
    wipe();
  } else if (left <= warnAt) {
    document.getElementById("idle-text").textContent = t("idleText", left);
    if (dialog.hidden) {
      dialog.hidden = false;
      document.getElementById("idle-continue").focus();
    }
  } else if (!dialog.hidden) {
    dialog.hidden = true;
  }
}

async function wipe() {
  const session = state.session;
  stopTicker();
  if (session) {
    // Tell the BFF the session is over (best effort: the token dies with the idle window anyway).
    await Promise.race([api("POST", "/api/v1/auth/logout", { body: {} }).catch(() => {}), new Promise((r) => setTimeout(r, 3000))]);
  }
  state.session = null;
  state.me = null;
  state.args = {};
  intents.clear();
  try {
    localStorage.clear();
    sessionStorage.clear();
  } catch { /* storage disabled */ }
  for (const cookie of document.cookie.split(";")) {
    const name = cookie.split("=")[0].trim();
    if (name) document.cookie = `${name}=; expires=Thu, 01 Jan 1970 00:00:00 GMT; path=/`;
  }
  history.replaceState(null, "", location.pathname);
  document.getElementById("idle").hidden = true;
  state.lang = "zh";
  state.elder = false;
  applyPrefs();
  show("login");
}

// ---- rendering --------------------------------------------------------------------------------------

function applyPrefs() {
  document.documentElement.lang = state.lang === "en" ? "en" : "zh-CN";
  document.body.classList.toggle("elder", state.elder);
  document.title = t("title");
  document.getElementById("title").textContent = t("title");
  document.getElementById("toggles").setAttribute("aria-label", t("settings"));
  const lang = document.getElementById("lang");
  lang.textContent = t("lang");
  lang.setAttribute("lang", state.lang === "en" ? "zh-CN" : "en");
  const elder = document.getElementById("elder");
  elder.textContent = t("elder");
  elder.setAttribute("aria-pressed", String(state.elder));
  const logout = document.getElementById("logout");
  logout.textContent = t("logout");
  logout.hidden = !state.session;
  document.getElementById("idle-title").textContent = t("idleTitle");
  document.getElementById("idle-continue").textContent = t("idleContinue");
  document.getElementById("idle-end").textContent = t("idleEnd");
}

function heading(text) {
  return el("h2", { id: "screen-title", tabindex: "-1" }, text);
}

function nav(backTo) {
  return el(
    "div",
    { class: "nav-row" },
    backTo ? el("button", { type: "button", class: "big", onclick: () => show(backTo.screen, backTo.args) }, t("back")) : null,
    el("button", { type: "button", class: "big", onclick: () => show("home") }, t("homeBtn")),
  );
}

function problemBox(error, retry) {
  const detail = error instanceof ApiError ? error.problem.title || error.problem.detail : t("bridgeDown");
  return el(
    "div",
    { class: "problem", role: "alert" },
    el("p", {}, `${t("error")}：${detail || ""}`),
    retry ? el("button", { type: "button", class: "big primary", onclick: retry }, t("retry")) : null,
  );
}

const SCREENS = {};

async function show(screen, args = {}) {
  if (screen !== "login" && !state.session) screen = "login";
  state.screen = screen;
  state.args = args;
  applyPrefs();
  const main = document.getElementById("app");
  main.replaceChildren(el("p", { class: "loading" }, t("loading")));
  const view = await SCREENS[screen](args);
  if (state.screen !== screen || state.args !== args) return; // another screen was asked for meanwhile
  main.replaceChildren(view);
  main.dataset.screen = screen;
  const title = document.getElementById("screen-title");
  if (title) title.focus({ preventScroll: true });
}

SCREENS.login = async () => {
  const status = el("p", { class: "status", role: "status" });
  const start = el("button", { type: "button", class: "huge primary", id: "login-start" }, t("loginStart"));
  start.addEventListener("click", async () => {
    start.disabled = true;
    status.textContent = t("loginBusy");
    try {
      // The bridge reads the card, matches the face, signs the login and sends it to the BFF; the page
      // gets the BFF's answer (the kiosk session) and never sees the card read.
      const response = await fetch(`${BRIDGE}/bridge/login`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept-Language": state.lang === "en" ? "en" : "zh-CN" },
        body: "{}",
        credentials: "omit",
        cache: "no-store",
      });
      const data = await response.json().catch(() => ({}));
      if (data.code === "no_card" || data.code === "bff_unreachable" || data.code === "origin_refused") {
        throw Object.assign(new Error(data.code), { code: data.code });
      }
      if (!response.ok) throw new ApiError(response.status, data);
      state.session = { token: data.accessToken, refresh: data.refreshToken, expiresIn: data.expiresIn, issuedAt: Date.now() };
      const me = await api("GET", "/api/v1/me");
      state.me = { name: me.name };
      // A resident who saved 长辈版 (on the phone or here) gets it without looking for the switch.
      if (me.uiMode === "elder") state.elder = true;
      touch();
      startTicker();
      show("home");
    } catch (error) {
      start.disabled = false;
      status.textContent =
        error.code === "no_card" ? t("noCard")
          : error instanceof ApiError && error.problem.code === "face_match_failed" ? t("faceFail")
            : error instanceof ApiError ? `${t("error")}：${error.problem.title || ""}` : t("bridgeDown");
    }
  });
  return el(
    "section",
    { class: "screen login", "aria-labelledby": "screen-title" },
    heading(t("loginTitle")),
    el("div", { class: "card-art", "aria-hidden": "true" }, "🪪"),
    el("p", { class: "secondary" }, t("loginHint")),
    start,
    status,
  );
};

SCREENS.home = async () => {
  const buttons = [
    ["search", t("search"), () => show("search")],
    ["appointments", t("appointments"), () => show("appointments")],
    ["apply", t("apply"), () => show("search", { applying: true })],
    ["rate", t("rate"), () => show("rate")],
    ["licences", t("licences"), () => show("licences")],
    // 长辈版 shows no payment prompt (MIIT 适老化: no buttons that push payments); staff help there.
    ...(state.elder ? [] : [["pay", t("pay"), () => show("pay")]]),
  ];
  const grid = el(
    "div",
    { class: "home-grid" },
    buttons.map(([id, label, go]) => el("button", { type: "button", class: "tile", id: `go-${id}`, onclick: go }, label)),
  );
  return el("section", { class: "screen home", "aria-labelledby": "screen-title" }, heading(t("hello", state.me.name)), grid);
};

SCREENS.search = async (args) => {
  const letters = args.letters || "";
  const output = el("output", { id: "search-query", class: "query", "aria-label": t("query") }, letters || "—");
  const results = el("div", { class: "results", id: "search-results", "aria-live": "polite" });
  const typed = (next) => show("search", { ...args, letters: next, results: undefined });
  const keys = el(
    "div",
    { class: "keyboard", role: "group", "aria-label": t("keyboard") },
    LETTERS.map((letter) =>
      el("button", { type: "button", class: "key", onclick: () => letters.length < 20 && typed(letters + letter) }, letter)),
    el("button", { type: "button", class: "key wide", onclick: () => typed(letters.slice(0, -1)) }, t("del")),
    el("button", { type: "button", class: "key wide", onclick: () => typed("") }, t("clear")),
    el("button", { type: "button", class: "key wide primary", id: "search-go", disabled: !letters,
      onclick: () => show("search", { ...args, results: "load" }) }, t("searchBtn")),
  );
  if (args.results) {
    try {
      const page = await api("GET", `/api/v1/items?${query({ q: letters, region: REGION, limit: state.elder ? 5 : 10 })}`);
      results.append(el("p", { class: "count" }, page.items.length ? t("results", page.items.length) : t("noResults")));
      results.append(el("ul", { class: "list" }, page.items.map((item) =>
        el("li", {}, el("button", { type: "button", class: "row", onclick: () => show("guide", { code: item.code, from: args }) },
          el("span", { class: "row-title" }, item.plainName || item.name), state.elder ? null : el("span", { class: "row-sub secondary" }, item.department))))));
    } catch (error) {
      results.append(problemBox(error, () => show("search", { ...args })));
    }
  }
  return el(
    "section",
    { class: "screen search", "aria-labelledby": "screen-title" },
    heading(args.applying ? t("apply") : t("search")),
    el("p", { class: "hint" }, t("searchHint")),
    output,
    keys,
    results,
    nav(null),
  );
};

// A kiosk-enabled item can be applied for here when every required material is an e-licence or the
// application form itself (which this screen fills in: no scans).
const isForm = (m) => !m.elicenceType && m.hasBlankForm;

function guideFits(item) {
  const required = item.materials.filter((m) => m.required);
  return item.channels.kiosk && item.channels.online && required.every((m) => m.elicenceType || isForm(m));
}

// The application form filled in on this screen, as the PDF the case system files as 申请表.
// ASCII only (no font is embedded); the form's fields also travel in the application itself.
function formPdf(lines) {
  const esc = (v) => v.replace(/[\\()]/g, (c) => `\\${c}`).replace(/[^\x20-\x7e]/g, "?");
  const stream = `BT /F1 12 Tf 72 770 Td 16 TL ${lines.map((l) => `(${esc(l)}) '`).join(" ")} ET`;
  const objects = [
    "<< /Type /Catalog /Pages 2 0 R >>",
    "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
    "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    `<< /Length ${stream.length} >>\nstream\n${stream}\nendstream`,
  ];
  let out = "%PDF-1.4\n";
  const offsets = objects.map((body, i) => {
    const at = out.length;
    out += `${i + 1} 0 obj\n${body}\nendobj\n`;
    return at;
  });
  const xref = out.length;
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n${offsets.map((o) => `${String(o).padStart(10, "0")} 00000 n \n`).join("")}`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return out;
}

SCREENS.guide = async (args) => {
  let item, guide;
  try {
    guide = await api("GET", `/api/v1/items/${encodeURIComponent(args.code)}?${query({ region: REGION })}`);
    item = guide.item;
  } catch (error) {
    return el("section", { class: "screen" }, heading(t("guide")), problemBox(error, () => show("guide", args)), nav(args.from && { screen: "search", args: args.from }));
  }
  const fits = guideFits(item);
  const fee = item.free || !item.fees.length ? t("free") : item.fees.map((f) => `${f.name} ¥${(f.amountFen / 100).toFixed(2)}`).join("；");
  return el(
    "section",
    { class: "screen guide receipt-able", "aria-labelledby": "screen-title" },
    heading(guide.plainName || item.name),
    guide.plainName ? el("p", { class: "official-name" }, item.name) : null,
    el("dl", { class: "facts" },
      el("dt", {}, t("department")), el("dd", {}, item.department),
      el("dt", {}, t("promised")), el("dd", {}, t("days", item.timeLimits.promisedWorkingDays)),
      el("dt", {}, t("visits")), el("dd", {}, item.channels.visitsNeeded === 0 ? t("zeroVisits") : String(item.channels.visitsNeeded)),
      el("dt", {}, t("fees")), el("dd", {}, fee)),
    el("h3", {}, t("materials")),
    el("ul", { class: "materials" }, item.materials.filter((m) => !state.elder || m.required).map((m) =>
      el("li", {}, el("span", {}, m.name), el("span", { class: m.elicenceType ? "badge ok" : "badge" }, m.elicenceType ? t("elicence") : t("bring"))))),
    item.conditions.length ? el("div", { class: "secondary" }, el("h3", {}, t("conditions")), el("ul", {}, item.conditions.map((c) => el("li", {}, c)))) : null,
    item.steps.length ? el("div", { class: "secondary" }, el("h3", {}, t("steps")), el("ol", {}, item.steps.map((s) => el("li", {}, s.name)))) : null,
    el("div", { class: "nav-row" },
      fits ? el("button", { type: "button", class: "big primary", id: "apply-here", onclick: () => show("apply", { item, from: args }) }, t("applyHere"))
        : el("p", { class: "note" }, t("applyNotHere")),
      el("button", { type: "button", class: "big secondary", onclick: () => window.print() }, t("print"))),
    nav(args.from && { screen: "search", args: args.from }),
  );
};

function china(iso) {
  return new Date(iso).toLocaleString(state.lang === "en" ? "en-GB" : "zh-CN", { timeZone: "Asia/Shanghai", dateStyle: "medium", timeStyle: "short" });
}

function receipt(title, rows) {
  return el(
    "section",
    { class: "screen receipt", "aria-labelledby": "screen-title" },
    heading(title),
    el("dl", { class: "facts receipt-body" }, rows.flatMap(([k, v, cls]) => [el("dt", {}, k), el("dd", { class: cls || null }, v)])),
    el("div", { class: "nav-row" }, el("button", { type: "button", class: "big primary", id: "print", onclick: () => window.print() }, t("print"))),
    nav(null),
  );
}

// Receipts are screens of their own (the language and elder switches re-render them); print-friendly.
SCREENS.ticket = async (a) => receipt(t("ticket"), [[t("ticket"), a.ticketNo, "ticket"], [t("item"), a.name], [t("time"), china(a.startsAt)], ["", t("ticketHint")]]);
SCREENS.applied = async (a) => receipt(t("applied"), [[t("projectNo"), a.projectNo, "ticket"], [t("item"), a.name], [t("time"), china(a.at)]]);
SCREENS.rated = async (a) => receipt(t("rated"), [[t("item"), a.name], [t("rateTitle"), t("levels")[a.level - 1]]]);

SCREENS.appointments = async () => {
  let items;
  try {
    items = (await api("GET", "/api/v1/appointments")).items.filter((a) => a.status === "booked");
  } catch (error) {
    return el("section", { class: "screen" }, heading(t("todayAppt")), problemBox(error, () => show("appointments")), nav(null));
  }
  const names = await Promise.all(items.slice(0, 5).map((a) =>
    api("GET", `/api/v1/items/${encodeURIComponent(a.itemCode)}?${query({ region: REGION })}`).then((g) => g.item.name, () => a.itemCode)));
  const status = el("div", { "aria-live": "polite" });
  const checkIn = async (appointment, name) => {
    try {
      const done = await api("POST", `/api/v1/appointments/${encodeURIComponent(appointment.id)}/check-in`, { action: `check-in:${appointment.id}` });
      show("ticket", { ticketNo: done.ticketNo, name, startsAt: done.startsAt });
    } catch (error) {
      status.replaceChildren(problemBox(error, () => checkIn(appointment, name)));
    }
  };
  return el(
    "section",
    { class: "screen appointments", "aria-labelledby": "screen-title" },
    heading(t("todayAppt")),
    items.length ? el("ul", { class: "list" }, items.slice(0, 5).map((a, i) =>
      el("li", { class: "appt" }, el("span", { class: "row-title" }, names[i]), el("span", { class: "row-sub" }, china(a.startsAt)),
        el("button", { type: "button", class: "big primary", onclick: () => checkIn(a, names[i]), "aria-label": `${t("checkIn")}：${names[i]}` }, t("checkIn"))))) : el("p", {}, t("noAppt")),
    status,
    nav(null),
  );
};

SCREENS.apply = async (args) => {
  const item = args.item;
  const phone = args.phone || "";
  const status = el("div", { "aria-live": "polite" });
  const typed = (next) => show("apply", { ...args, phone: next });
  const pad = el("div", { class: "keypad", role: "group", "aria-label": t("phone") },
    "123456789".split("").concat(["0"]).map((d) => el("button", { type: "button", class: "key", onclick: () => phone.length < 11 && typed(phone + d) }, d)),
    el("button", { type: "button", class: "key wide", onclick: () => typed(phone.slice(0, -1)) }, t("del")));
  const materials = item.materials.filter((m) => m.required && m.elicenceType);
  const forms = item.materials.filter((m) => m.required && isForm(m));
  // The resident's own licences from the wallet stand in for the scans: which one is named on the
  // case (its wallet id), and a material no valid licence covers sends the resident to the counter.
  if (!args.wallet) {
    try {
      args.wallet = (await api("GET", "/api/v1/licences")).items.filter((l) => l.status === "valid");
    } catch (error) {
      return el("section", { class: "screen" }, heading(t("applyTitle")), problemBox(error, () => show("apply", args)), nav({ screen: "guide", args: args.from }));
    }
  }
  const held = (m) => args.wallet.find((l) => l.typeCode === m.elicenceType);
  const covered = materials.every(held);
  const done = args.uploaded || (args.uploaded = {}); // survives a retry: the form is uploaded once
  const submit = async () => {
    try {
      const uploaded = [];
      for (const m of forms) {
        if (done[m.name]) {
          uploaded.push({ name: m.name, uploadId: done[m.name] });
          continue;
        }
        const pdf = formPdf([`Application form filled in at a hall kiosk`, `Item: ${item.code}`, `Region: ${item.regionCode}`,
          `Contact phone: ${phone.slice(0, 3)}****${phone.slice(7)}`]);
        const up = await api("POST", `/api/v1/uploads?${query({ name: "application-form.pdf" })}`, { action: `form:${item.code}:${m.name}`, raw: pdf, type: "application/pdf" });
        done[m.name] = up.id;
        uploaded.push({ name: m.name, uploadId: up.id });
      }
      const detail = await api("POST", "/api/v1/cases", {
        action: `apply:${item.code}`,
        body: {
          itemCode: item.code,
          regionCode: item.regionCode,
          form: { contactName: state.me.name, contactPhone: phone },
          materials: [...materials.map((m) => ({ name: m.name, elicence: { type: m.elicenceType, number: held(m).id } })), ...uploaded],
        },
      });
      show("applied", { projectNo: detail.case.projectNo || detail.case.id, name: item.name, at: detail.case.submittedAt });
    } catch (error) {
      status.replaceChildren(problemBox(error, submit));
    }
  };
  return el(
    "section",
    { class: "screen apply", "aria-labelledby": "screen-title" },
    heading(`${t("applyTitle")}：${item.name}`),
    el("p", {}, t("applyUse")),
    el("ul", { class: "materials" }, materials.map((m) => {
      const l = held(m);
      return el("li", {}, el("span", {}, m.name), l ? el("span", { class: "badge ok" }, `${l.typeName} ${l.number}`) : el("span", { class: "badge" }, t("noLicence")));
    })),
    covered ? null : el("p", { class: "hint", role: "alert" }, t("noLicenceHint")),
    el("p", { class: "hint", id: "phone-hint" }, t("phoneHint")),
    el("output", { class: "query", id: "phone", "aria-label": t("phone"), "aria-describedby": "phone-hint" }, phone.replace(/^(\d{3})(\d{0,4})/, "$1 $2 ") || "—"),
    pad,
    el("button", { type: "button", class: "big primary", id: "apply-submit", disabled: !covered || !/^1\d{10}$/.test(phone), onclick: submit }, t("submit")),
    status,
    nav({ screen: "guide", args: args.from }),
  );
};

// 亮证 at the hall: the wallet (masked), then a licence's single-use QR payload for the counter to scan.
SCREENS.licences = async () => {
  let items;
  try {
    items = (await api("GET", "/api/v1/licences")).items;
  } catch (error) {
    return el("section", { class: "screen" }, heading(t("licences")), problemBox(error, () => show("licences")), nav(null));
  }
  return el(
    "section",
    { class: "screen licences", "aria-labelledby": "screen-title" },
    heading(t("licences")),
    items.length ? el("ul", { class: "list" }, items.map((l) =>
      el("li", {}, el("button", { type: "button", class: "row", disabled: l.status !== "valid" || null, onclick: () => show("licenceShow", { licence: l }) },
        el("span", { class: "row-title" }, `${l.typeName} ${l.number}`),
        el("span", { class: "row-sub" }, `${l.longTerm ? t("longTerm") : `${t("validTo")} ${l.validTo}`} · ${l.trustGradeText}`))))) : el("p", {}, t("licencesNone")),
    nav(null),
  );
};

SCREENS.licenceShow = async (args) => {
  let shown;
  try {
    shown = await api("POST", `/api/v1/licences/${encodeURIComponent(args.licence.id)}/show`, { action: `show:${args.licence.id}:${Date.now()}` });
  } catch (error) {
    return el("section", { class: "screen" }, heading(t("showTitle")), problemBox(error, () => show("licenceShow", args)), nav({ screen: "licences" }));
  }
  return el(
    "section",
    { class: "screen licence-show", "aria-labelledby": "screen-title" },
    heading(`${t("showTitle")}：${shown.typeName}`),
    el("p", {}, `${args.licence.number}`),
    qrSvg(shown.payload, t("showScan")),
    el("p", {}, t("showScan")),
    el("p", { class: "pay-status" }, `${t("showUntil")} ${china(shown.expiresAt)}`),
    nav({ screen: "licences" }),
  );
};

const yuan = (fen) => `¥${(fen / 100).toFixed(2)}`;

// The fees this resident owes: the case list does not carry them, so open the cases still in progress.
SCREENS.pay = async () => {
  let owed;
  try {
    const open = (await api("GET", "/api/v1/cases")).items.filter((c) => !["submitting", "not_accepted", "concluded", "delivering", "delivered", "rated"].includes(c.status));
    const details = await Promise.all(open.slice(0, 10).map((c) => api("GET", `/api/v1/cases/${encodeURIComponent(c.id)}`)));
    owed = details.filter((d) => d.fee && d.fee.owedFen > 0);
  } catch (error) {
    return el("section", { class: "screen" }, heading(t("payTitle")), problemBox(error, () => show("pay")), nav(null));
  }
  return el(
    "section",
    { class: "screen pay", "aria-labelledby": "screen-title" },
    heading(t("payTitle")),
    owed.length ? el("ul", { class: "list" }, owed.map((d) =>
      el("li", {}, el("button", { type: "button", class: "row", onclick: () => show("payQr", { caseId: d.case.id, name: d.case.itemName, fee: d.fee }) },
        el("span", { class: "row-title" }, `${d.case.itemName} ${yuan(d.fee.owedFen)}`),
        el("span", { class: "row-sub" }, `${t("payBy")} ${d.fee.payableBy} · ${d.fee.issuingDepartment}`))))) : el("p", {}, t("payNone")),
    nav(null),
  );
};

// A QR code drawn as SVG cells from the vendored encoder (qrcode.js): no markup from a string.
function qrSvg(text, label) {
  const code = qrcode(0, "M");
  code.addData(text);
  code.make();
  const n = code.getModuleCount();
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `-4 -4 ${n + 8} ${n + 8}`);
  svg.setAttribute("class", "qr");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const bg = document.createElementNS(ns, "rect");
  for (const [k, v] of [["x", -4], ["y", -4], ["width", n + 8], ["height", n + 8], ["fill", "#fff"]]) bg.setAttribute(k, v);
  svg.append(bg);
  const path = document.createElementNS(ns, "path");
  let d = "";
  for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) if (code.isDark(r, c)) d += `M${c} ${r}h1v1h-1z`;
  path.setAttribute("d", d);
  svg.append(path);
  return svg;
}

// The order (WeChat Pay Native: one per fee, the BFF returns the same order for the same case), its
// QR code, then the order's status every 2 s until it is paid; leaving the screen stops the polling.
SCREENS.payQr = async (args) => {
  let order;
  try {
    order = await api("POST", `/api/v1/cases/${encodeURIComponent(args.caseId)}/payments`, { action: `pay:${args.caseId}` });
  } catch (error) {
    return el("section", { class: "screen" }, heading(t("payTitle")), problemBox(error, () => show("payQr", args)), nav({ screen: "pay" }));
  }
  if (order.status === "paid") return SCREENS.paid({ ...args, order });
  const status = el("p", { class: "pay-status", "aria-live": "polite" }, t("payWaiting"));
  const screen = el(
    "section",
    { class: "screen pay-qr", "aria-labelledby": "screen-title" },
    heading(`${t("payTitle")}：${args.name}`),
    el("p", { class: "amount" }, yuan(order.amountFen)),
    order.codeUrl ? qrSvg(order.codeUrl, t("payScan")) : el("p", {}, t("payNoQr")),
    el("p", {}, t("payScan")),
    status,
    nav({ screen: "pay" }),
  );
  const poll = async () => {
    if (state.screen !== "payQr" || state.args !== args || !state.session) return;
    try {
      const now = await api("GET", `/api/v1/payments/${encodeURIComponent(order.id)}`);
      if (now.status === "paid") return show("paid", { ...args, order: now });
      if (now.status === "closed" || now.status === "failed") {
        status.textContent = t("payClosed");
        return;
      }
    } catch (error) {
      status.textContent = t("payRetrying");
    }
    setTimeout(poll, 2000);
  };
  setTimeout(poll, 2000);
  return screen;
};

SCREENS.paid = async (a) => receipt(t("paid"), [[t("item"), a.name], [t("amount"), yuan(a.order.paidFen || a.order.amountFen), "ticket"], [t("tradeNo"), a.order.outTradeNo], [t("time"), china(a.order.paidAt || new Date().toISOString())]]);

SCREENS.rate = async () => {
  let cases;
  try {
    cases = (await api("GET", "/api/v1/cases")).items.filter((c) => c.ratingDue);
  } catch (error) {
    return el("section", { class: "screen" }, heading(t("rateTitle")), problemBox(error, () => show("rate")), nav(null));
  }
  return el(
    "section",
    { class: "screen rate", "aria-labelledby": "screen-title" },
    heading(t("rateTitle")),
    cases.length ? el("ul", { class: "list" }, cases.slice(0, 5).map((c) =>
      el("li", {}, el("button", { type: "button", class: "row", onclick: () => show("rateCase", { case: c }) },
        el("span", { class: "row-title" }, c.itemName), el("span", { class: "row-sub" }, `${t("rateThis")} · ${c.projectNo || ""}`))))) : el("p", {}, t("rateNone")),
    nav(null),
  );
};

SCREENS.rateCase = async (args) => {
  const chosen = args.chosen || {};
  // The hall's national indicators; a case applied online is rated on the online set, which the BFF
  // names when it refuses (422 indicators_invalid with its `expected` member): the screen then asks those.
  const indicators = args.indicators || HALL_INDICATORS;
  const status = el("div", { "aria-live": "polite" });
  const rows = indicators.map((name, i) => {
    const label = TEXTS[state.lang].indicators[name] || name;
    return el("div", { class: "rating-row" },
      el("span", { class: "rating-label", id: `ind-${i}` }, label),
      el("div", { role: "radiogroup", "aria-labelledby": `ind-${i}`, class: "levels" },
        [5, 4, 3, 2, 1].map((level) => el("button", {
          type: "button", role: "radio", class: "level", "aria-checked": String(chosen[name] === level),
          "aria-label": `${label}：${t("levels")[level - 1]}`, "data-level": level,
          onclick: () => show("rateCase", { ...args, chosen: { ...chosen, [name]: level } }),
        }, t("levels")[level - 1]))));
  });
  const submit = async () => {
    if (indicators.some((name) => !chosen[name])) {
      status.replaceChildren(el("p", { role: "alert" }, t("rateMissing")));
      return;
    }
    try {
      await api("POST", `/api/v1/cases/${encodeURIComponent(args.case.id)}/rating`, {
        action: `rate:${args.case.id}`,
        body: { level: chosen["整体满意度"], indicators: Object.fromEntries(indicators.map((n) => [n, chosen[n]])) },
      });
      show("rated", { name: args.case.itemName, level: chosen["整体满意度"] });
    } catch (error) {
      const expected = error instanceof ApiError && error.problem.code === "indicators_invalid" && error.problem.expected;
      if (Array.isArray(expected) && !args.indicators) {
        show("rateCase", { ...args, indicators: expected, chosen: { "整体满意度": chosen["整体满意度"] } });
        return;
      }
      status.replaceChildren(problemBox(error, submit));
    }
  };
  return el(
    "section",
    { class: "screen rate-case", "aria-labelledby": "screen-title" },
    heading(`${t("rateTitle")}：${args.case.itemName}`),
    rows,
    el("button", { type: "button", class: "big primary", id: "rate-submit", onclick: submit }, t("rateSubmit")),
    status,
    nav({ screen: "rate", args: {} }),
  );
};

// ---- start ------------------------------------------------------------------------------------------

function start() {
  for (const kind of ["pointerdown", "keydown", "touchstart"]) document.addEventListener(kind, () => {
    if (document.getElementById("idle").hidden) touch();
  }, { capture: true, passive: true });
  document.getElementById("lang").addEventListener("click", () => {
    state.lang = state.lang === "zh" ? "en" : "zh";
    show(state.screen, state.args);
  });
  document.getElementById("elder").addEventListener("click", () => {
    state.elder = !state.elder;
    show(state.screen, state.args);
  });
  document.getElementById("logout").addEventListener("click", () => wipe());
  document.getElementById("idle-continue").addEventListener("click", () => {
    touch();
    document.getElementById("idle").hidden = true;
  });
  document.getElementById("idle-end").addEventListener("click", () => wipe());
  applyPrefs();
  show("login");
}

start();
