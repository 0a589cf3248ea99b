// The web viewer in headless Chromium, against `kelemetry demo` (the project's recording of a Deployment rollout),
// against a generated rollout of 1,000 Pods, against `kelemetry serve --extensions` grafting the apiserver's own
// spans (fixtures/recorded/apiserver-traces), against `kelemetry serve` with a finding of the automatic diagnosis
// (fixtures/recorded/failed-requests when recorded, else a generated audit log of the same pattern), and on the
// pages `kelemetry export --html` writes, opened from disk.
// Run by scripts/browser-test, which installs Debian's chromium and playwright-core (outside the work tree) and
// says where they are:
//   KELEMETRY_BIN            the kelemetry binary
//   KELEMETRY_NODE_MODULES   the node_modules folder holding playwright-core
//   KELEMETRY_ARTIFACTS      where screenshots go
//   CHROMIUM                 the browser (default /usr/bin/chromium)

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";

import { bigRollout } from "./big-rollout.mjs";
import { refusedPatches } from "./refused-patches.mjs";

const require = createRequire(
  process.env.KELEMETRY_NODE_MODULES ? path.resolve(process.env.KELEMETRY_NODE_MODULES, "..", "package.json") : import.meta.url,
);
const { chromium } = require("playwright-core");

const BIN = process.env.KELEMETRY_BIN;
const ARTIFACTS = process.env.KELEMETRY_ARTIFACTS || mkdtempSync(path.join(tmpdir(), "kelemetry-viewer-"));
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const PODS = 1000;
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const APISERVER_TRACES = path.join(ROOT, "fixtures/recorded/apiserver-traces");
const DEPLOYMENT_LIFECYCLE = path.join(ROOT, "fixtures/recorded/deployment-lifecycle");
const FAILED_REQUESTS = path.join(ROOT, "fixtures/recorded/failed-requests");

/** `kelemetry demo ARGS --listen 127.0.0.1:0`: resolves with the printed link once the viewer is served. */
function startDemo(args) {
  const child = spawn(BIN, ["demo", ...args, "--listen", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk) => { stderr += chunk; });
  const lines = createInterface({ input: child.stdout });
  const printed = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill(); reject(new Error(`no link printed in 120 s:\n${printed.slice(-5).join("\n")}\n${stderr}`)); }, 120_000);
    lines.on("line", (line) => {
      printed.push(line);
      const match = /^open (http:\/\/\S+)/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: match[1], base: new URL(match[1]).origin, printed });
      }
    });
    child.on("exit", (code) => { clearTimeout(timer); reject(new Error(`kelemetry demo exited (${code}) before printing a link:\n${printed.join("\n")}\n${stderr}`)); });
  });
}

/** `kelemetry ARGS` run to its end: resolves with its output, rejects with it when the command fails. */
function kelemetry(args) {
  const child = spawn(BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (chunk) => { output += chunk; });
  child.stderr.on("data", (chunk) => { output += chunk; });
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(output) : reject(new Error(`kelemetry ${args.join(" ")} exited (${code}):\n${output}`))));
  });
}

/** `kelemetry serve ARGS --listen 127.0.0.1:0`: resolves with its address once it listens. */
function startServe(args) {
  const child = spawn(BIN, ["serve", ...args, "--listen", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stderr.on("data", (chunk) => { output += chunk; });
  const lines = createInterface({ input: child.stdout });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill(); reject(new Error(`kelemetry serve did not listen in 60 s:\n${output}`)); }, 60_000);
    lines.on("line", (line) => {
      output += `${line}\n`;
      const match = /^listening on (http:\/\/\S+)/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve({ child, base: match[1], output: () => output });
      }
    });
    child.on("exit", (code) => { clearTimeout(timer); reject(new Error(`kelemetry serve exited (${code}):\n${output}`)); });
  });
}

/**
 * A tracing backend of our own for an `http` extension provider: `GET /traces?audit=ID` answers with the recorded
 * Jaeger answer of that audit id (`{"data": []}` for an id it has none for). Resolves with its port and the ids asked.
 */
function startTraceServer(answers) {
  const asked = [];
  const server = createServer((request, response) => {
    const url = new URL(request.url, "http://127.0.0.1");
    const id = url.searchParams.get("audit") || "";
    asked.push(id);
    const answer = url.pathname === "/traces" && Object.hasOwn(answers, id) ? answers[id] : { data: [] };
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify(answer));
  });
  return new Promise((resolve, reject) => {
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => resolve({ server, port: server.address().port, asked }));
  });
}

