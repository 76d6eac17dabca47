// The page of ddlvad watch: live cameras with score traces, events with snapshots and clips, reviews,
// threshold suggestions. Plain JavaScript, no build step, nothing loaded from elsewhere.
//
// The token: the page is opened once as /?token=TOKEN. The server then sets an HttpOnly cookie; this
// script also keeps the token in sessionStorage, removes it from the address bar, sends it as
// "Authorization: Bearer" with every fetch and appends ?token= to <img>/<video> sources (which cannot
// send headers), so that the page works whether or not the browser keeps the cookie.
"use strict";

const LIVE_STREAMS = 4;        // MJPEG <img> views at most: a browser opens ~6 connections per server,
                               // and each live view holds one; further cameras refresh a still per second
const TRACE_MS = 1000;         // score trace refresh
const CAMERAS_MS = 5000;       // camera list and stats refresh
const EVENTS_MS = 2000;        // event list poll
const SUGGESTION_MS = 30000;   // threshold suggestion refresh
const PAGE_SIZE = 20;

const token = (() => {
  const params = new URLSearchParams(location.search);
  const given = params.get("token");
  if (given !== null) {
    sessionStorage.setItem("ddlvad-token", given);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
  }
  return given || sessionStorage.getItem("ddlvad-token") || "";
})();

const $ = (selector, root = document) => root.querySelector(selector);
const state = { cameras: new Map(), offset: 0, total: 0, events: new Map() };

// ---------------------------------------------------------------- talking to the server
function mediaUrl(path, query = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  if (token) url.searchParams.set("token", token);
  return url.pathname + url.search;
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token) headers.Authorization = "Bearer " + token;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { ...options, headers, cache: "no-store" });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  say("");
  return body;
}

function say(text) { $("#status").textContent = text; }
function fmt(x, digits = 4) { return x === null || x === undefined ? "–" : Number(x).toPrecision(digits); }
function when(t) { return new Date(t * 1000).toLocaleString(); }

// ---------------------------------------------------------------- cameras
async function refreshCameras() {
  let data;
  try { data = await api("/api/cameras"); } catch (e) { say("Cameras: " + e.message); return; }
  const grid = $("#cameras");
  const select = $("#filters select[name=camera]");
  data.cameras.forEach((info, index) => {
    let card = state.cameras.get(info.name);
    if (!card) {
      card = makeCameraCard(info, index);
      state.cameras.set(info.name, card);
      grid.append(card.root);
      const option = document.createElement("option");
      option.value = option.textContent = info.name;
      select.append(option);
    }
    card.info = info;
    $(".state", card.root).textContent = info.state;
    $(".state", card.root).className = "state " + info.state;
    $(".label", card.root).textContent = info.label || "";
    $(".current", card.root).textContent = fmt(info.threshold);
    const s = info.stats || {};
    $(".stats", card.root).textContent =
      `${fmt(s.camera_fps, 3)} fps in, ${fmt(s.process_fps, 3)} scored, ${fmt(s.skipped_fps, 3)} skipped · ` +
      `latency ${fmt(s.latency_median_ms, 3)} ms (p95 ${fmt(s.latency_p95_ms, 3)}) · ${s.frames ?? "–"} frames`;
  });
}

function makeCameraCard(info, index) {
  const root = $("#camera-card").content.firstElementChild.cloneNode(true);
  root.dataset.name = info.name;
  $(".name", root).textContent = info.name;
  const img = $(".live", root);
  img.alt = `Live view of camera ${info.name}`;
  $(".trace", root).setAttribute("aria-label", `Score trace of camera ${info.name}, last 60 seconds`);
  const card = { root, info, img, live: index < LIVE_STREAMS, suggestion: null };
  startLive(card);
  $(".apply", root).addEventListener("click", () => applySuggestion(card));
  refreshSuggestion(card);
  return card;
}

function liveBase(card) { return "/api/cameras/" + encodeURIComponent(card.info.name); }

