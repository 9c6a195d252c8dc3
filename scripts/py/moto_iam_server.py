"""moto's server for the IAM-enforcing tests, with the request body kept for signature checks.

With IAM enforced, moto recomputes each request's SigV4 signature from the body it received. For
a form-encoded (AWS query protocol) request its server has already parsed the body into a form
by then, so the raw body is gone and moto re-encodes the parsed fields with botocore's encoder.
That reproduces what boto3 sent, but not what another SDK sent: the AWS SDK for Rust encodes a
space as %20 where botocore writes +, so every SNS Publish whose message has a space is refused
with a 403 before its action is even looked at (moto 5.2.5, werkzeug 3.1).

Reading the body into werkzeug's cache before moto touches the form keeps both: the form is then
parsed from the cache, and the body moto signs is the one on the wire. Used for the IAM server
only (`moto_launcher.py ... --iam`); the plain server is moto's own.
"""

import sys

from moto.core.responses import BaseResponse

_decompress = BaseResponse.decompress_request_body


def _keep_body(self, request):
    # A gzip body is swapped for a decompressing stream first; caching it here would keep the
    # compressed bytes.
    if request.content_encoding != "gzip":
        request.get_data(cache=True)
    _decompress(self, request)


BaseResponse.decompress_request_body = _keep_body

if __name__ == "__main__":
    from moto.server import main
    main(sys.argv[1:])
