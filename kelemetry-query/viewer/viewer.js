// Kelemetry viewer: a plain page over the Jaeger-shaped JSON API of `kelemetry serve`.
//
// Routes (in the URL's hash, so every view can be shared as a link):
//   #/search?cluster=&resource=&namespace=&name=&range=&from=&to=&mode=   search form and its results
//   #/trace/<trace id>?span=<span id>&mark=<n>                           one trace, with a selection
// A server path /trace/<id> (what /redirect answers) is turned into #/trace/<id>.
//
// A trace is drawn as a timeline: one row per object span (depth first, indented by relation), the object's
// activities as marks on its row. Activities come from the logs of object spans (modes `tracing`, `grouped`) or
// from activity child spans (`tree`, `timeline`). Rows are virtualized: only the rows in view are in the DOM.
//
// Extension spans (spans of other tracing backends grafted in by `kelemetry serve --extensions`, each tagged
// `kelemetry.extension`) are no rows and no marks: each grafted subtree hangs on the mark of its activity (its
// root's parent is the activity span; or, when the parent is an object span, the mark of that row starting at the
// root's `kelemetry.extension.activityTime`), else on the object's row, and shows as a small waterfall in the side
// panel.
//
// Findings (automatic diagnosis, docs/diagnose.md): once a trace is drawn, `/api/diagnose/<trace id>` is asked for
// the findings about the view's objects; they show in a collapsible "Findings (N)" section above the timeline (a
// failed call leaves a note there and nothing else). Each evidence line is matched to a mark: by span id when the
// mark comes from an activity span (`tree`, `timeline`); else (activities as logs, `tracing`, `grouped`) on the row
// of the evidence's object by the time in microseconds and the text `<source> <title>`. A click on a matched line
// selects the mark. Matched marks get a red ring while the section is open.
//
// A page that carries a trace (`<script type="application/json" id="kelemetry-trace">`, as `kelemetry export
// --html` writes it) shows that trace offline: no API call, no search, no mode switch. Its findings are beside it
// (`<script type="application/json" id="kelemetry-findings">`, the answer `/api/diagnose/<trace id>` gives).
"use strict";