function startLive(card) {
  if (card.live) {
    card.img.src = mediaUrl(liveBase(card) + "/live");
  } else {
    card.img.src = mediaUrl(liveBase(card) + "/frame.jpg", { t: Date.now() });
  }
}

function stopLive(card) { card.img.removeAttribute("src"); }

document.addEventListener("visibilitychange", () => {  // a hidden tab holds no live connections
  for (const card of state.cameras.values()) document.hidden ? stopLive(card) : startLive(card);
});

function refreshStills() {
  if (document.hidden) return;
  for (const card of state.cameras.values()) if (!card.live) startLive(card);
}

async function refreshTraces() {
  if (document.hidden) return;
  await Promise.all([...state.cameras.values()].map(async (card) => {
    try {
      const data = await api(liveBase(card) + "/trace?seconds=60");
      drawTrace($(".trace", card.root), data.points, data.threshold, data.seconds);
    } catch (e) { /* the camera may be gone; the next refresh tells */ }
  }));
}

function drawTrace(canvas, points, threshold, seconds) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const now = Date.now() / 1000;
  const top = Math.max(1e-9, threshold || 0, ...points.map((p) => p[1])) * 1.15;
  const x = (t) => w - ((now - t) / seconds) * w;
  const y = (s) => h - (s / top) * h;
  if (threshold !== null && threshold !== undefined) {
    ctx.strokeStyle = "#dc2626"; ctx.setLineDash([4, 4]); ctx.beginPath();
    ctx.moveTo(0, y(threshold)); ctx.lineTo(w, y(threshold)); ctx.stroke(); ctx.setLineDash([]);
  }
  ctx.strokeStyle = "#1d4ed8"; ctx.lineWidth = 1.5; ctx.beginPath();
  points.forEach(([t, s], i) => (i ? ctx.lineTo(x(t), y(s)) : ctx.moveTo(x(t), y(s))));
  ctx.stroke();
}

// ---------------------------------------------------------------- thresholds
async function refreshSuggestion(card) {
  let s;
  try { s = await api(liveBase(card) + "/threshold-suggestion"); } catch (e) { return; }
  card.suggestion = s;
  const text = $(".suggestion", card.root);
  const button = $(".apply", card.root);
  const silenced = s.silenced && s.silenced.total !== undefined
    ? ` (${s.silenced.false_alarm} false alarm(s), ${s.silenced.unreviewed} unreviewed event(s) would have been silenced)` : "";
  if (s.value !== null) {
    text.textContent = `Suggested: ${fmt(s.value)}${silenced}`;
    button.hidden = false;
    button.textContent = `Apply suggested threshold ${fmt(s.value)}`;
  } else {
    text.textContent = "No suggestion: " + s.refused;
    button.hidden = true;
  }
}

async function applySuggestion(card) {
  const s = card.suggestion;
  if (!s || s.value === null) return;
  const button = $(".apply", card.root);
  button.disabled = true;
  try {
    const info = await api(liveBase(card) + "/threshold", {
      method: "POST", body: JSON.stringify({ value: s.value, origin: "suggested-applied", note: "applied from the page" }),
    });
    $(".current", card.root).textContent = fmt(info.threshold);
    say(`Threshold of ${card.info.name} set to ${fmt(info.threshold)}.`);
  } catch (e) { say("Threshold: " + e.message); }
  button.disabled = false;
  refreshSuggestion(card);
}

// ---------------------------------------------------------------- events
function eventQuery() {
  const form = $("#filters");
  const q = new URLSearchParams({ limit: PAGE_SIZE, offset: state.offset });
  if (form.camera.value) q.set("camera", form.camera.value);
  if (form.min_score.value !== "") q.set("min_score", form.min_score.value);
  if (form.unreviewed.checked) q.set("reviewed", "false");
  return q;
}

