// The rollout page: steps, traffic, one chart per metric, drift, conditions, Events, and the commands.
"use strict";

const [, , namespace, name] = location.pathname.split("/").map(decodeURIComponent);
const detailUrl = `/api/rollouts/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;
const charts = new Map(); // canvas key -> Chart
const VERDICT_COLOURS = {
  Successful: "#1a7f37", Failed: "#cf222e", Error: "#8250df", Inconclusive: "#bf8700", Running: "#0969da", Pending: "#6e7781",
};
const ACTION_WORDS = {
  promote: ["Promote", "Go past the current pause or gate to the next step."],
  "promote-full": ["Promote fully", "Skip every remaining step and make the candidate stable."],
  pause: ["Pause", "Hold the rollout where it is; Resume continues it."],
  resume: ["Resume", "Continue the paused rollout."],
  abort: ["Abort", "Roll back now: all traffic to the stable version, the candidate scaled down."],
  retry: ["Retry", "Deliver the rolled-back version again, from the first step."],
};
let current = null;
let pending = null; // {id, action} of the command this page sent last
let stepDeadline = null;
let fetching = false;
let again = false;

Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
Chart.defaults.font.size = 11;
Chart.defaults.animation = false;

function timeAxis() {
  return {
    type: "linear",
    ticks: { callback: (value) => new Date(value).toLocaleTimeString([], { hour12: false }), maxTicksLimit: 6 },
    grid: { color: "#eef1f4" },
  };
}

function upsertChart(key, canvas, config) {
  let chart = charts.get(key);
  if (chart && chart.canvas === canvas) {
    chart.data = config.data;
    chart.options = config.options;
    chart.update("none");
    return chart;
  }
  chart = new Chart(canvas, config);
  charts.set(key, chart);
  return chart;
}

function band(threshold, from, to) {
  // The values that pass, drawn as dashed limits with the passing side shaded.
  const sets = [];
  const line = (y, label, fill) => ({
    label, data: [{ x: from, y }, { x: to, y }], borderColor: "#cf222e", borderDash: [6, 4], borderWidth: 1.5,
    pointRadius: 0, fill, backgroundColor: "rgba(26,127,55,0.08)", order: 2,
  });
  const hasMin = threshold.min !== null && threshold.min !== undefined;
  const hasMax = threshold.max !== null && threshold.max !== undefined;
  if (hasMin) sets.push(line(threshold.min, `min ${threshold.min}`, hasMax ? false : "end"));
  if (hasMax) sets.push(line(threshold.max, `max ${threshold.max}`, hasMin ? "-1" : "start"));
  return sets;
}

function metricConfig(metric) {
  const points = metric.points.filter((point) => point.value !== null && point.value !== undefined);
  const times = metric.points.map((point) => point.at * 1000);
  const from = times.length ? Math.min(...times) : Date.now() - 60000;
  const to = times.length > 1 ? Math.max(...times) : from + 60000;
  const datasets = [];
  if (metric.kind === "compare") {
    const side = (key, label, colour) => ({
      label, data: metric.points.filter((p) => p[key] !== null && p[key] !== undefined).map((p) => ({ x: p.at * 1000, y: p[key] })),
      borderColor: colour, backgroundColor: colour, pointRadius: 3, tension: 0, order: 1,
    });
    datasets.push(side("candidate", "candidate", "#8250df"), side("stable", `stable ${metric.stableVersion || ""}`.trim(), "#0969da"));
    datasets.push({
      label: "measurements", data: points.map((p) => ({ x: p.at * 1000, y: p.value })), hidden: true,
      pointBackgroundColor: points.map((p) => VERDICT_COLOURS[p.phase] || "#6e7781"),
    });
  } else {
    datasets.push({
      label: "measurements",
      data: points.map((p) => ({ x: p.at * 1000, y: p.value })),
      borderColor: "#57606a", borderWidth: 1.5, tension: 0, order: 1,
      pointRadius: 5, pointHoverRadius: 7,
      pointBackgroundColor: points.map((p) => VERDICT_COLOURS[p.phase] || "#6e7781"),
      pointBorderColor: points.map((p) => VERDICT_COLOURS[p.phase] || "#6e7781"),
    });
    datasets.push(...band(metric.threshold, from, to));
  }
  // Measurements without a value (no data, an error) are marked on the time axis, never drawn as a number.
  const valueless = metric.points.filter((p) => p.value === null || p.value === undefined);
  if (valueless.length) {
    datasets.push({
      type: "scatter", label: "no value", data: valueless.map((p) => ({ x: p.at * 1000, y: 0 })), valueless: true,
      pointStyle: "crossRot", pointRadius: 6, borderWidth: 2, order: 0,
      pointBorderColor: valueless.map((p) => VERDICT_COLOURS[p.phase] || "#6e7781"),
    });
  }
  return {
    type: "line",
    data: { datasets },
    options: {
      maintainAspectRatio: false,
      parsing: false,
      scales: { x: timeAxis(), y: { beginAtZero: true, grid: { color: "#eef1f4" } } },
      plugins: {
        legend: { labels: { boxWidth: 12, filter: (item, data) => !data.datasets[item.datasetIndex].hidden } },
        tooltip: {
          callbacks: {
            label: (context) => {
              const point = metric.points.find((p) => p.at * 1000 === context.parsed.x);
              if (context.dataset.valueless && point) return `${point.phase}: ${point.message}`;
              const head = `${context.dataset.label}: ${context.parsed.y}`;
              return point && context.dataset.label === "measurements" ? `${head} (${point.phase}) ${point.message}` : head;
            },
          },
        },
      },
    },
  };
}

function renderMetrics(metrics) {
  const box = document.getElementById("metrics");
  const wanted = new Set(metrics.map((m) => `${m.analysis}/${m.name}`));
  for (const [key, chart] of charts) {
    if (key !== "traffic" && !key.startsWith("features/") && !wanted.has(key)) {
      chart.destroy();
      charts.delete(key);
      box.querySelector(`[data-key="${CSS.escape(key)}"]`)?.remove();
    }
  }
  if (!metrics.length) {
    box.replaceChildren(el("div", { class: "empty" }, "no analysis has measured anything yet"));
    return;
  }
  box.querySelector(".empty")?.remove();
  for (const metric of metrics) {
    const key = `${metric.analysis}/${metric.name}`;
    let card = box.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (!card) {
      card = el(
        "div",
        { class: "card metric", "data-key": key, "data-metric": metric.name, "data-analysis": metric.analysis },
        el("div", { class: "head" }, el("h3", {}, metric.name), el("span", { class: "note kind" }), el("span", { class: "verdict" })),
        el("div", { class: "msg" }),
        el("div", { class: "chart-box" }, el("canvas", { "data-metric": metric.name, "data-analysis": metric.analysis })),
        el("details", {}, el("summary", {}, "measurements"), el("table", { class: "points" })),
      );
      box.append(card);
    }
    const limits = [];
    if (metric.kind === "compare" && metric.compare) {
      if (metric.compare.maxRatio !== undefined) limits.push(`at most ${metric.compare.maxRatio}x stable`);
      if (metric.compare.maxDifference !== undefined) limits.push(`at most ${metric.compare.maxDifference} worse than stable`);
    } else {
      if (metric.threshold.min !== null && metric.threshold.min !== undefined) limits.push(`min ${metric.threshold.min}`);
      if (metric.threshold.max !== null && metric.threshold.max !== undefined) limits.push(`max ${metric.threshold.max}`);
    }
    if (metric.template && !limits.length) limits.push(`limits from template ${metric.template}`);
    const kindText = `${metric.analysis} analysis · ${metric.kind}${limits.length ? " · " + limits.join(", ") : ""}`;
    card.querySelector(".kind").textContent = kindText;
    card.querySelector(".verdict").replaceChildren(badge(metric.phase, `verdict-${metric.phase}`));
    const counts = metric.counts;
    card.querySelector(".msg").textContent =
      `${counts.count} measured: ${counts.successful} passed, ${counts.failed} failed, ${counts.inconclusive} inconclusive, ${counts.error} errors. ${metric.message}`;
    card.querySelector("table.points").replaceChildren(
      el("tr", {}, el("th", {}, "Time"), el("th", { class: "num" }, "Value"), el("th", {}, "Verdict"), el("th", {}, "Why")),
      ...metric.points.slice().reverse().map((p) =>
        el("tr", {}, el("td", {}, clock(p.at)), el("td", { class: "num" }, p.value ?? "-"),
          el("td", {}, badge(p.phase, `verdict-${p.phase}`)), el("td", { class: "note" }, p.message))),
    );
    upsertChart(key, card.querySelector("canvas"), metricConfig(metric));
  }
}

function renderTraffic(detail) {
  const points = detail.traffic.slice();
  const now = Date.now();
  if (points.length) points.push({ ...points[points.length - 1], at: now / 1000 });
  const series = (key, label, colour) => ({
    label, data: points.map((p) => ({ x: p.at * 1000, y: p[key] })), stepped: "before",
    borderColor: colour, backgroundColor: colour, pointRadius: 0, borderWidth: 2,
  });
  // The Events mark when steps, promotions and rollbacks happened, also before this dashboard started.
  const marks = detail.events.slice().reverse().map((e) => ({ x: e.at * 1000, y: 104, reason: e.reason, message: e.message, warning: e.type === "Warning" }));
  const events = {
    type: "scatter", label: "Events", data: marks, pointStyle: "triangle", rotation: 180, pointRadius: 6,
    pointBackgroundColor: marks.map((m) => (m.warning ? "#cf222e" : "#57606a")), borderColor: "#57606a",
  };
  const config = {
    type: "line",
    data: { datasets: [series("stable", "stable %", "#0969da"), series("candidate", "candidate %", "#8250df"), series("mirror", "mirror %", "#bc4c00"), events] },
    options: {
      maintainAspectRatio: false, parsing: false,
      scales: { x: timeAxis(), y: { min: 0, max: 108, ticks: { callback: (v) => (v <= 100 ? v : "") } } },
      plugins: {
        legend: { labels: { boxWidth: 12 } },
        tooltip: { callbacks: { label: (c) => (c.raw.reason ? `${c.raw.reason}: ${c.raw.message}` : `${c.dataset.label}: ${c.parsed.y}`) } },
      },
    },
  };
  upsertChart("traffic", document.getElementById("traffic-chart"), config);
  document.getElementById("traffic-note").textContent =
    `the split as this dashboard saw it since ${clock(detail.watchingSince)} (status keeps only the split in force); ▼ the Events`;
}

function renderSteps(detail) {
  const box = document.getElementById("steps");
  stepDeadline = null;
  if (!detail.steps.length) {
    box.replaceChildren(el("div", { class: "note" }, detail.strategy === "blueGreen" ? `blue-green · stage ${detail.stage || "-"}` : "no steps"));
    return;
  }
  box.replaceChildren(
    ...detail.steps.map((step) => {
      const extra = [];
      if (step.remainingSeconds !== undefined) {
        stepDeadline = Date.now() / 1000 + step.remainingSeconds;
        extra.push(el("div", { class: "w remaining" }, `${duration(step.remainingSeconds)} left`));
      }
      if (step.waiting) extra.push(el("div", { class: "w" }, step.waiting));
      const word = { done: "done", current: "now", todo: "to come", stopped: "stopped here" }[step.state];
      return el("div", { class: `step ${step.state}`, "data-index": step.index, "data-state": step.state },
        el("div", { class: "n" }, `step ${step.index + 1} · ${word}`), el("div", { class: "t" }, step.text), extra);
    }),
  );
  const done = detail.steps.filter((s) => s.state === "done").length;
  document.getElementById("steps-note").textContent = `${done} of ${detail.steps.length} done`;
}

function renderGates(detail) {
  const gates = detail.gates || [];
  document.getElementById("gates-card").hidden = !gates.length;
  const kind = { waiting: "phase-Paused", open: "phase-Succeeded", watching: "phase-Progressing" };
  document.getElementById("gates").replaceChildren(
    ...gates.map((g) =>
      el("tr", { "data-gate": g.name, "data-state": g.state },
        el("td", {}, g.name), el("td", { class: "mono" }, g.type), el("td", {}, g.scope),
        el("td", {}, badge(g.state, kind[g.state] || "phase-Pending")),
        el("td", { class: "note why" }, g.why || "-"), el("td", { class: "note" }, g.lastAnswer || "-"),
        el("td", { class: "num" }, g.attempts), el("td", { class: "mono" }, clock(g.checkedAt)))),
  );
}

function renderNotifications(detail) {
  const shown = detail.notifications || { pending: [], last: [] };
  document.getElementById("notifications-card").hidden = !shown.pending.length && !shown.last.length;
  const outcome = { Delivered: "phase-Succeeded", Failed: "phase-RolledBack", Unknown: "phase-Paused" };
  document.getElementById("notifications").replaceChildren(
    ...shown.pending.map((n) =>
      el("tr", { "data-destination": n.destination, "data-outcome": n.state },
        el("td", { class: "mono" }, n.nextAttemptAt ? `next ${clock(n.nextAttemptAt)}` : "now"),
        el("td", {}, n.destination), el("td", { class: "mono" }, n.trigger),
        el("td", {}, badge(n.state, "phase-Progressing")), el("td", { class: "num" }, n.attempts),
        el("td", { class: "note" }, n.lastError || "-"))),
    ...shown.last.map((n) =>
      el("tr", { "data-destination": n.destination, "data-outcome": n.outcome },
        el("td", { class: "mono" }, clock(n.at)), el("td", {}, n.destination), el("td", { class: "mono" }, n.trigger),
        el("td", {}, badge(n.outcome, outcome[n.outcome] || "phase-Pending")), el("td", { class: "num" }, n.attempts),
        el("td", { class: "note" }, n.message || "-"))),
  );
}

function renderDrift(detail) {
  document.getElementById("drift-card").hidden = !detail.drift.length;
  document.getElementById("drift").replaceChildren(
    ...detail.drift.map((row) =>
      el("tr", {}, el("td", {}, row.metric), el("td", {}, row.analysis), el("td", { class: "mono" }, row.worstFeature || "-"),
        el("td", {}, row.statistic), el("td", { class: "num" }, row.value === null || row.value === undefined ? "-" : Number(row.value).toPrecision(3)),
        el("td", { class: "num" }, row.limit === null ? "-" : `${row.limitKind === "max" ? "≤" : "p ≥"} ${row.limit}`),
        el("td", {}, badge(row.phase, `verdict-${row.phase}`)), el("td", { class: "note" }, row.message))),
  );
}

// A dashed vertical line at the limit of a horizontal bar chart (options.plugins.limitLine.value).
const limitLine = {
  id: "limitLine",
  afterDatasetsDraw(chart, args, options) {
    if (options.value === null || options.value === undefined) return;
    const x = chart.scales.x.getPixelForValue(options.value);
    const { top, bottom } = chart.chartArea;
    const context = chart.ctx;
    context.save();
    context.strokeStyle = "#cf222e";
    context.lineWidth = 1.5;
    context.setLineDash([6, 4]);
    context.beginPath();
    context.moveTo(x, top);
    context.lineTo(x, bottom);
    context.stroke();
    context.setLineDash([]);
    context.fillStyle = "#cf222e";
    context.textAlign = "left";
    // At the foot of the line: the bars are sorted worst first, so the last are the shortest.
    context.fillText(`max ${options.value}`, Math.min(x + 4, chart.chartArea.right - 40), bottom - 4);
    context.restore();
  },
};

function featureConfig(block) {
  const colour = (f) => (f.drifted ? "#cf222e" : f.value === null || f.value === undefined ? "#8c959f" : "#1a7f37");
  const values = block.features.map((f) => f.value ?? 0);
  const top = Math.max(...values, block.max ?? 0);
  return {
    type: "bar",
    data: {
      labels: block.features.map((f) => f.name),
      datasets: [{
        label: block.statistic, data: values,
        backgroundColor: block.features.map(colour), borderColor: block.features.map(colour), borderWidth: 1,
      }],
    },
    options: {
      indexAxis: "y", maintainAspectRatio: false,
      scales: { x: { beginAtZero: true, suggestedMax: top * 1.1, grid: { color: "#eef1f4" } }, y: { grid: { display: false } } },
      plugins: {
        legend: { display: false },
        limitLine: { value: block.max },
        tooltip: {
          callbacks: {
            label: (context) => {
              const f = block.features[context.dataIndex];
              if (f.value === null || f.value === undefined) return "too few observations";
              const p = f.pValue === null || f.pValue === undefined ? "" : `, adjusted p ${f.pValue.toPrecision(3)}`;
              return `${block.statistic} ${f.value.toPrecision(3)}${block.max !== null ? ` (max ${block.max})` : ""}${p}${f.drifted ? ", drifted" : ""}`;
            },
          },
        },
      },
    },
    plugins: [limitLine],
  };
}

function renderFeatures(detail) {
  const blocks = detail.driftFeatures || [];
  document.getElementById("features-card").hidden = !blocks.length;
  const box = document.getElementById("features");
  // Redrawn only when what status keeps changed: a table must not be replaced under a reader's eyes.
  const shape = JSON.stringify(blocks);
  if (box.dataset.shape === shape) return;
  box.dataset.shape = shape;
  const wanted = new Set(blocks.map((b) => `features/${b.analysis}/${b.metric}`));
  for (const [key, chart] of charts) {
    if (key.startsWith("features/") && !wanted.has(key)) {
      chart.destroy();
      charts.delete(key);
    }
  }
  const number = (v) => (v === null || v === undefined ? "-" : Number(v).toPrecision(3));
  box.replaceChildren(...blocks.map((block) => {
    const key = `features/${block.analysis}/${block.metric}`;
    const old = charts.get(key);
    // Keep the canvas a chart is drawn on: a redraw every few seconds must not flicker.
    const canvas = old ? old.canvas : el("canvas", { "data-features": block.metric, "data-analysis": block.analysis });
    const height = 50 + 28 * Math.max(block.features.length, 1);
    const more = block.compared - block.features.length;
    const counts = `${block.drifted} of ${block.compared} features drifted` +
      (block.inconclusive ? `, ${block.inconclusive} with too few observations` : "") +
      (more > 0 ? `; the ${more} least drifted are not kept (drift.topFeatures)` : "");
    const rows = block.features.map((f, index) =>
      el("tr", { "data-feature": f.name, "data-drifted": String(f.drifted), "data-rank": String(index + 1) },
        el("td", { class: "mono feature" }, f.name),
        el("td", { class: "num value" }, number(f.value)),
        el("td", { class: "num limit" }, block.max === null || block.max === undefined ? "-" : `${f.overLimit ? ">" : "≤"} ${block.max}`),
        el("td", { class: "num pvalue" }, f.pValue === null || f.pValue === undefined ? "-" :
          `${number(f.pValue)} ${f.pValue < block.pValueLevel ? "<" : "≥"} ${block.pValueLevel}`),
        el("td", { class: "drifted" }, f.value === null || f.value === undefined ? badge("too few", "verdict-Inconclusive")
          : f.drifted ? badge("drifted", "verdict-Failed") : badge("ok", "verdict-Successful"))));
    const card = el("div", { class: "card metric features-block", "data-drift-metric": block.metric, "data-analysis": block.analysis },
      el("div", { class: "head" }, el("h3", {}, block.metric),
        el("span", { class: "note" }, `${block.analysis} analysis · ${block.statistic}${block.max !== null && block.max !== undefined ? ` · max ${block.max}` : ""} · at ${clock(block.at)}`),
        el("span", { class: "verdict" }, badge(block.phase, `verdict-${block.phase}`))),
      el("div", { class: "msg" }, counts),
      el("div", { class: "body" }, el("div", { class: "chart-box", style: `height:${height}px` }, canvas),
        el("table", { class: "features" },
        el("tr", {}, el("th", {}, "Feature"), el("th", { class: "num" }, block.statistic), el("th", { class: "num" }, "Limit"),
          el("th", { class: "num" }, "Adjusted p"), el("th", {}, "")),
        ...rows)));
    card.dataset.key = key;
    return card;
  }));
  for (const block of blocks) upsertChart(`features/${block.analysis}/${block.metric}`,
    box.querySelector(`[data-key="${CSS.escape(`features/${block.analysis}/${block.metric}`)}"] canvas`), featureConfig(block));
}

function renderMonitoring(detail) {
  const monitoring = detail.monitoringHistory;
  document.getElementById("monitoring-card").hidden = !monitoring;
  if (!monitoring) return;
  const box = document.getElementById("monitoring");
  const shape = JSON.stringify(monitoring);
  if (box.dataset.shape === shape) return; // an open or closed history stays so until there is news
  box.dataset.shape = shape;
  document.getElementById("monitoring-note").textContent =
    `of ${monitoring.version} since ${clock(monitoring.startedAt)}; its charts are above (monitoring analysis), its features in Drift per feature`;
  const parts = [];
  parts.push(monitoring.driftedSince
    ? el("div", { class: "banner warn", id: "drift-episode" }, `Drifted since ${new Date(monitoring.driftedSince * 1000).toLocaleString()}`)
    : el("div", { class: "banner ok", id: "drift-episode" }, "No drift episode in progress."));
  if (monitoring.hook) parts.push(el("div", { class: "note" }, `retraining hook: ${monitoring.hook.state}, ${monitoring.hook.attempts} attempts ${monitoring.hook.lastError || ""}`));
  parts.push(el("table", { class: "monitoring-metrics" },
    el("tr", {}, el("th", {}, "Metric"), el("th", {}, "Verdict"), el("th", {}, "Measured"), el("th", {}, "Why")),
    ...monitoring.metrics.map((m) => el("tr", { "data-metric": m.name },
      el("td", {}, m.name + (m.dryRun ? " (dry run)" : "")), el("td", {}, badge(m.phase, `verdict-${m.phase}`)),
      el("td", {}, `${m.counts.count}: ${m.counts.successful} passed, ${m.counts.failed} failed`), el("td", { class: "note" }, m.message)))));
  parts.push(el("details", { open: "" }, el("summary", {}, `history: the ${monitoring.history.length} measurements status keeps, newest first`),
    el("table", { class: "monitoring-history" },
      el("tr", {}, el("th", {}, "Time"), el("th", {}, "Metric"), el("th", {}, "Verdict"), el("th", { class: "num" }, "Value"), el("th", {}, "Worst feature"), el("th", {}, "Why")),
      ...monitoring.history.map((h) => el("tr", { "data-metric": h.metric, "data-phase": h.phase },
        el("td", { class: "mono" }, clock(h.at)), el("td", {}, h.metric), el("td", {}, badge(h.phase, `verdict-${h.phase}`)),
        el("td", { class: "num" }, h.value === null || h.value === undefined ? "-" : Number(h.value).toPrecision(3)),
        el("td", { class: "mono" }, h.worstFeature || "-"), el("td", { class: "note" }, h.message))))));
  box.replaceChildren(...parts);
}

function renderActions(detail, config) {
  const box = document.getElementById("actions");
  if (config.readOnly) {
    box.replaceChildren(el("span", { class: "note" }, "read-only: this dashboard sends no commands"));
    return;
  }
  // Rebuilt only when the offered actions change: a button must not vanish under the pointer.
  const shape = detail.actions.join(",");
  if (box.dataset.shape === shape && document.getElementById("ack")) {
    showAck(detail);
    return;
  }
  box.dataset.shape = shape;
  const buttons = detail.actions.map((action) =>
    el("button", { type: "button", "data-action": action, class: action === "abort" ? "danger" : action.startsWith("promote") ? "primary" : "", onclick: () => confirmAction(action) }, ACTION_WORDS[action][0]));
  const ack = el("span", { class: "ack", id: "ack" });
  box.replaceChildren(...buttons, ack);
  showAck(detail);
}

function showAck(detail) {
  const ack = document.getElementById("ack");
  if (!ack || !pending) return;
  if (pending.error) {
    ack.replaceChildren(el("span", { class: "badge phase-Failed" }, `${pending.action} not sent`), ` ${pending.error}`);
    return;
  }
  const answer = detail.lastCommand;
  if (answer && answer.id === pending.id) {
    const kind = answer.outcome === "Applied" ? "phase-Succeeded" : "phase-Paused";
    ack.replaceChildren(el("span", { class: `badge ${kind}`, "data-outcome": answer.outcome }, `operator: ${answer.outcome}`), ` ${pending.action}${answer.reason ? ": " + answer.reason : ""}`);
  } else if (detail.lastCommandId === pending.id) {
    ack.replaceChildren(el("span", { class: "badge phase-Succeeded", "data-outcome": "handled" }, "operator: handled"), ` ${pending.action} (command ${pending.id})`);
  } else {
    ack.replaceChildren(el("span", { class: "badge phase-Pending" }, "sent"), ` ${pending.action} (command ${pending.id}), waiting for the operator…`);
  }
}

function confirmAction(action) {
  const dialog = document.getElementById("confirm");
  const [title, text] = ACTION_WORDS[action];
  document.getElementById("confirm-title").textContent = `${title} ${namespace}/${name}?`;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-send").onclick = async () => {
    dialog.close();
    await send(action);
  };
  document.getElementById("confirm-cancel").onclick = () => dialog.close();
  dialog.showModal();
}

async function send(action) {
  const answer = await fetch(`${detailUrl}/commands`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Modelrollout-Dashboard": "1" },
    body: JSON.stringify({ action }),
  });
  const body = await answer.json().catch(() => ({ error: `${answer.status} ${answer.statusText}` }));
  pending = answer.ok ? { id: body.command.id, action } : { action, error: body.error || `${answer.status}` };
  if (current) showAck(current);
  refresh();
}

function renderTables(detail) {
  document.getElementById("conditions").replaceChildren(
    ...detail.conditions.map((c, i) => {
      const repeated = i > 0 && c.message && c.message === detail.conditions[i - 1].message;
      return el("tr", {}, el("td", {}, c.type), el("td", {}, c.status), el("td", {}, c.reason || ""),
        el("td", { class: "note" }, repeated ? "(as above)" : c.message || ""));
    }),
  );
  const errorBox = document.getElementById("events-error");
  errorBox.hidden = !detail.eventsError;
  errorBox.textContent = detail.eventsError || "";
  document.getElementById("events").replaceChildren(
    ...detail.events.map((e) =>
      el("tr", { "data-reason": e.reason }, el("td", { class: "mono" }, clock(e.at)),
        el("td", {}, e.type === "Warning" ? badge("Warning", "phase-Paused") : "Normal"), el("td", {}, e.reason),
        el("td", { class: "note" }, e.message + (e.count > 1 ? ` (×${e.count})` : "")))),
  );
  if (!detail.events.length && !detail.eventsError) {
    document.getElementById("events").replaceChildren(el("tr", {}, el("td", { colspan: 4, class: "empty" }, "no Events (they expire after an hour)")));
  }
}

function render(detail, config) {
  current = detail;
  document.title = `${detail.name} · modelrollout dashboard`;
  document.getElementById("crumb").textContent = `${detail.namespace} / ${detail.name}`;
  document.getElementById("name").textContent = detail.name;
  document.getElementById("phase").replaceChildren(phaseBadge(detail.phase));
  // the phase's own badge says paused or rolled back already
  document.getElementById("marks").replaceChildren(...markBadges(detail.marks.filter((m) => !["paused", "rolled back", "failed"].includes(m))));
  document.getElementById("stage").textContent = `namespace ${detail.namespace} · stage ${detail.stage || "-"} · ${detail.strategy}`;
  document.getElementById("stable").textContent = detail.stableVersion || "-";
  document.getElementById("candidate").textContent = detail.candidateVersion || "-";
  document.getElementById("traffic").textContent = trafficText(detail.weights);
  document.getElementById("step").textContent = detail.step ? `${detail.step.n}/${detail.step.m}` : "-";
  document.getElementById("age").textContent = detail.createdAt ? age(Date.now() / 1000 - detail.createdAt) : "-";
  const reason = document.getElementById("reason");
  reason.hidden = !detail.reason;
  reason.textContent = detail.reason || "";
  reason.className = `banner ${detail.phase === "Paused" ? "warn" : "error"}`;
  renderActions(detail, config);
  renderGates(detail);
  renderSteps(detail);
  renderTraffic(detail);
  renderMetrics(detail.metrics);
  renderDrift(detail);
  renderFeatures(detail);
  renderMonitoring(detail);
  renderNotifications(detail);
  renderTables(detail);
}

let config = { readOnly: true };

async function refresh() {
  if (fetching) {
    again = true;
    return;
  }
  fetching = true;
  try {
    const answer = await getJson(detailUrl);
    const banner = document.getElementById("error");
    banner.hidden = answer.ok;
    if (!answer.ok) banner.textContent = answer.body.error;
    else render(answer.body, config);
  } catch (error) {
    const banner = document.getElementById("error");
    banner.hidden = false;
    banner.textContent = `the dashboard server did not answer: ${error}`;
  } finally {
    fetching = false;
    if (again) {
      again = false;
      refresh();
    }
  }
}

async function start() {
  config = (await getJson("/api/config")).body;
  await refresh();
  followStream((message) => {
    const row = message.row || message;
    if (message.type === "snapshot" || (row.namespace === namespace && row.name === name)) refresh();
  }, showLive);
  setInterval(refresh, 5000); // the Events and the age, which no watch here follows
  setInterval(() => {
    const left = document.querySelector(".step .remaining");
    if (left && stepDeadline !== null) left.textContent = `${duration(stepDeadline - Date.now() / 1000)} left`;
  }, 1000);
}

start();
