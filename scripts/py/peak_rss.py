"""Peak resident memory of `mailroom parse` on every hostile shape, against the goal.

Usage: peak_rss.py MAILROOM_BINARY [SIZE_MB ...]   (sizes default to 10 20 39)

Each shape is generated into a temporary file of about the given size and parsed by a fresh
`mailroom parse --compact FILE` process under `/usr/bin/time`, which reports that process's own
peak RSS, so nothing this script holds counts. The goal is input + 1.25 x decoded + 32 MiB, the
decoded size read from the model it prints (text and HTML as UTF-8, attachments' bytes, and what
a message nested in a base64 or quoted-printable part holds: see decoded_size); a shape refused by
design (REFUSED) must be refused with its message, within input + 32 MiB. Exits 1 when any run
crashes, misses its goal or is not refused as designed.
"""

import base64
import email
import hashlib
import json
import quopri
import os
import subprocess
import sys
import tempfile

MIB = 1024 * 1024


def headers(extra=""):
    return (
        "From: Sender <sender@example.com>\r\nTo: inbox@example.org\r\n"
        "Subject: hostile shape\r\nMIME-Version: 1.0\r\n" + extra
    ).encode()


def empty_parts(size):
    head = headers('Content-Type: multipart/mixed; boundary="b"\r\n\r\n')
    unit = b"--b\r\n\r\n"
    return head + unit * ((size - len(head)) // len(unit)) + b"--b--\r\n"


def rfc822_chain(size):
    unit = b"Subject: level\r\nContent-Type: message/rfc822\r\n\r\n"
    head = headers("Content-Type: message/rfc822\r\n\r\n")
    return head + unit * ((size - len(head)) // len(unit)) + b"Subject: end\r\n\r\nend\r\n"


def deep_multipart(size):
    head = headers('Content-Type: multipart/mixed; boundary="b0"\r\n\r\n')
    out = [head]
    total, i = len(head), 0
    while total < size:
        i += 1
        unit = f'--b{i - 1}\r\nContent-Type: multipart/mixed; boundary="b{i}"\r\n\r\n'.encode()
        out.append(unit)
        total += len(unit)
    return b"".join(out)


def legacy_text(size, subtype):
    head = headers(f"Content-Type: text/{subtype}; charset=windows-1252\r\n\r\n")
    if subtype == "html":
        line = b"<p>Gr\xfc\xdfe \x93quoted\x94 \x80 caf\xe9 &eacute; <b>bold</b></p>\r\n"
    else:
        line = b"Gr\xfc\xdfe \x93quoted\x94 \x80 caf\xe9 na\xefve \x85 text line\r\n"
    return head + line * ((size - len(head)) // len(line))


def b64_lines(data):
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def many_attachments(size):
    head = headers('Content-Type: multipart/mixed; boundary="b"\r\n\r\n')
    body = b64_lines(os.urandom(3000))
    out, total, i = [head], len(head), 0
    while total < size:
        unit = (
            f'--b\r\nContent-Type: application/octet-stream; name="f{i}.bin"\r\n'
            f'Content-Disposition: attachment; filename="f{i}.bin"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode() + body
        out.append(unit)
        total += len(unit)
        i += 1
    out.append(b"--b--\r\n")
    return b"".join(out)


def one_attachment(size):
    head = headers('Content-Type: multipart/mixed; boundary="b"\r\n\r\n') + (
        b"--b\r\nContent-Type: text/plain\r\n\r\nSee the file.\r\n"
        b'--b\r\nContent-Type: application/zip; name="big.zip"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
    )
    raw_len = (size - len(head) - 16) * 57 // 78
    return head + b64_lines(os.urandom(raw_len)) + b"--b--\r\n"


def giant_headers(size):
    # Under the 1 MB limit of the top-level block, then parts with 64 KB header blocks each.
    filler = "".join(f"X-Filler-{i}: {'v' * 200}\r\n" for i in range(4500))
    head = headers(filler + 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n')
    part_head = "".join(f"X-Part-{i}: {'w' * 200}\r\n" for i in range(300)).encode()
    unit = b"--b\r\n" + part_head + b"Content-Type: text/plain\r\n\r\nx\r\n"
    return head + unit * max(1, (size - len(head)) // len(unit)) + b"--b--\r\n"


def three_byte_text(size, subtype):
    # Every byte of the body is windows-1252 0x80, the euro sign: three bytes of UTF-8 each, so
    # the decoded text is three times the input.
    head = headers(f"Content-Type: text/{subtype}; charset=windows-1252\r\n\r\n")
    line = b"\x80" * 76 + b"\r\n"
    return head + line * ((size - len(head)) // len(line))


def three_byte_alternative(size):
    # The same text twice, as text/plain and text/html of one multipart/alternative.
    head = headers('Content-Type: multipart/alternative; boundary="b"\r\n\r\n')
    line = b"\x80" * 76 + b"\r\n"
    n = ((size - len(head)) // 2 - 100) // len(line)
    return (head + b"--b\r\nContent-Type: text/plain; charset=windows-1252\r\n\r\n" + line * n
            + b"--b\r\nContent-Type: text/html; charset=windows-1252\r\n\r\n" + line * n
            + b"--b--\r\n")


def header_block(size):
    # One top-level header block the size of the message, far over the 1 MiB the model reads.
    head = headers()
    line_len = len(b"X-Filler-000000: " + b"v" * 200 + b"\r\n")
    lines = b"".join(b"X-Filler-%06d: %s\r\n" % (i, b"v" * 200)
                     for i in range(max(1, (size - len(head)) // line_len)))
    return head + lines + b"\r\nbody\r\n"


def nested_base64(size):
    # message/rfc822 three deep, each level base64-encoded, a text at the bottom.
    inner = int(size * (3 / 4) ** 3) - 400
    msg = headers("Content-Type: text/plain; charset=utf-8\r\n\r\n") + (b"x" * 76 + b"\r\n") * (inner // 78)
    for _ in range(3):
        msg = headers("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n") + b64_lines(msg)
    return msg


SHAPES = [
    ("empty-part flood", empty_parts),
    ("nested rfc822 chain", rfc822_chain),
    ("deep multipart", deep_multipart),
    ("windows-1252 text", lambda n: legacy_text(n, "plain")),
    ("windows-1252 html", lambda n: legacy_text(n, "html")),
    ("many attachments", many_attachments),
    ("one big attachment", one_attachment),
    ("giant headers", giant_headers),
    ("3-byte text", lambda n: three_byte_text(n, "plain")),
    ("3-byte html", lambda n: three_byte_text(n, "html")),
    ("3-byte alternative", three_byte_alternative),
    ("header block", header_block),
    ("nested base64 rfc822", nested_base64),
]

# Shapes refused by design, with what the refusal says: the top-level header block is over the
# model's 1 MiB (Limits::max_header_bytes), so nothing parses it; the peak must still be small.
REFUSED = {"header block": "header block is over"}

# The functions (scripts/py/function_rss.py) are measured on the same shapes.
FUNCTION_SHAPES = SHAPES


def decoded_nested(raw):
    """SHA-256 of every message carried in a base64 or quoted-printable message/rfc822 part, at
    any depth, found with Python's own email package (not the parser measured). Such a message
    exists only once its part is decoded, so its content is decoded output as much as a text is;
    a message nested as plain 7-bit text is the input itself and counts once, however deep."""
    found = set()
    if b"message/rfc822" not in raw.lower():
        # Python's parser takes minutes over a flood of millions of parts that can hold no message.
        return found

    def walk(data):
        for part in email.message_from_bytes(data).walk():
            if part.get_content_type() != "message/rfc822":
                continue
            cte = str(part.get("content-transfer-encoding", "")).strip().lower()
            if cte not in ("base64", "quoted-printable"):
                continue
            # Python parses the still-encoded body as a message without headers.
            inner = part.get_payload()
            body = inner[0].get_payload() if isinstance(inner, list) and inner else inner
            if not isinstance(body, str):
                continue
            body = body.encode("latin-1", "replace")
            data = base64.b64decode(body) if cte == "base64" else quopri.decodestring(body)
            found.add(hashlib.sha256(data).hexdigest())
            walk(data)

    try:
        walk(raw)
    except RecursionError:
        # Python's parser recurses per level and gives up on the deep shapes; what it did not
        # find is not counted, which only makes the goal stricter.
        pass
    return found


def decoded_size(email_model, nested=frozenset()):
    """What parsing produced: the text and HTML as UTF-8 and every attachment's decoded bytes,
    and the same of each message nested in a part whose transfer encoding was undone (its
    attachment's sha256 is in `nested`)."""
    size = len((email_model.get("text") or "").encode()) + len((email_model.get("html") or "").encode())
    for a in email_model.get("attachments", []):
        size += a.get("size", 0)
        if a.get("message") and a.get("sha256") in nested:
            size += decoded_size(a["message"], nested)
    return size


def peak_rss(binary, path, nested=frozenset()):
    # /usr/bin/time reports the child's own high-water mark: a child forked straight from this
    # script would inherit the script's (large, generated) resident set as its starting peak.
    run = subprocess.run(["/usr/bin/time", "-f", "%M", binary, "parse", "--compact", path],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = run.stderr.decode(errors="replace").strip().splitlines()
    # No figure is a failed measurement, never a small peak.
    kib = int(lines[-1]) if lines and lines[-1].isdigit() else None
    decoded = None
    if run.returncode == 0:
        try:
            decoded = decoded_size(json.loads(run.stdout), nested)
        except ValueError:
            pass
    return None if kib is None else kib * 1024, run.returncode, " ".join(lines[:-1]), decoded


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    sizes = [int(s) for s in sys.argv[2:]] or [10, 20, 39]
    failed = False
    print(f"{'shape':<22}{'input MB':>9}{'peak MiB':>10}{'goal MiB':>10}  result")
    print("goal: input + 1.25 x decoded (text and HTML as UTF-8, attachments, messages nested in base64) + 32 MiB")
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in SHAPES:
            for mb in sizes:
                raw = make(mb * 1000 * 1000)
                path = os.path.join(tmp, "msg.eml")
                with open(path, "wb") as f:
                    f.write(raw)
                nested = decoded_nested(raw)
                del raw
                size = os.path.getsize(path)
                peak, code, err, decoded = peak_rss(binary, path, nested)
                refusal = REFUSED.get(name)
                goal = size + 1.25 * (decoded or 0) + 32 * MIB
                if peak is None:
                    ok, verdict = False, "NO MEASUREMENT (/usr/bin/time printed no peak)"
                elif refusal:
                    ok = code != 0 and refusal in err and peak <= goal
                    verdict = ("refused, as designed" if ok
                               else f"expected a refusal saying {refusal!r}: exit {code}: {err[:80]}")
                elif code:
                    ok, verdict = False, "exit %d: %s" % (code, err[:80])
                elif decoded is None:
                    ok, verdict = False, "no model in the output to size"
                else:
                    ok = peak <= goal
                    verdict = "ok" if ok else "OVER"
                failed |= not ok
                shown = "-" if peak is None else f"{peak / MIB:.1f}"
                print(f"{name:<22}{size / 1e6:>9.1f}{shown:>10}{goal / MIB:>10.1f}  {verdict}")
                sys.stdout.flush()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
