"""An independent S3 encryption client (v2 envelope, KMS wrapping) to check mailroom against.

`seal` stores a file in S3 the way SES's "Encrypt message" does: a fresh data key from KMS
GenerateDataKey under the SES encryption context, AES-256-GCM with the 16-byte tag appended, and
the envelope in the object's user metadata. `open` reads an object back the way a third-party
S3 encryption client does (KMS Decrypt with the material description as encryption context) and
writes the plaintext to stdout; a tampered object exits 3 with the reason on stderr.

It shares no code with mailroom: boto3 for S3 and KMS, `cryptography` for AES.
"""

import argparse
import base64
import json
import os
import sys

import boto3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

REGION = "us-east-1"


def clients(endpoint):
    kw = dict(
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
    )
    return boto3.client("s3", **kw), boto3.client("kms", **kw)


GCM, CBC = "AES/GCM/NoPadding", "AES/CBC/PKCS5Padding"


def put_sealed(s3, kms, bucket, key, key_arn, plaintext, context, wrap="kms", cek=GCM):
    """Stores `plaintext` at bucket/key encrypted as SES does (or, with `cek` = CBC, as the
    format's older objects are), `context` being the `aws:ses:*` encryption context."""
    if wrap == "kms":
        material = dict(context, kms_cmk_id=key_arn)
    else:
        material = dict(context, **{"aws:x-amz-cek-alg": cek})
    data_key = kms.generate_data_key(KeyId=key_arn, KeySpec="AES_256", EncryptionContext=material)
    metadata = {
        "x-amz-key-v2": base64.b64encode(data_key["CiphertextBlob"]).decode(),
        "x-amz-cek-alg": cek,
        "x-amz-wrap-alg": wrap,
        "x-amz-matdesc": json.dumps(material),
        "x-amz-unencrypted-content-length": str(len(plaintext)),
    }
    if cek == GCM:
        iv = os.urandom(12)
        body = AESGCM(data_key["Plaintext"]).encrypt(iv, plaintext, None)
        metadata["x-amz-tag-len"] = "128"
    else:
        iv = os.urandom(16)
        pad = padding.PKCS7(128).padder()
        padded = pad.update(plaintext) + pad.finalize()
        enc = Cipher(algorithms.AES(data_key["Plaintext"]), modes.CBC(iv)).encryptor()
        body = enc.update(padded) + enc.finalize()
    metadata["x-amz-iv"] = base64.b64encode(iv).decode()
    s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata)


def seal(args):
    s3, kms = clients(args.endpoint)
    context = {
        "aws:ses:message-id": args.message_id,
        "aws:ses:rule-name": args.rule_name,
        "aws:ses:source-account": args.account,
    }
    with open(args.file, "rb") as f:
        plaintext = f.read()
    put_sealed(s3, kms, args.bucket, args.key, args.key_arn, plaintext, context, args.wrap, args.cek)


def open_object(args):
    s3, kms = clients(args.endpoint)
    obj = s3.get_object(Bucket=args.bucket, Key=args.key)
    meta = obj["Metadata"]
    body = obj["Body"].read()
    material = json.loads(meta.get("x-amz-matdesc") or "{}")
    try:
        data_key = kms.decrypt(
            KeyId=args.key_arn,
            CiphertextBlob=base64.b64decode(meta["x-amz-key-v2"]),
            EncryptionContext=material,
        )["Plaintext"]
    except kms.exceptions.ClientError as e:
        sys.exit(f"refused by KMS: {e}")
    iv = base64.b64decode(meta["x-amz-iv"])
    alg = meta["x-amz-cek-alg"]
    try:
        if alg == GCM:
            plaintext = AESGCM(data_key).decrypt(iv, body, None)
        elif alg == CBC:
            dec = Cipher(algorithms.AES(data_key), modes.CBC(iv)).decryptor()
            unpad = padding.PKCS7(128).unpadder()
            plaintext = unpad.update(dec.update(body) + dec.finalize()) + unpad.finalize()
        else:
            sys.exit(f"unsupported x-amz-cek-alg {alg!r}")
    except (InvalidTag, ValueError) as e:
        print(f"authentication failed: {type(e).__name__}", file=sys.stderr)
        sys.exit(3)
    sys.stdout.buffer.write(plaintext)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("seal", "open"):
        p = sub.add_parser(name)
        p.add_argument("--endpoint", required=True)
        p.add_argument("--bucket", required=True)
        p.add_argument("--key", required=True)
        p.add_argument("--key-arn", required=True)
        if name == "seal":
            p.add_argument("--file", required=True)
            p.add_argument("--wrap", choices=["kms", "kms+context"], default="kms")
            p.add_argument("--cek", choices=[GCM, CBC], default=GCM)
            p.add_argument("--message-id", required=True)
            p.add_argument("--rule-name", default="store")
            p.add_argument("--account", default="123456789012")
    args = parser.parse_args()
    seal(args) if args.command == "seal" else open_object(args)


if __name__ == "__main__":
    main()
