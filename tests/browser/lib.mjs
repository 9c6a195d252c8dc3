// What the browser tests share: `mailroom serve` in a temporary state dir, mail over SMTP, a
// beacon for hostile HTML, axe-core and a keyboard walk. The page helpers only use
// page.evaluate and page.keyboard, which playwright-core and puppeteer-core spell alike, so one
// copy serves Chromium and Firefox.

import { spawn } from "node:child_process";
import { createServer, request as httpRequest } from "node:http";
import { connect } from "node:net";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
export const root = resolve(new URL("../..", import.meta.url).pathname);
export const bin = process.env.MAILROOM_BIN || join(root, "target/debug/mailroom");
export const shots = join(root, "target/inspector");
mkdirSync(shots, { recursive: true });

const results = [];
let failures = 0;
export function check(name, ok, detail = "") {
  results.push(`${ok ? "ok  " : "FAIL"} ${name}${detail ? ` (${detail})` : ""}`);
  console.log(results.at(-1));
  if (!ok) failures++;
}

/** Prints the tally and exits, non-zero when a check failed (or none ran). */
export function finish() {
  console.log(`\n${results.length - failures} of ${results.length} checks passed; screenshots in ${shots}`);
  process.exit(failures || results.length === 0 ? 1 : 0);
}

/** A server that counts every request: any request the mail's HTML makes lands here. */
export async function startBeacon() {
  const hits = [];
  const server = createServer((req, res) => {
    hits.push(req.url);
    res.writeHead(200, { "content-type": "image/gif" });
    res.end(Buffer.from("R0lGODlhAQABAAAAACw=", "base64"));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}`, hits, close: () => server.close() };
}

/** A port nothing listens on: a webhook sent there is refused. */
export async function closedPort() {
  const closed = createServer();
  await new Promise((r) => closed.listen(0, "127.0.0.1", r));
  const port = closed.address().port;
  await new Promise((r) => closed.close(r));
  return port;
}

/** `mailroom serve` on free loopback ports with a fresh state dir, once its banner is out. */
export async function startServe(prefix) {
  const state = mkdtempSync(join(tmpdir(), prefix));
  // A copy of the template in a project folder of its own: the test edits it (replay after an
  // edit) and saves events beside it, never in the repository.
  const project = join(state, "project");
  mkdirSync(project);
  const template = join(project, "template.yaml");
  copyFileSync(join(root, "template.yaml"), template);
  const serve = spawn(
    bin,
    ["serve", "--listen", "127.0.0.1:0", "--ui", "127.0.0.1:0", "--state-dir", join(state, "state"), "--template", template],
    { cwd: root, stdio: ["ignore", "pipe", "inherit"] },
  );
  const banner = await new Promise((resolveBanner, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`no banner from serve: ${out}`)), 30000);
    serve.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/SMTP on ([\d.:]+).*inspector on (http:\/\/[\d.:]+\/)/);
      if (m) {
        clearTimeout(timer);
        resolveBanner({ smtp: m[1], ui: m[2] });
      }
    });
    serve.on("exit", (c) => reject(new Error(`serve exited ${c}: ${out}`)));
    serve.on("error", reject);
  });
  serve.stdout.resume();
  const [host, port] = banner.smtp.split(":");
  const UI = banner.ui.replace(/\/$/, "");
  console.log(`serve: SMTP ${banner.smtp}, inspector ${UI}, state ${state}`);
  return {
    UI,
    state,
    template,
    project,
    smtp: (from, rcpts, message) => smtp(host, Number(port), from, rcpts, message),
    rawGet: (path, headers) => rawGet(UI, path, headers),
    stop() {
      serve.kill("SIGINT");
      rmSync(state, { recursive: true, force: true });
    },
  };
}

/** One SMTP transaction; returns every reply line the client read. */
function smtp(host, port, from, rcpts, message) {
  return new Promise((resolveSmtp, reject) => {
    const sock = connect(port, host);
    const replies = [];
    const script = [`EHLO browser.test`, `MAIL FROM:<${from}>`, ...rcpts.map((r) => `RCPT TO:<${r}>`), "DATA"];
    let buf = "";
    let step = -1;
    let sentData = false;
    let ended = false;
    sock.setEncoding("utf8");
    sock.on("data", (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf("\r\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (line[3] === "-") continue;
        replies.push(line);
        if (ended) continue;
        if (sentData) {
          ended = true;
          sock.end("QUIT\r\n");
          return;
        }
        step++;
        if (step < script.length) {
          sock.write(script[step] + "\r\n");
        } else if (line.startsWith("354")) {
          const body = message.replace(/\r?\n/g, "\r\n").replace(/^\./gm, "..");
          sock.write(body + "\r\n.\r\n");
          sentData = true;
        } else {
          ended = true;
          sock.end("QUIT\r\n");
        }
      }
    });
    sock.on("close", () => resolveSmtp(replies));
    sock.on("error", reject);
  });
}

/** A GET with the path exactly as given (fetch would normalise `..`); the status. */
function rawGet(UI, path, headers = {}) {
  return new Promise((done) => {
    const u = new URL(UI);
    const req = httpRequest({ host: u.hostname, port: u.port, path, headers }, (res) => {
      res.resume();
      done(res.statusCode);
    });
    req.on("error", () => done(0));
    req.end();
  });
}

export const plain = (subject, extra = "") => `From: Carla Rossi <carla@example.org>
To: support@example.com
Subject: ${subject}
Message-ID: <${subject.replace(/\W/g, "")}@example.org>
Date: Sun, 06 Dec 2026 10:00:00 +0000
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
${extra}
Hello from the browser test: ${subject}.
`;

/** Mail HTML that tries every way to run script or reach `B`, the beacon. */
export const hostile = (B) => `From: "<b>Mallory</b>" <mallory@example.org>
To: support@example.com
Subject: <img src=x onerror="document.title='PW'+'NED'"> hostile
Message-ID: <hostile@example.org>
X-Markup: <script>document.title='PW'+'NED'</script>
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<html><head>
<meta http-equiv="refresh" content="0;url=${B}/meta-refresh">
<link rel="stylesheet" href="${B}/stylesheet">
<style>body { background: url('${B}/css-url'); } @import url('${B}/css-import');</style>
<base href="${B}/base/">
</head><body>
<h1>Totally normal newsletter</h1>
<script>document.title='PW'+'NED'; fetch('${B}/script-fetch'); parent.document.title='PW'+'NED';</script>
<img src="${B}/remote-image.gif" alt="tracker">
<img src="x" onerror="fetch('${B}/onerror')">
<a id="js" href="javascript:fetch('${B}/javascript-link')">click me</a>
<svg xmlns="http://www.w3.org/2000/svg"><script>fetch('${B}/svg-script')</script><image href="${B}/svg-image"/></svg>
<iframe src="${B}/nested-frame"></iframe>
<form action="${B}/form"><input name="q"><button>go</button></form>
<object data="${B}/object"></object>
</body></html>
`;

export const attachments = () => readFileSync(join(root, "events/mail/attachments.eml"), "utf8");

const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

/** axe-core's WCAG 2 A/AA and best-practice rules on the page as it is now. */
export async function axe(page, name) {
  await page.evaluate(axeSource + "\n;0");
  const r = await page.evaluate(() =>
    window.axe.run(document, { runOnly: ["wcag2a", "wcag2aa", "best-practice"] }),
  );
  const serious = r.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  check(
    `axe-core on ${name}: no serious or critical violation`,
    serious.length === 0,
    serious.map((v) => `${v.id}: ${v.nodes.length} nodes`).join("; ") ||
      `${r.violations.length} minor, ${r.passes.length} rules pass`,
  );
}

/**
 * Tabs from the top of the page (just loaded) until focus leaves it or comes round again: the
 * controls a pointer could use that Tab never reached, the stops with no visible focus
 * indicator, and whether the walk ended. A frame counts as reached when focus enters it; what is
 * inside is the mail's, not ours.
 */
async function tabWalk(page) {
  await focusWindow(page);
  const controls = await page.evaluate(() => {
    const describe = (el) =>
      `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""} "${(el.innerText || el.value || el.getAttribute("aria-label") || el.name || "").trim().replace(/\s+/g, " ").slice(0, 30)}"`;
    const ring = (el) => {
      const cs = getComputedStyle(el);
      return { outline: `${cs.outlineStyle} ${cs.outlineWidth} ${cs.outlineColor}`, shadow: cs.boxShadow };
    };
    window.__kbd = { describe, ring, rest: new Map() };
    document.activeElement?.blur?.();
    for (const el of document.querySelectorAll("body *")) window.__kbd.rest.set(el, ring(el));
    const sel = "a[href], button, input:not([type=hidden]), select, textarea, summary, iframe, [tabindex], [contenteditable]";
    const out = [];
    for (const el of document.querySelectorAll(sel)) {
      if (el.disabled || el.getAttribute("tabindex") === "-1") continue;
      if (el.tagName === "SUMMARY" && el.parentElement?.tagName !== "DETAILS") continue;
      const closed = el.closest("details:not([open])");
      if (closed && !(el.tagName === "SUMMARY" && el.parentElement === closed)) continue;
      if (!el.getClientRects().length || getComputedStyle(el).visibility !== "visible") continue;
      el.dataset.kbd = String(out.length);
      out.push(describe(el));
    }
    return out;
  });
  const visited = [];
  const noRing = [];
  let ended = false;
  let first = null;
  // A frame takes a Tab per control inside it; the allowance is for those.
  for (let i = 0; i < controls.length + 60 && !ended; i++) {
    await page.keyboard.press("Tab");
    const at = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el || el === document.body || el === document.documentElement) return null;
      const rest = window.__kbd.rest.get(el) || { outline: "none 0px", shadow: "none" };
      const now = window.__kbd.ring(el);
      const shows =
        (!/^none|^\S+ 0px/.test(now.outline) && !/rgba\(0, 0, 0, 0\)/.test(now.outline) && now.outline !== rest.outline) ||
        (now.shadow !== "none" && now.shadow !== rest.shadow);
      return { id: el.dataset.kbd ?? null, what: window.__kbd.describe(el), frame: el.tagName === "IFRAME", shows, ring: now, focus: `${document.hasFocus()}/${el.matches(":focus")}/${el.matches(":focus-visible")}` };
    });
    if (!at) {
      ended = true;
      break;
    }
    const key = at.id ?? at.what;
    if (first === null) first = key;
    else if (key === first && visited.at(-1)?.key !== key) {
      ended = true;
      break;
    }
    if (visited.at(-1)?.key === key) continue;
    visited.push({ key, ...at });
    if (!at.frame && !at.shows) noRing.push(`${at.what}: ${at.ring.outline}; ${at.ring.shadow}; ${at.focus}`);
  }
  // Firefox tabs on out of the page into its own toolbar, where the next walk's keys would leave
  // the page without the focus; Tab on until the page has it again.
  for (let i = 0; i < 30 && !(await page.evaluate(() => document.hasFocus())); i++) await page.keyboard.press("Tab");
  const reached = new Set(visited.map((v) => v.id).filter((v) => v !== null));
  const missing = controls.filter((_, i) => !reached.has(String(i)));
  const extra = visited.filter((v) => v.id === null).map((v) => v.what);
  return { controls, visited, missing, extra, noRing, ended };
}

/** The keyboard walk's three checks on the page as just loaded. */
export async function keyboardWalk(page, name) {
  const { controls, visited, missing, extra, noRing, ended } = await tabWalk(page);
  check(`keyboard on ${name}: Tab reaches every control`, controls.length > 0 && missing.length === 0,
    missing.length ? `unreachable: ${missing.join(", ")}` : `${controls.length} controls${extra.length ? `, also ${extra.join(", ")}` : ""}`);
  check(`keyboard on ${name}: every focused element shows a focus indicator`, visited.length > 0 && noRing.length === 0,
    noRing.join("; ") || `${visited.length} stops`);
  check(`keyboard on ${name}: no keyboard trap, the Tab cycle ends`, ended, ended ? "" : `still in the page after ${controls.length + 60} Tabs at ${visited.at(-1)?.what}`);
}

/**
 * The walk on a page made to fail it, so that its passing on the inspector means something: a
 * control that gives focus away, one with its outline taken off, and one that keeps focus.
 */
export async function keyboardWalkCatches(page) {
  // A blank page first: the inspector's own policy would block the fixture's inline handlers.
  await page.goto("about:blank");
  const fixture = (body) =>
    page.setContent(`<!doctype html><html lang="en"><body><a href="#a">first</a> ${body} <button>last</button></body></html>`);
  await fixture(`<button id="skipped" onfocus="document.getElementById('after').focus()">skipped</button> <a id="after" href="#b">after</a>`);
  const skipped = await tabWalk(page);
  await fixture(`<style>#bare:focus { outline: none; }</style><button id="bare">bare</button>`);
  const bare = await tabWalk(page);
  await fixture(`<input id="trap" aria-label="trap" onkeydown="if (event.key === 'Tab') event.preventDefault()">`);
  const trap = await tabWalk(page);
  await fixture(`<button>plain</button> <details><summary>more</summary><a href="#c">inside</a></details>`);
  const good = await tabWalk(page);
  check(
    "keyboard walk: it reports an unreachable control, a missing focus indicator and a trap, and passes a sound page",
    skipped.missing.some((m) => m.includes("#skipped")) &&
      bare.noRing.some((m) => m.includes("#bare")) && bare.missing.length === 0 &&
      !trap.ended &&
      good.missing.length === 0 && good.noRing.length === 0 && good.ended && good.controls.length === 4,
    JSON.stringify({ skipped: skipped.missing, bare: bare.noRing, trapEnded: trap.ended, good: [good.controls.length, good.missing, good.noRing, good.ended] }),
  );
}

