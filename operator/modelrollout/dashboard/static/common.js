// Shared by both pages: small DOM helpers, times, and the live stream (server-sent events).
"use strict";

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function badge(text, kind) {
  return el("span", { class: `badge ${kind}` }, text);
}

function phaseBadge(phase) {
  return badge(phase === "RolledBack" ? "Rolled back" : phase, `phase-${phase}`);
}

function markBadges(marks) {
  return (marks || []).map((mark) => el("span", { class: `mark mark-${mark.replace(/ /g, "-")}` }, mark));
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 60) return `${Math.floor(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60)}m`;
  return `${Math.floor(seconds / 86400)}d`;
}

function clock(epochSeconds) {
  if (!epochSeconds) return "-";
  return new Date(epochSeconds * 1000).toLocaleTimeString([], { hour12: false });
}

function duration(seconds) {
  const whole = Math.max(0, Math.round(seconds));
  const minutes = Math.floor(whole / 60);
  return minutes ? `${minutes}m${String(whole % 60).padStart(2, "0")}s` : `${whole}s`;
}

function trafficText(weights) {
  const parts = [`${weights.stable}% stable`, `${weights.candidate}% candidate`];
  if (weights.mirror) parts.push(`${weights.mirror}% mirrored`);
  if (weights.headerRoute) parts.push("header route");
  return parts.join(" · ");
}

function splitBar(weights) {
  return el(
    "div",
    { class: "split", title: trafficText(weights) },
    el("div", { class: "s", style: `width:${weights.stable}%` }),
    el("div", { class: "c", style: `width:${weights.candidate}%` }),
  );
}

// The stream of list changes: calls onMessage with each message, and onState(true|false) as it connects.
function followStream(onMessage, onState) {
  const source = new EventSource("/api/stream");
  source.onopen = () => onState(true);
  source.onerror = () => onState(false); // EventSource reconnects by itself
  source.onmessage = (event) => onMessage(JSON.parse(event.data));
  return source;
}

function showLive(on) {
  const dot = document.getElementById("live-dot");
  const text = document.getElementById("live-text");
  if (dot) dot.classList.toggle("on", on);
  if (text) text.textContent = on ? "live" : "reconnecting…";
}

async function getJson(url) {
  const answer = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await answer.json().catch(() => ({ error: `${answer.status} ${answer.statusText}` }));
  return { ok: answer.ok, status: answer.status, body };
}
