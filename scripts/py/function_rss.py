"""Peak resident memory of the Lambda binaries that read the raw mail, as `sam build` ships them,
on every hostile shape, against 75 % of each function's MemorySize in the template.

Usage: function_rss.py LAMBDA_DIR [SIZE_MB ...]   (sizes default to 10 20 39)

LAMBDA_DIR holds `<binary>/bootstrap` for each function (the Makefile's `make lambda`, built for
this machine's architecture). The shapes are peak_rss.py's. For each shape and size the raw mail is
put in moto's S3 once, then each function runs in a fresh process as Lambda starts one: its
`bootstrap`, the environment template.yaml gives it (local_aws.Stack: S3, SNS, SQS, SSM and SES v2
on moto, the webhook and SES v2 SendEmail on a loopback recorder) and one invocation through the Lambda runtime API
(RuntimeApi below), with the function's own sample event from events/. Once it has answered, its
high-water mark (VmHWM, what Lambda bills against MemorySize) is read and the process stopped.

A figure counts only when the function did its whole job, checked on what it did (the stored
layout, the SNS summary, the signed webhook, the forwarded mail): a function that gave up early
proves no bound. A shape refused by design (peak_rss.REFUSED) must be refused as designed.

The functions always run with the template's KmsKeyArn set (a moto key), as a stack with
encryption on does; the shapes are stored plain (mail stored before the key was set). The last
rows store ENCRYPTED shapes as SES's "Encrypt message" does (s3ec_interop.put_sealed: KMS data key,
AES-GCM, the envelope in the metadata), so decryption in place and api's decrypted raw.eml copy
are measured beside the same shape stored plain.
Exits 1 when a run fails, is not done, cannot be measured, or goes over 75 % of its MemorySize.
"""

import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import moto_launcher
import s3ec_interop
from event_cases import CASES, check
from local_aws import Recorder, Stack
from peak_rss import FUNCTION_SHAPES, REFUSED

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The functions measured are those whose environment in the template names the raw bucket: the
# ones that read the raw mail. stop is not among them: it only asks the object's size (a HEAD, for
# its MAILROOM_MAX_SIZE rule), and the template gives it no bucket.
RAW_BUCKET_VAR = "MAILROOM_RAW_BUCKET"
# What a function that reads the raw mail does with a shape refused by design (a header block over
# the model's 1 MiB): store refuses it with a typed error (Lambda retries, then the invocation
# DLQ; the raw mail stays), api dead-letters its delivery; fanout publishes a summary from SES's
# headers and forward sends a digest, as for any mail.
REFUSED_AS = {"store": "error", "api": "dead-lettered"}
SHARE = 0.75
TIMEOUT_S = 300
# (shape name, size in MB) measured once more with the raw mail encrypted.
ENCRYPTED = [("one big attachment", 20)]


