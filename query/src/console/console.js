// credtrail console: reads the forensic API with the analyst's bearer token. No framework, no
// network access beyond this origin, every value inserted as text (never as HTML).
"use strict";

const state = { token: sessionStorage.getItem("credtrail-token") || "" };

function take_token_from_fragment() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    state.token = decodeURIComponent(m[1]);
    sessionStorage.setItem("credtrail-token", state.token);
    history.replaceState(null, "", location.pathname + location.hash.replace(/[#&]?token=[^&]+/, "").replace(/^&/, "#"));
  }
}

async function api(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== "" && v != null) q.set(k, v);
  const res = await fetch(path + (q.toString() ? "?" + q : ""), {
    headers: state.token ? { Authorization: "Bearer " + state.token } : {},
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || res.status + " " + res.statusText);
  return body.data;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text != null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c == null ? "" : String(c);
    tr.appendChild(td);
  }
  return tr;
}

function status(id, text, error) {
  const p = document.getElementById(id);
  p.textContent = text;
  p.className = error ? "status error" : "status";
}

const alias_label = (a) => (a ? a : "(default)");

function run_link(run) {
  if (!run) return "";
  const a = el("a", run, "run-link");
  a.href = "#run=" + encodeURIComponent(run);
  return a;
}

async function show_findings(form) {
  const f = Object.fromEntries(new FormData(form));
  status("findings-status", "loading…");
  try {
    const rows = await api("/api/v1/findings", { since: f.since, severity: f.severity, status: f.status, rule: f.rule, limit: 500 });
    const body = document.querySelector("#findings-table tbody");
    body.replaceChildren(...rows.map((x) => row([
      x.last_seen, el("span", x.severity, "sev-" + x.severity), x.rule,
      x.workspace ? x.organization + "/" + x.workspace : "-", alias_label(x.alias),
      run_link(x.run_id), x.status, x.summary,
    ])));
    status("findings-status", rows.length ? rows.length + " findings" : "no findings match");
  } catch (e) { status("findings-status", e.message, true); }
}

async function show_run(run) {
  document.querySelector("#run-form [name=run]").value = run;
  status("run-status", "loading…");
  try {
    const r = await api("/api/v1/runs/" + encodeURIComponent(run), { limit: 2000 });
    const list = document.getElementById("run-timeline");
    list.replaceChildren(...r.events.map((e) => {
      const li = el("li", null, e.outcome === "failure" ? "failure" : "");
      li.append(el("span", e.time + " ", "when"),
        el("span", `${e.phase} · ${alias_label(e.alias)} · ${e.provider} ${e.kind} ${e.outcome}`, "what"));
      const detail = [e.principal, e.error_code, e.session_id, e.source_ip].filter(Boolean).join(" · ");
      if (detail) li.append(el("div", detail));
      return li;
    }));
    const sum = document.getElementById("run-summary");
    sum.replaceChildren(...r.summary.map((s) => el("div",
      `${s.phase} ${alias_label(s.alias)} ${s.provider}: ${s.issued} issued, ${s.exchanges} exchanges, ${s.failures} failed`)));
    const fl = document.getElementById("run-findings");
    fl.replaceChildren(...(r.findings.length ? r.findings.map((x) => el("li", `${x.severity} ${x.rule}: ${x.summary}`))
      : [el("li", "none")]));
    status("run-status", r.events.length ? `run ${run}: ${r.events.length} events` : `no events for run ${run}`);
  } catch (e) { status("run-status", e.message, true); }
}

async function show_aliases(form) {
  const f = Object.fromEntries(new FormData(form));
  if (!f.workspace) return;
  status("aliases-status", "loading…");
  try {
    const r = await api("/api/v1/workspaces/" + encodeURIComponent(f.workspace), { since: f.since, limit: 5000 });
    const by = new Map();
    for (const d of r.days) {
      const k = [d.organization + "/" + d.workspace, d.provider, d.alias].join("\u0000");
      const a = by.get(k) || { ws: d.organization + "/" + d.workspace, provider: d.provider, alias: d.alias, exchanges: 0, failures: 0, last: "", principals: new Set() };
      a.exchanges += d.exchanges; a.failures += d.failures;
      if (d.exchanges && d.day > a.last) a.last = d.day;
      d.principals.forEach((p) => a.principals.add(p));
      by.set(k, a);
    }
    const body = document.querySelector("#aliases-table tbody");
    body.replaceChildren(...[...by.values()].map((a) => row([
      a.ws, a.provider, alias_label(a.alias), a.exchanges, a.failures,
      a.exchanges ? Math.round(100 * (a.exchanges - a.failures) / a.exchanges) + "%" : "-",
      a.last.slice(0, 10), [...a.principals].join(" "),
    ])));
    status("aliases-status", by.size ? `${by.size} configurations used` : "no activity in this time span");
  } catch (e) { status("aliases-status", e.message, true); }
}

// The hash is the view and its arguments: `#findings&since=2024-07-01&severity=high`,
// `#run=run-…`, `#aliases=workspace&since=7d`, so every view can be linked to.
function parse_hash() {
  const parts = location.hash.replace(/^#/, "").split("&").filter(Boolean);
  const [view, arg] = (parts.shift() || "findings").split("=");
  const params = {};
  for (const p of parts) {
    const i = p.indexOf("=");
    if (i > 0) params[p.slice(0, i)] = decodeURIComponent(p.slice(i + 1));
  }
  return { view, arg: arg ? decodeURIComponent(arg) : "", params };
}

function fill(form, params) {
  for (const [k, v] of Object.entries(params)) if (form.elements[k]) form.elements[k].value = v;
}

function route() {
  const { view, arg, params } = parse_hash();
  const name = view === "run" || view === "aliases" ? view : "findings";
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== name + "-view";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === name);
  if (name === "run" && arg) show_run(arg);
  if (name === "aliases" && arg) {
    const form = document.getElementById("alias-form");
    fill(form, params);
    form.workspace.value = arg;
    show_aliases(form);
  }
  if (name === "findings") {
    const form = document.getElementById("finding-filters");
    fill(form, params);
    show_findings(form);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  take_token_from_fragment();
  document.getElementById("auth").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = document.getElementById("token").value;
    sessionStorage.setItem("credtrail-token", state.token);
    route();
  });
  document.getElementById("finding-filters").addEventListener("submit", (e) => { e.preventDefault(); show_findings(e.target); });
  document.getElementById("run-form").addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = "run=" + encodeURIComponent(e.target.run.value.trim());
  });
  document.getElementById("alias-form").addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = "aliases=" + encodeURIComponent(e.target.workspace.value.trim());
  });
  window.addEventListener("hashchange", route);
  route();
});
