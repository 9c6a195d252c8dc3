"""Differential test: `mailroom parse` against Python's `email` package (policy.default).

Usage: differential.py MAILROOM_BINARY TRIAGE_FILE DIR...

Every message under the DIRs is parsed by both. Compared per message: subject, addresses
(From, To, Cc), text, html, attachment names, attachment SHA-256. Prints the agreement per
field, then every disagreement class with its count. A class is `field:kind`; every class must
be explained in TRIAGE_FILE (a `### field:kind` heading). Exits 1 on a crash, a hang (a
per-message timeout), or a class the triage file does not explain.
"""

import collections
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


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    binary, triage, dirs = sys.argv[1], sys.argv[2], sys.argv[3:]
    files = sorted(
        os.path.join(root, name)
        for d in dirs
        for root, _, names in os.walk(d)
        for name in names
        if not name.startswith(".") and not name.endswith((".json", ".failed"))
    )
    agree = collections.Counter()
    classes = collections.defaultdict(list)
    problems, compared = [], 0
    for path in files:
        with open(path, "rb") as f:
            raw = f.read()
        try:
            run = subprocess.run([binary, "parse", "--compact", path], capture_output=True,
                                 timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            problems.append(f"HANG (> {TIMEOUT_S} s): {path}")
            continue
        if run.returncode not in (0, 1) or (run.returncode == 1 and not run.stderr.startswith(b"mailroom: ")):
            problems.append(f"CRASH (exit {run.returncode}): {path}: {run.stderr[-300:]!r}")
            continue
        if run.returncode == 1:
            # A typed refusal (not MIME, empty): counts as a class of its own.
            classes["message:mailroom-refused"].append(path)
            continue
        ours = mailroom_view(json.loads(run.stdout))
        try:
            theirs = python_view(raw)
        except Exception as e:  # noqa: BLE001 - any failure of the reference parser is a class
            classes["message:python-failed"].append(f"{path} ({type(e).__name__})")
            continue
        compared += 1
        for field in FIELDS:
            kind = classify(field, ours[field], theirs[field])
            if kind is None:
                agree[field] += 1
            else:
                classes[f"{field.replace(' ', '-')}:{kind}"].append(path)

    print(f"differential: {len(files)} messages, {compared} parsed by both")
    for field in FIELDS:
        pct = 100.0 * agree[field] / compared if compared else 0.0
        print(f"  {field:<18} {agree[field]:>4}/{compared} agree ({pct:.1f} %)")
    known = triaged(triage)
    new = sorted(set(classes) - known)
    print("disagreement classes (see the triage file):")
    for cls in sorted(classes):
        mark = "NEW " if cls in new else ""
        print(f"  {mark}{cls}: {len(classes[cls])}, e.g. {classes[cls][0]}")
    for p in problems:
        print(p)
    if new:
        print(f"{len(new)} new disagreement class(es): triage them in {triage}")
    sys.exit(1 if problems or new else 0)


if __name__ == "__main__":
    main()
