"""A CodeCommit endpoint whose judge is botocore, the library under the AWS CLI and boto3.

For every request it receives it checks, with botocore itself (in this order):
- the operation (X-Amz-Target) exists in botocore's CodeCommit service model and the content
  type is the model's JSON protocol version;
- the JSON body against that operation's input shape (botocore.validate.validate_parameters:
  required members, types, unknown members, minimum lengths);
- the SigV4 signature, recomputed with botocore.auth.SigV4Auth over the headers the request
  says it signed (which must include host, x-amz-date and every x-amz-* header sent), for the
  region and date of its credential scope; the region must be one botocore knows CodeCommit in.

A request botocore accepts is re-signed by botocore for the fake CodeCommit API (UPSTREAM, the
`fake-apis` server, which holds the seeded repositories) and its answer returned as is; a request
it refuses gets AWS's error shape (403 InvalidSignatureException, 400 ValidationException /
UnknownOperationException) with botocore's reason. Every verdict is kept, by repository name:
GET /_judge/verdicts?repo=NAME lists them. GET /_judge/endpoint?region=R answers the endpoint
URL botocore resolves for CodeCommit in R.

Usage: botocore_judge.py PORT UPSTREAM ACCESS_KEY SECRET_KEY
"""

import datetime
import json
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import botocore
import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ParamValidationError
from botocore.validate import validate_parameters

PORT, UPSTREAM, ACCESS_KEY, SECRET_KEY = sys.argv[1:5]
SESSION = botocore.session.get_session()
MODEL = SESSION.get_service_model("codecommit")
TARGET_PREFIX = MODEL.metadata["targetPrefix"]
CONTENT_TYPE = "application/x-amz-json-" + MODEL.metadata["jsonVersion"]
SIGNING_NAME = MODEL.signing_name
REGIONS = {
    region
    for partition in SESSION.get_available_partitions()
    for region in SESSION.get_available_regions("codecommit", partition_name=partition)
}
VERDICTS = {}
LOCK = threading.Lock()


class Refused(Exception):
    def __init__(self, status, kind, reason):
        super().__init__(reason)
        self.status, self.kind, self.reason = status, kind, reason


def parse_authorization(value):
    """`AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` as a dict."""
    algorithm, _, rest = (value or "").partition(" ")
    if algorithm != "AWS4-HMAC-SHA256":
        raise Refused(403, "IncompleteSignature", f"algorithm {algorithm!r} is not AWS4-HMAC-SHA256")
    parts = {}
    for item in rest.split(","):
        key, _, val = item.strip().partition("=")
        parts[key] = val
    for key in ("Credential", "SignedHeaders", "Signature"):
        if not parts.get(key):
            raise Refused(403, "IncompleteSignature", f"Authorization has no {key}")
    return parts