/**
 * Without the focus (document.hasFocus() false) keys still move activeElement, but nothing
 * matches :focus, so every focus indicator would look missing: fail at once instead.
 */
async function focusWindow(page) {
  if (!(await page.evaluate(() => document.hasFocus()))) throw new Error("the page does not have the keyboard focus");
}

/** Presses Tab until the focused element matches `selector`; false when it never does. */
export async function tabTo(page, selector, max = 80) {
  await focusWindow(page);
  for (let i = 0; i < max; i++) {
    await page.keyboard.press("Tab");
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return true;
  }
  return false;
}

/** Polls `fn(arg)` in the page until it is truthy; survives the navigations it waits for. */
export async function until(page, fn, arg, timeout = 10000) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    last = await page.evaluate(fn, arg).catch(() => undefined);
    if (last) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${fn.toString().slice(0, 120)}`);
}

const rowsText = () => [...document.querySelectorAll("#rows tr")].map((tr) => tr.innerText);

/** The search box by keyboard: Tab to it, type a query, Enter filters the list. */
export async function searchByKeyboard(page, UI) {
  await page.goto(UI + "/");
  const reached = await tabTo(page, "#q");
  await page.keyboard.type("subject:quarterly");
  await page.keyboard.press("Enter");
  await until(page, () => location.search.includes("q=subject") && document.readyState === "complete");
  const rows = await page.evaluate(rowsText);
  check("keyboard: type in the search box, Enter filters the list", reached && rows.length === 1 && rows[0].includes("Quarterly invoice"), `${rows.length} rows`);
}

/** The section tabs of a message by keyboard: Enter on "Headers" brings the headers into view. */
export async function tabsByKeyboard(page, messageUrl) {
  await page.goto(messageUrl);
  const reached = await tabTo(page, "nav.tabs a[href='#headers']");
  await page.keyboard.press("Enter");
  const shown = await until(page, () => {
    const r = document.getElementById("headers").getBoundingClientRect();
    return location.hash === "#headers" && { hash: location.hash, top: Math.round(r.top), height: innerHeight };
  });
  check("keyboard: Enter on the Headers tab goes to the headers", reached && shown.top >= 0 && shown.top < shown.height, JSON.stringify(shown));
}

/** Replay by keyboard alone: open the details, replace the parameters, submit; on the comparison. */
export async function replayByKeyboard(page, messageUrl, params) {
  await page.goto(messageUrl);
  const steps = [await tabTo(page, "details.replay summary")];
  await page.keyboard.press("Enter");
  steps.push(await tabTo(page, "#params"));
  await page.keyboard.down("Control");
  await page.keyboard.press("a");
  await page.keyboard.up("Control");
  await page.keyboard.type(params);
  steps.push(await tabTo(page, "details.replay button"));
  await page.keyboard.press("Enter");
  await until(page, () => document.readyState === "complete" && !!document.querySelector("table.compare"));
  const compare = await page.evaluate(() => ({
    changed: document.querySelectorAll("table.compare tr.changed").length,
    first: document.querySelector("table.compare tbody tr")?.innerText.replace(/\s+/g, " ") ?? "",
  }));
  check("keyboard: open the replay, change a parameter, run it", steps.every(Boolean), steps.join(","));
  return compare;
}

/** The inject form by keyboard alone: Tab and type each field, a verdict picked by its letter. */
export async function injectByKeyboard(page, UI) {
  await page.goto(UI + "/inject");
  const steps = [];
  for (const [field, text] of [["#from", "Dana <dana@example.org>"], ["#to", "support@example.com"], ["#subject", "Injected from the form"], ["#body", "Composed in the inspector."]]) {
    steps.push(await tabTo(page, field));
    await page.keyboard.type(text);
  }
  // Typing a letter on a select picks the first option starting with it.
  steps.push(await tabTo(page, "#virus"));
  await page.keyboard.type("F");
  const values = await page.evaluate(() => [document.getElementById("subject").value, document.getElementById("virus").value]);
  check("keyboard: the inject form is filled in by Tab and typing", steps.every(Boolean) && values[0] === "Injected from the form" && values[1] === "FAIL", `${steps.join(",")}; ${values.join(", ")}`);
}

/** Submits the inject form by keyboard (focus is in it) and checks the transaction it ran. */
export async function submitInjectByKeyboard(page) {
  const reached = await tabTo(page, "button.primary");
  await page.keyboard.press("Enter");
  await until(page, () => document.readyState === "complete" && !!document.getElementById("trace"));
  const ran = await page.evaluate(() => ({ title: document.title, facts: document.querySelector("dl.facts").innerText }));
  check("inject: the message ran, with its verdict", reached && ran.title.startsWith("Injected from the form") && ran.facts.includes("virus FAIL"), ran.facts.split("\n").slice(0, 2).join(" "));
}
