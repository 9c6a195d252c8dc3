// The receipt inspector in Firefox: Debian's firefox-esr driven over WebDriver BiDi by
// puppeteer-core (playwright's Firefox is a patched build that cannot be downloaded here). The
// core flows of inspector.test.mjs once more in a second engine: the live list, a message and
// its rule trace, hostile mail HTML against a beacon, the inject form and a replay by keyboard,
// the keyboard walk and axe-core on each page. Screenshots go to target/inspector/firefox-*.png.
//
// MAILROOM_BIN: the mailroom binary (default target/debug/mailroom); FIREFOX: the browser
// (default /usr/bin/firefox-esr). Run from the repository root: node tests/browser/firefox.test.mjs

import { existsSync } from "node:fs";
import { join } from "node:path";
import puppeteer from "puppeteer-core";
import {
  axe as axeOn, check, finish, hostile, injectByKeyboard, keyboardWalk, keyboardWalkCatches, plain,
  replayByKeyboard, searchByKeyboard, shots, startBeacon, startServe, submitInjectByKeyboard,
  tabTo, tabsByKeyboard, until,
} from "./lib.mjs";

const firefox = process.env.FIREFOX || "/usr/bin/firefox-esr";
if (!existsSync(firefox)) {
  // A missing browser is a failure of this step, never a skip.
  check(`Firefox at ${firefox}`, false, "not installed: scripts/test.d/browser --install-only installs firefox-esr");
  finish();
}

const beacon = await startBeacon();
const serve = await startServe("mailroom-firefox-");
const { UI, smtp } = serve;

const launched = Date.now();
const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: firefox,
  headless: true,
  // Firefox's own update, telemetry and studies would otherwise reach for the network.
  extraPrefsFirefox: { "app.update.enabled": false, "datareporting.policy.dataSubmissionEnabled": false, "app.normandy.enabled": false },
});
const version = await browser.version();
check("Firefox starts under puppeteer-core over WebDriver BiDi", /^firefox\//i.test(version), `${version}, ${Date.now() - launched} ms`);
const page = await browser.newPage();
await page.setViewport({ width: 1360, height: 900 });
const dialogs = [];
page.on("dialog", (d) => {
  dialogs.push(d.message());
  d.dismiss().catch(() => {});
});
const axe = (name) => axeOn(page, name);
const shot = (name) => page.screenshot({ path: join(shots, `firefox-${name}.png`), fullPage: true });
const text = (selector) => page.evaluate((s) => document.querySelector(s)?.innerText ?? "", selector);
/** Follows the first link matching `selector` as a click would, and waits for the new page. */
async function follow(selector, ready) {
  await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click(selector)]);
  if (ready) await until(page, (s) => !!document.querySelector(s), ready);
}

