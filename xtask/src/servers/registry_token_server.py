"""A registry token server for `docker/distribution`'s `auth: token` mode, as the Docker Registry
v2 token authentication spec describes it: GET /token?service=S&scope=repository:NAME:ACTIONS with
basic auth answers {"token": JWT}; the JWT is RS256-signed with a key whose self-signed
certificate is the registry's rootcertbundle, and carries that certificate in its x5c header.

Usage: registry_token_server.py PORT KEY_PEM CERT_PEM USER PASSWORD ISSUER
Signing is done by the openssl command line tool (no Python packages needed).
"""

import base64
import json
import subprocess
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PORT, KEY, CERT, USER, PASSWORD, ISSUER = sys.argv[1:7]
CERT_DER = subprocess.run(
    ["openssl", "x509", "-in", CERT, "-outform", "DER"], capture_output=True, check=True
).stdout
EXPECTED = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(data: bytes) -> bytes:
    return subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", KEY], input=data, capture_output=True, check=True
    ).stdout


class Handler(BaseHTTPRequestHandler):
    def answer(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path != "/token":
            return self.answer(404, {"errors": [{"code": "NOT_FOUND"}]})
        if self.headers.get("Authorization", "") != EXPECTED:
            return self.answer(
                401,
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                [("WWW-Authenticate", 'Basic realm="flowstore token server"')],
            )
        query = parse_qs(url.query)
        access = []
        for scope in query.get("scope", []):
            parts = scope.split(":")
            kind, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(CERT_DER).decode()]}
        claims = {
            "iss": ISSUER,
            "sub": USER,
            "aud": query.get("service", [""])[0],
            "exp": now + 300,
            "nbf": now - 60,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        token = signing_input + "." + b64url(sign(signing_input.encode()))
        self.answer(200, {"token": token, "access_token": token, "expires_in": 300})

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(PORT)), Handler).serve_forever()
