// claude-failover's dashboard (docs/dashboard.md). It reads the daemon's API with
// the token a person types in (kept in sessionStorage: this tab only), polls
// /status, /history and /events, and POSTs the control routes after a
// confirmation. Everything shown is set as text, never parsed as HTML.
"use strict";

// One function scope: nothing here is a global of the page.
(() => {

const STATUS_EVERY_MS = 3000;
const EVENTS_EVERY_MS = 2000;
const HISTORY_EVERY_MS = 30000;
const FIVE_HOURS = 5 * 3600;
const MAX_EVENTS_SHOWN = 200;
const TROUBLE = new Set(["failover_failed", "all_accounts_exhausted", "token_expired", "login_revoked",
  "turn_failed", "task_repaired", "session_died", "session_crash_loop", "task_failed", "config_rejected"]);

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("claude-failover-token") || "";
let status = null;
let usage = { accounts: {}, thresholds: { five_hour: 90, seven_day: 95 } };
let historySince = null;
let eventsSince = 0;
let timers = [];

// ---- the API -------------------------------------------------------------

class Refused extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (token) headers["Authorization"] = "Bearer " + token;
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (method === "POST") {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body || {});
  }
  const answer = await fetch(path, init);
  const text = await answer.text();
  let value = null;
  try { value = JSON.parse(text); } catch (_) { value = { error: text }; }
  if (!answer.ok) throw new Refused(answer.status, (value && value.error) || answer.statusText);
  return value;
}

// ---- small helpers ---------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

const svgNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const node = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

const secs = (rfc) => (rfc ? Date.parse(rfc) / 1000 : null);
const nowSecs = () => Date.now() / 1000;
function clock(t) {
  if (t === null || t === undefined) return "–";
  const d = new Date(t * 1000);
  const sameDay = new Date().toDateString() === d.toDateString();
  const hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return sameDay ? hm : d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + hm;
}
function span(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  seconds = Math.max(0, Math.round(seconds));
  if (seconds < 60) return seconds + "s";
  const m = Math.floor(seconds / 60);
  if (m < 60) return m + "m";
  const h = Math.floor(m / 60);
  if (h < 48) return h + "h " + (m % 60) + "m";
  return Math.floor(h / 24) + "d " + (h % 24) + "h";
}
const pct = (x) => (x === null || x === undefined ? "–" : (Math.round(x * 10) / 10) + "%");

function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 5000);
}

function confirmThen(text, action) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.onclose = () => { if (dialog.returnValue === "ok") action(); };
  dialog.showModal();
}

// ---- accounts --------------------------------------------------------------

function stateWords(a) {
  switch (a.state) {
    case "active": return "active";
    case "standby": return "standby";
    case "exhausted": return a.exhausted_until ? "exhausted until " + clock(secs(a.exhausted_until)) : "exhausted";
    case "token_expired": return "needs login";
    case "error": return "poll failing";
    default: return a.state || "unknown";
  }
}

function meter(label, window, threshold) {
  const u = window ? window.utilization : null;
  const fill = el("div", { class: "fill" + (u >= threshold ? " over" : u >= threshold * 0.8 ? " near" : "") });
  fill.style.width = Math.min(100, Math.max(0, u || 0)) + "%";
  const mark = el("div", { class: "threshold", title: "threshold " + threshold + "%" });
  mark.style.left = "calc(" + Math.min(100, threshold) + "% - 1px)";
  const resets = window && window.resets_at ? "resets " + clock(secs(window.resets_at)) : "";
  return el("div", { class: "meter", "data-window": label },
    el("div", { class: "label" },
      el("span", { text: label + " " }, el("strong", { class: "value", text: pct(u) }),
        el("span", { text: " / threshold " + threshold + "%" })),
      el("span", { text: resets })),
    el("div", { class: "track" }, fill, mark));
}

