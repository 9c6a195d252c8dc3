"""Differential test: `mailroom parse` against Python's `email` package (policy.default).

Usage: differential.py [--bless] MAILROOM_BINARY TRIAGE_FILE BASELINE_FILE DIR...

Every message under the DIRs is parsed by both. Compared per message: subject, addresses
(From, To, Cc), text, html, attachment names, attachment SHA-256. Prints the agreement per
field and every disagreement class (`field:kind`) next to the figures recorded in BASELINE_FILE
(JSON: messages, messages parsed by both, agreement per field, count per class).

Exits 1 on a crash, a hang (a per-message timeout), a class with no `### field:kind` heading in
TRIAGE_FILE, a class counted more often than recorded, a field agreeing less often than
recorded, or fewer messages (or fewer parsed by both) than recorded. Better figures pass and
say so; `--bless` writes this run's figures to BASELINE_FILE (not after a crash, a hang or an
untriaged class).
"""

import argparse
import email
import email.policy
import hashlib
import json
import os
import re
import subprocess
import sys

TIMEOUT_S = 10
FIELDS = ["subject", "addresses", "text", "html", "attachment names", "attachment sha256"]


def python_view(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.default)

    def header(name):
        value = msg.get(name)
        return None if value is None else str(value)

    def addresses(name):
        out = []
        for value in msg.get_all(name) or []:
            for a in getattr(value, "addresses", ()):
                if a.addr_spec and a.addr_spec != "<>":
                    out.append(a.addr_spec.lower())
        return out

    def body(kind):
        part = msg.get_body(preferencelist=(kind,))
        if part is None:
            return None
        try:
            return part.get_content()
        except (LookupError, UnicodeError, AssertionError, AttributeError):
            payload = part.get_payload(decode=True) or b""
            return payload.decode("utf-8", "replace")

    names, digests = [], []
    for part in msg.iter_attachments():
        names.append(part.get_filename())
        if part.is_multipart() or part.get_content_maintype() == "message":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else payload
            data = inner.as_bytes() if hasattr(inner, "as_bytes") else b""
        else:
            data = part.get_payload(decode=True) or b""
        digests.append(hashlib.sha256(data).hexdigest())
    return {
        "subject": header("subject"),
        "addresses": addresses("from") + addresses("to") + addresses("cc"),
        "text": body("plain"),
        "html": body("html"),
        "attachment names": names,
        "attachment sha256": digests,
    }


def mailroom_view(model):
    return {
        "subject": model["subject"],
        "addresses": [a["address"].lower() for key in ("from", "to", "cc") for a in model[key]],
        "text": None if model["textFromHtml"] else model["text"],
        "html": model["html"],
        "attachment names": [a["filename"] for a in model["attachments"]],
        "attachment sha256": [a["sha256"] for a in model["attachments"]],
    }


def squash(value):
    return re.sub(r"\s+", " ", value).strip() if isinstance(value, str) else value


def classify(field, ours, theirs):
    """None when both agree, else the kind of disagreement."""
    if field in ("text", "html"):
        ours = ours.replace("\r\n", "\n").rstrip() if ours else None
        theirs = theirs.replace("\r\n", "\n").rstrip() if theirs else None
    if ours == theirs:
        return None
    if not ours and theirs:
        return "only-python"
    if ours and not theirs:
        return "only-mailroom"
    if not ours and not theirs:
        return None
    both_text = isinstance(ours, str) and isinstance(theirs, str)
    if both_text and squash(ours) == squash(theirs):
        return "whitespace"
    if both_text and theirs in ours:
        return "mailroom-longer"
    if both_text and ours in theirs:
        return "python-longer"
    if isinstance(ours, list) and isinstance(theirs, list):
        if sorted(map(str, ours)) == sorted(map(str, theirs)):
            return "order"
        if len(ours) > len(theirs):
            return "mailroom-more"
        if len(ours) < len(theirs):
            return "python-more"
        if field == "attachment names" and all(
            a is None or b is None or a == b for a, b in zip(ours, theirs)
        ):
            return "name-missing"
    return "differs"


def triaged(path):
    with open(path, encoding="utf-8") as f:
        return set(re.findall(r"^### (\S+)", f.read(), re.M))


def empty_result(messages):
    return {"messages": messages, "compared": 0, "agree": dict.fromkeys(FIELDS, 0), "classes": {}}


def count(result, cls):
    result["classes"][cls] = result["classes"].get(cls, 0) + 1


def tally(result, ours, theirs):
    """Counts one message parsed by both into result; returns its disagreement classes."""
    result["compared"] += 1
    found = []
    for field in FIELDS:
        kind = classify(field, ours[field], theirs[field])
        if kind is None:
            result["agree"][field] += 1
        else:
            found.append(f"{field.replace(' ', '-')}:{kind}")
            count(result, found[-1])
    return found


