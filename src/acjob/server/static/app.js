// The acjob dashboard: plain JavaScript over the native API (/v1), no build step.
// Routes live in the URL's fragment: #/ (the job list, with its filters), #/jobs/ID
// (one job), #/chart. Requests carry the session cookie; state-changing ones also the
// CSRF value from /ui/session in X-Acjob-CSRF (see docs/dashboard.md).
"use strict";

const FINAL = new Set(["COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"]);
const STATES = ["QUEUED", "INITIALIZING", "RUNNING", "PAUSED", "PREEMPTED", "CANCELING",
  "COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"];
const PAGE_SIZE = 25;
const LIST_REFRESH_MS = 2000;
const TAIL_BYTES = 64 * 1024;

let csrf = "";
let cleanup = [];  // what the current view must stop when another one is shown

const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function showError(text) {
  const box = $("#error");
  box.textContent = text || "";
  box.hidden = !text;
}

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const method = options.method || "GET";
  const headers = Object.assign({"X-Acjob-CSRF": csrf}, options.headers || {});
  const response = await fetch(path, {method, headers, credentials: "same-origin",
    signal: options.signal, body: options.body});
  if (response.status === 401) {
    location.assign("/ui/login");
    throw new Unauthorized("not logged in");
  }
  if (!response.ok) {
    let message = `${response.status}`;
    try {
      const body = await response.json();
      message = body.error ? `${body.error.message} (${body.error.code})` : message;
    } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

const json = async (path, options) => (await api(path, options)).json();

function when(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const d = typeof seconds === "number" ? new Date(seconds * 1000) : new Date(seconds);
  return d.toLocaleString();
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(1)} min`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

function commandText(command) {
  return Array.isArray(command) ? command.join(" ") : command;
}

function stateBadge(state) {
  return el("span", {class: `state state-${state}`, text: state});
}

function progressBar(progress, small) {
  const bar = el("div", {class: small ? "bar small" : "bar", role: "progressbar",
    "aria-valuemin": "0", "aria-valuemax": "100"});
  const fill = el("div", {class: "fill"});
  bar.append(fill);
  setProgress(bar, progress);
  return bar;
}

function setProgress(bar, progress) {
  const pct = Math.max(0, Math.min(100, Number(progress.percent) || 0));
  bar.setAttribute("aria-valuenow", String(pct));
  bar.firstElementChild.style.width = `${pct}%`;
  bar.title = `${pct}%${progress.message ? " " + progress.message : ""}`;
}

// -- the job list ------------------------------------------------------------------

function listQuery(params) {
  const q = new URLSearchParams();
  if (params.get("state")) q.append("state", params.get("state"));
  if (params.get("label")) q.append("label", params.get("label"));
  if (params.get("name")) q.append("name_prefix", params.get("name"));
  if (params.get("backend")) q.append("backend", params.get("backend"));
  q.append("limit", String(PAGE_SIZE));
  return q;
}

function renderList(params) {
  const view = $("#view");
  view.replaceChildren($("#tpl-list").content.cloneNode(true));
  const form = $("#filters");
  for (const [field, id] of [["state", "#filter-state"], ["label", "#filter-label"],
    ["name", "#filter-name"], ["backend", "#filter-backend"]]) {
    $(id).value = params.get(field) || "";
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.append(k, String(v).trim());
    location.hash = `#/?${q}`;
  });
  $("#filter-state").addEventListener("change", () => form.requestSubmit());
  $("#filter-clear").addEventListener("click", () => { location.hash = "#/"; });

  const cursors = [null];  // the cursor of each page seen, page 1 first
  let pageIndex = 0;
  let next = null;
  let timer = null;
  let stopped = false;

  async function load() {
    clearTimeout(timer);
    const q = listQuery(params);
    if (cursors[pageIndex]) q.append("cursor", cursors[pageIndex]);
    try {
      const data = await json(`/v1/jobs?${q}`);
      if (stopped) return;
      next = data.next_cursor;
      fillRows(data.jobs);
      $("#page-number").textContent = `page ${pageIndex + 1}`;
      $("#page-newer").disabled = pageIndex === 0;
      $("#page-older").disabled = !next;
      showError("");
    } catch (e) {
      if (e instanceof Unauthorized) return;
      showError(`Could not list jobs: ${e.message}`);
    }
    if (!stopped) timer = setTimeout(load, LIST_REFRESH_MS);
  }

  $("#page-older").addEventListener("click", () => {
    if (!next) return;
    cursors[pageIndex + 1] = next;
    pageIndex += 1;
    load();
  });
  $("#page-newer").addEventListener("click", () => {
    if (pageIndex === 0) return;
    pageIndex -= 1;
    load();
  });
  cleanup.push(() => { stopped = true; clearTimeout(timer); });
  load();
}

