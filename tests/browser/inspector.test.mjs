// The receipt inspector in a real browser: `mailroom serve` with its web inspector, mail sent
// over SMTP, Debian's chromium driven through playwright-core, axe-core on every page, a
// keyboard walk (every control reached by Tab, with a visible focus indicator, and no trap) and
// the search, section tabs, replay and inject form by keyboard alone, the Mailpit-compatible API
// through the `mailpit-api` client, and hostile mail HTML that must neither run script nor reach
// the network. The helpers it shares with firefox.test.mjs are in lib.mjs. Screenshots go to
// target/inspector/.
//
// MAILROOM_BIN: the mailroom binary (default target/debug/mailroom); CHROMIUM: the browser
// (default /usr/bin/chromium). Run from the repository root: node tests/browser/inspector.test.mjs

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { MailpitClient } from "mailpit-api";
import {
  attachments as attachmentsEml, axe as axeOn, check, closedPort as freePort, finish, hostile as hostileMail,
  injectByKeyboard, keyboardWalk, keyboardWalkCatches, plain, replayByKeyboard, searchByKeyboard, shots,
  startBeacon, startServe, submitInjectByKeyboard, tabsByKeyboard,
} from "./lib.mjs";

const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";

const beacon = await startBeacon();
const beaconHits = beacon.hits;
const closedPort = await freePort();
const serve = await startServe("mailroom-inspector-");
const { UI, smtp, rawGet } = serve;
const hostile = hostileMail(beacon.url);
const attachments = attachmentsEml();

const browser = await chromium.launch({ executablePath: browserPath, args: ["--no-sandbox"] });
const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
const page = await context.newPage();
const dialogs = [];
page.on("dialog", (d) => {
  dialogs.push(d.message());
  d.dismiss();
});
const axe = (name) => axeOn(page, name);