let browser;
let demo;

before(async () => {
  assert.ok(BIN, "KELEMETRY_BIN names the kelemetry binary");
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // The sandbox's closed network: no background connections, no first-run work.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  demo = await startDemo([]);
});

after(async () => {
  if (browser) await browser.close();
  if (demo) demo.child.kill("SIGINT");
});

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1600, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => { if (msg.type() === "error") problems.push(`console: ${msg.text()}`); });
  page.on("request", (req) => { if (!req.url().startsWith("http://127.0.0.1:")) problems.push(`request outside the server: ${req.url()}`); });
  return { page, problems };
}

const ready = (page) => page.waitForSelector("body[data-state=ready]", { timeout: 30_000 });

/** The rows on the page: resource, name, and the sources of the marks on them. */
async function rows(page) {
  return page.$$eval(".row", (nodes) => nodes.map((row) => ({
    resource: row.dataset.resource,
    name: row.dataset.name,
    marks: [...row.querySelectorAll(".mark")].map((m) => ({ source: m.dataset.source, cls: m.className })),
  })));
}

test("the demo prints a link, and the search finds the Deployment's tree", async () => {
  assert.ok(demo.printed.some((line) => line.includes("deployments demo")), "the tree was printed first");
  const { page, problems } = await newPage();
  await page.goto(`${demo.base}/`);
  await ready(page);
  await page.fill("#search [name=resource]", "deployments");
  await page.fill("#search [name=namespace]", "default");
  await page.fill("#search [name=name]", "demo");
  await page.selectOption("#search [name=mode]", "tracing [full tree]");
  await page.click("#search button[type=submit]");
  await ready(page);
  assert.match(page.url(), /#\/search\?.*name=demo/, "the search is in the URL");
  const results = page.locator(".result a");
  assert.equal(await results.count(), 1, "one view matches");
  await results.first().click();
  await ready(page);
  assert.match(page.url(), /#\/trace\/ff21000000e1e3e7[0-9a-f]{16}$/);

  const shown = await rows(page);
  const deployment = shown.filter((r) => r.resource === "deployments");
  const replicaSets = shown.filter((r) => r.resource === "replicasets");
  const pods = shown.filter((r) => r.resource === "pods");
  assert.deepEqual(deployment.map((r) => r.name), ["demo"]);
  assert.equal(replicaSets.length, 2, "the rollout made two ReplicaSets");
  assert.ok(replicaSets.every((r) => r.name.startsWith("demo-")));
  assert.ok(pods.length >= 4, `the ReplicaSets' Pods are rows (${pods.length})`);
  for (const pod of pods) {
    assert.ok(replicaSets.some((rs) => pod.name.startsWith(`${rs.name}-`)), `${pod.name} belongs to a ReplicaSet`);
    assert.ok(pod.marks.some((m) => m.source === "audit"), `${pod.name} has audit marks`);
  }
  const sources = new Set(deployment[0].marks.map((m) => m.source));
  assert.ok(sources.has("audit") && sources.has("event"), `the Deployment has audit and event marks (${[...sources]})`);
  assert.ok(replicaSets.every((rs) => rs.marks.some((m) => m.source === "event")), "each ReplicaSet has Events");
  assert.ok(shown.some((r) => r.marks.some((m) => m.cls.includes("failed"))), "failed requests are highlighted");
  // Events and audit requests look different.
  const look = async (selector) => page.$eval(selector, (m) => { const s = getComputedStyle(m); return `${s.backgroundColor} ${s.borderRadius}`; });
  assert.notEqual(await look(".row .mark.audit:not(.failed)"), await look(".row .mark.event:not(.warning)"));
  assert.deepEqual(problems, []);
});

test("a diff opens in the side panel, with a link to share", async () => {
  const { page, problems } = await newPage();
  await page.goto(demo.url);
  await ready(page);
  // The Deployment's row lists its activities in the side panel; the ones with a diff are marked.
  await page.locator('.row[data-resource="deployments"] .row-label').click();
  const withDiff = page.locator("#panel a.activity.has-diff");
  const count = await withDiff.count();
  assert.ok(count > 0, "the Deployment has activities with diffs");
  let found = null;
  for (let i = 0; i < count && !found; i++) {
    await page.locator('.row[data-resource="deployments"] .row-label').click();
    await withDiff.nth(i).click();
    const text = await page.locator("#panel").innerText();
    if (/spec\.replicas 2 -> 4|status\.observedGeneration 1 -> 2/.test(text)) found = text;
  }
  assert.ok(found, "some diff of the Deployment shows spec.replicas 2 -> 4 or status.observedGeneration 1 -> 2");
  assert.match(found, /audit/);
  assert.match(page.url(), /\?span=[0-9a-f]{16}&mark=\d+$/, "the selection is in the URL");
  const screenshot = path.join(ARTIFACTS, "viewer-demo.png");
  await page.screenshot({ path: screenshot });
  console.log(`screenshot: ${screenshot}`);

  // The link opens the same selection in another tab.
  const { page: other } = await newPage();
  await other.goto(page.url());
  await ready(other);
  assert.equal(await other.locator("#panel").innerText(), await page.locator("#panel").innerText());

  // From the panel to the parent object and back down to a child.
  await page.locator('.row[data-resource="pods"] .row-label').first().click();
  const panel = page.locator("#panel");
  await panel.locator(".object-link").first().click();
  assert.match(await panel.locator("h2").innerText(), /^replicasets default\/demo-/);
  assert.ok((await panel.locator("li .object-link").count()) >= 2, "the ReplicaSet lists its Pods");
  assert.deepEqual(problems, []);
});

test("the display-mode switch rewrites the trace id's mode digits", async () => {
  const { page, problems } = await newPage();
  await page.goto(demo.url);
  await ready(page);
  const id = /#\/trace\/([0-9a-f]{32})/.exec(page.url())[1];
  const before = await rows(page);
  const activities = before.reduce((n, r) => n + r.marks.length, 0);

  await page.selectOption("#mode-switch", "tree [full tree]");
  await ready(page);
  await page.waitForURL(/ff01000000/);
  assert.equal(page.url().split("#/trace/")[1], `ff01000000${id.slice(10)}`);
  const tree = await rows(page);
  assert.deepEqual(tree.map((r) => `${r.resource} ${r.name}`).sort(), before.map((r) => `${r.resource} ${r.name}`).sort(),
    "tree mode shows the same objects");
  assert.equal(tree.reduce((n, r) => n + r.marks.length, 0), activities, "and the same activities, from child spans");

  await page.selectOption("#mode-switch", "timeline [full tree]");
  await ready(page);
  await page.waitForURL(/ff11000000/);
  const timeline = await rows(page);
  assert.equal(timeline.length, 1, "timeline: the root alone");
  assert.equal(timeline[0].marks.length, activities, "with every activity of the tree");

  await page.goBack();
  await ready(page);
  await page.waitForURL(/ff01000000/);
  assert.equal((await rows(page)).length, before.length, "back to the tree mode");
  assert.deepEqual(problems, []);
});

test(`a Deployment with ${PODS} Pods loads fast and scrolls`, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "kelemetry-big-"));
  const file = path.join(dir, "audit.log");
  writeFileSync(file, bigRollout(PODS));
  const big = await startDemo([file, "--object", "deployments/default/big"]);
  try {
    const { page, problems } = await newPage();
    await page.goto(`${big.base}/`);
    await ready(page);
    const started = Date.now();
    await page.goto(big.url);
    await ready(page);
    const loadMs = Date.now() - started;
    const timings = await page.evaluate(() => window.kelemetryViewer.timings);
    const trace = await page.evaluate(() => ({ rows: window.kelemetryViewer.trace.rows.length, marks: window.kelemetryViewer.trace.markCount }));
    console.log(`${trace.rows} objects, ${trace.marks} activities: page ready in ${loadMs} ms (API ${timings.fetchMs.toFixed(0)} ms, rows ${timings.buildMs.toFixed(0)} ms, total in page ${timings.totalMs.toFixed(0)} ms)`);
    assert.equal(trace.rows, PODS + 3, "the Deployment, two ReplicaSets, every Pod");
    assert.ok(trace.marks >= PODS * 2, "every Pod's requests are marks");
    const inDom = await page.locator(".row").count();
    assert.ok(inDom < 100, `only the rows in view are in the DOM (${inDom})`);
    await page.screenshot({ path: path.join(ARTIFACTS, "viewer-1000-pods.png") });

    // Scroll to the end: the last Pod is drawn, quickly.
    const scrolled = Date.now();
    await page.$eval("#rows", (rows) => { rows.scrollTop = rows.scrollHeight; });
    await page.waitForSelector('.row[data-name="big-bbbb2-p0999"]', { timeout: 5_000 });
    console.log(`scrolled to the last Pod in ${Date.now() - scrolled} ms`);
    // Collapse a ReplicaSet: its 500 Pods leave the list.
    await page.$eval("#rows", (rows) => { rows.scrollTop = 0; });
    await page.locator('.row[data-name="big-aaaa1"] .caret').click();
    const visible = await page.evaluate(() => window.kelemetryViewer.trace.visible.length);
    assert.equal(visible, PODS / 2 + 3);
    // The filter finds one Pod among a thousand.
    await page.fill("#row-filter", "p0421");
    assert.deepEqual((await rows(page)).map((r) => r.name), ["big", "big-bbbb2", "big-bbbb2-p0421"]);
    assert.ok(loadMs < 15_000, `the page is ready in ${loadMs} ms`);
    assert.deepEqual(problems, []);
  } finally {
    big.child.kill("SIGINT");
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The waterfall of extension spans in the side panel: depth, service, operation, duration text, in order. */
async function waterfall(page) {
  return page.$$eval("#panel details.ext-span", (lines) => lines.map((line) => ({
    depth: Number(line.dataset.depth),
    service: line.dataset.service,
    operation: line.dataset.operation,
    provider: line.dataset.provider,
    duration: line.querySelector(".ext-duration").textContent,
  })));
}

/** Opens the side panel of the Deployment's create request. */
async function openCreateRequest(page) {
  await page.locator('.row[data-resource="deployments"] .row-label').click();
  await page.locator("#panel a.activity", { hasText: "kelemetry-admin create" }).first().click();
  assert.match(await page.locator("#panel h2").innerText(), /kelemetry-admin create/);
}

/** The apiserver's request span of the create and the spans under it, as the panel shows them. */
function assertCreateRequestSpans(lines, where) {
  const request = lines.findIndex((line) => line.operation === "POST /apis/apps/v1/namespaces/{:namespace}/deployments");
  assert.ok(request >= 0, `${where}: the create request's mark shows the apiserver's request span (${lines.map((l) => l.operation).join(", ")})`);
  assert.equal(lines[request].service, "apiserver");
  assert.equal(lines[request].provider, "apiserver");
  assert.match(lines[request].duration, /^\d+\.\d+ ms$/);
  const below = [];
  for (let i = request + 1; i < lines.length && lines[i].depth > lines[request].depth; i++) below.push(lines[i]);
  const names = below.map((line) => line.operation);
  assert.ok(names.includes("Create") && names.includes("etcdserverpb.KV/Txn"), `${where}: with its children, indented (${names.join(", ")})`);
  assert.ok(below.every((line) => line.service === "apiserver"));
}

test("the apiserver's own spans show under the audit requests they served", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "kelemetry-extensions-"));
  const answers = JSON.parse(readFileSync(path.join(APISERVER_TRACES, "traces.json"), "utf8"));
  const audit = readFileSync(path.join(APISERVER_TRACES, "audit.log"), "utf8").trim().split("\n").map((line) => JSON.parse(line));
  const created = audit.find((event) => event.verb === "create");
  const traces = await startTraceServer(answers);
  let serve;
  try {
    const store = path.join(dir, "store");
    await kelemetry(["replay", "--store", store, path.join(APISERVER_TRACES, "audit.log")]);
    const config = path.join(dir, "extensions.yaml");
    writeFileSync(config, [
      "providers:",
      "  - name: apiserver",
      "    for: activities",
      "    when: {source: audit}",
      "    http:",
      `      url: "http://127.0.0.1:${traces.port}/traces?audit={auditId}"`,
      "",
    ].join("\n"));
    serve = await startServe(["--store", store, "--extensions", config]);
    const { page, problems } = await newPage();
    await page.goto(`${serve.base}/#/search?resource=deployments&namespace=default&name=demo&mode=tracing&open=1`);
    await page.waitForURL(/#\/trace\/ff20000000/);
    await ready(page);

    // Every traced request of the Deployment got its trace; each mark says so with a badge.
    const marks = await page.$$eval('.row[data-resource="deployments"] .mark', (nodes) => nodes.map((m) => ({ extensions: Number(m.dataset.extensions || 0), cls: m.className })));
    assert.ok(marks.length >= 10, `the Deployment's requests are marks (${marks.length})`);
    assert.ok(marks.every((m) => m.extensions > 0 && m.cls.includes("has-ext")), "every request's mark has the apiserver's spans");
    assert.equal(await page.locator('.row[data-resource="deployments"] .ext-badge').count(), marks.length, "each such mark has a badge");
    assert.ok(traces.asked.includes(created.auditID), "the provider was asked about the create request");
    assert.equal(await page.locator(".row").count(), 1, "extension spans are no rows");
    assert.match(await page.locator("#trace-stats").innerText(), /\d+ extension spans/);
    assert.ok(await page.locator(".legend-extension").isVisible(), "the legend explains the badge");

    // tracing: activities are logs of their object; the grafted trace is found by its activity's time.
    await openCreateRequest(page);
    const lines = await waterfall(page);
    assertCreateRequestSpans(lines, "tracing");
    assert.equal(lines.length, answers[created.auditID].data[0].spans.length, "every span of the create's trace");
    const screenshot = path.join(ARTIFACTS, "viewer-extension-spans.png");
    await page.screenshot({ path: screenshot });
    console.log(`screenshot: ${screenshot}`);
    // Tags on demand: the request span's, with the audit id it was found by.
    const requestLine = page.locator('#panel details.ext-span[data-operation="POST /apis/apps/v1/namespaces/{:namespace}/deployments"]');
    assert.equal(await requestLine.locator(".ext-detail").isVisible(), false, "tags are hidden until asked for");
    await requestLine.locator("summary").click();
    const tags = await requestLine.locator(".ext-detail").innerText();
    assert.match(tags, new RegExp(`audit-id\\s+${created.auditID}`));
    assert.match(tags, /http\.status_code\s+201/);

    // tree: activities are spans; the grafted trace hangs under the activity span.
    await page.selectOption("#mode-switch", "tree");
    await page.waitForURL(/#\/trace\/ff00000000/);
    await ready(page);
    await openCreateRequest(page);
    assertCreateRequestSpans(await waterfall(page), "tree");
    assert.deepEqual(problems, []);
  } finally {
    if (serve) serve.child.kill("SIGINT");
    traces.server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the exported page shows the tree and a diff from disk, loading nothing", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "kelemetry-export-"));
  try {
    const store = path.join(dir, "store");
    await kelemetry(["replay", "--store", store, DEPLOYMENT_LIFECYCLE]);
    const file = path.join(dir, "demo.html");
    await kelemetry(["export", "deployments/default/demo", "--full-tree", "--store", store, "--html", file]);
    // Nothing but the file itself: the store is gone before the page opens.
    rmSync(store, { recursive: true, force: true });

    const context = await browser.newContext({ viewport: { width: 1600, height: 900 } });
    const page = await context.newPage();
    const problems = [];
    const requests = [];
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    page.on("console", (msg) => { if (msg.type() === "error") problems.push(`console: ${msg.text()}`); });
    page.on("request", (request) => requests.push(request.url()));
    const url = pathToFileURL(file).href;
    await page.goto(url);
    await ready(page);
    assert.match(page.url(), /#\/trace\/ff21000000[0-9a-f]{22}$/, "the embedded trace, in the mode it was exported in");
    assert.deepEqual(requests.filter((request) => request !== url), [], "no request but the file itself");

    const shown = await rows(page);
    assert.deepEqual(shown.filter((r) => r.resource === "deployments").map((r) => r.name), ["demo"]);
    assert.equal(shown.filter((r) => r.resource === "replicasets").length, 2, "both ReplicaSets");
    assert.ok(shown.filter((r) => r.resource === "pods").length >= 4, "and their Pods");
    assert.equal(await page.locator("#search").isVisible(), false, "no search offline");
    assert.equal(await page.locator("#mode-switch").isDisabled(), true, "no mode switch offline");
    const findings = await findingsPanel(page);
    assert.deepEqual([findings.state, findings.summary, findings.open], ["none", "Findings (0): no finding", false], "the healthy rollout's page carries no finding");

    // A diff, as on the served page.
    const deployment = page.locator('.row[data-resource="deployments"] .row-label');
    await deployment.click();
    const withDiff = page.locator("#panel a.activity.has-diff");
    const count = await withDiff.count();
    assert.ok(count > 0, "the Deployment has activities with diffs");
    let found = null;
    for (let i = 0; i < count && !found; i++) {
      await deployment.click();
      await withDiff.nth(i).click();
      const text = await page.locator("#panel").innerText();
      if (/spec\.replicas 2 -> 4|status\.observedGeneration 1 -> 2/.test(text)) found = text;
    }
    assert.ok(found, "some diff of the Deployment shows spec.replicas 2 -> 4 or status.observedGeneration 1 -> 2");
    assert.equal(await page.locator("#panel pre.diff").count() > 0, true);
    const screenshot = path.join(ARTIFACTS, "viewer-export-offline.png");
    await page.screenshot({ path: screenshot });
    console.log(`screenshot: ${screenshot}`);
    assert.deepEqual(requests.filter((request) => request !== url), [], "still no request after clicking around");
    assert.deepEqual(problems, []);
    await context.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---- findings of the automatic diagnosis ----

/** The findings section once its answer is in: state, summary, whether it is open, the findings and their lines. */
async function findingsPanel(page) {
  await page.waitForSelector("#findings:not([data-state=loading])", { timeout: 30_000 });
  return page.$eval("#findings", (section) => ({
    state: section.dataset.state,
    summary: section.querySelector("summary").textContent,
    open: section.open,
    text: section.innerText,
    findings: [...section.querySelectorAll(".finding")].map((finding) => ({
      diagnoser: finding.dataset.diagnoser,
      title: finding.querySelector(".finding-title").textContent,
      meta: finding.querySelector(".finding-meta").textContent,
      explanation: finding.querySelector(".finding-explanation").textContent,
      nextSteps: [...finding.querySelectorAll(".finding-next li")].map((li) => li.textContent),
      evidence: [...finding.querySelectorAll(".evidence li")].map((li) => {
        const line = li.querySelector(".evidence-line");
        return {
          text: line.textContent,
          linked: line.tagName === "A",
          row: line.dataset.select === undefined ? null : Number(line.dataset.select),
          mark: line.dataset.mark === undefined ? null : Number(line.dataset.mark),
          spanId: line.dataset.span || null,
        };
      }),
    })),
  }));
}

/** What the recording (or the generated log) of refused patches holds: the input to replay, alice's 403 count. */
function refusedPatchesInput(dir) {
  if (existsSync(path.join(FAILED_REQUESTS, "audit.log"))) {
    const audit = readFileSync(path.join(FAILED_REQUESTS, "audit.log"), "utf8").trim().split("\n").map((line) => JSON.parse(line));
    // The recording's requests are the admin's, impersonating alice (kubectl --as=alice).
    const user = (event) => (event.impersonatedUser || event.user || {}).username;
    const refused = audit.filter((event) => user(event) === "alice" && event.objectRef
      && event.objectRef.resource === "configmaps" && event.objectRef.name === "target"
      && event.responseStatus && event.responseStatus.code === 403).length;
    return { input: FAILED_REQUESTS, refused, recorded: true };
  }
  const file = path.join(dir, "refused.audit.log");
  writeFileSync(file, refusedPatches(4));
  return { input: file, refused: 4, recorded: false };
}

/** The mark the viewer has selected: its source, title, whether it is evidence, and its activity span id. */
async function selectedMark(page) {
  return page.evaluate(() => {
    const { selected, trace } = window.kelemetryViewer;
    if (!selected || selected.mark === undefined) return null;
    const mark = trace.rows[selected.row].marks[selected.mark];
    return { row: selected.row, mark: selected.mark, source: mark.source, title: mark.title, start: mark.start, evidence: mark.evidence, spanId: mark.spanId };
  });
}

/** Checks the refused-patches finding on the page shown; clicks one of its evidence lines and checks the selection. */
async function assertRefusedPatchesFinding(page, refused, where) {
  const panel = await findingsPanel(page);
  assert.equal(panel.state, "ready", `${where}: ${panel.text}`);
  assert.equal(panel.open, true, `${where}: the findings are open`);
  const finding = panel.findings.find((f) => f.diagnoser === "failed-requests" && f.title.startsWith("alice: "));
  assert.ok(finding, `${where}: a finding about alice (${panel.findings.map((f) => f.title).join("; ")})`);
  assert.ok(finding.title.startsWith(`alice: ${refused} requests failed with 403 Forbidden`), `${where}: ${finding.title}`);
  assert.match(panel.summary, new RegExp(`^Findings \\(${panel.findings.length}\\)$`));
  assert.match(finding.meta, /failed-requests · configmaps default\/target \(\w+\) · \d{4}-\d{2}-\d{2} [\d:.]+ \.\. [\d:.]+/);
  assert.match(finding.explanation, /403/);
  assert.ok(finding.nextSteps.length >= 1, `${where}: what to check next`);
  assert.equal(finding.evidence.length, Math.min(refused, 12), `${where}: one evidence line per refused patch`);
  assert.ok(finding.evidence.every((line) => line.linked && /audit alice patch/.test(line.text) && /403 Forbidden/.test(line.text)),
    `${where}: every evidence line found its mark (${JSON.stringify(finding.evidence)})`);
  assert.equal(new Set(finding.evidence.map((line) => `${line.row}:${line.mark}`)).size, finding.evidence.length, `${where}: each line its own mark`);

  // The evidence marks are ringed while the findings are open.
  const rings = page.locator('.row[data-resource="configmaps"][data-name="target"] .evidence-ring');
  assert.equal(await rings.count(), finding.evidence.length, `${where}: a ring per evidence mark`);
  assert.equal(await rings.first().isVisible(), true);
  assert.equal(await page.locator('.row[data-resource="configmaps"][data-name="target"] .mark[data-evidence]').count(), finding.evidence.length);
  assert.equal(await page.locator(".legend-evidence").isVisible(), true, `${where}: the legend explains the ring`);

  // A click on the second evidence line selects its mark.
  const line = page.locator(".finding", { has: page.locator(".finding-title", { hasText: finding.title }) }).locator(".evidence a.evidence-line").nth(1);
  await line.click();
  const chosen = finding.evidence[1];
  const selected = await selectedMark(page);
  assert.deepEqual([selected.row, selected.mark], [chosen.row, chosen.mark], `${where}: the line's mark is selected`);
  assert.equal(selected.source, "audit");
  assert.match(selected.title, /alice patch/);
  assert.ok(selected.evidence > 0);
  if (chosen.spanId && selected.spanId) assert.equal(selected.spanId, chosen.spanId, `${where}: the activity span the evidence names`);
  assert.match(page.url(), new RegExp(`\\?span=[0-9a-f]{16}&mark=${chosen.mark}$`), `${where}: the selection is in the URL`);
  assert.equal(await page.locator(`.mark.selected[data-row="${chosen.row}"][data-mark="${chosen.mark}"][data-evidence]`).count(), 1);
  assert.match(await page.locator("#panel h2").innerText(), /alice patch/);
  assert.match(await page.locator("#panel").innerText(), new RegExp(`Evidence of[\\s\\S]*alice: ${refused} requests failed`, "i"), `${where}: the panel names the finding`);
  assert.equal(await line.getAttribute("class"), "evidence-line current", `${where}: the clicked line is marked current`);

  // Collapsed, the findings leave the marks alone.
  await page.locator("#findings > summary").click();
  await page.waitForFunction(() => !document.querySelector("#trace").classList.contains("findings-open"));
  assert.equal(await rings.first().isVisible(), false, `${where}: no ring while the findings are closed`);
  await page.locator("#findings > summary").click();
  await page.waitForFunction(() => document.querySelector("#trace").classList.contains("findings-open"));
  assert.equal(await rings.first().isVisible(), true, `${where}: rings again when opened`);
  return finding;
}

test("a healthy rollout has no finding: the findings section says so, collapsed", async () => {
  const { page, problems } = await newPage();
  await page.goto(demo.url);
  await ready(page);
  const panel = await findingsPanel(page);
  assert.equal(panel.state, "none", panel.text);
  assert.equal(panel.summary, "Findings (0): no finding");
  assert.equal(panel.open, false, "collapsed");
  assert.deepEqual(panel.findings, []);
  assert.equal(await page.locator(".row .evidence-ring").count(), 0, "no mark is evidence");
  assert.equal(await page.locator(".legend-evidence").isVisible(), false);
  await page.locator("#findings > summary").click();
  assert.match(await page.locator("#findings-list").innerText(), /No finding: no diagnoser matched the 11 objects of this view/);
  assert.deepEqual(problems, []);
});

test("a finding shows in its panel, its evidence marks ringed, a click on a line selects the mark", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "kelemetry-findings-"));
  let serve;
  try {
    const { input, refused, recorded } = refusedPatchesInput(dir);
    console.log(`refused patches: ${recorded ? "fixtures/recorded/failed-requests" : "a generated audit log"}, ${refused} refused`);
    const store = path.join(dir, "store");
    await kelemetry(["replay", "--store", store, input]);
    serve = await startServe(["--store", store]);
    const { page, problems } = await newPage();
    const asked = [];
    page.on("request", (request) => { if (request.url().includes("/api/diagnose/")) asked.push(request.url()); });
    await page.goto(`${serve.base}/#/search?resource=configmaps&namespace=default&name=target&mode=tracing&open=1`);
    await page.waitForURL(/#\/trace\/ff20000000/);
    await ready(page);

    // tracing: activities are logs of their object; evidence is found by its object, time and activity.
    const tracing = await assertRefusedPatchesFinding(page, refused, "tracing");
    assert.ok(tracing.evidence.every((line) => line.spanId && /^[0-9a-f]{16}$/.test(line.spanId)));
    assert.equal(asked.length, 1, "the diagnosis is asked once per trace");
    assert.ok(asked[0].endsWith(`/api/diagnose/${/#\/trace\/([0-9a-f]{32})/.exec(page.url())[1]}`), asked[0]);
    const screenshot = path.join(ARTIFACTS, "viewer-findings.png");
    await page.screenshot({ path: screenshot });
    console.log(`screenshot: ${screenshot}`);

    // tree: activities are spans; evidence is found by its span id.
    await page.selectOption("#mode-switch", "tree");
    await page.waitForURL(/#\/trace\/ff00000000/);
    await ready(page);
    await assertRefusedPatchesFinding(page, refused, "tree");
    assert.equal(asked.length, 2, "and again for the other mode's trace");

    // grouped: Events in a child span per source, audit requests logs of the object.
    await page.selectOption("#mode-switch", "grouped");
    await page.waitForURL(/#\/trace\/ff30000000/);
    await ready(page);
    await assertRefusedPatchesFinding(page, refused, "grouped");

    // timeline: the root and every activity of the view as its child spans.
    await page.selectOption("#mode-switch", "timeline");
    await page.waitForURL(/#\/trace\/ff10000000/);
    await ready(page);
    await assertRefusedPatchesFinding(page, refused, "timeline");
    assert.deepEqual(problems, []);
  } finally {
    if (serve) serve.child.kill("SIGINT");
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a failed diagnosis leaves a note and the trace as it is", async () => {
  const { page, problems } = await newPage();
  await page.route("**/api/diagnose/**", (route) => route.fulfill({ status: 500, contentType: "application/json", body: '{"data":null,"errors":[{"code":500,"msg":"the store is gone"}]}' }));
  await page.goto(demo.url);
  await ready(page);
  const panel = await findingsPanel(page);
  assert.equal(panel.state, "error");
  assert.equal(panel.summary, "Findings: not available");
  assert.equal(panel.open, false);
  assert.match(await page.locator("#findings-list").textContent(), /could not be read \(the store is gone\)/);
  // The trace works as ever: rows, marks, the side panel.
  assert.ok((await rows(page)).length >= 11);
  await page.locator('.row[data-resource="deployments"] .row-label').click();
  assert.match(await page.locator("#panel h2").innerText(), /^deployments default\/demo/);
  // The browser reports the failed load itself; nothing else went wrong.
  assert.deepEqual(problems.filter((problem) => !/Failed to load resource: the server responded with a status of 500/.test(problem)), []);
});

test("the exported page carries the findings and shows them from disk", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "kelemetry-export-findings-"));
  try {
    const { input, refused } = refusedPatchesInput(dir);
    const store = path.join(dir, "store");
    await kelemetry(["replay", "--store", store, input]);
    const file = path.join(dir, "target.html");
    const printed = await kelemetry(["export", "configmaps/default/target", "--store", store, "--html", file]);
    assert.match(printed, /and \d+ findings?/);
    rmSync(store, { recursive: true, force: true });

    const context = await browser.newContext({ viewport: { width: 1600, height: 900 } });
    const page = await context.newPage();
    const problems = [];
    const requests = [];
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    page.on("console", (msg) => { if (msg.type() === "error") problems.push(`console: ${msg.text()}`); });
    page.on("request", (request) => requests.push(request.url()));
    const url = pathToFileURL(file).href;
    await page.goto(url);
    await ready(page);
    await assertRefusedPatchesFinding(page, refused, "offline");
    const screenshot = path.join(ARTIFACTS, "viewer-findings-offline.png");
    await page.screenshot({ path: screenshot });
    console.log(`screenshot: ${screenshot}`);
    assert.deepEqual(requests.filter((request) => request !== url), [], "no request but the file itself");
    assert.deepEqual(problems, []);
    await context.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
