"""Public reply and signature parsers side by side with ours, on the labelled corpus.

Usage: reply_peers.py REPLY_SCORE_BINARY [--keep DIR]

Installs each peer into a throwaway directory (a venv for PyPI, a node prefix for npm; `--keep DIR`
reuses one), runs every peer that installed on every item of tests/corpora/reply/talon-forge.json,
and hands their outputs to the `reply_score` example (`--peers FILE`), which scores them with the
same code that scores ours and prints one table. A peer that does not install or import is listed
with the reason and left out; nothing is made up for it.

Peers and the outputs taken:
- talon (PyPI): quotations.extract_from_plain for the reply; signature.bruteforce.extract_signature
  for the signature (the learned extractor needs a trained model download, so it is not run).
- mail-parser-reply (PyPI): the first reply's `content` (no headers, signature kept) and its
  `signatures`, with every language it supports.
- quotequail (PyPI): `unwrap`'s `text_top`, else the unquoted parts of `quote`. No signatures.
- email_reply_parser (PyPI, zapier): `parse_reply`; signature fragments of `read`.
- planer (npm): `extractFrom(text, "text/plain")`. No signatures.
- email-reply-parser (npm, Crisp): `getVisibleText()`; its signature fragments.
- node-email-reply-parser (npm): `getVisibleText()`; its signature fragments.
"""

import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests/corpora/reply/talon-forge.json")

PYPI = ["talon", "mail-parser-reply", "quotequail", "email-reply-parser"]
NPM = ["planer", "email-reply-parser", "node-email-reply-parser"]

PY_DRIVER = r'''
import json, sys, importlib.metadata as md
items = json.load(open(sys.argv[1]))
out, errors = {}, {}

def run(name, version_of, reply, signature):
    try:
        version = md.version(version_of)
        tool = {"version": version, "reply": reply is not None, "signature": signature is not None,
                "items": {}}
        for it in items:
            text = it["input"]
            got = {}
            try:
                got["reply"] = reply(text) if reply else None
            except Exception as e:
                got["reply"], got["error"] = None, repr(e)[:200]
            try:
                got["signature"] = signature(text, it.get("sender", "")) if signature else None
            except Exception as e:
                got["signature"], got["error"] = None, repr(e)[:200]
            tool["items"][it["corpus"] + "/" + it["id"]] = got
        out[name] = tool
    except Exception as e:
        errors[name] = repr(e)[:300]

def talon_tools():
    from talon import quotations
    from talon.signature.bruteforce import extract_signature
    run("talon quotations (PyPI)", "talon", quotations.extract_from_plain, None)
    run("talon bruteforce signature (PyPI)", "talon", None,
        lambda t, s: extract_signature(t)[1])

def mpr():
    from mailparser_reply import EmailReplyParser
    langs = ["en", "de", "fr", "it", "ja", "pl", "sv", "da", "nl", "cs", "es", "ko", "zh"]
    parser = EmailReplyParser(languages=langs)
    def first(t):
        replies = parser.read(t).replies
        return replies[0] if replies else None
    run("mail-parser-reply (PyPI)", "mail-parser-reply",
        lambda t: first(t).content if first(t) else "",
        lambda t, s: (first(t).signatures or None) if first(t) else None)

def quotequail_tool():
    import quotequail
    def reply(t):
        unwrapped = quotequail.unwrap(t)
        if unwrapped and "text_top" in unwrapped:
            return unwrapped["text_top"]
        return "\n".join(part for shown, part in quotequail.quote(t) if shown)
    run("quotequail (PyPI)", "quotequail", reply, None)

def zapier():
    from email_reply_parser import EmailReplyParser
    def signature(t, s):
        sig = [f.content for f in EmailReplyParser.read(t).fragments if f.signature]
        return "\n".join(sig) or None
    run("email_reply_parser (PyPI, zapier)", "email-reply-parser", EmailReplyParser.parse_reply,
        signature)

for name, setup in [("talon", talon_tools), ("mail-parser-reply", mpr),
                    ("quotequail", quotequail_tool), ("email_reply_parser", zapier)]:
    try:
        setup()
    except Exception as e:
        errors[name] = repr(e)[:300]
json.dump({"tools": out, "errors": errors}, sys.stdout)
'''

