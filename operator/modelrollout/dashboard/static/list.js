// The list page: every rollout, kept current from the server's event stream.
"use strict";

const rows = new Map(); // "namespace/name" -> row

function keyOf(row) {
  return `${row.namespace}/${row.name}`;
}

function filters() {
  return {
    namespace: document.getElementById("filter-namespace").value,
    phase: document.getElementById("filter-phase").value,
    name: document.getElementById("filter-name").value.trim().toLowerCase(),
  };
}

function syncNamespaceOptions() {
  const select = document.getElementById("filter-namespace");
  const known = new Set([...select.options].map((option) => option.value));
  const namespaces = [...new Set([...rows.values()].map((row) => row.namespace))].sort();
  for (const namespace of namespaces) {
    if (!known.has(namespace)) select.append(el("option", { value: namespace }, namespace));
  }
}

function render() {
  const body = document.getElementById("rows");
  const wanted = filters();
  const now = Date.now() / 1000;
  const shown = [...rows.values()]
    .filter((row) => !wanted.namespace || row.namespace === wanted.namespace)
    .filter((row) => !wanted.phase || row.phase === wanted.phase)
    .filter((row) => !wanted.name || row.name.toLowerCase().includes(wanted.name))
    .sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
  body.replaceChildren(
    ...shown.map((row) =>
      el(
        "tr",
        { "data-key": keyOf(row), "data-phase": row.phase, class: "rollout" },
        el("td", {}, el("a", { href: `/rollouts/${encodeURIComponent(row.namespace)}/${encodeURIComponent(row.name)}`, class: "name" }, row.name)),
        el("td", { class: "namespace" }, row.namespace),
        el("td", { class: "phase" }, phaseBadge(row.phase)),
        el("td", { class: "versions stable" }, row.stableVersion || "-"),
        el("td", { class: "versions candidate" }, row.candidateVersion || "-"),
        el(
          "td",
          { class: "traffic" },
          splitBar(row.weights),
          el("div", { class: "split-text" }, trafficText(row.weights)),
        ),
        el("td", { class: "num step" }, row.step ? `${row.step.n}/${row.step.m}` : row.strategy === "blueGreen" ? row.stage || "-" : "-"),
        el("td", { class: "num age" }, age(row.createdAt ? now - row.createdAt : null)),
        el("td", { class: "marks" }, markBadges(row.marks)),
      ),
    ),
  );
  if (!shown.length) {
    const text = rows.size ? "no rollout matches the filters" : "no ModelRollout to show";
    body.replaceChildren(el("tr", {}, el("td", { colspan: 9, class: "empty" }, text)));
  }
  document.getElementById("count").textContent = `${shown.length} of ${rows.size}`;
}

function showError(error) {
  const banner = document.getElementById("error");
  banner.hidden = !error;
  banner.textContent = error || "";
}

function onMessage(message) {
  if (message.type === "snapshot") {
    rows.clear();
    for (const row of message.rows) rows.set(keyOf(row), row);
    showError(message.error);
  } else if (message.type === "changed") {
    rows.set(keyOf(message.row), message.row);
  } else if (message.type === "deleted") {
    rows.delete(`${message.namespace}/${message.name}`);
  } else if (message.type === "error") {
    showError(message.error);
  }
  syncNamespaceOptions();
  render();
}

for (const id of ["filter-namespace", "filter-phase", "filter-name"]) {
  document.getElementById(id).addEventListener("input", render);
}
followStream(onMessage, showLive);
setInterval(render, 10000); // ages move on
