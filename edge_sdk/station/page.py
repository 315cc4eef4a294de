"""The ward page and the login page: plain HTML, CSS and JavaScript, no build step, no outside resources.

The page opens ``/api/stream`` (server-sent events: the whole ward as JSON on every change and every
second) and draws one card per bed with DOM calls and ``textContent`` only (nothing a bed sends is ever
parsed as HTML). Every state shows as text and a symbol, colour only adds to it. ``{nonce}`` is the
per-response CSP nonce of the inline script and style.
"""

from __future__ import annotations

import html

STYLE = """
:root { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1a1a1a; background: #f2f4f7; }
body { margin: 0; }
header { display: flex; align-items: center; gap: 1rem; padding: .6rem 1rem; background: #1f2933; color: #fff;
  flex-wrap: wrap; }
header .small { color: #cfd8dc; }
header h1 { font-size: 1.2rem; margin: 0; font-weight: 600; }
header .grow { flex: 1; }
.pill { padding: .15rem .6rem; border-radius: 1rem; font-size: .85rem; font-weight: 600; }
.pill.ok { background: #2e7d32; } .pill.bad { background: #b00020; }
header form { margin: 0; } header button { font: inherit; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(20rem, 1fr)); gap: 1rem; padding: 1rem;
  align-items: start; }
.bed { background: #fff; border-radius: .5rem; box-shadow: 0 1px 3px rgba(0,0,0,.2); overflow: hidden;
  border: 3px solid transparent; }
.band { display: flex; align-items: baseline; gap: .5rem; padding: .5rem .8rem; color: #fff; }
.band .name { font-size: 1.25rem; font-weight: 700; }
.band .state { margin-left: auto; font-weight: 700; letter-spacing: .02em; }
.alert .band { background: #b00020; } .bed.alert { border-color: #b00020; }
.silent .band { background: #4a148c; } .bed.silent { border-color: #4a148c; border-style: dashed; }
.fault .band { background: #8d3b00; }
.watch .band { background: #ffb300; color: #1a1a1a; }
.clear .band { background: #2e7d32; }
.noface .band, .unknown .band { background: #546e7a; }
.body { padding: .5rem .8rem .8rem; }
.row { display: flex; justify-content: space-between; gap: .5rem; font-size: .95rem; margin: .2rem 0; }
.pspi { font-size: 1.6rem; font-weight: 700; }
.reason { font-weight: 600; color: #4a148c; }
.late { color: #b00020; font-weight: 700; }
svg.trend { width: 100%; height: 70px; display: block; background: #fafbfc; border: 1px solid #e0e4e8;
  border-radius: .25rem; }
svg.trend polyline { fill: none; stroke: #1f5fbf; stroke-width: 1.5; }
svg.trend text { font-size: 9px; fill: #5f6b76; }
svg.trend line { stroke: #d0d6dc; stroke-width: .5; }
.alerts { list-style: none; padding: 0; margin: .5rem 0 0; } .alerts:empty { display: none; }
.alerts li { border: 1px solid #b00020; background: #fdecee; border-radius: .3rem; padding: .4rem .5rem;
  margin-top: .3rem; }
.alerts li.acked { border-color: #2e7d32; background: #edf7ee; }
.alerts button { font: inherit; font-weight: 700; padding: .3rem .8rem; margin-top: .3rem; background: #b00020;
  color: #fff; border: 0; border-radius: .25rem; cursor: pointer; }
.alerts button:disabled { background: #9e9e9e; cursor: default; }
.small { font-size: .8rem; color: #5f6b76; }
.demo { display: inline-block; background: #fff3cd; color: #5c4400; font-size: .8rem; font-weight: 700;
  padding: .1rem .4rem; border-radius: .2rem; margin: .2rem 0; }
.error { color: #b00020; font-weight: 600; }
#empty { padding: 2rem; font-size: 1.1rem; }
"""

