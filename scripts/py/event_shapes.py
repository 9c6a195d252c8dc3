"""The sample events in events/ have the shapes SES, SNS and SQS really deliver (docs/ses.md §1,
§3.1): checked on every run of scripts/test.d/template.

    event_shapes.py [ROOT]      ROOT: the repository (default: the one holding this script)
"""

import glob
import json
import os
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

bad = []
def need(ok, f, msg):
    if not ok:
        bad.append(f"{f}: {msg}")
def ses_parts(f, mail, receipt):
    need(mail["timestamp"].endswith("Z"), f, "mail.timestamp is ISO-8601 UTC")
    need(isinstance(receipt.get("processingTimeMillis"), int), f, "processingTimeMillis is a JSON number")
    names = [h["name"] for h in mail.get("headers", [])]
    need(names[:2] == ["Return-Path", "Received"], f, "headers start with SES's Return-Path, Received")
    ch = mail.get("commonHeaders", {})
    need("reply-to" not in ch, f, "commonHeaders uses replyTo, not reply-to")
    dmarc = (receipt.get("dmarcVerdict") or {}).get("status")
    if "dmarcPolicy" in receipt:
        need(dmarc == "FAIL", f, "dmarcPolicy only when DMARC fails")
        need(receipt["dmarcPolicy"] in ("none", "quarantine", "reject"), f, "dmarcPolicy is a lowercase string")
    for v in ("spamVerdict", "virusVerdict", "spfVerdict", "dkimVerdict", "dmarcVerdict"):
        # A missing verdict is a deliberate odd case in some fixtures; a present one is {"status": ...}.
        need(v not in receipt or (isinstance(receipt[v], dict) and "status" in receipt[v]), f, f"{v} is {{status}}")
    need(isinstance(receipt.get("recipients"), list) and receipt["recipients"], f, "receipt.recipients is a list")
files = sorted(f for f in glob.glob("events/**/*.json", root_dir=ROOT, recursive=True) if not f.startswith("events/mail/"))
for f in files:
    d = json.load(open(os.path.join(ROOT, f)))
    for r in d.get("Records", []):
        if r.get("eventSource") == "aws:ses":
            ses = r["ses"]
            need(r.get("eventVersion") == "1.0", f, "eventVersion 1.0")
            need("content" not in ses, f, "a Lambda action event never carries content")
            a = ses["receipt"]["action"]
            need(a.get("type") == "Lambda" and a.get("invocationType") in ("Event", "RequestResponse"), f,
                 "receipt.action is a Lambda action with Event or RequestResponse")
            ses_parts(f, ses["mail"], ses["receipt"])
        elif r.get("EventSource") == "aws:sns":
            need(r["Sns"]["Subject"] == "Amazon SES Email Receipt Notification", f, "SNS Subject")
            n = json.loads(r["Sns"]["Message"])
            need(n.get("notificationType") == "Received", f, "notificationType Received")
            kind = n["receipt"]["action"]["type"]
            need(("content" in n) == (kind == "SNS"), f, "content only in SNS action notifications")
            if kind == "SNS":
                need(n["receipt"]["action"].get("encoding") in ("UTF8", "BASE64"), f, "encoding UTF8|BASE64")
                eml = f[:-5] + ".eml"
                need(open(os.path.join(ROOT, eml), "rb").read().decode() == n["content"], f, f"content equals {eml}")
            if kind == "S3":
                a = n["receipt"]["action"]
                need(a["objectKey"] == a["objectKeyPrefix"] + n["mail"]["messageId"], f, "objectKey = prefix + messageId")
            ses_parts(f, n["mail"], n["receipt"])
        else:
            need(r.get("eventSource") == "aws:sqs", f, "Records are aws:ses, aws:sns or aws:sqs")
for b in bad:
    print(b)
if bad:
    sys.exit(f"{len(bad)} sample event(s) do not have SES's shape")
print(f"{len(files)} event files have SES's shapes")