NODE_DRIVER = r'''
const fs = require("fs");
const items = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const out = {}, errors = {};
function version(pkg) {
  // Read from node_modules: some packages' `exports` hide their package.json from require.
  const file = require("path").join(__dirname, "node_modules", pkg, "package.json");
  return JSON.parse(fs.readFileSync(file, "utf8")).version;
}
function run(name, pkg, reply, signature) {
  try {
    const tool = {version: version(pkg), reply: !!reply, signature: !!signature, items: {}};
    for (const it of items) {
      const got = {};
      try { got.reply = reply ? reply(it.input) : null; } catch (e) { got.reply = null; got.error = String(e).slice(0, 200); }
      try { got.signature = signature ? signature(it.input) : null; } catch (e) { got.signature = null; got.error = String(e).slice(0, 200); }
      tool.items[it.corpus + "/" + it.id] = got;
    }
    out[name] = tool;
  } catch (e) { errors[name] = String(e).slice(0, 300); }
}
function sigOf(fragments) {
  const s = fragments.filter(f => f.isSignature()).map(f => f.getContent()).join("\n");
  return s.trim() ? s : null;
}
try {
  const planer = require("planer");
  run("planer (npm)", "planer", t => planer.extractFrom(t, "text/plain"), null);
} catch (e) { errors["planer (npm)"] = String(e).slice(0, 300); }
try {
  // An ES module build: the class is its default export.
  const erp = require("email-reply-parser");
  const EmailReplyParser = erp.default || erp;
  run("email-reply-parser (npm)", "email-reply-parser",
      t => new EmailReplyParser().read(t).getVisibleText(),
      t => sigOf(new EmailReplyParser().read(t).getFragments()));
} catch (e) { errors["email-reply-parser (npm)"] = String(e).slice(0, 300); }
try {
  const replyParser = require("node-email-reply-parser");
  run("node-email-reply-parser (npm)", "node-email-reply-parser",
      t => replyParser(t).getVisibleText(),
      t => sigOf(replyParser(t).getFragments()));
} catch (e) { errors["node-email-reply-parser (npm)"] = String(e).slice(0, 300); }
process.stdout.write(JSON.stringify({tools: out, errors}));
'''


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def install(work):
    failed = {}
    venv = os.path.join(work, "venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        r = sh([sys.executable, "-m", "venv", venv])
        if r.returncode:
            failed["venv"] = r.stderr[-300:]
    for pkg in PYPI:
        r = sh([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", pkg])
        if r.returncode:
            failed[pkg + " (PyPI)"] = (r.stderr or r.stdout).strip().splitlines()[-1:]
    node = os.path.join(work, "node")
    os.makedirs(node, exist_ok=True)
    for pkg in NPM:
        r = sh(["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", node, pkg])
        if r.returncode:
            failed[pkg + " (npm)"] = (r.stderr or r.stdout).strip().splitlines()[-1:]
    return py, node, failed


def drive(cmd, cwd=None, env=None):
    r = sh(cmd, cwd=cwd, env=env)
    if r.returncode:
        return {"tools": {}, "errors": {" ".join(cmd[:2]): r.stderr[-500:]}}
    return json.loads(r.stdout)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    keep = sys.argv[sys.argv.index("--keep") + 1] if "--keep" in sys.argv else None
    with tempfile.TemporaryDirectory(prefix="reply-peers-") as tmp:
        work = keep or tmp
        os.makedirs(work, exist_ok=True)
        py, node, failed = install(work)
        drivers = os.path.join(tmp, "drivers")
        os.makedirs(drivers, exist_ok=True)
        py_driver = os.path.join(drivers, "peers.py")
        node_driver = os.path.join(node, "peers.js")
        with open(py_driver, "w") as f:
            f.write(PY_DRIVER)
        with open(node_driver, "w") as f:
            f.write(NODE_DRIVER)
        results = [drive([py, py_driver, CORPUS]), drive(["node", node_driver, CORPUS], cwd=node)]
        tools, errors = {}, dict(failed)
        for r in results:
            tools.update(r["tools"])
            errors.update(r["errors"])
        predictions = os.path.join(tmp, "predictions.json")
        with open(predictions, "w") as f:
            json.dump(tools, f)
        for name, why in sorted(errors.items()):
            print(f"not run: {name}: {why}")
        for name, tool in sorted(tools.items()):
            broken = sum(1 for v in tool["items"].values() if "error" in v)
            if broken:
                print(f"{name}: raised on {broken} items (scored as empty output)")
        sys.stdout.flush()
        r = subprocess.run([binary, "--peers", predictions])
        sys.exit(r.returncode)


if __name__ == "__main__":
    main()
