"""The one way the project's scripts start a moto server (AWS over the wire, on 127.0.0.1).

    moto_launcher.py start [--log-dir DIR]   start a server that outlives this command, wait until
                                             it answers, print "<endpoint> <pid>"; its output goes
                                             to DIR/mailroom-moto-<port>.log (default: $TMPDIR)
    moto_launcher.py supervise PORT          run a server on PORT until stdin closes, then stop
                                             it: a caller that dies takes its server along
    ... start --iam / supervise PORT --iam   the same, with IAM enforced from the first request
                                             on: an administrator user is created first and its
                                             keys printed after the endpoint ("KEYID:SECRET";
                                             supervise prints "<endpoint> <keys>" on stdout)

From Python: `endpoint_or_start()` reuses MAILROOM_TEST_MOTO_ENDPOINT when the test command set
it, and otherwise starts a private server.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))

ENDPOINT_VAR = "MAILROOM_TEST_MOTO_ENDPOINT"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(endpoint, timeout=30.0):
    """Waits until moto answers its own API (a listening socket alone is not enough)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=2)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise SystemExit(f"moto at {endpoint} did not answer within {timeout:.0f} s")
            time.sleep(0.2)


def spawn(port, output=subprocess.DEVNULL, iam=False):
    # The IAM server keeps request bodies for moto's signature check (see moto_iam_server.py).
    server = [os.path.join(HERE, "moto_iam_server.py")] if iam else ["-m", "moto.server"]
    return subprocess.Popen([sys.executable, *server, "-H", "127.0.0.1", "-p", str(port)],
                            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)


def start(log_dir=None, iam=False):
    """A new server on a free port, once it answers: (endpoint, process). Its output goes to
    log_dir/mailroom-moto-<port>.log, or nowhere without log_dir."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    if log_dir is None:
        proc, where = spawn(port, iam=iam), "no log kept"
    else:
        where = os.path.join(log_dir, f"mailroom-moto-{port}.log")
        with open(where, "wb") as log:
            proc = spawn(port, log, iam)
    try:
        wait_ready(endpoint)
    except SystemExit as e:
        proc.terminate()
        raise SystemExit(f"moto did not start ({e}): see {where}")
    return endpoint, proc


def enforce_iam(endpoint):
    """Creates an administrator (every action on every resource) while moto still lets anyone in,
    then turns IAM enforcement on for every later request: from then on only keys of IAM users
    work, each limited by its policies. Returns the administrator's "KEYID:SECRET"."""
    import json
    import boto3
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    iam.create_user(UserName="mailroom-test-admin")
    iam.put_user_policy(UserName="mailroom-test-admin", PolicyName="everything", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="mailroom-test-admin")["AccessKey"]
    # moto authenticates once its count of unauthenticated requests reaches this number.
    req = urllib.request.Request(endpoint + "/moto-api/reset-auth", data=b"0", method="POST",
                                 headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(req, timeout=10).read()
    return f"{key['AccessKeyId']}:{key['SecretAccessKey']}"


def endpoint_or_start():
    """(endpoint, process or None): the test command's server if it set one, else a new one."""
    endpoint = os.environ.get(ENDPOINT_VAR, "").strip().rstrip("/")
    if endpoint:
        wait_ready(endpoint)
        return endpoint, None
    return start()


def main(args):
    iam = "--iam" in args
    args = [a for a in args if a != "--iam"]
    if args[:1] == ["start"]:
        log_dir = args[2] if args[1:2] == ["--log-dir"] and len(args) > 2 else tempfile.gettempdir()
        endpoint, proc = start(log_dir, iam)
        print(endpoint, proc.pid, *([enforce_iam(endpoint)] if iam else []))
    elif args[:1] == ["supervise"] and len(args) == 2:
        proc = spawn(int(args[1]), iam=iam)
        if iam:
            endpoint = f"http://127.0.0.1:{args[1]}"
            try:
                wait_ready(endpoint, 60)
                print(endpoint, enforce_iam(endpoint), flush=True)
            except BaseException:
                proc.terminate()
                raise
        sys.stdin.read()
        proc.terminate()
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
