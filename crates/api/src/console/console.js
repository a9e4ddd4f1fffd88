// The migration console: renders GET /api/v2/admin/attributes/status (the `status` command's
// document) and refreshes it every two seconds. Read only. The admin token comes from the URL
// fragment (#token=…, never sent to the server in the URL) or the form, and stays in this tab.
"use strict";

const STATUS = "/api/v2/admin/attributes/status";
const EVERY_MS = 2000;
let previous = null;

function token() {
  const fromFragment = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromFragment) {
    sessionStorage.setItem("token", fromFragment);
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem("token");
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function fill(id, nodes) {
  const target = document.getElementById(id);
  target.replaceChildren(...nodes);
}

function span(seconds) {
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

function rung(value) {
  if (value === null) return "off the ladder (flags set by hand)";
  if (typeof value === "object") return `canary ${value.canary}% with fallback`;
  return value.replaceAll("_", " ");
}

function render(status, now) {
  document.getElementById("database").textContent = `database: ${status.database}`;
  document.getElementById("phase").textContent = status.phase ?? "none";
  document.getElementById("phase").dataset.phase = status.phase ?? "";
  document.getElementById("rung").textContent = `rung: ${rung(status.rung)}`;
  const f = status.flags;
  document.getElementById("flags").textContent =
    `dual_write=${f.dual_write} use_unified=${f.use_unified} unified_percent=${f.unified_percent} ` +
    `fallback=${f.fallback} shadow_percent=${f.shadow_percent} — ${status.flags_source}`;
  const next = document.getElementById("next");
  if (!status.next) {
    next.textContent = "Next: nothing — the legacy tables are archived.";
    next.className = "";
  } else if (status.next.blocked_by) {
    next.textContent = `Next: ${status.next.command} → ${status.next.to} — refused now by ` +
      `${status.next.blocked_by.rule}: ${status.next.blocked_by.message}`;
    next.className = "blocked";
  } else {
    next.textContent = `Next: ${status.next.command} → ${status.next.to} (allowed now)`;
    next.className = "allowed";
  }
  fill("evidence", status.evidence.map((fact) => {
    const item = el("li", `${fact.fact} — for ${fact.needed_for}` +
      (fact.met ? "" : `; supply: ${fact.supply}`), fact.met ? "met" : "");
    item.dataset.fact = fact.fact;
    return item;
  }));
  const op = status.operation;
  document.getElementById("operation").textContent = op
    ? `Running: ${op.operation} (pid ${op.pid} on ${op.host}, heartbeat ${op.heartbeat_age_seconds.toFixed(1)} s ago)`
    : "Running: no bulk operation";
  const rows = status.backfill.map((kind, i) => {
    const row = el("tr");
    row.dataset.kind = kind.kind;
    row.dataset.percent = kind.percent ?? "";
    const position = kind.percent === null
      ? `up to id ${kind.last_id}`
      : `${kind.done} of ${kind.entities} (${kind.percent.toFixed(1)} %)`;
    const bar = el("div", undefined, "bar");
    const fillBar = el("div");
    fillBar.style.width = `${kind.percent ?? (kind.completed ? 100 : 0)}%`;
    bar.append(fillBar);
    let rate = kind.completed ? "completed" : kind.last_id === 0 ? "not started" : "";
    const before = previous && previous.status.backfill[i];
    if (!kind.completed && before && kind.done !== null && before.done !== null) {
      const perSecond = (kind.done - before.done) / Math.max((now - previous.at) / 1000, 0.001);
      if (perSecond > 0) rate = `${perSecond.toFixed(0)}/s, ${span((kind.entities - kind.done) / perSecond)} left`;
    }
    const cells = [el("td", kind.kind), el("td", position), el("td"), el("td", String(kind.migrated)),
      el("td", String(kind.quarantined)), el("td", rate)];
    cells[2].append(bar);
    row.append(...cells);
    return row;
  });
  document.querySelector("#backfill tbody").replaceChildren(...rows);
  fill("throttles", status.throttles
    .filter((t) => t.paused || t.throttled || t.max_lag_ms !== null || t.max_load !== null)
    .map((t) => el("li", `throttle ${t.operation}: ` + [t.paused ? "paused" : null,
      t.throttled ? `waiting: ${t.throttled}` : null,
      t.max_lag_ms !== null ? `max lag ${t.max_lag_ms} ms` : null,
      t.max_load !== null ? `max load ${t.max_load}` : null].filter(Boolean).join(", "))));
  const q = status.quarantine;
  document.getElementById("quarantine-totals").textContent =
    `${q.total} values quarantined: ${q.seen_by_users} seen by users, ${q.accepted} accepted`;
  document.querySelector("#quarantine tbody").replaceChildren(...q.by_reason.map((r) => {
    const row = el("tr");
    row.append(el("td", r.entity_type), el("td", r.reason), el("td", String(r.count)));
    return row;
  }));
  document.getElementById("blocking").textContent = q.blocking_cut_over.length
    ? "Blocking unified reads without fallback: " +
      q.blocking_cut_over.map((u) => `${u.attribute_code} (${u.kind}) ${u.count}`).join(", ")
    : "Nothing in the quarantine blocks the cut-over.";
  fill("timeline", status.flag_changes.map((c) =>
    el("li", `${c.changed_at} — ${c.changed_by}: ${c.old_phase} → ${c.new_phase}`)));
  if (!status.flag_changes.length) fill("timeline", [el("li", "no runtime change: the configured flags")]);
  document.getElementById("verify").textContent = status.last_verify
    ? `Last verify: ${status.last_verify.finished_at} — ${status.last_verify.checked} checked, ${status.last_verify.drifted} drifted`
    : "Last verify: never";
  document.getElementById("soak").textContent = status.unified_for_seconds === null
    ? "" : `Unified phase for ${span(status.unified_for_seconds)}`;
  fill("replicas", status.replicas.length
    ? status.replicas.map((r) => el("li", `${r.name}: ${r.state}${r.lag_ms === null ? "" : `, lag ${r.lag_ms} ms`}`))
    : [el("li", "none configured", "muted")]);
  document.getElementById("updated").textContent = new Date(now).toISOString();
  document.getElementById("status").hidden = false;
}

async function refresh() {
  const secret = token();
  const login = document.getElementById("login");
  const error = document.getElementById("error");
  if (!secret) {
    login.hidden = false;
    return;
  }
  try {
    const response = await fetch(STATUS, { headers: { Authorization: `Bearer ${secret}` }, cache: "no-store" });
    if (response.status === 401) {
      sessionStorage.removeItem("token");
      login.hidden = false;
      error.textContent = "The admin token was refused.";
      error.hidden = false;
      return;
    }
    if (!response.ok) throw new Error(`the status answered ${response.status}`);
    const now = Date.now();
    const status = (await response.json()).data;
    render(status, now);
    previous = { status, at: now };
    error.hidden = true;
  } catch (err) {
    error.textContent = `Not updated: ${err.message}`;
    error.hidden = false;
  }
  setTimeout(refresh, EVERY_MS);
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("token", document.getElementById("token").value);
  document.getElementById("login").hidden = true;
  refresh();
});
refresh();