(function () {
  const ROW_HEIGHT = 24;
  const OVERSCAN = 8;
  const KNOWN_SOURCES = ["audit", "event", "watch"];
  const BASES = { tree: "0", timeline: "1", tracing: "2", grouped: "3" };
  const MODIFIERS = { "": "0", "full tree": "1", ancestors: "2", "owned objects": "4" };
  const DEFAULT_MODE = "tracing [full tree]";
  const EXTENSION_TAG = "kelemetry.extension";
  const EXTENSION_ACTIVITY_TAG = "kelemetry.extension.activityTime";
  const MAX_EXTENSION_ROWS = 1000;

  const $ = (id) => document.getElementById(id);
  const form = $("search");

  /** Element builder: el("a", {href: "#"}, "text", child...). Text is always set as text, never as HTML. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function api(path) {
    const response = await fetch(path, { headers: { Accept: "application/json" } });
    let body;
    try {
      body = await response.json();
    } catch (e) {
      throw new Error(`${path}: HTTP ${response.status}, not JSON`);
    }
    if (!response.ok || (body.errors && body.errors.length)) {
      const msg = body.errors && body.errors.length ? body.errors.map((e) => e.msg).join("; ") : `HTTP ${response.status}`;
      throw new Error(msg);
    }
    return body.data;
  }

  // ---- display modes and trace ids ----

  /** The 8 hex digits of a display mode's id, e.g. "tracing [full tree]" -> "21000000". */
  function modeDigits(name) {
    const match = /^(\w+)(?: \[(.+)\])?$/.exec(name.trim());
    if (!match || !(match[1] in BASES) || !((match[2] || "") in MODIFIERS)) return null;
    return BASES[match[1]] + MODIFIERS[match[2] || ""] + "000000";
  }

  /** The mode name a trace id's digits 3..10 carry. */
  function modeOfTrace(traceId) {
    const digits = traceId.slice(2, 10);
    return state.modes.find((name) => modeDigits(name) === digits) || null;
  }

  /** The same view in another mode: the trace id with its mode digits rewritten. */
  function withMode(traceId, name) {
    const digits = modeDigits(name);
    return digits ? traceId.slice(0, 2) + digits + traceId.slice(10) : traceId;
  }

  // ---- times ----

  const pad2 = (n) => String(n).padStart(2, "0");
  function clock(micros, withMillis) {
    const d = new Date(micros / 1000);
    const base = `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}`;
    return withMillis ? `${base}.${String(d.getUTCMilliseconds()).padStart(3, "0")}` : base;
  }
  const isoTime = (micros) => new Date(micros / 1000).toISOString();
  const RANGES = { "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400 };

  // ---- state ----

  const state = {
    modes: [],
    trace: null, // { id, mode, rows, visible, from, to, spanCount, markCount }
    selected: null, // { row, mark } indexes into trace.rows
    collapsed: new Set(), // span ids of collapsed rows
    filter: "",
    timings: {},
    offline: null, // { id, answer, findings } on a page that carries its trace (kelemetry export --html)
    findings: null, // { status: loading | ready | error | absent, list, located, error } of the trace shown
  };
  window.kelemetryViewer = state; // for tests and for the curious

  function setBusy(what) {
    document.body.dataset.state = what;
  }

  function showMessage(text, isError) {
    const message = $("message");
    message.textContent = text;
    message.className = isError ? "message error" : "message";
    message.hidden = !text;
  }

  // ---- routing ----

  function parseHash() {
    const hash = location.hash.replace(/^#/, "") || "/";
    const [path, query] = hash.split("?");
    return { path, params: new URLSearchParams(query || "") };
  }

  function navigate(hash, replace) {
    if (replace) history.replaceState(null, "", hash);
    else history.pushState(null, "", hash);
    route();
  }

  async function route() {
    const { path, params } = parseHash();
    showMessage("");
    const trace = /^\/trace\/([0-9a-fA-F]{1,32})$/.exec(path);
    if (state.offline && !trace) {
      // An exported page holds one trace and nothing to search.
      navigate(`#/trace/${state.offline.id}`, true);
      return;
    }
    if (trace) {
      const id = trace[1].toLowerCase().padStart(32, "0");
      if (state.trace && state.trace.id === id) {
        applySelectionFromParams(params);
      } else {
        await openTrace(id, params);
      }
      return;
    }
    $("trace").hidden = true;
    if (path === "/search") {
      fillForm(params);
      await search(params);
      return;
    }
    fillForm(new URLSearchParams());
    $("results").hidden = true;
    showMessage("Search for an object: a resource (deployments), a namespace and a name. Every field may be left empty.");
    setBusy("ready");
  }

  // ---- search ----

  function fillForm(params) {
    for (const name of ["resource", "namespace", "name", "from", "to"]) {
      form.elements[name].value = params.get(name) || "";
    }
    form.elements.cluster.value = params.get("cluster") || "";
    form.elements.range.value = params.get("range") || "all";
    form.elements.mode.value = params.get("mode") || DEFAULT_MODE;
    form.querySelector(".custom-range").hidden = form.elements.range.value !== "custom";
  }

  function formParams() {
    const params = new URLSearchParams();
    for (const name of ["cluster", "resource", "namespace", "name", "range", "mode"]) {
      const value = form.elements[name].value.trim();
      if (value && !(name === "range" && value === "all")) params.set(name, value);
    }
    if (form.elements.range.value === "custom") {
      for (const name of ["from", "to"]) {
        if (form.elements[name].value) params.set(name, form.elements[name].value);
      }
    }
    return params;
  }

  /** The microseconds of a datetime-local value, read as UTC. */
  function micros(local) {
    const ms = Date.parse(local.length === 16 ? `${local}:00Z` : `${local}Z`);
    return Number.isNaN(ms) ? null : Math.round(ms * 1000);
  }

  async function search(params) {
    const mode = params.get("mode") || DEFAULT_MODE;
    const query = new URLSearchParams({ service: mode, limit: "20" });
    if (params.get("cluster")) query.set("operation", params.get("cluster"));
    const tags = {};
    for (const name of ["resource", "namespace", "name"]) {
      if (params.get(name)) tags[name] = params.get(name);
    }
    if (params.get("cluster")) tags.cluster = params.get("cluster");
    if (Object.keys(tags).length) query.set("tags", JSON.stringify(tags));
    const range = params.get("range") || "all";
    if (range in RANGES) {
      const now = Date.now() * 1000;
      query.set("start", String(now - RANGES[range] * 1e6));
      query.set("end", String(now));
    } else if (range === "custom") {
      const from = params.get("from") && micros(params.get("from"));
      const to = params.get("to") && micros(params.get("to"));
      if (from) query.set("start", String(from));
      if (to) query.set("end", String(to));
    }
    const results = $("results");
    results.hidden = false;
    results.replaceChildren(el("p", { class: "message" }, "Searching…"));
    setBusy("loading");
    let traces;
    try {
      traces = await api(`/api/traces?${query}`);
    } catch (e) {
      results.replaceChildren(el("p", { class: "message error" }, `Search failed: ${e.message}`));
      setBusy("error");
      return;
    }
    if (params.get("open") === "1" && traces.length === 1) {
      navigate(`#/trace/${traces[0].traceID}`, true);
      return;
    }
    const items = traces.map((trace) => {
      const root = trace.spans[0] || { operationName: "(empty)", tags: [], startTime: 0, duration: 0 };
      const objects = trace.spans.filter((span) => spanKind(trace, span) === "object").length;
      const service = trace.processes[root.processID] ? trace.processes[root.processID].serviceName : "";
      return el("li", { class: "result" },
        el("a", { href: `#/trace/${trace.traceID}`, "data-trace": trace.traceID }, `${service} ${root.operationName}`),
        el("div", { class: "meta" },
          `${objects} object${objects === 1 ? "" : "s"} · ${trace.spans.length} spans · `,
          `${isoTime(root.startTime)} .. ${isoTime(root.startTime + root.duration)} · ${mode}`));
    });
    results.replaceChildren(
      el("p", { class: "message" }, traces.length ? `${traces.length} trace${traces.length === 1 ? "" : "s"} found` : "Nothing found: widen the time range or clear a field."),
      el("ol", {}, items));
    setBusy("ready");
  }

  // ---- building the rows of a trace ----

  function tagMap(list) {
    const map = {};
    for (const kv of list || []) map[kv.key] = String(kv.value);
    return map;
  }

  /** object | linkClass | group | activity | extension, from the span's tags and service name. */
  function spanKind(trace, span) {
    const service = serviceOf(trace, span);
    const tags = span._tags || (span._tags = tagMap(span.tags));
    // First: another backend's spans may carry tags of the same names (the apiserver's have `resource`).
    if (tags[EXTENSION_TAG] !== undefined) return "extension";
    const bare = service.split(" ").pop();
    if (tags.resource && bare === tags.resource && !tags.auditId && !tags.eventName) return "object";
    if (tags.resource) return "activity";
    if (!span.operationName) return "linkClass";
    return "group";
  }

  function serviceOf(trace, span) {
    const process = trace.processes[span.processID];
    return process ? process.serviceName : "";
  }

  function sourceClass(source) {
    return KNOWN_SOURCES.includes(source) ? source : "other";
  }

  /** A mark from a collapsed log: its first field is `<source>: <title>`. */
  function markFromLog(log) {
    const [first, ...rest] = log.fields;
    return newMark(log.timestamp, log.timestamp, first ? first.key : "?", first ? String(first.value) : "", rest.map((f) => [f.key, String(f.value)]));
  }

  /** A mark from an activity span: its tags and its log fields. */
  function markFromSpan(trace, span) {
    const source = serviceOf(trace, span).split(" ").pop();
    const fields = (span.tags || []).filter((t) => !["cluster", "group", "version", "resource", "namespace", "name"].includes(t.key)).map((t) => [t.key, String(t.value)]);
    for (const log of span.logs || []) for (const f of log.fields) fields.push([f.key, String(f.value)]);
    const mark = newMark(span.startTime, span.startTime + span.duration, source, span.operationName, fields);
    mark.spanId = span.spanID;
    return mark;
  }

  function newMark(start, end, source, title, fields) {
    const get = (name) => { const f = fields.find(([k]) => k === name); return f ? f[1] : undefined; };
    const code = Number(get("responseCode"));
    return {
      start, end, source, title, fields,
      failed: (Number.isFinite(code) && code >= 400) || get("error") !== undefined,
      warning: source === "event" && get("type") === "Warning",
      hasDiff: get("diff") !== undefined || get("verbose diff") !== undefined,
      extensions: [],
      spanId: null, // the activity span's id when the mark comes from one
      evidence: 0, // how many evidence lines of the findings point at it
    };
  }

  /** One grafted span as the side panel's waterfall shows it. */
  function extensionEntry(trace, span, depth) {
    const tags = (span.tags || []).map((t) => [t.key, String(t.value)]);
    return {
      spanId: span.spanID,
      provider: span._tags[EXTENSION_TAG],
      service: serviceOf(trace, span),
      operation: span.operationName,
      start: span.startTime,
      duration: span.duration,
      depth,
      tags: tags.filter(([k]) => k !== EXTENSION_TAG && k !== EXTENSION_ACTIVITY_TAG),
      logs: span.logs || [],
      warnings: span.warnings || [],
    };
  }

  /**
   * Hangs the grafted spans on marks and rows: each subtree on the mark of the activity it was fetched for (the
   * activity span its root hangs under; or the mark of the nearest row that starts at the root's activity time),
   * else on the nearest object row. Returns how many spans found a place.
   */
  function attachExtensions(trace, spans, { byId, parentOf, nearestRow, rows, markOfSpan }) {
    const extension = new Set(spans.map((span) => span.spanID));
    const placed = new Map(); // span id -> { holder, depth }
    const place = (id) => {
      if (placed.has(id)) return placed.get(id);
      placed.set(id, { holder: null, depth: 0 }); // what a (malformed) cycle of parents resolves to
      const parent = parentOf.get(id);
      let found;
      if (extension.has(parent)) {
        const above = place(parent);
        found = { holder: above.holder, depth: above.depth + 1 };
      } else {
        found = { holder: holderOfRoot(byId.get(id)), depth: 0 };
      }
      placed.set(id, found);
      return found;
    };
    const holderOfRoot = (root) => {
      const parent = parentOf.get(root.spanID);
      if (markOfSpan.has(parent)) return markOfSpan.get(parent);
      const { row } = nearestRow(root.spanID);
      if (row < 0) return null;
      const at = Number(root._tags[EXTENSION_ACTIVITY_TAG]);
      if (Number.isFinite(at)) {
        const mark = rows[row].marks.find((m) => m.start === at);
        if (mark) return mark;
      }
      return rows[row];
    };
    let count = 0;
    for (const span of spans) {
      const { holder, depth } = place(span.spanID);
      if (!holder) continue;
      holder.extensions.push(extensionEntry(trace, span, depth));
      count += 1;
    }
    return count;
  }

  function buildRows(trace) {
    const rows = [];
    const rowOf = new Map(); // span id -> row index for object spans
    const parentOf = new Map(); // span id -> parent span id
    const byId = new Map();
    for (const span of trace.spans) {
      byId.set(span.spanID, span);
      const ref = (span.references || []).find((r) => r.refType === "CHILD_OF");
      if (ref) parentOf.set(span.spanID, ref.spanID);
    }
    const nearestRow = (spanId) => {
      let id = parentOf.get(spanId);
      let linkClass = "";
      while (id !== undefined) {
        if (rowOf.has(id)) return { row: rowOf.get(id), linkClass };
        const span = byId.get(id);
        if (span && spanKind(trace, span) === "linkClass" && !linkClass) linkClass = serviceOf(trace, span);
        id = parentOf.get(id);
      }
      return { row: -1, linkClass };
    };
    let markCount = 0;
    const markOfSpan = new Map(); // activity span id -> its mark
    const extensionSpans = [];
    for (const span of trace.spans) {
      const kind = spanKind(trace, span);
      if (kind === "extension") {
        extensionSpans.push(span);
      } else if (kind === "object") {
        const tags = span._tags;
        const { row: parent, linkClass } = nearestRow(span.spanID);
        const row = {
          index: rows.length,
          spanId: span.spanID,
          parent,
          children: [],
          depth: parent >= 0 ? rows[parent].depth + 1 : 0,
          resource: tags.resource,
          name: tags.name || span.operationName,
          namespace: tags.namespace || "",
          cluster: tags.cluster || "",
          group: tags.group || "",
          tags: span.tags || [],
          linkClass: tags.linkClass || linkClass,
          start: span.startTime,
          end: span.startTime + span.duration,
          operation: span.operationName,
          warnings: span.warnings || [],
          marks: (span.logs || []).map(markFromLog),
          extensions: [],
        };
        rowOf.set(span.spanID, row.index);
        if (parent >= 0) rows[parent].children.push(row.index);
        rows.push(row);
      } else if (kind === "group" || kind === "activity") {
        const { row } = nearestRow(span.spanID);
        if (row < 0) continue;
        if (kind === "group") rows[row].marks.push(...(span.logs || []).map(markFromLog));
        else {
          const mark = markFromSpan(trace, span);
          markOfSpan.set(span.spanID, mark);
          rows[row].marks.push(mark);
        }
      }
    }
    const extensionCount = extensionSpans.length ? attachExtensions(trace, extensionSpans, { byId, parentOf, nearestRow, rows, markOfSpan }) : 0;
    const markAt = new Map(); // activity span id -> { row, mark } (indexes), for the findings' evidence
    for (const row of rows) {
      row.marks.sort((a, b) => a.start - b.start);
      markCount += row.marks.length;
      row.marks.forEach((mark, m) => { if (mark.spanId) markAt.set(mark.spanId, { row: row.index, mark: m }); });
    }
    let from = Infinity;
    let to = -Infinity;
    for (const span of trace.spans) {
      // The time axis is the objects' and activities'; grafted spans are drawn in the side panel.
      if (span._tags && span._tags[EXTENSION_TAG] !== undefined) continue;
      from = Math.min(from, span.startTime);
      to = Math.max(to, span.startTime + span.duration);
    }
    if (!Number.isFinite(from)) { from = 0; to = 1; }
    if (to <= from) to = from + 1e6;
    return { rows, from, to, markCount, extensionCount, markAt };
  }

  // ---- the trace page ----

  let loads = 0;

  async function openTrace(id, params) {
    $("results").hidden = true;
    $("trace").hidden = true;
    showMessage("Loading trace…");
    setBusy("loading");
    const started = performance.now();
    const token = ++loads;
    let data;
    try {
      data = state.offline ? offlineTrace(id) : await api(`/api/traces/${id}`);
    } catch (e) {
      if (token !== loads) return;
      showMessage(`Trace ${id}: ${e.message}`, true);
      setBusy("error");
      return;
    }
    if (token !== loads) return; // a later navigation won
    const fetched = performance.now();
    const trace = data[0];
    const built = buildRows(trace);
    state.trace = {
      id: trace.traceID,
      mode: modeOfTrace(trace.traceID),
      rows: built.rows,
      from: built.from,
      to: built.to,
      spanCount: trace.spans.length,
      markCount: built.markCount,
      extensionCount: built.extensionCount,
      warnings: trace.warnings || [],
      viewFrom: built.from,
      viewTo: built.to,
      markAt: built.markAt,
    };
    state.collapsed = new Set();
    state.selected = null;
    state.filter = "";
    $("row-filter").value = "";
    showMessage("");
    $("trace").hidden = false;
    const root = built.rows[0];
    $("trace-title").textContent = root ? `${root.resource} ${root.operation}` : "(no objects)";
    document.title = root ? `${root.resource} ${root.name} · Kelemetry` : "Kelemetry";
    $("mode-switch").value = state.trace.mode || "";
    const grafted = built.extensionCount ? ` · ${built.extensionCount} extension spans` : "";
    document.querySelector(".legend-extension").hidden = !built.extensionCount;
    $("trace-stats").textContent = `${built.rows.length} objects · ${built.markCount} activities${grafted} · ${isoTime(built.from)} .. ${isoTime(built.to)}`;
    if (root && !form.elements.name.value) {
      form.elements.resource.value = root.resource;
      form.elements.namespace.value = root.namespace;
      form.elements.name.value = root.name;
      form.elements.mode.value = state.trace.mode || DEFAULT_MODE;
    }
    computeVisible();
    $("rows").scrollTop = 0;
    applySelectionFromParams(params);
    drawRows();
    const drawn = performance.now();
    // The browser lays out and paints after this task; the next frame is when a person sees the rows.
    requestAnimationFrame(() => setTimeout(() => {
      state.timings = { fetchMs: fetched - started, buildMs: drawn - fetched, totalMs: performance.now() - started };
      setBusy("ready");
    }, 0));
    // After the trace is drawn: its findings never hold it up, and their failure leaves it as it is.
    loadFindings(token);
  }

  /** The rows shown: collapsed subtrees and rows that match no filter (nor have a matching descendant) left out. */
  function computeVisible() {
    const { rows } = state.trace;
    const filter = state.filter.toLowerCase();
    const keep = new Uint8Array(rows.length);
    if (filter) {
      for (let i = rows.length - 1; i >= 0; i--) {
        const row = rows[i];
        if (`${row.resource} ${row.namespace} ${row.name}`.toLowerCase().includes(filter)) keep[i] = 1;
        if (keep[i] && row.parent >= 0) keep[row.parent] = 1;
      }
    }
    const visible = [];
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i];
      if (filter && !keep[i]) continue;
      let hidden = false;
      for (let p = row.parent; p >= 0; p = rows[p].parent) {
        if (state.collapsed.has(rows[p].spanId)) { hidden = true; break; }
      }
      if (!hidden) visible.push(i);
    }
    state.trace.visible = visible;
    $("rows-spacer").style.height = `${visible.length * ROW_HEIGHT}px`;
  }

  /** Where a time sits in the lanes, in percent of the zoomed range. */
  function position(micros) {
    const { viewFrom, viewTo } = state.trace;
    return `${(((micros - viewFrom) / (viewTo - viewFrom)) * 100).toFixed(3)}%`;
  }

  /** Shows `from..to` of the trace (both clamped to it); without arguments the whole trace. */
  function zoom(from, to, updateUrl = true) {
    const trace = state.trace;
    const lo = Math.max(trace.from, Math.min(from ?? trace.from, to ?? trace.to));
    const hi = Math.min(trace.to, Math.max(from ?? trace.from, to ?? trace.to));
    [trace.viewFrom, trace.viewTo] = hi - lo >= 1000 ? [lo, hi] : [trace.from, trace.to];
    $("reset-zoom").hidden = trace.viewFrom === trace.from && trace.viewTo === trace.to;
    if (updateUrl) history.replaceState(null, "", selectionHash(state.selected && state.selected.row, state.selected && state.selected.mark));
    drawAxis();
    drawRows();
  }

  function drawAxis() {
    const { viewFrom: from, viewTo: to } = state.trace;
    const span = to - from;
    const steps = [1e3, 5e3, 1e4, 5e4, 1e5, 2.5e5, 5e5, 1e6, 2e6, 5e6, 1e7, 15e6, 3e7, 6e7, 12e7, 3e8, 6e8, 9e8, 18e8, 36e8, 72e8, 216e8, 864e8];
    const step = steps.find((s) => span / s <= 8) || steps[steps.length - 1];
    const ticks = [];
    for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
      ticks.push(el("span", { class: "tick", style: `left:${position(t)}` }, clock(t, step < 1e6)));
    }
    $("axis-ticks").replaceChildren(...ticks);
  }

  function markClass(mark) {
    let cls = `mark ${sourceClass(mark.source)}`;
    if (mark.warning) cls += " warning";
    if (mark.hasDiff) cls += " has-diff";
    if (mark.failed) cls += " failed";
    if (mark.extensions.length) cls += " has-ext";
    return cls;
  }

  const spanCount = (n) => `${n} extension span${n === 1 ? "" : "s"}`;

  let drawQueued = false;
  function queueDraw() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(() => { drawQueued = false; drawRows(); });
  }

  /** Draws the rows in view (and a few around them) into the spacer; the rest are not in the DOM. */
  function drawRows() {
    const trace = state.trace;
    if (!trace) return;
    const container = $("rows");
    const first = Math.max(0, Math.floor(container.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(trace.visible.length, Math.ceil((container.scrollTop + container.clientHeight) / ROW_HEIGHT) + OVERSCAN);
    const nodes = [];
    for (let v = first; v < last; v++) {
      const index = trace.visible[v];
      const row = trace.rows[index];
      const selectedRow = state.selected && state.selected.row === index;
      const caret = row.children.length ? (state.collapsed.has(row.spanId) ? "▸" : "▾") : "";
      const lane = el("div", { class: "lane" },
        el("div", { class: "span-bar", style: `left:${position(row.start)};width:calc(${position(row.end)} - ${position(row.start)})` }));
      row.marks.forEach((mark, m) => {
        if (mark.start < trace.viewFrom || mark.start > trace.viewTo) return;
        const selectedMark = selectedRow && state.selected.mark === m;
        const grafted = mark.extensions.length;
        // The ring first, under the mark; it shows while the findings section is open.
        if (mark.evidence) lane.append(el("span", { class: "evidence-ring", style: `left:${position(mark.start)}` }));
        lane.append(el("span", {
          class: markClass(mark) + (selectedMark ? " selected" : ""),
          style: `left:${position(mark.start)}`,
          "data-row": index,
          "data-mark": m,
          "data-source": mark.source,
          "data-extensions": grafted || undefined,
          "data-evidence": mark.evidence || undefined,
          title: `${clock(mark.start, true)} ${mark.source}: ${mark.title}${grafted ? ` (${spanCount(grafted)})` : ""}${mark.evidence ? " · evidence of a finding" : ""}`,
        }));
        // A badge beside the mark (not inside it: some marks are clipped or rotated).
        if (grafted) {
          lane.append(el("span", { class: "ext-badge", style: `left:${position(mark.start)}`, "data-row": index, "data-mark": m, title: spanCount(grafted) }));
        }
      });
      const failed = row.marks.filter((m) => m.failed).length;
      nodes.push(el("div", {
        class: `row${selectedRow && state.selected.mark === undefined ? " selected" : ""}`,
        style: `top:${v * ROW_HEIGHT}px`,
        "data-row": index,
        "data-resource": row.resource,
        "data-name": row.name,
      },
      el("div", { class: "row-label", style: `padding-left:${6 + row.depth * 16}px`, "data-row": index, title: `${row.resource} ${row.namespace}/${row.name}` },
        el("span", { class: "caret", "data-toggle": index }, caret),
        el("span", { class: "resource" }, row.resource),
        el("span", { class: "object-name" }, row.namespace && row.namespace !== "default" ? `${row.namespace}/${row.name}` : row.name),
        row.extensions.length ? el("span", { class: "badge extension", title: spanCount(row.extensions.length) }, "ext") : null,
        el("span", { class: "count" }, failed ? `${row.marks.length} (${failed} failed)` : String(row.marks.length))),
      lane));
    }
    $("rows-spacer").replaceChildren(...nodes);
  }

  // ---- selection and the side panel ----

  function applySelectionFromParams(params) {
    const trace = state.trace;
    const from = Number(params.get("from"));
    const to = Number(params.get("to"));
    zoom(params.get("from") && from, params.get("to") && to, false);
    const span = params.get("span");
    const row = span ? trace.rows.findIndex((r) => r.spanId === span) : -1;
    if (row < 0) {
      state.selected = null;
      $("panel").hidden = true;
      drawRows();
      markCurrentEvidence();
      return;
    }
    const markText = params.get("mark");
    const mark = markText !== null && trace.rows[row].marks[Number(markText)] ? Number(markText) : undefined;
    select(row, mark, false);
  }

  function selectionHash(row, mark) {
    const params = new URLSearchParams();
    if (row !== undefined && row >= 0) params.set("span", state.trace.rows[row].spanId);
    if (mark !== undefined) params.set("mark", String(mark));
    const trace = state.trace;
    if (trace.viewFrom !== trace.from || trace.viewTo !== trace.to) {
      params.set("from", String(Math.round(trace.viewFrom)));
      params.set("to", String(Math.round(trace.viewTo)));
    }
    const query = params.toString();
    return `#/trace/${state.trace.id}${query ? `?${query}` : ""}`;
  }

  function select(row, mark, updateUrl = true) {
    state.selected = { row, mark };
    if (updateUrl) history.replaceState(null, "", selectionHash(row, mark));
    // Make sure the row is shown and in view.
    for (let p = state.trace.rows[row].parent; p >= 0; p = state.trace.rows[p].parent) state.collapsed.delete(state.trace.rows[p].spanId);
    computeVisible();
    const v = state.trace.visible.indexOf(row);
    const container = $("rows");
    if (v >= 0 && (v * ROW_HEIGHT < container.scrollTop || (v + 1) * ROW_HEIGHT > container.scrollTop + container.clientHeight)) {
      container.scrollTop = Math.max(0, v * ROW_HEIGHT - container.clientHeight / 3);
    }
    drawRows();
    markCurrentEvidence();
    if (mark === undefined) showObject(row);
    else showMark(row, mark);
  }

  function objectLink(index, text) {
    const row = state.trace.rows[index];
    return el("a", { href: selectionHash(index), class: "object-link", "data-select": index }, text || `${row.resource} ${row.namespace ? `${row.namespace}/` : ""}${row.name}`);
  }

  function openPanel(...children) {
    const panel = $("panel");
    panel.hidden = false;
    panel.replaceChildren(el("button", { class: "close", type: "button", onclick: () => { state.selected = null; panel.hidden = true; history.replaceState(null, "", selectionHash()); drawRows(); markCurrentEvidence(); } }, "×"), ...children.flat().filter(Boolean));
    panel.scrollTop = 0;
  }

  function fieldTable(pairs) {
    return el("table", {}, pairs.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v))));
  }

  function showObject(index) {
    const row = state.trace.rows[index];
    const ownSearch = new URLSearchParams({ resource: row.resource, name: row.name, mode: state.trace.mode || DEFAULT_MODE, open: "1" });
    if (row.namespace) ownSearch.set("namespace", row.namespace);
    if (row.cluster) ownSearch.set("cluster", row.cluster);
    const counts = {};
    for (const mark of row.marks) counts[mark.source] = (counts[mark.source] || 0) + 1;
    const children = row.children.slice(0, 200);
    openPanel(
      el("h2", {}, `${row.resource} ${row.namespace ? `${row.namespace}/` : ""}${row.name}`),
      fieldTable([
        ...row.tags.map((t) => [t.key, String(t.value)]),
        ["time", `${isoTime(row.start)} .. ${isoTime(row.end)}`],
        ["activities", Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(", ") || "none"],
      ]),
      row.warnings.length ? el("p", { class: "failed-note" }, row.warnings.join("; ")) : null,
      el("h3", {}, "Parent"),
      row.parent >= 0 ? el("p", {}, objectLink(row.parent), row.linkClass ? ` (${row.linkClass})` : "") : el("p", {}, "none in this view"),
      el("h3", {}, `Children (${row.children.length})`),
      children.length ? el("ul", {}, children.map((c) => el("li", {}, objectLink(c)))) : el("p", {}, "none in this view"),
      row.children.length > children.length ? el("p", {}, `and ${row.children.length - children.length} more`) : null,
      // Offline (an exported page) there is no search to open.
      state.offline ? null : el("p", {}, el("a", { href: `#/search?${ownSearch}`, class: "own-trace" }, "Open the trace of this object alone")),
      el("h3", {}, `Activities (${row.marks.length})`),
      el("ol", { class: "activities" }, row.marks.slice(0, 500).map((mark, m) =>
        el("li", {},
          el("a", { href: selectionHash(index, m), class: `activity${mark.hasDiff ? " has-diff" : ""}${mark.failed ? " failed" : ""}`, "data-select": index, "data-mark": m },
            el("i", { class: markClass(mark) }),
            `${clock(mark.start, true)} ${mark.source}: ${mark.title}`,
            mark.extensions.length ? el("span", { class: "badge extension", title: spanCount(mark.extensions.length) }, `ext ${mark.extensions.length}`) : null)))),
      row.marks.length > 500 ? el("p", {}, `and ${row.marks.length - 500} more`) : null,
      row.extensions.length ? [el("h3", {}, `Extension spans of the object (${row.extensions.length})`), waterfall(row.extensions)] : null);
  }

  /** Microseconds as milliseconds, e.g. "7.30 ms". */
  const millis = (micros) => `${(micros / 1000).toFixed(micros < 10_000 ? 2 : 1)} ms`;

  /**
   * Grafted spans as a small waterfall: one line per span (service, operation, indented by its depth in the
   * grafted subtree, a bar over the spans' common time range, the duration in ms); a click on a line shows its
   * tags, logs and warnings.
   */
  function waterfall(entries) {
    const shown = entries.slice(0, MAX_EXTENSION_ROWS);
    let from = Infinity;
    let to = -Infinity;
    for (const entry of shown) {
      from = Math.min(from, entry.start);
      to = Math.max(to, entry.start + entry.duration);
    }
    const range = Math.max(1, to - from);
    const percent = (micros) => `${((micros / range) * 100).toFixed(2)}%`;
    const lines = shown.map((entry) => el("details", {
      class: "ext-span",
      "data-depth": entry.depth,
      "data-service": entry.service,
      "data-operation": entry.operation,
      "data-provider": entry.provider,
    },
    el("summary", { title: `${entry.service} ${entry.operation} · depth ${entry.depth} · ${entry.provider}` },
      el("span", { class: "ext-label", style: `padding-left:${entry.depth * 12}px` },
        el("span", { class: "ext-service" }, entry.service), " ",
        el("span", { class: "ext-operation" }, entry.operation)),
      el("span", { class: "ext-lane" },
        el("span", { class: "ext-bar", style: `left:${percent(entry.start - from)};width:${percent(entry.duration)}` })),
      el("span", { class: "ext-duration" }, millis(entry.duration))),
    el("div", { class: "ext-detail" },
      fieldTable([
        ["operation", entry.operation],
        ["service", entry.service],
        ["provider", entry.provider],
        ["start", isoTime(entry.start)],
        ["depth", String(entry.depth)],
        ...entry.tags,
      ]),
      entry.warnings.length ? el("p", { class: "failed-note" }, entry.warnings.join("; ")) : null,
      entry.logs.length ? el("ol", { class: "ext-logs" }, entry.logs.map((log) =>
        el("li", {}, `${clock(log.timestamp, true)} `, log.fields.map((f) => `${f.key}: ${f.value}`).join(" · ")))) : null)));
    return el("div", { class: "waterfall" }, lines,
      entries.length > shown.length ? el("p", {}, `and ${entries.length - shown.length} more`) : null);
  }

  function diffBlock(text) {
    return el("pre", { class: "diff" }, text.split("\n").map((line) => {
      const match = /^(\S+) (.*) -> (.*)$/.exec(line);
      if (!match) return el("div", { class: "diff-line" }, line);
      return el("div", { class: "diff-line" }, el("span", { class: "path" }, match[1]), " ", el("span", { class: "old" }, match[2]), " -> ", el("span", { class: "new" }, match[3]));
    }));
  }

  function snapshotBlock(text) {
    let pretty = text;
    try { pretty = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON: as it is */ }
    return el("details", { open: true }, el("summary", {}, `${text.length} characters`), el("pre", { class: "snapshot" }, pretty));
  }

  function showMark(index, m) {
    const row = state.trace.rows[index];
    const mark = row.marks[m];
    const source = sourceClass(mark.source);
    const plain = mark.fields.filter(([k]) => !["diff", "verbose diff", "snapshot", "message", "error"].includes(k));
    const blocks = [];
    for (const [key, value] of mark.fields) {
      if (key === "diff" || key === "verbose diff") blocks.push(el("h3", {}, key), diffBlock(value));
      else if (key === "snapshot") blocks.push(el("h3", {}, "snapshot"), snapshotBlock(value));
      else if (key === "message" || key === "error") blocks.push(el("h3", {}, key), el("pre", { class: key }, value));
    }
    openPanel(
      el("h2", {},
        el("span", { class: `badge ${mark.warning ? "warning" : source}` }, mark.source),
        mark.failed ? el("span", { class: "badge failed" }, "failed") : null,
        mark.title),
      el("p", {}, `${isoTime(mark.start)} on `, objectLink(index)),
      mark.evidence ? [el("h3", {}, "Evidence of"), el("ul", { class: "evidence-of" }, findingsOfMark(index, m).map((title) => el("li", { class: "failed-note" }, title)))] : null,
      fieldTable(plain),
      mark.extensions.length ? [el("h3", {}, `Extension spans (${mark.extensions.length})`), waterfall(mark.extensions)] : null,
      blocks,
      el("p", {},
        m > 0 ? el("a", { href: selectionHash(index, m - 1), "data-select": index, "data-mark": m - 1 }, "← previous") : null,
        " ",
        m + 1 < row.marks.length ? el("a", { href: selectionHash(index, m + 1), "data-select": index, "data-mark": m + 1 }, "next →") : null));
  }

  // ---- findings ----

  /** Microseconds since the epoch of an RFC 3339 time (fraction digits beyond 6 cut, as the API does), or null. */
  function timestampMicros(text) {
    const match = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$/.exec(String(text || ""));
    if (!match) return null;
    const millis = Date.parse(`${match[1]}${match[3]}`);
    if (Number.isNaN(millis)) return null;
    return millis * 1000 + Number((match[2] || "").slice(0, 6).padEnd(6, "0"));
  }

  /** A finding's time range: `2026-11-28 03:00:03.000 .. 03:00:12.000`, the date once when both share it. */
  function findingRange(fromText, toText) {
    const from = timestampMicros(fromText);
    const to = timestampMicros(toText);
    if (from === null || to === null) return `${fromText} .. ${toText}`;
    const day = (micros) => isoTime(micros).slice(0, 10);
    const fromDay = day(from);
    return `${fromDay} ${clock(from, true)} .. ${day(to) === fromDay ? "" : `${day(to)} `}${clock(to, true)}`;
  }

  /** A row's object as findings name it: `configmaps default/target (local)`, `deployments.apps default/web (c)`. */
  function findingObjectName(row) {
    const resource = row.group ? `${row.resource}.${row.group}` : row.resource;
    return `${resource} ${row.namespace ? `${row.namespace}/` : ""}${row.name} (${row.cluster})`;
  }

  /**
   * The mark an evidence line points at, as { row, mark } indexes, or null when this view does not draw it:
   * the mark of the activity span with the evidence's span id (modes where activities are spans); else a mark on
   * the row of the evidence's object (any row when no row has that name) at the evidence's time in microseconds
   * whose `<source> <title>` is the evidence's activity; else, on the object's row, a mark at that time. Marks in
   * `taken` (already matched by the finding's other lines) are chosen last.
   */
  function locateEvidence(evidence, taken) {
    const trace = state.trace;
    const spanId = String(evidence.spanId || "").toLowerCase();
    if (spanId && trace.markAt.has(spanId)) return trace.markAt.get(spanId);
    const at = timestampMicros(evidence.time);
    if (at === null) return null;
    const named = trace.rows.filter((row) => findingObjectName(row) === evidence.object);
    const candidates = named.length ? named : trace.rows;
    let best = null;
    let bestScore = 0;
    for (const row of candidates) {
      row.marks.forEach((mark, m) => {
        if (mark.start !== at) return;
        const sameActivity = `${mark.source} ${mark.title}` === evidence.activity;
        if (!sameActivity && !named.length) return;
        const score = (sameActivity ? 2 : 0) + (taken.has(`${row.index}:${m}`) ? 0 : 1);
        if (score > bestScore) {
          best = { row: row.index, mark: m };
          bestScore = score;
        }
      });
    }
    return best;
  }

  /** Shows `list` (findings as the API gives them) for the trace shown, matching their evidence to its marks. */
  function applyFindings(status, list, error) {
    const trace = state.trace;
    for (const row of trace.rows) for (const mark of row.marks) mark.evidence = 0;
    const located = list.map((finding) => {
      const taken = new Set();
      return (finding.evidence || []).map((evidence) => {
        const at = locateEvidence(evidence, taken);
        if (at) {
          taken.add(`${at.row}:${at.mark}`);
          trace.rows[at.row].marks[at.mark].evidence += 1;
        }
        return at;
      });
    });
    state.findings = { status, list, located, error };
    renderFindings();
    drawRows();
    // A mark selected before the findings came: its panel names them now.
    const selected = state.selected;
    if (selected && selected.mark !== undefined && trace.rows[selected.row].marks[selected.mark].evidence) showMark(selected.row, selected.mark);
  }

  /** The titles of the findings whose evidence is the mark `m` of row `row`. */
  function findingsOfMark(row, m) {
    if (!state.findings) return [];
    const { list, located } = state.findings;
    return list.filter((_, f) => located[f].some((at) => at && at.row === row && at.mark === m)).map((finding) => finding.title);
  }

  function evidenceLine(evidence, at) {
    const micros = timestampMicros(evidence.time);
    const parts = [
      el("span", { class: "evidence-time" }, micros === null ? String(evidence.time) : clock(micros, true)),
      el("span", { class: "evidence-object" }, evidence.object),
      el("span", { class: "evidence-activity" }, evidence.activity),
      evidence.note ? el("span", { class: "evidence-note" }, evidence.note) : null,
    ];
    if (!at) return el("span", { class: "evidence-line unmatched", title: "this activity is not drawn in this view" }, parts);
    return el("a", {
      href: selectionHash(at.row, at.mark),
      class: "evidence-line",
      "data-select": at.row,
      "data-mark": at.mark,
      "data-span": evidence.spanId || undefined,
      title: "select this activity",
    }, parts);
  }

  function findingBlock(finding, located) {
    const evidence = finding.evidence || [];
    const steps = finding.nextSteps || [];
    return el("section", { class: "finding", "data-diagnoser": finding.diagnoser },
      el("h3", { class: "finding-title" }, finding.title),
      el("p", { class: "finding-meta" }, `${finding.diagnoser} · ${finding.object} · ${findingRange(finding.from, finding.to)}`),
      el("p", { class: "finding-explanation" }, finding.explanation),
      steps.length ? [el("div", { class: "next-heading" }, "Check next"), el("ul", { class: "finding-next" }, steps.map((step) => el("li", {}, step)))] : null,
      el("div", { class: "evidence-heading" }, `Evidence (${evidence.length})`),
      el("ol", { class: "evidence" }, evidence.map((line, e) => el("li", {}, evidenceLine(line, located[e])))));
  }

  /** The findings section as `state.findings` says: looking, a note, no finding (collapsed), or the findings (open). */
  function renderFindings() {
    const section = $("findings");
    const summary = $("findings-summary");
    const body = $("findings-list");
    const { status, list, located, error } = state.findings;
    const count = list.length;
    const objects = state.trace.rows.length;
    let open = false;
    if (status === "loading") {
      summary.textContent = "Findings: looking…";
      body.replaceChildren();
    } else if (status === "error") {
      summary.textContent = "Findings: not available";
      body.replaceChildren(el("p", { class: "findings-note" }, `The diagnosis could not be read (${error}). The trace is shown without it.`));
    } else if (status === "absent") {
      summary.textContent = "Findings: not in this page";
      body.replaceChildren(el("p", { class: "findings-note" }, "This page was exported without findings."));
    } else if (!count) {
      summary.textContent = "Findings (0): no finding";
      body.replaceChildren(el("p", { class: "findings-note" }, `No finding: no diagnoser matched the ${objects} object${objects === 1 ? "" : "s"} of this view.`));
    } else {
      summary.textContent = `Findings (${count})`;
      body.replaceChildren(...list.map((finding, f) => findingBlock(finding, located[f])));
      open = true;
    }
    section.dataset.state = status === "ready" && !count ? "none" : status;
    section.dataset.count = String(count);
    section.open = open;
    $("trace").classList.toggle("findings-open", open);
    document.querySelector(".legend-evidence").hidden = !located.some((lines) => lines.some(Boolean));
    markCurrentEvidence();
  }

  /** Highlights the evidence lines of the selected mark. */
  function markCurrentEvidence() {
    const selected = state.selected;
    for (const line of $("findings-list").querySelectorAll("a.evidence-line")) {
      line.classList.toggle("current", Boolean(selected) && selected.mark !== undefined
        && Number(line.dataset.select) === selected.row && Number(line.dataset.mark) === selected.mark);
    }
  }

  /** The findings of the trace shown (embedded on an exported page, else `/api/diagnose/<id>`). */
  async function loadFindings(token) {
    try {
      state.findings = { status: "loading", list: [], located: [] };
      renderFindings();
      let list;
      try {
        if (state.offline) {
          if (state.offline.findings.error) throw new Error(state.offline.findings.error);
          if (!state.offline.findings.list) {
            applyFindings("absent", []);
            return;
          }
          list = state.offline.findings.list;
        } else {
          list = await api(`/api/diagnose/${state.trace.id}`);
        }
        if (!Array.isArray(list)) throw new Error("the answer holds no list of findings");
        if (token !== loads) return; // another trace is shown by now
        applyFindings("ready", list);
      } catch (e) {
        if (token !== loads) return;
        applyFindings("error", [], e.message);
      }
    } catch (e) {
      // Whatever went wrong, the trace stays as it is drawn.
      $("findings-summary").textContent = "Findings: not available";
      $("findings").dataset.state = "error";
    }
  }

  // ---- events ----

  // Zoom: drag on the axis to pick a time range, double-click it (or Reset zoom) to see everything.
  const ticks = $("axis-ticks");
  ticks.addEventListener("mousedown", (down) => {
    if (!state.trace || down.button !== 0) return;
    const box = ticks.getBoundingClientRect();
    const at = (x) => Math.min(box.width, Math.max(0, x - box.left));
    const brush = el("div", { class: "brush", style: `left:${at(down.clientX)}px;width:0` });
    ticks.append(brush);
    const move = (event) => {
      const [a, b] = [at(down.clientX), at(event.clientX)].sort((x, y) => x - y);
      brush.style.left = `${a}px`;
      brush.style.width = `${b - a}px`;
    };
    const up = (event) => {
      window.removeEventListener("mousemove", move);
      window.removeEventListener("mouseup", up);
      brush.remove();
      const [a, b] = [at(down.clientX), at(event.clientX)].sort((x, y) => x - y);
      if (b - a < 4) return;
      const { viewFrom, viewTo } = state.trace;
      const time = (x) => viewFrom + (x / box.width) * (viewTo - viewFrom);
      zoom(time(a), time(b));
    };
    window.addEventListener("mousemove", move);
    window.addEventListener("mouseup", up);
  });
  ticks.addEventListener("dblclick", () => { if (state.trace) zoom(); });
  $("reset-zoom").addEventListener("click", () => zoom());
  $("rows").addEventListener("scroll", queueDraw, { passive: true });
  window.addEventListener("resize", queueDraw);
  $("rows").addEventListener("click", (event) => {
    const toggle = event.target.closest("[data-toggle]");
    if (toggle && toggle.textContent) {
      const row = state.trace.rows[Number(toggle.dataset.toggle)];
      if (state.collapsed.has(row.spanId)) state.collapsed.delete(row.spanId);
      else state.collapsed.add(row.spanId);
      computeVisible();
      drawRows();
      return;
    }
    const mark = event.target.closest(".mark, .ext-badge");
    if (mark) { select(Number(mark.dataset.row), Number(mark.dataset.mark)); return; }
    const label = event.target.closest(".row-label");
    if (label) select(Number(label.dataset.row), undefined);
  });
  $("panel").addEventListener("click", (event) => {
    const link = event.target.closest("[data-select]");
    if (!link) return;
    event.preventDefault();
    select(Number(link.dataset.select), link.dataset.mark === undefined ? undefined : Number(link.dataset.mark));
  });
  $("findings").addEventListener("click", (event) => {
    const link = event.target.closest("a[data-select]");
    if (!link || !state.trace) return;
    event.preventDefault();
    const row = Number(link.dataset.select);
    const m = Number(link.dataset.mark);
    const mark = state.trace.rows[row] && state.trace.rows[row].marks[m];
    if (!mark) return;
    // A mark outside the zoomed range would not be drawn: show the whole trace.
    if (mark.start < state.trace.viewFrom || mark.start > state.trace.viewTo) zoom(undefined, undefined, false);
    select(row, m);
  });
  // Evidence rings show while the section is open.
  $("findings").addEventListener("toggle", () => $("trace").classList.toggle("findings-open", $("findings").open));
  $("mode-switch").addEventListener("change", (event) => {
    if (state.trace) navigate(`#/trace/${withMode(state.trace.id, event.target.value)}`);
  });
  $("row-filter").addEventListener("input", (event) => {
    state.filter = event.target.value.trim();
    computeVisible();
    $("rows").scrollTop = 0;
    drawRows();
  });
  $("copy-link").addEventListener("click", async () => {
    const button = $("copy-link");
    try {
      await navigator.clipboard.writeText(location.href);
      button.textContent = "Copied";
    } catch (e) {
      window.prompt("Link to this view:", location.href);
    }
    setTimeout(() => { button.textContent = "Copy link"; }, 1500);
  });
  form.elements.range.addEventListener("change", () => {
    form.querySelector(".custom-range").hidden = form.elements.range.value !== "custom";
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    state.trace = null;
    navigate(`#/search?${formParams()}`);
  });
  // Links and back/forward change the hash; pushState/replaceState (navigate, selections) do not fire this.
  window.addEventListener("hashchange", route);

  // ---- start ----

  /** The embedded trace's answer, as `/api/traces/{id}` gives it; another id is not on this page. */
  function offlineTrace(id) {
    if (id !== state.offline.id) throw new Error(`this page holds trace ${state.offline.id} only`);
    return state.offline.answer.data;
  }

  /** The findings an exported page carries ({ list } or { error }); { list: null } when it carries none. */
  function offlineFindings() {
    const embedded = document.getElementById("kelemetry-findings");
    if (!embedded) return { list: null };
    try {
      const answer = JSON.parse(embedded.textContent);
      return Array.isArray(answer && answer.data) ? { list: answer.data } : { error: "the findings on this page are no list" };
    } catch (e) {
      return { error: `the findings on this page are not JSON: ${e.message}` };
    }
  }

  /** An exported page: the trace it carries, shown without the API; search and mode switch disabled. */
  async function startOffline(embedded) {
    let answer;
    try {
      answer = JSON.parse(embedded.textContent);
    } catch (e) {
      showMessage(`The trace on this page is not JSON: ${e.message}`, true);
      setBusy("error");
      return;
    }
    const trace = answer && answer.data && answer.data[0];
    if (!trace || !Array.isArray(trace.spans)) {
      showMessage("This page carries no trace.", true);
      setBusy("error");
      return;
    }
    const mode = embedded.dataset.mode || "";
    state.offline = { id: String(trace.traceID).toLowerCase().padStart(32, "0"), answer, findings: offlineFindings() };
    state.modes = mode ? [mode] : [];
    form.hidden = true;
    for (const control of form.elements) control.disabled = true;
    const modeSwitch = $("mode-switch");
    modeSwitch.replaceChildren(el("option", { value: mode }, mode || "(mode unknown)"));
    modeSwitch.disabled = true;
    modeSwitch.title = "an exported trace is shown in the mode it was exported in";
    await route();
  }

  async function start() {
    const embedded = document.getElementById("kelemetry-trace");
    if (embedded) {
      await startOffline(embedded);
      return;
    }
    const serverTrace = /^\/trace\/([0-9a-fA-F]+)$/.exec(location.pathname);
    if (serverTrace) history.replaceState(null, "", `/#/trace/${serverTrace[1]}`);
    try {
      const [modes, clusters] = await Promise.all([api("/api/services"), api("/api/operations")]);
      state.modes = modes;
      const options = modes.map((name) => el("option", { value: name }, name));
      form.elements.mode.replaceChildren(...options);
      $("mode-switch").replaceChildren(...options.map((o) => o.cloneNode(true)));
      form.elements.cluster.append(...clusters.map((c) => el("option", { value: c.name }, c.name)));
    } catch (e) {
      showMessage(`The API does not answer: ${e.message}`, true);
      setBusy("error");
      return;
    }
    await route();
  }
  start();
})();
