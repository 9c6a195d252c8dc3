"""The sample events in events/ that run through their real function, what each must answer and
what must have happened: one list and one check for both ways they are run (scripts/py/invoke_events.py
under cargo lambda, scripts/py/sam_local.py under sam local invoke)."""

import json
import os

import s3ec_interop

# Each sample event, the function it is for, what the answer must be, and what must have happened.
# raw: the .eml uploaded to raw/<messageId> first (the receive rule's S3 action did that in SES).
CASES = [
    ("stop", "lambda/stop-clean.json", {"disposition": "CONTINUE"}),
    ("stop", "lambda/stop-spam-fail.json", {"disposition": "STOP_RULE_SET"}),
    ("stop", "lambda/stop-virus-fail.json", {"disposition": "STOP_RULE_SET"}),
    ("stop", "lambda/stop-dmarc-reject.json", {"disposition": "STOP_RULE_SET"}),
    ("stop", "lambda/stop-dmarc-quarantine.json", {"disposition": "CONTINUE"}),
    ("stop", "lambda/stop-dmarc-none.json", {"disposition": "CONTINUE"}),
    ("stop", "lambda/stop-odd-verdicts.json", {"disposition": "CONTINUE"}),
    ("stop", "lambda/stop-bcc-only.json", {"disposition": "STOP_RULE_SET"}),
    ("bounce", "lambda/bounce-unknown.json", {"disposition": "STOP_RULE_SET", "bounced": ["nobody@example.com"]}),
    ("bounce", "lambda/bounce-known.json", {"disposition": "CONTINUE", "bounced": []}),
    ("bounce", "lambda/bounce-mixed.json", {"disposition": "CONTINUE", "bounced": ["ghost@example.com"]}),
    ("bounce", "lambda/bounce-auto-submitted.json", {"disposition": "STOP_RULE_SET", "bounced": []}),
    ("bounce", "lambda/bounce-null-sender.json", {"disposition": "STOP_RULE_SET", "bounced": []}),
    ("bounce", "lambda/bounce-dmarc-fail.json", {"disposition": "STOP_RULE_SET", "bounced": []}),
    ("bounce", "lambda/bounce-event-invocation.json", {"bounced": ["nobody@example.com"]}),
    ("store", "lambda/store-event.json", {"raw": "mail/store-attachments.eml", "stored": True}),
    ("store", "lambda/store-setup-notification.json", {"stored": False}),
    # sealed: stored as SES's "Encrypt message" stores it (KMS, AES-GCM), the functions given the key.
    ("store", "lambda/store-encrypted.json", {"raw": "mail/store-attachments.eml", "sealed": True, "stored": True}),
    ("fanout", "lambda/fanout-event.json", {"raw": "mail/store-attachments.eml", "published": True}),
    ("fanout", "lambda/fanout-dmarc-fail.json", {"raw": "mail/store-hostile-filenames.eml", "published": True}),
    ("api", "lambda/api-event.json", {"raw": "mail/attachments.eml", "webhooks": 1}),
    ("api", "sqs/api-retry-job.json", {"raw": "mail/attachments.eml", "webhooks": 1, "batchItemFailures": []}),
    # FORWARD_MAP below: invoices+acme@ matches invoices@ (its tag dropped, the default),
    # billing@ forwards as an attachment.
    ("forward", "lambda/forward-event.json", {"raw": "mail/attachments.eml",
                                               "forwarded": {"owner@gmail.example": "rewrite",
                                                             "accountant@outlook.example": "attach"}}),
]

# The forward map the runs give the forward function (the template's ForwardMap parameter).
FORWARD_MAP = ("invoices@inbox.example.com=owner@gmail.example; "
               "billing@inbox.example.com=attach:accountant@outlook.example")
# The identity the forward function sends as (forwarder@<DomainName>); SES, and moto, send only
# from a verified identity.
FORWARD_DOMAIN = "example.com"


def kms_key(kms):
    """A KMS key for the sealed cases; the functions get its ARN as the template's KmsKeyArn."""
    return kms.create_key(Description="mailroom sample events")["KeyMetadata"]["Arn"]


