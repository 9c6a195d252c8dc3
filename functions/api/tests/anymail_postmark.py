"""Feeds a mailroom `postmark`-format payload (stdin) to django-anymail's Postmark inbound webhook
handler, an independent consumer written for Postmark's real payloads, and prints what it parsed
as JSON for the Rust test to check."""
import json
import sys
import warnings

import django
from django.conf import settings

settings.configure(ANYMAIL={"WEBHOOK_SECRET": "user:pass"}, INSTALLED_APPS=["anymail"], USE_TZ=True)
django.setup()
warnings.simplefilter("error")  # a payload anymail has to guess about should fail the test

from anymail.webhooks.postmark import PostmarkInboundWebhookView  # noqa: E402

payload = json.load(sys.stdin)
event = PostmarkInboundWebhookView().esp_to_anymail_event(payload)
m = event.message
print(json.dumps({
    "event_id": event.event_id,
    "from": str(m.from_email),
    "to": [str(a) for a in m.to],
    "cc": [str(a) for a in m.cc],
    "subject": m.subject,
    "text": m.text,
    "html": m.html,
    "date": m["Date"],
    "message_id": m["Message-ID"],
    "from_headers": len(m.get_all("From") or []),
    "subject_headers": len(m.get_all("Subject") or []),
    "envelope_sender": m.envelope_sender,
    "envelope_recipient": m.envelope_recipient,
    "stripped_text": m.stripped_text,
    "attachments": [
        {"name": a.get_filename(), "type": a.get_content_type(), "size": len(a.get_content_bytes())}
        for a in m.attachments
    ],
}))