try {
  // 1. Live list: a message sent over SMTP appears without a reload.
  await page.goto(UI + "/");
  await page.waitForSelector("#rows");
  // The page must be listening before the message is sent.
  await page.waitForFunction(() => document.body.dataset.live === "1");
  const sentAt = Date.now();
  const r1 = await smtp("carla@example.org", ["support@example.com"], plain("Quarterly invoice"));
  check("SMTP: the message is accepted", r1.some((l) => l.startsWith("250 2.0.0 Ok")), r1.at(-1));
  await page.waitForSelector("text=Quarterly invoice", { timeout: 5000 });
  check("list: the new message appears without a reload", true, `${Date.now() - sentAt} ms after DATA`);
  const rcpt = await smtp("spammer@example.net", ["nobody@elsewhere.example"], plain("Nope"));
  check("SMTP: an unknown recipient is refused at RCPT", rcpt.some((l) => l.startsWith("550 5.1.1")), rcpt.join(" | "));
  await smtp("carla@example.org", ["support@example.com"], attachments);
  await page.waitForSelector("text=nobody@elsewhere.example", { timeout: 5000 });
  check("list: the RCPT refusal is recorded with its disposition", (await page.locator("tr", { hasText: "nobody@elsewhere.example" }).innerText()).includes("refused"));
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(shots, "list.png"), fullPage: true });
  await axe("the list");

  // 2. Search, with Mailpit's syntax and receipt terms.
  await page.goto(UI + "/?q=" + encodeURIComponent("has:attachment rule:receive"));
  const found = await page.locator("#rows tr").count();
  check("search: has:attachment rule:receive finds the one message with attachments", found === 1, `${found} rows`);
  await page.goto(UI + "/?q=" + encodeURIComponent("disposition:refused"));
  check("search: disposition:refused", (await page.locator("#rows tr").count()) === 1);
  await page.goto(UI + "/?q=" + encodeURIComponent("before:someday"));
  check("search: a bad term is reported, not a 500", (await page.locator(".error").innerText()).includes("not a date"));

  // By keyboard alone: Tab reaches the first message, Enter opens it.
  await page.goto(UI + "/");
  let reached = "";
  for (let i = 0; i < 12 && !reached.includes("/message/"); i++) {
    await page.keyboard.press("Tab");
    reached = await page.evaluate(() => document.activeElement?.getAttribute("href") || "");
  }
  await page.keyboard.press("Enter");
  await page.waitForSelector("#trace");
  check("keyboard: Tab reaches a message and Enter opens it", reached.includes("/message/") && page.url().includes(reached), reached);
  await page.goto(UI + "/");
  await keyboardWalk(page, "the list");
  await searchByKeyboard(page, UI);

  // 3. A message: the trace, the webhook's signature, the Lambda events.
  await page.goto(UI + "/");
  await page.click("text=Quarterly invoice");
  await page.waitForSelector("#trace");
  const trace = await page.locator("#trace").textContent();
  check("message: the trace shows the matched rule", /rule receive\s*matched/.test(trace));
  check("message: the webhook was delivered with a valid signature", trace.includes("signature valid"));
  check("message: each Lambda action has its event", (await page.locator("details.event").count()) >= 4);
  check("message: the sam local invoke line names the function", trace.includes("sam local invoke ApiFunction"));
  await page.screenshot({ path: join(shots, "message.png"), fullPage: true });
  await axe("a message");
  const messageUrl = page.url();

  // The MIME structure of the message with attachments, and one part downloaded from it.
  await page.goto(UI + "/?q=" + encodeURIComponent("has:attachment"));
  await page.click("#rows a[href^='/message/']");
  await page.waitForSelector("#structure");
  const structure = await page.locator("#structure").innerText();
  const pdfLink = page.locator("#structure a", { hasText: "invoice-2025-01.pdf" });
  const [download] = await Promise.all([page.waitForEvent("download"), pdfLink.click()]);
  const pdf = readFileSync(await download.path(), "latin1");
  const notesLink = page.locator("#structure a", { hasText: "notes.txt" });
  const [notes] = await Promise.all([page.waitForEvent("download"), notesLink.click()]);
  check("MIME structure: the tree of parts, and a part downloaded decoded", /multipart\/mixed/.test(structure) && /application\/pdf/.test(structure) && pdf.startsWith("%PDF") && download.suggestedFilename() === "invoice-2025-01.pdf" && notes.suggestedFilename().normalize() === "Résumé_notes.txt".normalize(), `${notes.suggestedFilename()}: ` + structure.split("\n").slice(0, 4).join(" | "));
  await page.locator("#structure").screenshot({ path: join(shots, "mime.png") });
  await page.goto(messageUrl);
  await keyboardWalk(page, "a message");
  await tabsByKeyboard(page, messageUrl);
  // What the functions wrote, one click from the trace: the webhook as the sink received it,
  // and a stored object with its metadata.
  await page.click("#trace a[href*='/webhooks/']");
  const webhookFile = await page.locator("main").innerText();
  check("the webhook request: headers, signature, body", webhookFile.includes("webhook-signature") && webhookFile.includes('"signatureValid": true'));
  await page.screenshot({ path: join(shots, "webhook.png"), fullPage: true });
  await page.goto(messageUrl);
  await page.click("#trace a[href$='message.json']");
  const objectFile = await page.locator("main").innerText();
  check("a stored object with its metadata", objectFile.includes("Object metadata") && objectFile.includes('"schema": "mailroom.email/1"'));
  await page.goto(messageUrl);
  await page.click("#trace a[href*='/sns/']");
  const published = await page.locator("main").innerText();
  check("the SNS publication, alone, with its attributes", published.includes('"sender_domain"') && (published.match(/"messageId"/g) || []).length === 1, published.slice(0, 120).replace(/\n/g, " "));
  await page.fill("#policy", '{"spam": ["PASS"], "recipient": [{"suffix": "@example.com"}]}');
  await page.click("#policy-tester button");
  await page.waitForSelector("p.verdict");
  const yes = await page.locator("section#policy-tester").innerText();
  await page.fill("#policy", '{"spam": ["FAIL"]}');
  await page.click("#policy-tester button");
  await page.waitForSelector("p.verdict");
  const no = await page.locator("section#policy-tester").innerText();
  check("the filter-policy tester: one policy takes the publication, another filters it out", yes.includes("delivered") && no.includes("filtered out") && no.includes('spam: "PASS" matches none of'));
  await page.screenshot({ path: join(shots, "sns.png"), fullPage: true });
  await axe("an SNS publication and the filter-policy tester");
  await page.goto(page.url());
  await keyboardWalk(page, "a state file (an SNS publication)");
  // Redeliver now: the api function again, with the exact event, and the webhook it sent.
  await page.goto(messageUrl);
  await page.click("text=Redeliver now");
  await page.waitForSelector("h1");
  const redelivered = await page.locator("main").innerText();
  check("redeliver now: the api function runs again and the webhook is delivered", /ApiFunction invoked again/.test(redelivered) && redelivered.includes('"status": "delivered"') && redelivered.includes("signature valid"), redelivered.split("\n").slice(1, 4).join(" "));
  await page.screenshot({ path: join(shots, "redeliver.png"), fullPage: true });
  await axe("an invocation's result");
  for (const bad of ["/state/..%2F..%2Fetc%2Fpasswd", "/state/%2e%2e/%2e%2e/etc/passwd", "/state/webhook-secret", "/state/s3/..%2F..%2F..%2Fetc%2Fhostname"]) {
    const st = await rawGet(bad);
    check(`no file outside the state dir, nor the signing secret: ${bad}`, st === 404, `HTTP ${st}`);
  }

  // 4. Hostile HTML: no script, no network, no markup from headers.
  const beforeHostile = beaconHits.length;
  await smtp("mallory@example.org", ["support@example.com"], hostile);
  await page.goto(UI + "/");
  await page.waitForSelector("text=hostile");
  check("list: markup in a Subject is text", (await page.locator("#rows img").count()) === 0);
  await page.click("text=hostile");
  await page.waitForSelector("iframe");
  await page.waitForTimeout(1500);
  const frame = page.frames().find((f) => f.url().includes("/html"));
  check("hostile: the mail HTML is in a frame", !!frame);
  check("hostile: the page title is untouched", !(await page.title()).includes("PWNED"), await page.title());
  check("hostile: no dialog opened", dialogs.length === 0, dialogs.join(","));
  check("hostile: header markup is text on the page", (await page.locator("main img, main script").count()) === 0);
  await frame.click("#js").catch(() => {});
  await page.waitForTimeout(500);
  const leaked = beaconHits.slice(beforeHostile);
  check("hostile: the mail's HTML reached nothing on the network", leaked.length === 0, leaked.join(", ") || "0 requests");
  await page.screenshot({ path: join(shots, "hostile.png"), fullPage: true });
  // The control: asking for remote images lets exactly those through, so the beacon works.
  await page.click("text=Load remote images");
  await page.waitForTimeout(1500);
  const asked = beaconHits.slice(beforeHostile);
  check(
    "hostile: remote images load only when asked, and still no script",
    asked.includes("/remote-image.gif") && !asked.some((u) => /script|onerror|javascript|refresh|form|object/.test(u)),
    asked.join(", "),
  );

  // 5. The Mailpit-compatible API through the mailpit-api client.
  const mailpit = new MailpitClient(UI);
  const list = await mailpit.listMessages();
  check("mailpit-api listMessages", list.total === 4 && list.messages.length === 4, `total ${list.total}`);
  const search = await mailpit.searchMessages({ query: "subject:quarterly" });
  check("mailpit-api searchMessages", search.messages_count === 1 && search.messages[0].Subject === "Quarterly invoice");
  const latest = await mailpit.getMessageSummary();
  check("mailpit-api getMessageSummary(latest)", latest.Subject.includes("hostile") && latest.HTML.includes("Totally normal"));
  const att = (await mailpit.searchMessages({ query: "has:attachment" })).messages[0];
  const full = await mailpit.getMessageSummary(att.ID);
  const blob = await mailpit.getMessageAttachment(att.ID, full.Attachments[0].PartID);
  check("mailpit-api getMessageAttachment", blob.size === full.Attachments[0].Size, `${full.Attachments[0].FileName}: ${blob.size} bytes, ${blob.type}`);
  const headers = await mailpit.getMessageHeaders(att.ID);
  check("mailpit-api getMessageHeaders", Array.isArray(headers["Subject"]) && "X-SES-Spam-Verdict" in headers);
  const source = await mailpit.getMessageSource(att.ID);
  check("mailpit-api getMessageSource", source.includes("Content-Type: multipart/mixed"));
  const text = await mailpit.renderMessageText(search.messages[0].ID);
  check("mailpit-api renderMessageText", text.includes("Hello from the browser test"));
  const html = await mailpit.renderMessageHTML("latest");
  check("mailpit-api renderMessageHTML(latest)", html.includes("Totally normal newsletter"));
  setTimeout(() => smtp("carla@example.org", ["support@example.com"], plain("Password reset")), 300);
  const waited = await mailpit.waitForMessage({ query: "subject:\"password reset\"" }, { timeout: 10000, interval: 100 });
  check("mailpit-api waitForMessage", waited.Subject === "Password reset");
  await mailpit.deleteMessagesBySearch({ query: "disposition:refused" });
  check("mailpit-api deleteMessagesBySearch", (await mailpit.searchMessages({ query: "disposition:refused" })).messages_count === 0);
  await mailpit.deleteMessages({ IDs: [waited.ID] });
  check("mailpit-api deleteMessages(IDs)", (await mailpit.listMessages()).total === 3);

  // 6. The long-poll for test suites.
  const t0 = Date.now();
  setTimeout(() => smtp("carla@example.org", ["support@example.com"], plain("Long poll")), 400);
  const polled = await fetch(UI + "/api/wait?q=" + encodeURIComponent("subject:\"long poll\"") + "&timeout=20").then((r) => r.json());
  check("api/wait answers when the message arrives", polled.subject === "Long poll", `${Date.now() - t0} ms`);

  // 7. State changes need this run's token.
  const forged = await fetch(UI + "/delete", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "token=guess" });
  check("a POST without this run's token is refused", forged.status === 403 && (await mailpit.listMessages()).total === 4);
  const rebound = await rawGet("/api/messages", { host: "attacker.example" });
  check("a request naming another Host is refused (DNS rebinding)", rebound === 403, `HTTP ${rebound}`);

  // 8. Replay after a change: the same message with DenySenders set is stopped at the gate,
  // asked for by keyboard alone.
  await page.goto(UI + "/?q=" + encodeURIComponent("subject:quarterly"));
  await page.click("text=Quarterly invoice");
  await page.waitForSelector("#trace");
  const compared = await replayByKeyboard(page, page.url(), "DenySenders=carla@example.org");
  check("replay: the diff marks what changed", compared.changed > 0 && /accepted stopped/.test(compared.first), `${compared.changed} rows changed; ${compared.first}`);
  await page.screenshot({ path: join(shots, "replay.png"), fullPage: true });
  await axe("a replay's comparison");
  await page.goto(page.url());
  await keyboardWalk(page, "a replay's comparison");

  // Forward, through a replay with a forward map: the message sent, SES's rules checked on it,
  // and its headers beside the original's.
  await page.goto(UI + "/?q=" + encodeURIComponent("subject:quarterly -disposition:stopped"));
  await page.click("text=Quarterly invoice");
  await page.click("text=Replay with other parameters");
  await page.fill("#params", "ForwardMap=@example.com=you@gmail.test");
  await page.click("text=Run it again and compare");
  await page.waitForSelector("table.compare");
  await page.click("table.compare thead a >> text=After");
  await page.click("#trace a[href*='-forward.eml']");
  await page.waitForSelector("text=Headers: original and sent");
  const forwarded = await page.locator("main").innerText();
  check("forward: the message sent passes SES's rules, its headers beside the original's", forwarded.includes("SES would accept it") && /From\s*changed/.test(forwarded), forwarded.match(/SES's rules[^\n]*\n[^\n]*/)?.[0]);
  await page.screenshot({ path: join(shots, "forward.png"), fullPage: true });
  await axe("a forwarded message");

  // Bounce, through a replay where the recipient is no mailbox: the DSN SES would mail.
  await page.goto(UI + "/?q=" + encodeURIComponent("subject:quarterly -disposition:stopped"));
  await page.click("text=Quarterly invoice >> nth=-1");
  await page.click("text=Replay with other parameters");
  await page.fill("#params", "Mailboxes=someone-else@example.com");
  await page.click("text=Run it again and compare");
  await page.waitForSelector("table.compare");
  const bounceRow = await page.locator("table.compare tbody tr").first().innerText();
  await page.click("table.compare thead a >> text=After");
  await page.click("#trace a[href*='-bounce-']");
  await page.waitForSelector("text=The message");
  const dsn = await page.locator("main").innerText();
  check("bounce: the replay bounces, and the DSN reads as a message", /bounced/.test(bounceRow) && dsn.includes("support@example.com") && /delivery-status|Delivery Status/i.test(dsn), bounceRow.replace(/\s+/g, " "));
  await page.screenshot({ path: join(shots, "bounce.png"), fullPage: true });

  // A webhook endpoint that refuses connections: the attempt fails, the next one is queued on
  // the retry schedule, and the queued job is one click away.
  await page.goto(UI + "/?q=" + encodeURIComponent("subject:quarterly -disposition:stopped"));
  await page.click("text=Quarterly invoice >> nth=-1");
  await page.click("text=Replay with other parameters");
  await page.fill("#params", `WebhookUrl=http://127.0.0.1:${closedPort}/hook`);
  await page.click("text=Run it again and compare");
  await page.waitForSelector("table.compare");
  await page.click("table.compare thead a >> text=After");
  const retrying = await page.locator("dl.facts").innerText();
  const apiAnswer = await page.locator("li.action", { hasText: "ApiFunction" }).innerText();
  check("webhook down: the record says retrying, the answer gives the next attempt and its delay", /Webhook\s*retrying/.test(retrying) && apiAnswer.includes('"status": "scheduled"') && apiAnswer.includes('"delay_secs"'), apiAnswer.match(/"reason": "[^"]*"/)?.[0]);
  await page.click("li.action:has-text('ApiFunction') a[href*='/sqs/']");
  const job = await page.locator("main").innerText();
  check("webhook down: the queued retry job, with its attempt number", job.includes('"attempt": 2'), job.slice(0, 80).replace(/\n/g, " "));

  // A webhook endpoint that answers 503 once, then 200: every attempt on one timeline, the
  // retry schedule with attempt 2 queued, and that attempt run from the page.
  const hookAttempts = [];
  const flaky = createServer((req, res) => {
    hookAttempts.push(req.headers["x-mailroom-attempt"]);
    req.resume();
    req.on("end", () => {
      const first = hookAttempts.length === 1;
      res.writeHead(first ? 503 : 200, { "content-type": "text/plain" });
      res.end(first ? "busy" : "ok");
    });
  });
  await new Promise((r) => flaky.listen(0, "127.0.0.1", r));
  await page.goto(UI + "/?q=" + encodeURIComponent("subject:quarterly -disposition:stopped"));
  await page.click("text=Quarterly invoice >> nth=-1");
  await page.click("text=Replay with other parameters");
  await page.fill("#params", `WebhookUrl=http://127.0.0.1:${flaky.address().port}/hook`);
  await page.click("text=Run it again and compare");
  await page.waitForSelector("table.compare");
  await page.click("table.compare thead a >> text=After");
  const firstTry = await page.locator(".delivery").innerText();
  const queued = await page.locator("ol.schedule li.queued").innerText().catch(() => "");
  check("webhook attempts: the first, answered 503, on the timeline; attempt 2 queued on the schedule", /: 1 attempt\b/.test(firstTry) && firstTry.includes("HTTP 503") && /^2\b/.test(queued) && firstTry.includes("Run attempt 2 now"), queued.replace(/\s+/g, " "));
  await page.locator(".delivery").screenshot({ path: join(shots, "webhook-queued.png") });
  await page.click("text=Run attempt 2 now");
  await page.waitForSelector("text=retry job run now");
  const ran = await page.locator("main").innerText();
  check("webhook attempts: attempt 2, run now, reaches the endpoint with its attempt number", ran.includes("HTTP 200") && hookAttempts.join(",") === "1,2", `attempts sent: ${hookAttempts.join(",")}`);
  await page.click("text=Back to the trace");
  const secondTry = await page.locator(".delivery").innerText();
  const facts = await page.locator("dl.facts").innerText();
  check("webhook attempts: both on one timeline with their latency, delivered, and the record follows", /: 2 attempts/.test(secondTry) && /\d+ ms/.test(secondTry) && (await page.locator("ol.schedule li.delivered").count()) === 1 && /Webhook\s*delivered/.test(facts) && !secondTry.includes("Run attempt"), secondTry.split("\n").slice(0, 8).join(" | "));
  await page.locator(".delivery").screenshot({ path: join(shots, "webhook-attempts.png") });
  const withAttempts = page.url();
  await page.click(".delivery table.attempts a >> nth=0");
  const detail = await page.evaluate(() => document.querySelector("main").textContent);
  check("webhook attempts: each in full, request headers, answer and signature", detail.includes("x-mailroom-attempt: 1") && detail.includes("x-mailroom-attempt: 2") && detail.includes("busy") && (await page.locator("span.badge.good", { hasText: "valid" }).count()) === 2);
  await axe("a webhook's attempts");
  // From the top of the page: the link's fragment would start Tab after the header.
  await page.goto(page.url().split("#")[0]);
  await keyboardWalk(page, "a webhook's attempts");
  flaky.close();

  // The api function's exact event, saved beside the template for `sam local invoke`.
  await page.goto(withAttempts);
  const apiAction = page.locator("li.action", { hasText: "ApiFunction" });
  await apiAction.locator("details.event summary").click();
  await apiAction.locator("input[name=name]").fill("api-from-inspector");
  await apiAction.locator("text=Save event").click();
  await page.waitForSelector("text=Event saved");
  const savedPage = await page.locator("main").innerText();
  const savedFile = join(serve.project, "events/lambda/api-from-inspector.json");
  const saved = existsSync(savedFile) ? JSON.parse(readFileSync(savedFile, "utf8")) : {};
  check("save event: written under the project's events/lambda/, with the sam local invoke line", savedPage.includes("sam local invoke ApiFunction -e events/lambda/api-from-inspector.json") && saved.Records?.[0]?.ses?.mail?.messageId === withAttempts.split("/").pop().split("#")[0], savedFile);
  await page.screenshot({ path: join(shots, "saved-event.png"), fullPage: true });

  // Replay after an edit of template.yaml, without a restart: the receive rule disabled.
  const original = readFileSync(serve.template, "utf8");
  writeFileSync(serve.template, original.replace("Name: receive\n        Enabled: true", "Name: receive\n        Enabled: false"));
  await page.goto(UI + "/?q=" + encodeURIComponent("subject:quarterly -disposition:stopped"));
  await page.click("text=Quarterly invoice >> nth=-1");
  await page.click("text=Replay with other parameters");
  const note = await page.locator("details.replay").innerText();
  await page.fill("#params", "");
  await page.click("text=Run it again and compare");
  await page.waitForSelector("table.compare");
  const receiveRow = await page.locator("table.compare tbody tr", { hasText: "rule receive" }).first().innerText();
  const header = await page.locator("p.count").innerText();
  check("replay after editing template.yaml: the page says it changed, the diff shows the rule disabled", note.includes("changed since serve started") && receiveRow.includes("not run: disabled") && header.includes("template.yaml"), receiveRow.replace(/\s+/g, " "));
  await page.screenshot({ path: join(shots, "replay-edited.png"), fullPage: true });
  writeFileSync(serve.template, original);

  // 9. Inject from the form, by keyboard alone: composed, with a verdict, as deliver takes it.
  await page.goto(UI + "/inject");
  await keyboardWalk(page, "the inject form");
  await injectByKeyboard(page, UI);
  await page.screenshot({ path: join(shots, "inject.png"), fullPage: true });
  await axe("the inject form");
  await submitInjectByKeyboard(page);

  await keyboardWalkCatches(page);

  // The inbox after all of the above, as the README shows it.
  await page.goto(UI + "/");
  await page.waitForSelector("#live:not([hidden])");
  const table = await page.locator("table.messages").boundingBox();
  await page.screenshot({ path: join(shots, "inbox.png"), clip: { x: 0, y: 0, width: 1360, height: Math.ceil(table.y + table.height + 24) } });
} catch (e) {
  check("browser test ran to the end", false, e.stack);
} finally {
  await browser.close();
  serve.stop();
  beacon.close();
}

finish();