class RuntimeApi:
    """One Lambda runtime API for one function instance and one invocation: `/next` gives the event
    once (then holds the function, as a frozen instance), and the answer or error is kept."""

    def __init__(self, event, function_arn, timeout_s):
        self.answered = threading.Event()
        self.closing = threading.Event()
        self.answer = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            given = False

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next") or Handler.given:
                    # The instance is kept frozen until it is stopped.
                    api.closing.wait(TIMEOUT_S)
                    self.send_response(410)
                    self.end_headers()
                    return
                Handler.given = True
                body = json.dumps(event).encode()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", "mem-0001")
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int((time.time() + timeout_s) * 1000)))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", function_arn)
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                kind = "answer" if self.path.endswith("/response") else "error"
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                api.answer = (kind, body.decode(errors="replace"))
                api.answered.set()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def invoke(bootstrap, env, event, memory, function_arn):
    """Runs the function once: (peak MiB or None, ("answer" | "error" | "failed", text))."""
    api = RuntimeApi(event, function_arn, TIMEOUT_S)
    env = dict(env, AWS_LAMBDA_RUNTIME_API=api.address, AWS_LAMBDA_FUNCTION_NAME=function_arn.rsplit(":", 1)[1],
               AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(memory), AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
               AWS_LAMBDA_LOG_GROUP_NAME="/aws/lambda/memory", AWS_LAMBDA_LOG_STREAM_NAME="memory",
               RUST_LOG="warn")
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([bootstrap], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while not api.answered.wait(0.05):
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
            peak = vm_hwm_kib(proc.pid) if proc.poll() is None else None
        finally:
            proc.kill()
            proc.wait()
            api.close()
        if api.answer is None:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()
            why = f"exit {proc.returncode}" if proc.returncode is not None else "no answer"
            return None, ("failed", f"{why}: {(tail or ['?'])[-1][:200]}")
    return (None if peak is None else peak / 1024), api.answer


def memory_sizes(stack):
    """MemorySize (MiB) of each function that reads the raw mail, by binary, from the function's
    own property or Globals.Function."""
    t = stack.template
    sizes = {}
    for logical in t.of_type("AWS::Serverless::Function"):
        if RAW_BUCKET_VAR not in t.function_env(logical):
            continue
        binary = t.function_binary(logical)
        size = t.function_prop(logical, "MemorySize")
        if not isinstance(size, int):
            sys.exit(f"{logical}: MemorySize {size!r} is not a number")
        sizes[binary] = size
    if not sizes:
        sys.exit(f"template.yaml: no function has {RAW_BUCKET_VAR}")
    return sizes


def sample(binary):
    """The function's first sample event that reads raw mail, and what it must have done."""
    for function, rel, want in CASES:
        if function == binary and "raw" in want:
            with open(os.path.join(ROOT, "events", rel)) as f:
                return json.load(f), {k: v for k, v in want.items() if k != "raw"}
    sys.exit(f"{binary} reads the raw mail but event_cases.CASES has no sample event with raw mail for it")


def done(stack, binary, want, answer, mid, refused):
    """What is wrong with what the function did (an empty list when it did its whole job)."""
    kind, text = answer
    if refused and binary in REFUSED_AS:
        if REFUSED_AS[binary] == "error":
            return [] if kind == "error" and refused in text else [f"expected a refusal saying {refused!r}: {kind} {text[:200]}"]
        letters = stack.sqs.receive_message(QueueUrl=stack.queues["WebhookDeadLetterQueue"]["ref"],
                                            MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for m in letters:
            stack.sqs.delete_message(QueueUrl=stack.queues["WebhookDeadLetterQueue"]["ref"], ReceiptHandle=m["ReceiptHandle"])
        return [] if any(mid in m["Body"] for m in letters) else ["no dead letter for the refused delivery"]
    if kind != "answer":
        return [f"{kind}: {text[:200]}"]
    out = json.loads(text)
    if "forwarded" in want:
        # Whichever way each destination went (rewritten, attached, a digest), it must have been sent.
        sent = {d.get("destination"): d.get("mode") for o in out.get("outcomes", []) for d in o.get("deliveries", [])
                if d.get("status") == "sent"}
        if set(sent) != set(want["forwarded"]):
            return [f"sent to {sorted(sent)}, want {sorted(want['forwarded'])}"]
        want = dict(want, forwarded=sent)
    return check(want, out, mid, s3=stack.s3, sqs=stack.sqs, tap=stack.tap, bucket=stack.bucket,
                 webhooks=Recorder.webhooks, bounces=Recorder.bounces)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    lambda_dir = sys.argv[1]
    sizes_mb = [int(s) for s in sys.argv[2:]] or [10, 20, 39]
    moto, moto_proc = moto_launcher.start()
    # moto's SES v2 answers HTTP 500 to SendEmail on several of these shapes; the recorder accepts
    # each send as SES would and keeps its size only.
    stack = Stack(ROOT, moto, f"memory-{os.getpid()}", record_sends=True)
    try:
        memory = memory_sizes(stack)
        functions = list(memory)
        limits = {f: SHARE * memory[f] for f in functions}
        samples = {f: sample(f) for f in functions}
        for f in functions:
            if not os.access(os.path.join(lambda_dir, f, "bootstrap"), os.X_OK):
                sys.exit(f"{lambda_dir}/{f}/bootstrap is missing: build it with `make lambda`")
        print("peak RSS in MiB per Lambda binary; limit = 75 % of MemorySize: "
              + ", ".join(f"{f} {limits[f]:.0f} (of {memory[f]})" for f in functions))
        print(f"{'shape':<32}{'input MB':>9}" + "".join(f"{f:>9}" for f in functions) + "  result")
        failed = False
        runs = [(shape, name, make, mb, False) for shape, (name, make) in enumerate(FUNCTION_SHAPES)
                for mb in sizes_mb]
        runs += [(shape, name, make, mb, True) for shape, (name, make) in enumerate(FUNCTION_SHAPES)
                 for mb in [mb for n, mb in ENCRYPTED if n == name]]
        for shape, name, make, mb, sealed in runs:
            raw = make(mb * 1000 * 1000)
            size = len(raw)
            mid = f"mem{shape:03d}x{mb:03d}" + ("k" if sealed else "")
            if sealed:
                context = {"aws:ses:message-id": mid, "aws:ses:rule-name": "receive",
                           "aws:ses:source-account": "123456789012"}
                s3ec_interop.put_sealed(stack.s3, stack.kms, stack.bucket, f"raw/{mid}", stack.kms_key,
                                        raw, context)
            else:
                stack.s3.put_object(Bucket=stack.bucket, Key=f"raw/{mid}", Body=raw)
            del raw
            cells, problems = [], []

            def measure(function):
                event, _ = samples[function]
                event = json.loads(json.dumps(event))
                for r in event["Records"]:
                    r["ses"]["mail"]["messageId"] = mid
                arn = f"arn:aws:lambda:us-east-1:123456789012:function:{stack.binaries[function]}"
                return invoke(os.path.join(lambda_dir, function, "bootstrap"), stack.env(function),
                              event, memory[function], arn)

            Recorder.webhooks.clear()
            # The functions of a shape side by side: each process reports its own high-water
            # mark, which does not depend on what runs beside it, and most of a run is waiting
            # on moto. The webhook recorder is shared, and only api posts to it.
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(functions)) as pool:
                measured = list(pool.map(measure, functions))
            for function, (peak, answer) in zip(functions, measured):
                if peak is None:
                    cells.append("failed")
                    problems.append(f"{function} {answer[1]}")
                    continue
                cells.append(f"{peak:.1f}")
                if peak > limits[function]:
                    problems.append(f"{function} OVER")
                wrong = done(stack, function, samples[function][1], answer, mid, REFUSED.get(name))
                problems += [f"{function} did not finish: {w}" for w in wrong]
            stack.s3.delete_object(Bucket=stack.bucket, Key=f"raw/{mid}")
            failed |= bool(problems)
            label = f"{name} (encrypted)" if sealed else name
            print(f"{label:<32}{size / 1e6:>9.1f}" + "".join(f"{c:>9}" for c in cells)
                  + "  " + ("; ".join(problems) or "ok"))
            sys.stdout.flush()
    finally:
        stack.close()
        moto_proc.terminate()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
