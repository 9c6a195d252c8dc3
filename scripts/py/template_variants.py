"""Copies of template.yaml whose parameter Defaults take the branches its own Defaults leave
untaken: a KMS key, a hosted zone, no SES identity, a DMARC record and both IP filter lists.

cfn-lint checks every branch of one file, but checkov resolves each condition by the parameters'
Defaults, and check-template reads some values the same way, so without these copies the
key-on, zone-on and identity-off branches would reach neither.

    template_variants.py TEMPLATE OUTDIR   writes OUTDIR/<variant>.yaml, prints each path

Only the Default lines are rewritten, as text, and the paths (CodeUri, ContextPath) re-rooted
so they still name the crates from OUTDIR: everything else, tags and comments included, is the
template as it is.
"""
import json
import os
import re
import sys

VARIANTS = {
    "key-zone-no-identity": {
        "KmsKeyArn": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "HostedZoneId": "Z0123456789EXAMPLE",
        "CreateIdentity": "false",
        "DmarcPolicy": "reject",
        "DmarcReportTo": "dmarc-reports@example.com",
        "BlockedCidrs": "0.0.0.0/0,::/0",
        "AllowedCidrs": "203.0.113.0/24,198.51.100.7,2001:db8::/32",
    },
}


def with_defaults(text, defaults):
    """`text` with the Default line of each parameter in `defaults` replaced."""
    params = re.search(r"^Parameters:\n(.*?)^\S", text, re.S | re.M)
    if not params:
        raise SystemExit("no Parameters section")
    block = params.group(1)
    for name, value in defaults.items():
        body = re.search(rf"^  {re.escape(name)}:\n((?:    .*\n|\n)*)", block, re.M)
        if not body:
            raise SystemExit(f"no parameter {name}")
        new, n = re.subn(r"^    Default: .*$", f"    Default: {json.dumps(value)}", body.group(1),
                         count=1, flags=re.M)
        if n != 1:
            raise SystemExit(f"parameter {name} has no Default line")
        block = block[:body.start(1)] + new + block[body.end(1):]
    return text[:params.start(1)] + block + text[params.end(1):]


def rerooted(text, template_dir, outdir):
    """`text` with each CodeUri and ContextPath made relative to `outdir`."""
    def path(m):
        target = os.path.normpath(os.path.join(template_dir, m.group(2)))
        return m.group(1) + os.path.relpath(target, outdir)
    return re.sub(r"^(\s+(?:CodeUri|ContextPath): )(\S+)$", path, text, flags=re.M)


def main(template, outdir):
    with open(template, encoding="utf-8") as f:
        text = f.read()
    os.makedirs(outdir, exist_ok=True)
    text = rerooted(text, os.path.dirname(os.path.abspath(template)), os.path.abspath(outdir))
    for variant, defaults in VARIANTS.items():
        path = os.path.join(outdir, f"{variant}.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(with_defaults(text, defaults))
        print(path)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