// The five-hour window as a chart: readings, the threshold line, the
// projection at the recent burn rate up to its crossing, and the reset.
function chart(a, threshold) {
  const W = 300, H = 120, L = 26, R = 8, T = 8, B = 18;
  const now = nowSecs();
  const reset = a.five_hour && a.five_hour.resets_at ? secs(a.five_hour.resets_at) : null;
  const end = reset && reset > now ? reset : now;
  const start = end - FIVE_HOURS;
  const x = (t) => L + ((t - start) / FIVE_HOURS) * (W - L - R);
  const y = (u) => T + (1 - Math.min(100, Math.max(0, u)) / 100) * (H - T - B);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
    "aria-label": "five-hour utilization of " + a.name });
  for (const u of [0, 50, 100]) {
    root.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: y(u), y2: y(u) }));
    const label = svg("text", { x: 2, y: y(u) + 3 });
    label.textContent = u + "%";
    root.append(label);
  }
  for (const [t, anchor] of [[start, "start"], [end, "end"]]) {
    const label = svg("text", { x: x(t), y: H - 4, "text-anchor": anchor });
    label.textContent = clock(t) + (t === reset ? " reset" : "");
    root.append(label);
  }
  root.append(svg("line", { class: "thr", x1: L, x2: W - R, y1: y(threshold), y2: y(threshold) }));
  const readings = (usage.accounts[a.name] || []).filter((r) => r.t >= start && r.five_hour !== null);
  const points = readings.map((r) => [x(r.t), y(r.five_hour)]);
  if (points.length) {
    const line = points.map((p) => p.join(",")).join(" ");
    root.append(svg("polygon", { class: "area",
      points: `${points[0][0]},${y(0)} ${line} ${points[points.length - 1][0]},${y(0)}` }));
    root.append(svg("polyline", { class: "use", points: line }));
  }
  let note = points.length ? "" : "no readings in this window yet";
  const last = readings[readings.length - 1];
  const rate = a.burn_rate_per_hour;
  if (last && rate && rate > 0) {
    const crossing = last.t + ((threshold - last.five_hour) / rate) * 3600;
    if (last.five_hour >= threshold) {
      note = "over the threshold";
    } else if (crossing < end) {
      root.append(svg("line", { class: "proj", x1: x(last.t), y1: y(last.five_hour), x2: x(crossing), y2: y(threshold) }));
      root.append(svg("circle", { class: "cross", cx: x(crossing), cy: y(threshold), r: 3 }));
      note = "crosses " + threshold + "% ≈ " + clock(crossing) + " at " + pct(rate) + "/h";
    } else {
      const upTo = a.five_hour.utilization + rate * (end - last.t) / 3600;
      root.append(svg("line", { class: "proj", x1: x(last.t), y1: y(last.five_hour), x2: x(end), y2: y(upTo) }));
      note = "no crossing before the reset at " + pct(rate) + "/h";
    }
  }
  return [root, el("div", { class: "chart-note", "data-role": "projection", text: note })];
}

function renderAccounts() {
  const box = $("accounts");
  box.replaceChildren();
  const thr = usage.thresholds || {};
  for (const a of status.accounts) {
    const card = el("article", { class: "card account", "data-account": a.name },
      el("h3", {}, el("span", { text: a.name }),
        el("span", { class: "state " + (a.state || "unknown"), "data-role": "state", text: stateWords(a) })),
      meter("5h", a.five_hour, thr.five_hour),
      meter("weekly", a.seven_day, thr.seven_day),
      ...chart(a, thr.five_hour),
      el("div", { class: "sub", text: "polled " + (a.last_poll_at ? clock(secs(a.last_poll_at)) : "never") +
        (a.last_error ? " · " + a.last_error : "") }));
    box.append(card);
  }
  const select = $("failover-to");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "", text: "best eligible" }),
    ...status.accounts.filter((a) => a.name !== status.active_account)
      .map((a) => el("option", { value: a.name, text: a.name + (a.eligible ? "" : " (not eligible)") })));
  select.value = [...select.options].some((o) => o.value === chosen) ? chosen : "";
}

// ---- sessions --------------------------------------------------------------