def judge_signature(method, path, headers, body):
    """Recomputes the signature with botocore; returns the region of the credential scope."""
    auth = parse_authorization(headers.get("authorization"))
    scope = auth["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise Refused(403, "IncompleteSignature", f"bad credential scope {auth['Credential']!r}")
    key, date, region, service, _ = scope
    if key != ACCESS_KEY:
        raise Refused(403, "UnrecognizedClientException", "unknown access key")
    if service != SIGNING_NAME:
        raise Refused(403, "InvalidSignatureException", f"service {service!r} is not {SIGNING_NAME!r}")
    if region not in REGIONS:
        raise Refused(403, "InvalidSignatureException", f"botocore knows no CodeCommit region {region!r}")
    amz_date = headers.get("x-amz-date", "")
    if not amz_date.startswith(date):
        raise Refused(403, "InvalidSignatureException", "x-amz-date does not match the credential scope date")
    try:
        sent = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise Refused(403, "IncompleteSignature", f"x-amz-date {amz_date!r} is not ISO 8601 basic")
    skew = abs((datetime.datetime.now(datetime.timezone.utc) - sent).total_seconds())
    if skew > 15 * 60:
        raise Refused(403, "InvalidSignatureException", "Signature expired: x-amz-date is more than 15 minutes off")
    signed = auth["SignedHeaders"].split(";")
    if signed != sorted(signed):
        raise Refused(403, "InvalidSignatureException", "SignedHeaders are not sorted")
    must = {"host", "x-amz-date"} | {h for h in headers if h.startswith("x-amz-")}
    missing = sorted(must - set(signed))
    if missing:
        raise Refused(403, "InvalidSignatureException", f"headers sent but not signed: {missing}")
    request = AWSRequest(
        method=method,
        url=f"http://{headers.get('host', '')}{path}",
        data=body,
        headers={h: headers[h] for h in signed if h in headers},
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(
        Credentials(ACCESS_KEY, SECRET_KEY, headers.get("x-amz-security-token")),
        SIGNING_NAME,
        region,
    )
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if expected != auth["Signature"]:
        token = headers.get("x-amz-security-token")
        if token:
            canonical = canonical.replace(token, "<session token>")
        raise Refused(
            403,
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided "
            f"(botocore's canonical request:\n{canonical})",
        )
    return region


def judge_operation(headers, body):
    target = headers.get("x-amz-target", "")
    prefix, _, name = target.partition(".")
    if prefix != TARGET_PREFIX or name not in MODEL.operation_names:
        raise Refused(400, "UnknownOperationException", f"botocore's CodeCommit model has no operation {target!r}")
    ctype = headers.get("content-type", "")
    if ctype.split(";")[0].strip() != CONTENT_TYPE:
        raise Refused(400, "SerializationException", f"content type {ctype!r} is not {CONTENT_TYPE}")
    try:
        params = json.loads(body or b"{}")
    except ValueError as e:
        raise Refused(400, "SerializationException", f"the body is not JSON: {e}")
    try:
        validate_parameters(params, MODEL.operation_model(name).input_shape)
    except ParamValidationError as e:
        raise Refused(400, "ValidationException", str(e))
    return name, params


def forward(name, region, body, token):
    """Re-signs the accepted request with botocore for the fake API and returns its answer."""
    url = UPSTREAM.rstrip("/") + "/codecommit/"
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": f"{TARGET_PREFIX}.{name}"},
    )
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, token), SIGNING_NAME, region).add_auth(request)
    prepared = urllib.request.Request(url, data=body, headers=dict(request.headers.items()), method="POST")
    try:
        with urllib.request.urlopen(prepared, timeout=30) as r:
            return r.status, r.headers.get("content-type", CONTENT_TYPE), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", CONTENT_TYPE), e.read()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        sys.stderr.write("botocore-judge: " + (fmt % args) + "\n")

    def answer(self, status, body, ctype="application/x-amz-json-1.1"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path == "/_judge/verdicts":
            with LOCK:
                found = VERDICTS.get(query.get("repo", [""])[0], [])
                body = json.dumps(found).encode()
            return self.answer(200, body, "application/json")
        if url.path == "/_judge/endpoint":
            region = query.get("region", ["us-east-1"])[0]
            client = SESSION.create_client(
                "codecommit", region_name=region, aws_access_key_id="x", aws_secret_access_key="y"
            )
            body = json.dumps({"region": region, "endpoint_url": client.meta.endpoint_url}).encode()
            return self.answer(200, body, "application/json")
        if url.path == "/_judge/health":
            return self.answer(200, json.dumps({"botocore": botocore.__version__}).encode(), "application/json")
        self.answer(404, b'{"message": "not found"}', "application/json")

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v.strip() for k, v in self.headers.items()}
        try:
            repo = json.loads(body or b"{}").get("repositoryName", "")
        except (ValueError, AttributeError):
            repo = ""
        verdict = {"target": headers.get("x-amz-target", ""), "signature": False, "params": False}
        try:
            name, params = judge_operation(headers, body)
            verdict["params"] = True
            verdict["operation"] = name
            verdict["input"] = params
            region = judge_signature("POST", self.path, headers, body)
            verdict["signature"] = True
            verdict["region"] = region
            status, ctype, answer = forward(name, region, body, headers.get("x-amz-security-token"))
            verdict["upstream_status"] = status
        except Refused as e:
            verdict["refused"] = f"{e.kind}: {e.reason}"
            status, ctype = e.status, CONTENT_TYPE
            answer = json.dumps({"__type": e.kind, "message": f"botocore judge: {e.reason}"}).encode()
        with LOCK:
            VERDICTS.setdefault(repo, []).append(verdict)
        self.answer(status, answer, ctype)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(PORT)), Handler)
    sys.stderr.write(f"botocore-judge: botocore {botocore.__version__} on {PORT}, upstream {UPSTREAM}\n")
    server.serve_forever()