def gate(baseline, result, known):
    """Rows (name, recorded, now, verdict) of a run against the recorded figures.

    Agreement and corpus size must not fall, class counts must not rise: a lost text body is
    only a higher count of a class that is already triaged, so naming the classes is not enough.
    """
    rows = [("messages", baseline["messages"], result["messages"], +1),
            ("parsed by both", baseline["compared"], result["compared"], +1)]
    rows += [(f"agree {field}", baseline["agree"].get(field, 0), result["agree"][field], +1)
             for field in FIELDS]
    rows += [(cls, baseline["classes"].get(cls, 0), result["classes"].get(cls, 0), -1)
             for cls in sorted(set(baseline["classes"]) | set(result["classes"]))]
    out = []
    for name, recorded, now, good in rows:
        if ":" in name and now and name not in known:
            verdict = "NEW"
        elif (now - recorded) * good < 0:
            verdict = "WORSE"
        elif now != recorded:
            verdict = "better"
        else:
            verdict = "ok"
        out.append((name, recorded, now, verdict))
    return out


def conclusion(rows, problems, baseline_path, triage_path):
    """The exit status and the last line of a run."""
    worse = [name for name, _, _, verdict in rows if verdict in ("NEW", "WORSE")]
    if problems or worse:
        return 1, (f"differential: FAIL: {len(problems)} crash(es) or hang(s); worse than "
                   f"recorded: {', '.join(worse) or 'nothing'}. Fix the cause; if the change is "
                   f"right (corpus, triaged model change), say why in {triage_path} and run "
                   f"scripts/differential --bless")
    if any(verdict == "better" for *_, verdict in rows):
        return 0, (f"differential: pass, better than recorded: update the baseline with "
                   f"scripts/differential --bless and commit {baseline_path}")
    return 0, f"differential: pass, same figures as {baseline_path}"


def print_summary(rows, baseline_path, notes):
    print(f"{'':<34} {'recorded':>8} {'now':>6}  verdict (recorded: {baseline_path})")
    for name, recorded, now, verdict in rows:
        note = f"  {notes[name]}" if name in notes else ""
        print(f"  {name:<32} {recorded:>8} {now:>6}  {verdict}{note}")


def compare_file(binary, path, result):
    """Counts one message into result: its classes and an example note, or a crash or hang."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        run = subprocess.run([binary, "parse", "--compact", path], capture_output=True,
                             timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return [], f"HANG (> {TIMEOUT_S} s): {path}"
    if run.returncode not in (0, 1) or (run.returncode == 1 and not run.stderr.startswith(b"mailroom: ")):
        return [], f"CRASH (exit {run.returncode}): {path}: {run.stderr[-300:]!r}"
    if run.returncode == 1:
        # A typed refusal (not MIME, empty): counts as a class of its own.
        count(result, "message:mailroom-refused")
        return ["message:mailroom-refused"], path
    ours = mailroom_view(json.loads(run.stdout))
    try:
        theirs = python_view(raw)
    except Exception as e:  # noqa: BLE001 - any failure of the reference parser is a class
        count(result, "message:python-failed")
        return ["message:python-failed"], f"{path} ({type(e).__name__})"
    return tally(result, ours, theirs), path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bless", action="store_true",
                        help="write this run's figures to BASELINE_FILE")
    parser.add_argument("binary")
    parser.add_argument("triage")
    parser.add_argument("baseline")
    parser.add_argument("dirs", nargs="+")
    args = parser.parse_args()
    files = sorted(
        os.path.join(root, name)
        for d in args.dirs
        for root, _, names in os.walk(d)
        for name in names
        if not name.startswith(".") and not name.endswith((".json", ".failed"))
    )
    result = empty_result(len(files))
    notes, problems = {}, []
    for path in files:
        found, note = compare_file(args.binary, path, result)
        if note.startswith(("HANG", "CRASH")):
            problems.append(note)
        for cls in found:
            notes.setdefault(cls, f"e.g. {note}")
    for field in FIELDS:
        pct = 100.0 * result["agree"][field] / result["compared"] if result["compared"] else 0.0
        notes[f"agree {field}"] = f"{pct:.1f} % of parsed by both"
    print(f"differential: {result['messages']} messages, {result['compared']} parsed by both")
    try:
        with open(args.baseline, encoding="utf-8") as f:
            baseline = json.load(f)
    except FileNotFoundError:
        if not args.bless:
            sys.exit(f"no baseline {args.baseline}: record one with scripts/differential --bless")
        baseline = empty_result(0)
    rows = gate(baseline, result, triaged(args.triage))
    print_summary(rows, args.baseline, notes)
    for p in problems:
        print(p)
    new = [name for name, _, _, verdict in rows if verdict == "NEW"]
    if new:
        print(f"{len(new)} new disagreement class(es): triage them in {args.triage}")
    if args.bless and not (problems or new):
        with open(args.baseline, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2, sort_keys=True)
            f.write("\n")
        print(f"differential: wrote this run's figures to {args.baseline}; review and commit it")
        return 0
    status, line = conclusion(rows, problems, args.baseline, args.triage)
    print(line)
    return status


if __name__ == "__main__":
    sys.exit(main())