function renderSessions() {
  const box = $("sessions");
  box.replaceChildren();
  const now = nowSecs();
  for (const s of status.sessions) {
    const since = secs(s.state_since);
    const card = el("article", { class: "card session", "data-session": s.name },
      el("h3", {}, el("span", { text: s.name }),
        el("span", { class: "state " + s.state, "data-role": "state", text: s.state.replace("_", " ") })),
      el("div", { class: "sub" }, "project " + s.project + " · account ",
        el("strong", { "data-role": "account", text: s.account || "–" }),
        " · for " + span(since === null ? null : now - since)),
      el("div", { class: "sub" }, "task ", el("span", { "data-role": "task", text: s.task || "none" }),
        s.restarts ? " · " + s.restarts + " restart(s)" : ""));
    if (s.state === "waiting") {
      const q = s.question;
      const box = el("div", { class: "question", "data-role": "question" },
        el("strong", { text: q ? (q.title ? q.title + ": " : "") + q.prompt : "waiting on " + (s.waiting_for || "a dialog") }));
      if (q) {
        for (const d of q.detail || []) box.append(el("div", { class: "sub", text: d }));
        box.append(el("ol", {}, ...(q.options || []).map((o) => el("li", { text: o }))));
      }
      card.append(box);
    }
    const restart = el("button", { type: "button", class: "quiet", text: "Restart", "data-role": "restart" });
    restart.onclick = () => confirmThen(`Restart session ${s.name}? Its claude is stopped and launched again on ` +
      `${status.active_account}, resuming its conversation.`, () => act("/sessions/" + encodeURIComponent(s.name) +
      "/restart", {}, "restart of " + s.name));
    card.append(el("div", { class: "session-foot" }, el("span", { class: "sub", text: s.claude_session_id || "" }), restart));
    box.append(card);
  }
}

// ---- queues and swaps -----------------------------------------------------

const failedSeen = new Map();

function renderQueues() {
  const body = $("queues").tBodies[0];
  body.replaceChildren(...status.queues.map((q) => el("tr", { "data-project": q.project },
    el("td", { text: q.project }),
    ...["inbox", "active", "done", "failed"].map((k) =>
      el("td", { class: "num" + (k === "failed" && q.failed ? " bad" : ""), "data-count": k, text: String(q[k]) })))));
  for (const q of status.queues) {
    if (q.failed && failedSeen.get(q.project) !== q.failed) {
      failedSeen.set(q.project, q.failed);
      api("GET", "/projects/" + encodeURIComponent(q.project) + "/failed").then(renderFailed).catch(() => {});
    } else if (!q.failed && failedSeen.has(q.project)) {
      failedSeen.delete(q.project);
      const old = document.querySelector(`#failed [data-project="${CSS.escape(q.project)}"]`);
      if (old) old.remove();
    }
  }
}

function renderFailed(answer) {
  const old = document.querySelector(`#failed [data-project="${CSS.escape(answer.project)}"]`);
  const list = el("div", { class: "failed", "data-project": answer.project },
    el("strong", { text: "failed in " + answer.project }),
    el("ul", {}, ...answer.tasks.map((t) => el("li", { "data-task": t.task },
      el("code", { text: t.task }), ": ",
      el("span", { "data-role": "reason", text: t.reason || "(no reason recorded)" }),
      el("span", { class: "muted", text: t.at ? " · " + clock(secs(t.at)) : "" })))));
  if (old) old.replaceWith(list); else $("failed").append(list);
}

function renderSwaps() {
  const swaps = status.swap.recent && status.swap.recent.length ? status.swap.recent
    : (status.swap.last ? [status.swap.last] : []);
  const body = $("swaps").tBodies[0];
  body.replaceChildren(...swaps.map((s) => {
    const took = s.finished_at ? span(secs(s.finished_at) - secs(s.started_at)) : "running";
    return el("tr", { "data-swap": s.started_at },
      el("td", { text: clock(secs(s.started_at)) }), el("td", { text: s.from + " → " + s.to }),
      el("td", { "data-role": "reason", text: s.reason.replace("_", " ") }), el("td", { text: took }),
      el("td", { class: "num", text: String(s.sessions_moved) }));
  }));
  if (!swaps.length) body.append(el("tr", {}, el("td", { colSpan: 5, class: "muted", text: "no swap yet" })));
}

// ---- events ---------------------------------------------------------------

function addEvents(events) {
  const list = $("events");
  for (const e of events) {
    eventsSince = Math.max(eventsSince, e.seq);
    const item = el("li", { class: "fresh", "data-seq": String(e.seq), "data-kind": e.kind },
      el("span", { class: "t", text: clock(secs(e.at)) }),
      el("span", { class: "k" + (TROUBLE.has(e.kind) ? " trouble" : ""), text: e.kind }),
      el("span", { class: "sub", text: e.subject }),
      el("span", { class: "m", text: e.message }));
    list.prepend(item);
  }
  while (list.children.length > MAX_EVENTS_SHOWN) list.lastElementChild.remove();
}

// ---- the header and actions ------------------------------------------------