def put_raw(s3, kms, bucket, mid, eml_path, want, key_arn):
    """The case's raw mail at raw/<mid>, as SES's S3 action writes it (encrypted when `sealed`)."""
    with open(eml_path, "rb") as f:
        raw = f.read()
    key = f"raw/{mid}"
    if want.get("sealed"):
        context = {"aws:ses:message-id": mid, "aws:ses:rule-name": "receive",
                   "aws:ses:source-account": "123456789012"}
        s3ec_interop.put_sealed(s3, kms, bucket, key, key_arn, raw, context)
    else:
        s3.put_object(Bucket=bucket, Key=key, Body=raw)


def check(want, out, mid, *, s3, sqs, tap, bucket, webhooks, bounces):
    """What is wrong with one case's answer `out` and side effects; `webhooks` are the recorded
    (headers, body) POSTs, `bounces` the recorded SendBounce forms."""
    problems = []
    if out is not None:
        if "disposition" in want and (out or {}).get("disposition") != want["disposition"]:
            problems.append(f"disposition {(out or {}).get('disposition')!r}, want {want['disposition']!r}")
        if "batchItemFailures" in want and (out or {}).get("batchItemFailures") != want["batchItemFailures"]:
            problems.append(f"batchItemFailures {(out or {}).get('batchItemFailures')!r}")
    if "bounced" in want:
        got = [v[0] for b in bounces for k, v in b.items()
               if k.startswith("BouncedRecipientInfoList.member.") and k.endswith(".Recipient")]
        if got != want["bounced"]:
            problems.append(f"SendBounce recipients {got}, want {want['bounced']}")
        for b in bounces:
            if b.get("OriginalMessageId") != [mid]:
                problems.append(f"SendBounce OriginalMessageId {b.get('OriginalMessageId')}")
    if "stored" in want:
        # Under the prefix the answer names when it names one (a run that stores many messages
        # would otherwise list all of them), which must still be the message's own.
        prefix = next((o.get("prefix") for o in (out or {}).get("outcomes", []) if o.get("prefix")), None)
        if not (prefix or "").startswith("messages/") or f"/{mid}/" not in (prefix or ""):
            prefix = "messages/"
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                for o in page.get("Contents", []) if f"/{mid}/" in o["Key"]]
        has = any(k.endswith("/message.json") for k in keys)
        if has != want["stored"]:
            problems.append(f"message.json for {mid} stored={has}, want {want['stored']}")
    if want.get("published"):
        msgs = sqs.receive_message(QueueUrl=tap, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", [])
        for m in msgs:
            sqs.delete_message(QueueUrl=tap, ReceiptHandle=m["ReceiptHandle"])
        if not any(mid in m["Body"] for m in msgs):
            problems.append(f"no SNS summary for {mid} reached the topic")
    if "forwarded" in want:
        sent = {d.get("destination"): d.get("mode")
                for o in (out or {}).get("outcomes", []) for d in o.get("deliveries", [])
                if d.get("status") == "sent"}
        if sent != want["forwarded"]:
            problems.append(f"sent {sent}, want {want['forwarded']} (answer: {json.dumps(out)[:400]})")
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"forwarded/{mid}/")
                      .get("Contents", []))
        # Beside each marker stays the claim its send took (`<marker>.claim-<n>`).
        markers = [k for k in keys if ".claim-" not in k]
        claims = [k for k in keys if ".claim-" in k]
        if len(markers) != len(want["forwarded"]):
            problems.append(f"idempotency markers {markers}, want one per destination")
        if len(claims) != len(want["forwarded"]):
            problems.append(f"send claims {claims}, want one per destination")
    if "webhooks" in want:
        ids = [{k.lower(): v for k, v in h.items()}.get("webhook-id") for h, _ in webhooks]
        if len(webhooks) != want["webhooks"] or any(i != mid for i in ids):
            problems.append(f"webhooks {len(webhooks)} with ids {ids}, want {want['webhooks']} with id {mid}")
        for h, _ in webhooks:
            if "webhook-signature" not in {k.lower() for k in h}:
                problems.append("webhook without a webhook-signature header")
    return problems


if __name__ == "__main__":
    # For scripts/test.d/template, which runs each of these functions' binaries.
    print("\n".join(dict.fromkeys(f for f, _, _ in CASES)))
