"""Every Lambda/SQS sample event in events/ through its real function binary under
`cargo lambda watch` (the Lambda runtime API emulator, no Docker), with the environment
template.yaml gives that function: S3/SNS/SQS/SSM on moto, SES SendBounce and the webhook
endpoint on a local recorder. Asserts each answer and its side effects.

    invoke_events.py ROOT FUNCTION...      the binaries must be built (scripts/test.d/template)
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import moto_launcher
from event_cases import CASES, check
from local_aws import Recorder, Stack

ROOT, FUNCTIONS = sys.argv[1], sys.argv[2:]
EVENTS = os.path.join(ROOT, "events")
RUN = f"tplcheck-{os.getpid()}"


def main():
    moto, moto_proc = moto_launcher.endpoint_or_start()
    aws = Stack(ROOT, moto, RUN)
    s3, sqs, tap, bucket, binaries = aws.s3, aws.sqs, aws.tap, aws.bucket, aws.binaries
    cases = [c for c in CASES if c[0] in FUNCTIONS]
    for f in FUNCTIONS:
        if f not in binaries:
            raise SystemExit(f"template.yaml has no function with Binary {f!r}")

    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    watch = {"proc": None, "fn": None, "port": None, "envfile": None}

    def stop_watcher():
        proc = watch["proc"]
        if proc is not None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
            os.unlink(watch["envfile"])
        watch.update(proc=None, fn=None)

    def start_watcher(fn):
        # One watcher per function, holding only the environment the template gives that
        # function: a variable another function happens to have cannot mask a missing one.
        stop_watcher()
        env = aws.env(fn)
        env["RUST_LOG"] = "warn"
        envfile = tempfile.NamedTemporaryFile("w", suffix=".env", delete=False)
        # Quoted: values such as the forward map hold '=', ';' and blanks.
        quote = lambda v: '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
        envfile.write("".join(f"{k}={quote(v)}\n" for k, v in env.items()))
        envfile.close()
        port = moto_launcher.free_port()
        log.write(f"=== {fn}\n")
        log.flush()
        proc = subprocess.Popen(["cargo-lambda", "lambda", "watch", "--ignore-rust-version", "--ignore-changes", "--quiet",
                                 "--invoke-address", "127.0.0.1", "--invoke-port", str(port),
                                 "--env-file", envfile.name],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env=shim_env)
        watch.update(proc=proc, fn=fn, port=port, envfile=envfile.name)
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                return port
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit("cargo lambda watch exited: " + open(log.name).read()[-2000:])
                time.sleep(0.1)
        raise SystemExit("cargo lambda watch did not listen within 30 s")

    # cargo lambda does not pass --ignore-rust-version on to the `cargo run` it starts, which is
    # $CARGO: the shim adds it (scripts/cargo-shim/cargo). Hence cargo-lambda itself, not
    # `cargo lambda`, which would set $CARGO to cargo.
    shim_env = dict(os.environ, CARGO=os.path.join(ROOT, "scripts", "cargo-shim", "cargo"))
    failures = []
    try:
        for fn, rel, want in cases:
            port = watch["port"] if watch["fn"] == fn else start_watcher(fn)
            data = json.load(open(os.path.join(EVENTS, rel)))
            if rel.startswith("sqs/"):
                # The retry job names the bucket of the stack that queued it: point it at ours.
                for r in data["Records"]:
                    job = json.loads(r["body"])
                    job["bucket"] = bucket
                    r["body"] = json.dumps(job)
                mid = json.loads(data["Records"][0]["body"])["messageId"]
            else:
                mid = data["Records"][0]["ses"]["mail"]["messageId"]
            if "raw" in want:
                aws.put_raw(mid, os.path.join(EVENTS, want["raw"]), want)
            Recorder.webhooks.clear()
            Recorder.bounces.clear()
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as ev:
                json.dump(data, ev)
            started = time.monotonic()
            p = subprocess.run(["cargo", "lambda", "invoke", fn, "--data-file", ev.name, "--invoke-address", "127.0.0.1",
                                "--invoke-port", str(port), "--output-format", "json"],
                               cwd=ROOT, capture_output=True, text=True, timeout=180)
            took = time.monotonic() - started
            problems = []
            out = None
            if p.returncode != 0:
                problems.append(f"invoke failed: {(p.stdout + p.stderr).strip()[-600:]}")
            else:
                try:
                    out = json.loads(p.stdout)
                except ValueError:
                    problems.append(f"output is not JSON: {p.stdout[:300]!r}")
            problems += check(want, out, mid, s3=s3, sqs=sqs, tap=tap, bucket=bucket,
                              webhooks=Recorder.webhooks, bounces=Recorder.bounces)
            status = "FAIL" if problems else "ok  "
            shown = json.dumps(out)[:70] if out is not None else "-"
            print(f"{status} {fn:<7} {rel:<38} {took:5.1f}s  {shown}")
            for pr in problems:
                print(f"       {pr}")
            if problems:
                failures.append(rel)
    finally:
        stop_watcher()
        aws.close()
        if moto_proc:
            moto_proc.terminate()
    if failures:
        print("--- cargo lambda watch log (tail)")
        print(open(log.name).read()[-4000:])
        raise SystemExit(f"{len(failures)} of {len(cases)} sample events failed: {', '.join(failures)}")
    os.unlink(log.name)
    print(f"{len(cases)} sample events ran through {len(set(c[0] for c in cases))} function binaries")


if __name__ == "__main__":
    main()