async function refreshEvents() {
  let data;
  try { data = await api("/api/events?" + eventQuery()); } catch (e) { say("Events: " + e.message); return; }
  state.total = data.total;
  const list = $("#events");
  const keep = new Set(data.events.map((e) => e.id));
  for (const [id, item] of state.events) if (!keep.has(id)) { item.root.remove(); state.events.delete(id); }
  data.events.forEach((event, index) => {
    let item = state.events.get(event.id);
    if (!item) { item = makeEventItem(event); state.events.set(event.id, item); }
    updateEventItem(item, event);
    if (list.children[index] !== item.root) list.insertBefore(item.root, list.children[index] || null);
  });
  const first = data.total ? state.offset + 1 : 0;
  $("#events-count").textContent = `${first}–${state.offset + data.events.length} of ${data.total} event(s)`;
  $("#newer").disabled = state.offset === 0;
  $("#older").disabled = state.offset + PAGE_SIZE >= data.total;
}

function makeEventItem(event) {
  const root = $("#event-item").content.firstElementChild.cloneNode(true);
  root.dataset.id = event.id;
  const item = { root, event };
  $(".play", root).addEventListener("click", () => playClip(item));
  $(".false-alarm", root).addEventListener("click", () => review(item, "false_alarm"));
  $(".confirmed", root).addEventListener("click", () => review(item, "confirmed"));
  return item;
}

function updateEventItem(item, event) {
  const root = item.root;
  item.event = event;
  root.className = "event " + (event.review || "");
  $(".title", root).textContent = `#${event.id} ${event.camera}`;
  const time = $("time", root);
  time.dateTime = new Date(event.started_at * 1000).toISOString();
  time.textContent = when(event.started_at);
  const duration = Math.max(0, event.ended_at - event.started_at).toFixed(1);
  $(".detail", root).textContent =
    `peak ${fmt(event.peak_score)} (threshold ${fmt(event.threshold)}), ${event.frames} frames, ${duration} s` +
    (event.open ? ", in progress" : "") + (event.interrupted ? ", interrupted" : "");
  $(".review-state", root).textContent = event.review ? "Reviewed: " + event.review.replace("_", " ") : "Not reviewed";
  const snapshot = $(".snapshot", root);
  if (event.snapshot_url && !snapshot.dataset.src) {
    snapshot.dataset.src = event.snapshot_url;
    snapshot.src = mediaUrl(event.snapshot_url);
    snapshot.alt = `Snapshot of event ${event.id} on camera ${event.camera}`;
  }
  $(".play", root).disabled = !event.clip_url;
  $(".false-alarm", root).setAttribute("aria-pressed", String(event.review === "false_alarm"));
  $(".confirmed", root).setAttribute("aria-pressed", String(event.review === "confirmed"));
}

function playClip(item) {
  const video = $(".clip", item.root);
  if (!item.event.clip_url) return;
  if (!video.getAttribute("src")) {
    video.src = mediaUrl(item.event.clip_url);
    video.setAttribute("aria-label", `Clip of event ${item.event.id}`);
  }
  video.hidden = false;
  video.play().catch((e) => say("Clip: " + e.message));
}

async function review(item, verdict) {
  const next = item.event.review === verdict ? null : verdict;  // a second click takes the review back
  try {
    const event = await api(`/api/events/${item.event.id}/review`, { method: "POST", body: JSON.stringify({ review: next }) });
    updateEventItem(item, event);
    const card = state.cameras.get(event.camera);
    if (card) refreshSuggestion(card);
  } catch (e) { say("Review: " + e.message); }
}

// ---------------------------------------------------------------- start
function every(ms, fn) { fn(); setInterval(fn, ms); }

$("#filters").addEventListener("input", () => { state.offset = 0; refreshEvents(); });
$("#filters").addEventListener("submit", (e) => e.preventDefault());
$("#newer").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); refreshEvents(); });
$("#older").addEventListener("click", () => { state.offset += PAGE_SIZE; refreshEvents(); });

refreshCameras().then(() => {
  setInterval(refreshCameras, CAMERAS_MS);
  every(TRACE_MS, refreshTraces);
  setInterval(refreshStills, 1000);
  setInterval(() => state.cameras.forEach(refreshSuggestion), SUGGESTION_MS);
});
every(EVENTS_MS, refreshEvents);