function renderTop() {
  $("active-account").textContent = status.active_account || "none";
  const d = $("dispatch-state");
  d.textContent = status.dispatch_paused ? "dispatch paused" : "dispatch on";
  d.className = "pill" + (status.dispatch_paused ? " warn" : "");
  $("pause").textContent = status.dispatch_paused ? "Resume dispatch" : "Pause dispatch";
  $("swap-state").hidden = !status.swap.in_progress;
  $("version").textContent = "v" + status.version + " · up since " + clock(secs(status.started_at));
}

async function act(path, body, what) {
  try {
    const answer = await api("POST", path, body);
    toast(what + ": " + (answer.to ? "to " + answer.to : answer.accepted === false ? "refused" : "done"));
    await refreshStatus();
  } catch (e) {
    toast(what + " refused: " + e.message);
  }
}

function wireActions() {
  $("failover").onclick = () => {
    const to = $("failover-to").value;
    confirmThen(`Fail over from ${status.active_account} to ${to || "the best eligible account"} now? ` +
      "Every session moves; running turns finish first.", () => act("/failover", to ? { to } : {}, "failover"));
  };
  $("pause").onclick = () => {
    const resume = status.dispatch_paused;
    confirmThen(resume ? "Resume handing out tasks?" : "Pause dispatch? Tasks in progress go on; no new ones start.",
      () => act(resume ? "/dispatch/resume" : "/dispatch/pause", {}, resume ? "resume" : "pause"));
  };
  $("logout").onclick = () => {
    sessionStorage.removeItem("claude-failover-token");
    token = "";
    location.reload();
  };
}

// ---- polling ---------------------------------------------------------------

function connected(ok, why) {
  const c = $("conn");
  c.className = "conn " + (ok ? "ok" : "bad");
  c.textContent = ok ? "live" : "disconnected: " + why;
}

async function refreshStatus() {
  status = await api("GET", "/status");
  renderTop();
  renderAccounts();
  renderSessions();
  renderQueues();
  renderSwaps();
}

async function refreshHistory() {
  // The first load takes the last five hours; later ones only what is new.
  const since = historySince === null ? Math.floor(nowSecs()) - FIVE_HOURS - 60 : historySince;
  const answer = await api("GET", "/history?since=" + since);
  usage.thresholds = answer.thresholds;
  for (const [name, readings] of Object.entries(answer.accounts)) {
    const kept = (usage.accounts[name] || []).filter((r) => r.t < since);
    usage.accounts[name] = kept.concat(readings).filter((r) => r.t >= nowSecs() - FIVE_HOURS - 3600);
    for (const r of readings) historySince = Math.max(historySince || 0, r.t);
  }
  if (historySince === null) historySince = since;
}

async function refreshEvents() {
  const answer = await api("GET", "/events?since=" + eventsSince);
  addEvents(answer.events);
}

function every(ms, job) {
  const run = async () => {
    try {
      await job();
      connected(true);
    } catch (e) {
      if (e instanceof Refused && e.code === 401) return showLogin("The token was refused.");
      connected(false, e.message);
    }
  };
  timers.push(setInterval(run, ms));
}

async function start() {
  await refreshHistory();
  await refreshStatus();
  await refreshEvents();
  $("login").hidden = true;
  $("dash").hidden = false;
  connected(true);
  every(STATUS_EVERY_MS, refreshStatus);
  every(EVENTS_EVERY_MS, refreshEvents);
  every(HISTORY_EVERY_MS, async () => { await refreshHistory(); renderAccounts(); });
}

function showLogin(message) {
  timers.forEach(clearInterval);
  timers = [];
  sessionStorage.removeItem("claude-failover-token");
  token = "";
  $("dash").hidden = true;
  $("login").hidden = false;
  $("conn").textContent = "";
  const err = $("login-error");
  err.textContent = message || "";
  err.hidden = !message;
  $("token").focus();
}

async function openDashboard() {
  try {
    await start();
  } catch (e) {
    if (e instanceof Refused && e.code === 401) {
      showLogin(token ? "The token was refused." : "");
    } else {
      $("conn").textContent = "cannot reach the daemon: " + e.message;
      $("conn").className = "conn bad";
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  wireActions();
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("token").value.trim();
    $("token").value = "";
    sessionStorage.setItem("claude-failover-token", token);
    openDashboard();
  });
  openDashboard();
});
})();