function fillRows(jobs) {
  const body = $("#jobs tbody");
  const rows = jobs.map((job) => {
    const link = el("a", {href: `#/jobs/${job.id}`, text: job.name || job.id.slice(0, 10)});
    const progress = job.progress ? progressBar(job.progress, true) : "";
    return el("tr", {"data-id": job.id, "data-state": job.state},
      el("td", {class: "id"}, link),
      el("td", {}, stateBadge(job.state)),
      el("td", {class: "progress-cell"}, progress),
      el("td", {class: "wide command", text: commandText(job.command)}),
      el("td", {class: "wide", text: job.backend}),
      el("td", {text: when(job.created_at)}),
      el("td", {class: "wide", text: job.exit_code ?? ""}));
  });
  body.replaceChildren(...rows);
  $("#empty").hidden = jobs.length > 0;
}

// -- one job -----------------------------------------------------------------------

function renderJob(id) {
  const view = $("#view");
  view.replaceChildren($("#tpl-job").content.cloneNode(true));
  const controller = new AbortController();
  let events = null;
  let fallback = null;
  let current = null;
  const tails = {};

  cleanup.push(() => {
    controller.abort();
    if (events) events.close();
    clearTimeout(fallback);
  });

  $("#cancel").addEventListener("click", async () => {
    if (!confirm("Cancel this job?")) return;
    $("#cancel").disabled = true;
    try {
      showJob(await json(`/v1/jobs/${id}/cancel`, {method: "POST"}));
      showError("");
    } catch (e) {
      if (!(e instanceof Unauthorized)) showError(`Could not cancel: ${e.message}`);
    } finally {
      $("#cancel").disabled = false;
    }
  });

  function showJob(job) {
    current = job;
    $("#job-title").textContent = job.name || job.id;
    const badge = $("#job-state");
    badge.textContent = job.state;
    badge.className = `state state-${job.state}`;
    $("#cancel").hidden = FINAL.has(job.state) || job.state === "CANCELING";
    const block = $("#progress");
    block.hidden = !job.progress;
    if (job.progress) {
      setProgress($("#progress-bar"), job.progress);
      $("#progress-text").textContent = `${Number(job.progress.percent).toFixed(0)}%` +
        (job.progress.message ? ` ${job.progress.message}` : "");
    }
    const first = job.attempts.find((a) => a.started_at);
    const last = job.attempts.length ? job.attempts[job.attempts.length - 1] : null;
    const facts = [
      ["Job id", job.id],
      ["Command", commandText(job.command)],
      ["Backend", job.backend],
      ["Labels", Object.entries(job.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ")],
      ["Resources", Object.entries(job.resources || {}).map(([k, v]) => `${k}=${v}`).join(", ")],
      ["Created", when(job.created_at)],
      ["Queue wait", first ? duration(first.started_at - job.created_at) : ""],
      ["Run time", last && last.started_at ?
        duration((job.ended_at || Date.now() / 1000) - last.started_at) : ""],
      ["Ended", when(job.ended_at)],
      ["Attempt", `${job.attempt} of at most ${job.retry.max_attempts}`],
      ["Exit status", job.exit_code ?? ""],
      ["Failure", job.failure || ""],
      ["Reason", job.reason || ""],
      ["Files removed", when(job.files_removed_at)],
    ];
    $("#job-facts").replaceChildren(...facts.filter(([, v]) => v !== "").flatMap(([k, v]) =>
      [el("dt", {text: k}), el("dd", {text: String(v), "data-fact": k})]));
    $("#attempts tbody").replaceChildren(...job.attempts.map((a) => el("tr", {},
      el("td", {text: a.number}), el("td", {text: a.state}), el("td", {text: a.native_id || ""}),
      el("td", {text: when(a.started_at)}), el("td", {text: when(a.ended_at)}),
      el("td", {text: a.exit_code ?? ""}), el("td", {text: a.reason || a.failure || ""}))));
    $("#deliveries tbody").replaceChildren(...job.deliveries.map((d) => el("tr", {},
      el("td", {text: d.type}), el("td", {text: d.target}), el("td", {text: d.state}),
      el("td", {text: d.attempts}), el("td", {text: when(d.sent_at)}),
      el("td", {text: d.last_error || ""}))));
    $("#no-deliveries").hidden = job.deliveries.length > 0;
    $("#deliveries").hidden = job.deliveries.length === 0;
    for (const stream of ["stdout", "stderr"]) {
      if (job.attempt > 0 && (!tails[stream] || tails[stream].attempt !== job.attempt)) {
        follow(stream, job.attempt);
      }
    }
    if (FINAL.has(job.state) && events) {
      events.close();
      events = null;
    }
  }

  async function refresh() {
    try {
      showJob(await json(`/v1/jobs/${id}`, {signal: controller.signal}));
    } catch (e) {
      if (e.name === "AbortError" || e instanceof Unauthorized) return;
      showError(`Could not read the job: ${e.message}`);
    }
  }

  // Follow one output stream of one attempt from byte 0, keeping its last TAIL_BYTES
  // on the page; resumes at the byte reached after a broken connection.
  async function follow(stream, attempt) {
    const tail = {attempt, offset: null, text: ""};
    tails[stream] = tail;
    const pre = $(`#${stream}`);
    pre.textContent = "";
    $(`#${stream}-note`).textContent = `(attempt ${attempt})`;
    const decoder = new TextDecoder();
    while (tails[stream] === tail && !controller.signal.aborted) {
      try {
        // The first request asks for the end only; a resumed one goes on at its byte.
        const from = tail.offset === null ? `tail=${TAIL_BYTES}` : `offset=${tail.offset}`;
        const response = await api(
          `/v1/jobs/${id}/${stream}?follow=true&attempt=${attempt}&${from}`,
          {signal: controller.signal});
        if (tail.offset === null) {
          tail.offset = Number(response.headers.get("X-Acjob-Offset") || 0);
          if (tail.offset > 0) {
            $(`#${stream}-note`).textContent =
              `(attempt ${attempt}; the first ${tail.offset} bytes not shown)`;
          }
        }
        const reader = response.body.getReader();
        for (;;) {
          const {done, value} = await reader.read();
          if (done) break;
          if (tails[stream] !== tail) { reader.cancel(); return; }
          tail.offset += value.length;
          tail.text = (tail.text + decoder.decode(value, {stream: true})).slice(-TAIL_BYTES);
          const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          pre.textContent = tail.text;
          if (atBottom) pre.scrollTop = pre.scrollHeight;
        }
        if (response.headers.get("X-Acjob-Final") === "true" ||
            (current && (FINAL.has(current.state) || current.attempt !== attempt))) return;
        // The stream ended because the job ended or a new attempt began: look again.
        await refresh();
        if (current && (FINAL.has(current.state) || current.attempt !== attempt)) {
          if (current.attempt === attempt) continue;  // read what is left, then stop
          return;
        }
      } catch (e) {
        if (e.name === "AbortError" || e instanceof Unauthorized) return;
        if (String(e.message).includes("output_expired")) {
          $(`#${stream}-note`).textContent = "(files removed)";
          return;
        }
        await new Promise((resolve) => { setTimeout(resolve, 1000); });
      }
    }
  }

  function listen() {
    events = new EventSource(`/v1/jobs/${id}/events`);
    const onEvent = () => refresh();
    for (const name of [...STATES, "message"]) events.addEventListener(name, onEvent);
    // A progress event carries the job's progress ({"attempt": N, "progress": {...}}):
    // drawn as it comes, without asking for the whole job again.
    events.addEventListener("progress", (event) => {
      let data = null;
      try { data = JSON.parse(event.data); } catch (e) { /* not ours */ }
      if (current && data && "progress" in data &&
          (data.attempt === undefined || data.attempt === current.attempt)) {
        showJob(Object.assign({}, current, {progress: data.progress}));
      } else {
        refresh();
      }
    });
    events.onerror = () => {
      if (current && FINAL.has(current.state) && events) { events.close(); events = null; }
    };
  }

  // A safety net under the event stream (a proxy that buffers it, say).
  async function poll() {
    await refresh();
    if (!controller.signal.aborted && !(current && FINAL.has(current.state))) {
      fallback = setTimeout(poll, 10000);
    }
  }

  refresh().then(() => {
    if (current && !FINAL.has(current.state)) listen();
    fallback = setTimeout(poll, 10000);
  });
}

// -- the chart ---------------------------------------------------------------------

const STATE_COLOURS = {
  QUEUED: "#8a8f98", INITIALIZING: "#b58900", RUNNING: "#268bd2", PAUSED: "#6c71c4",
  PREEMPTED: "#d33682", CANCELING: "#cb4b16", COMPLETE: "#2aa876", EXECUTOR_ERROR: "#dc322f",
  SYSTEM_ERROR: "#9b1c1c", CANCELED: "#586e75",
};

function chartWidth(node) {
  return Math.max(280, node.clientWidth || 600);
}

function renderChart() {
  const view = $("#view");
  view.replaceChildren($("#tpl-chart").content.cloneNode(true));
  let plots = [];
  let timer = null;
  let stopped = false;
  const select = $("#chart-window");

  function destroy() { for (const p of plots) p.destroy(); plots = []; }

  async function load() {
    clearTimeout(timer);
    try {
      const data = await json(`/v1/stats?window=${select.value}&buckets=60&limit=500`);
      if (stopped) return;
      draw(data);
      showError("");
    } catch (e) {
      if (e instanceof Unauthorized) return;
      showError(`Could not read the figures: ${e.message}`);
    }
    if (!stopped) timer = setTimeout(load, 10000);
  }

  function draw(data) {
    destroy();
    const statesNode = $("#chart-states");
    const timesNode = $("#chart-times");
    const history = data.history;
    const names = Object.keys(history.states);
    const series = [{}].concat(names.map((name) => ({
      label: name, stroke: STATE_COLOURS[name] || "#333", width: 2,
    })));
    plots.push(new uPlot({
      width: chartWidth(statesNode), height: 240, series,
      axes: [{}, {label: "jobs"}], scales: {x: {time: true}},
    }, [history.times, ...names.map((n) => history.states[n])], statesNode));

    const jobs = [...data.jobs].sort((a, b) => a.ended_at - b.ended_at);
    const points = {show: true, size: 6};
    plots.push(new uPlot({
      width: chartWidth(timesNode), height: 240,
      series: [{}, {label: "queue wait (s)", stroke: "#b58900", paths: () => null, points},
        {label: "run time (s)", stroke: "#268bd2", paths: () => null, points}],
      axes: [{}, {label: "seconds"}], scales: {x: {time: true}},
    }, [jobs.map((j) => j.ended_at), jobs.map((j) => j.wait_s), jobs.map((j) => j.run_s)],
    timesNode));

    const median = (values) => {
      const v = values.filter((x) => x !== null).sort((a, b) => a - b);
      return v.length ? v[Math.floor(v.length / 2)] : null;
    };
    const waits = jobs.map((j) => j.wait_s);
    const runs = jobs.map((j) => j.run_s);
    $("#chart-summary").textContent = jobs.length ?
      `${jobs.length} jobs ended; median queue wait ${duration(median(waits))}, ` +
      `median run time ${duration(median(runs))}.` : "No job ended in this window.";
  }

  select.addEventListener("change", load);
  cleanup.push(() => { stopped = true; clearTimeout(timer); destroy(); });
  load();
}

// -- the frame ---------------------------------------------------------------------

async function counts() {
  try {
    const health = await json("/v1/health");
    const parts = Object.entries(health.jobs).filter(([, n]) => n > 0)
      .map(([state, n]) => `${state.toLowerCase()} ${n}`);
    $("#counts").textContent = parts.join(" · ");
  } catch (e) { /* the view says what is wrong */ }
}

function route() {
  for (const stop of cleanup) stop();
  cleanup = [];
  showError("");
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const job = path.match(/^\/jobs\/([A-Za-z0-9_-]+)$/);
  $("#nav-jobs").classList.toggle("active", !job && path !== "/chart");
  $("#nav-chart").classList.toggle("active", path === "/chart");
  if (job) renderJob(job[1]);
  else if (path === "/chart") renderChart();
  else renderList(new URLSearchParams(query || ""));
}

async function start() {
  try {
    const session = await json("/ui/session");
    csrf = session.csrf;
    $("#logout").hidden = !session.login;
  } catch (e) {
    if (e instanceof Unauthorized) return;
  }
  $("#logout").addEventListener("click", async () => {
    await api("/ui/logout", {method: "POST"}).catch(() => {});
    location.assign("/ui/login");
  });
  window.addEventListener("hashchange", route);
  route();
  counts();
  setInterval(counts, 5000);
}

start();