SCRIPT = r"""
"use strict";
const ward = document.getElementById("ward");
const brokerPill = document.getElementById("broker");
const streamPill = document.getElementById("stream");
const updated = document.getElementById("updated");
const cards = new Map();   // device_id -> {el, key}
const errors = new Map();  // event_id -> text of the last failed acknowledge
let waiting = new Set();   // event ids with an acknowledge request in flight
let last = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}
const clock = t => t ? new Date(t * 1000).toLocaleTimeString([], {hour12: false}) : "?";
const SYMBOL = {alert: "\u25B2", silent: "\u25A0", fault: "\u25A0", watch: "\u25C6", clear: "\u25CF",
  noface: "\u25CB", unknown: "\u25CB"};

function sparkline(bed, windowS, now) {
  const W = 300, H = 70, top = 4, bottom = 14, max = Math.max(16, ...bed.trend.map(p => p[1]));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "trend"); svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none"); svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `PSPI trend of the last hour for ${bed.device_id}`);
  const y = v => top + (H - top - bottom) * (1 - v / max);
  for (const v of [0, 8, 16]) {
    const l = document.createElementNS(ns, "line");
    l.setAttribute("x1", 0); l.setAttribute("x2", W); l.setAttribute("y1", y(v)); l.setAttribute("y2", y(v));
    svg.append(l);
  }
  const pts = bed.trend.map(([t, v]) => `${(W * (1 - (now - t) / windowS)).toFixed(1)},${y(v).toFixed(1)}`);
  if (pts.length === 1) pts.push(pts[0].replace(/^[^,]+/, W));
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts.join(" ")); svg.append(line);
  const label = (x, text, anchor) => {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", x); t.setAttribute("y", H - 3); t.setAttribute("text-anchor", anchor); t.textContent = text;
    svg.append(t);
  };
  label(2, "1 h ago", "start"); label(W / 2, `PSPI 0-${max}`, "middle"); label(W - 2, "now", "end");
  return svg;
}

async function acknowledge(deviceId, eventId, button) {
  button.disabled = true; waiting.add(eventId); errors.delete(eventId);
  try {
    const r = await fetch("api/ack", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({device_id: deviceId, event_id: eventId}), credentials: "same-origin"});
    const body = await r.json().catch(() => ({}));
    if (!r.ok) errors.set(eventId, body.error || `HTTP ${r.status}`);
  } catch (e) {
    errors.set(eventId, `the station did not answer (${e})`);
  } finally {
    waiting.delete(eventId);
    if (last) render(last, true);
  }
}

function alertItem(bed, a) {
  const acked = a.acknowledged_by !== null;
  const li = el("li", {class: acked ? "acked" : "", "data-event-id": a.event_id});
  const since = a.raised_time ? `since ${clock(a.raised_time)}` : "active";
  const pspi = a.pspi !== null ? `, PSPI ${a.pspi.toFixed(1)}` : "";
  const note = a.interrupted ? " (signal interrupted)" : "";
  li.append(el("div", {}, el("strong", {}, "Pain alert "), `${since}${pspi}${note}`));
  if (acked) {
    li.append(el("div", {class: "ackstate"}, `\u2714 acknowledged by ${a.acknowledged_by}` +
      (a.acknowledged_time ? ` at ${clock(a.acknowledged_time)}` : "") + " (recorded on the bed)"));
  } else {
    const b = el("button", {type: "button", class: "ack"}, "Acknowledge");
    if (waiting.has(a.event_id)) b.disabled = true;
    b.addEventListener("click", () => acknowledge(bed.device_id, a.event_id, b));
    li.append(b);
    if (a.ack_sent_by) {
      li.append(el("div", {class: "ackstate small"},
        `acknowledgement sent by ${a.ack_sent_by}, waiting for the bed to record it\u2026`));
    }
  }
  if (errors.has(a.event_id)) li.append(el("div", {class: "error"}, `Not acknowledged: ${errors.get(a.event_id)}`));
  return li;
}

function card(bed, snap) {
  const node = el("section", {class: `bed ${bed.css}`, "data-bed": bed.device_id, "data-state": bed.shown,
    "aria-label": `${bed.device_id}: ${bed.label}`});
  node.append(el("div", {class: "band"}, el("span", {class: "name"}, bed.device_id),
    el("span", {class: "state"}, `${SYMBOL[bed.css] || ""} ${bed.label}`)));
  const body = el("div", {class: "body"});
  if (bed.reason) body.append(el("div", {class: "reason"}, bed.reason));
  body.append(el("div", {class: "row"},
    el("span", {}, "PSPI (smoothed) ", el("span", {class: "pspi"}, bed.pspi === null ? "\u2013" : bed.pspi.toFixed(1))),
    el("span", {class: "small"}, `device state: ${bed.state}`)));
  body.append(sparkline(bed, snap.window_s, snap.time));
  body.append(el("div", {class: "row"}, el("span", {class: "beat"}, ""),
    el("span", {class: "small"}, `heartbeat every ${bed.every_s} s`)));
  const h = bed.health || {};
  const facts = [];
  if (h.model) facts.push(`model ${h.model}`);
  if (typeof h.fps === "number") facts.push(`${h.fps.toFixed(1)} fps`);
  if (typeof h.outbox_backlog === "number" && h.outbox_backlog > 0) {
    facts.push(`${h.outbox_backlog} events queued on the bed`);
  }
  if (h.synthetic) body.append(el("div", {class: "demo"}, "SYNTHETIC DEMO MODEL - not a clinical score"));
  body.append(el("div", {class: "small"}, facts.join(" \u00B7 ")));
  node.append(body);
  return node;
}

function alertList(bed) {
  const ul = el("ul", {class: "alerts"});
  for (const a of bed.alerts) ul.append(alertItem(bed, a));
  return ul;
}

function beat(node, bed) {
  const span = node.querySelector(".beat");
  const s = bed.since_heartbeat_s;
  span.textContent = s === null ? "no heartbeat yet" : `last heartbeat ${Math.round(s)} s ago`;
  span.className = "beat" + (bed.shown === "silent" || bed.shown === "offline" ? " late" : "");
}

function render(snap, force) {
  last = snap;
  const b = snap.broker;
  brokerPill.textContent = b.connected ? `broker connected (${b.broker})`
    : `BROKER NOT CONNECTED: ${b.error || b.broker}`;
  brokerPill.className = "pill " + (snap.broker.connected ? "ok" : "bad");
  updated.textContent = `updated ${clock(snap.time)}`;
  const seen = new Set();
  let previous = null;
  for (const bed of snap.beds) {
    seen.add(bed.device_id);
    const {since_heartbeat_s, ...rest} = bed;
    const key = JSON.stringify(rest);
    const alertsKey = JSON.stringify(bed.alerts.map(a => [a, waiting.has(a.event_id), errors.get(a.event_id)]));
    let entry = cards.get(bed.device_id);
    if (!entry || entry.key !== key || force) {
      // the card is updated in place and its alert list (with the Acknowledge buttons) is rebuilt only when the
      // alerts change: a heartbeat must never swap a button away under a nurse's click
      const fresh = card(bed, snap);
      if (!entry) {
        entry = {el: fresh, key: null, alertsKey: null, ul: null};
        cards.set(bed.device_id, entry);
      } else {
        for (const name of ["class", "data-state", "aria-label"]) entry.el.setAttribute(name, fresh.getAttribute(name));
        entry.el.replaceChildren(...fresh.childNodes);
      }
      if (entry.alertsKey !== alertsKey || force || !entry.ul) {
        entry.ul = alertList(bed);
        entry.alertsKey = alertsKey;
      }
      entry.el.querySelector(".body").append(entry.ul);
      entry.key = key;
    }
    beat(entry.el, bed);
    const want = previous ? previous.nextSibling : ward.firstChild;
    if (want !== entry.el) ward.insertBefore(entry.el, want);
    previous = entry.el;
  }
  for (const [id, entry] of cards) if (!seen.has(id)) { entry.el.remove(); cards.delete(id); }
  document.getElementById("empty").hidden = snap.beds.length > 0;
  const alarms = snap.beds.filter(b => b.severity >= 3).length;
  document.title = alarms ? `(${alarms}) Ward station` : "Ward station";
}

function connect() {
  const source = new EventSource("api/stream");
  source.onopen = () => { streamPill.textContent = "live"; streamPill.className = "pill ok"; };
  source.onmessage = m => render(JSON.parse(m.data), false);
  source.onerror = () => {
    streamPill.textContent = "PAGE NOT LIVE - reconnecting"; streamPill.className = "pill bad";
  };
}
connect();
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ward station</title><style nonce="{nonce}">{style}</style></head>
<body><header><h1>Ward station</h1><span id="broker" class="pill bad">connecting to the broker\u2026</span>
<span id="stream" class="pill bad">connecting\u2026</span><span id="updated" class="grow"></span>{user}</header>
<p id="empty">No beds yet: waiting for the first heartbeat on the broker.</p>
<main id="ward"></main>
<script nonce="{nonce}">{script}</script></body></html>
"""

LOGIN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ward station - sign in</title><style nonce="{nonce}">{style}
form.login {{ max-width: 20rem; margin: 3rem auto; background: #fff; padding: 1.5rem; border-radius: .5rem; }}
form.login label {{ display: block; margin-top: .8rem; }} form.login input {{ width: 100%; font: inherit; }}
form.login button {{ margin-top: 1rem; font: inherit; }}</style></head>
<body><header><h1>Ward station</h1></header>
<form class="login" method="post" action="login"><h2>Sign in</h2>{message}
<label>User <input name="user" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form></body></html>
"""


def ward_page(nonce: str, user: str | None) -> str:
    signed_in = (
        f"<span>{html.escape(user)}</span>"
        '<form method="post" action="logout"><button type="submit">Sign out</button></form>'
        if user
        else '<span class="small">loopback only, no login</span>'
    )
    return PAGE.format(nonce=nonce, style=STYLE, script=SCRIPT, user=signed_in)


def login_page(nonce: str, message: str | None = None) -> str:
    text = f'<p class="error">{html.escape(message)}</p>' if message else ""
    return LOGIN.format(nonce=nonce, style=STYLE, message=text)