try {
  // The live list: a message sent over SMTP appears without a reload.
  await page.goto(UI + "/");
  const loaded = Date.now();
  // Past the server's 15 s keep-alive: a page that only learns it is live then is reported,
  // and the flows still run.
  await until(page, () => document.body.dataset.live === "1", undefined, 20000);
  const liveAfter = Date.now() - loaded;
  check("list: the page shows it is live within 3 s of loading", liveAfter < 3000, `${liveAfter} ms`);
  const sentAt = Date.now();
  const accepted = await smtp("carla@example.org", ["support@example.com"], plain("Quarterly invoice"));
  check("SMTP: the message is accepted", accepted.some((l) => l.startsWith("250 2.0.0 Ok")), accepted.at(-1));
  await until(page, () => document.getElementById("rows").innerText.includes("Quarterly invoice"), undefined, 5000);
  check("list: the new message appears without a reload", true, `${Date.now() - sentAt} ms after DATA`);
  await smtp("carla@example.org", ["support@example.com"], plain("Second notice"));
  await until(page, () => document.getElementById("rows").innerText.includes("Second notice"), undefined, 5000);
  check("list: and the next one, still without a reload", (await text("#count")).startsWith("2 "), await text("#count"));
  await shot("list");
  await axe("the list");
  await page.goto(UI + "/");
  await keyboardWalk(page, "the list");
  await searchByKeyboard(page, UI);
  await page.goto(UI + "/");
  await tabTo(page, "#rows td.subject a");
  await page.screenshot({ path: join(shots, "firefox-focus.png") });

  // A message and its rule trace.
  await page.goto(UI + "/?q=subject:quarterly");
  await follow("#rows td.subject a", "#trace");
  const messageUrl = page.url();
  const trace = await text("#trace");
  check("message: it opens on its rule trace", (await page.title()).startsWith("Quarterly invoice") && /rule receive\s*matched/.test(trace));
  check("message: the webhook was delivered with a valid signature", trace.includes("signature valid"));
  await shot("message");
  await axe("a message");
  await page.goto(messageUrl);
  await keyboardWalk(page, "a message");
  await tabsByKeyboard(page, messageUrl);

  // A state file: the SNS publication, with the filter-policy tester.
  await page.goto(messageUrl);
  await follow("#trace a[href*='/sns/']", "#policy");
  check("a state file: the SNS publication", (await text("main")).includes('"sender_domain"'));
  await axe("a state file (an SNS publication)");
  await page.goto(page.url());
  await keyboardWalk(page, "a state file (an SNS publication)");

  // Hostile HTML: no script, no network, no markup from headers.
  const before = beacon.hits.length;
  await smtp("mallory@example.org", ["support@example.com"], hostile(beacon.url));
  await page.goto(UI + "/?q=mallory");
  check("list: markup in a Subject is text", await page.evaluate(() => document.querySelectorAll("#rows img").length === 0));
  await follow("#rows td.subject a", "iframe");
  await new Promise((r) => setTimeout(r, 1500));
  const frame = page.frames().find((f) => f.url().includes("/html"));
  check("hostile: the mail HTML is in a frame", !!frame, page.frames().map((f) => f.url()).join(", "));
  check("hostile: the page title is untouched", !(await page.title()).includes("PWNED"), await page.title());
  check("hostile: header markup is text on the page", await page.evaluate(() => document.querySelectorAll("main img, main script").length === 0));
  if (frame) {
    const inside = await frame.evaluate(() => ({ title: document.title, h1: document.querySelector("h1")?.textContent }));
    check("hostile: the frame shows the mail and its script did not run", inside.h1 === "Totally normal newsletter" && !inside.title.includes("PWNED"), JSON.stringify(inside));
    await frame.click("#js").catch(() => {});
  }
  await new Promise((r) => setTimeout(r, 500));
  check("hostile: no dialog opened", dialogs.length === 0, dialogs.join(","));
  const leaked = beacon.hits.slice(before);
  check("hostile: the mail's HTML reached nothing on the network", leaked.length === 0, leaked.join(", ") || "0 requests");
  await shot("hostile");
  // The control: asking for remote images lets exactly those through, so the beacon works.
  await page.click("a[target=mailframe]");
  await new Promise((r) => setTimeout(r, 1500));
  const asked = beacon.hits.slice(before);
  check(
    "hostile: remote images load only when asked, and still no script",
    asked.includes("/remote-image.gif") && !asked.some((u) => /script|onerror|javascript|refresh|form|object/.test(u)),
    asked.join(", "),
  );

  // Replay with a changed parameter, by keyboard: the comparison.
  const compared = await replayByKeyboard(page, messageUrl, "DenySenders=carla@example.org");
  check("replay: the diff marks what changed", compared.changed > 0 && /accepted stopped/.test(compared.first), `${compared.changed} rows changed; ${compared.first}`);
  await shot("replay");
  await axe("a replay's comparison");
  await page.goto(page.url());
  await keyboardWalk(page, "a replay's comparison");

  // The inject form, by keyboard.
  await page.goto(UI + "/inject");
  await keyboardWalk(page, "the inject form");
  await injectByKeyboard(page, UI);
  await shot("inject");
  await axe("the inject form");
  await submitInjectByKeyboard(page);
  await shot("injected");

  await keyboardWalkCatches(page);
} catch (e) {
  check("Firefox test ran to the end", false, e.stack);
} finally {
  await browser.close();
  serve.stop();
  beacon.close();
}

finish();
