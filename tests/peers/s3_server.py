#!/usr/bin/env python3
"""S3 test peer for the upload tests: moto's S3 server (from the venv scripts/moto-venv.sh
makes) behind a small WSGI middleware that records what it saw.

    s3_server.py --port P [--bucket B ...]        moto, with buckets created at start
    s3_server.py --port P --html                  answers every request 200 with an HTML page

Options:
    --auth           moto checks every request's SigV4 signature against an IAM user it
                     creates with full S3 rights (INITIAL_NO_AUTH_ACTION_COUNT = 0); the
                     ready line then carries its key id and secret. Requests are served one
                     at a time (the control endpoints below bypass the check).
    --journal FILE   after every stored object (a PUT, or a completed multipart upload),
                     append a JSON line {bucket, key, md5, bytes} read back from moto. The
                     file outlives the server, so a test can stop and restart it (moto
                     keeps its data in memory) and still count every object stored once.

Control endpoints (not S3; under /_edgerec/):
    GET  /_edgerec/stats      JSON: every S3 request seen so far, each with method, path,
                              query, status, body bytes, whether the whole body arrived,
                              the times its body started and finished arriving (monotonic
                              seconds), its checksum headers (x-amz-checksum-*,
                              x-amz-sdk-checksum-algorithm, content-md5), all header names,
                              and the base64 SHA-256 of the body it received
    GET  /_edgerec/uploads?bucket=B   JSON list of incomplete multipart uploads (key, id)
    GET  /_edgerec/object?bucket=B&key=K   the object's bytes (404 if missing)
    GET  /_edgerec/keys?bucket=B     JSON list of the bucket's keys
    GET  /_edgerec/create?bucket=B   create a bucket
    GET  /_edgerec/create_multipart?bucket=B&key=K   start a multipart upload; JSON upload id

Prints "ready PORT" (with --auth: "ready PORT KEY_ID SECRET") on stdout once it accepts
connections. Stops on SIGTERM/SIGINT.
"""
import argparse
import base64
import contextlib
import hashlib
import io
import json
import re
import signal
import sys
import threading
import time
from urllib.parse import parse_qs

from werkzeug.serving import run_simple


def html_app(environ, start_response):
    body = b"<!DOCTYPE html><html><head><title>Welcome</title></head><body>Portal</body></html>"
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
    return [body]


CHECKSUM_HEADERS = ("x-amz-checksum-", "x-amz-sdk-checksum-algorithm", "content-md5")


def headers_of(environ):
    """Request headers by lower-case name."""
    out = {}
    for k, v in environ.items():
        if k.startswith("HTTP_"):
            out[k[5:].replace("_", "-").lower()] = v
        elif k in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            out[k.replace("_", "-").lower()] = v
    return out


def enable_auth():
    """An IAM user with full S3 rights; from now on moto checks every signature."""
    from moto import settings
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iam.models import iam_backends

    iam = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
    iam.create_user("us-east-1", "edgerec")
    key = iam.create_access_key("edgerec")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy("edgerec", "s3", json.dumps(policy))
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    return key.access_key_id, key.secret_access_key


class Recorder:
    """Reads each request body itself (timing it), then hands moto the bytes."""

    def __init__(self, app, journal=None):
        self.app = app
        self.lock = threading.Lock()
        self.requests = []
        self.journal = journal
        # With --auth: one request at a time, so the control endpoints can lift the check.
        self.auth_lock = None

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_edgerec/"):
            return self.control(path, environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        stream = environ["wsgi.input"]
        chunks = []
        got = 0
        t0 = None
        while got < length:
            c = stream.read(min(65536, length - got))
            if not c:
                break
            if t0 is None:
                t0 = time.monotonic()
            chunks.append(c)
            got += len(c)
        t1 = time.monotonic()
        data = b"".join(chunks)
        environ["wsgi.input"] = io.BytesIO(data)
        environ["CONTENT_LENGTH"] = str(len(data))
        headers = headers_of(environ)
        rec = {
            "method": environ.get("REQUEST_METHOD"),
            "path": path,
            "query": environ.get("QUERY_STRING", ""),
            "bytes": got,
            "complete": got == length,
            "t_start": t0 if t0 is not None else t1,
            "t_end": t1,
            "status": None,
            "checksums": {k: v for k, v in headers.items() if k.startswith(CHECKSUM_HEADERS)},
            "body_sha256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
            "header_names": sorted(headers),
        }

        def sr(status, headers, exc_info=None):
            rec["status"] = int(status.split()[0])
            return start_response(status, headers, exc_info)

        if got < length:
            # The client went away mid-body: like S3, store nothing (IncompleteBody).
            body = b"<Error><Code>IncompleteBody</Code></Error>"
            sr("400 Bad Request", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
            with self.lock:
                self.requests.append(rec)
            return [body]
        with self.auth_lock or contextlib.nullcontext():
            out = list(self.app(environ, sr))
            if self.journal and rec["status"] == 200:
                self.log_stored(rec)
        with self.lock:
            self.requests.append(rec)
        return out

    def log_stored(self, rec):
        """Journal an object stored by a PUT (not a part) or a completed multipart upload."""
        q = rec["query"]
        stored = (rec["method"] == "PUT" and "uploadId" not in q) or (
            rec["method"] == "POST" and "uploadId" in q
        )
        parts = rec["path"].lstrip("/").split("/", 1)
        if not stored or len(parts) != 2 or not parts[1]:
            return
        st, data = self.moto_unchecked("GET", rec["path"])
        if st != 200:
            return
        line = {"bucket": parts[0], "key": parts[1], "md5": hashlib.md5(data).hexdigest(), "bytes": len(data)}
        with open(self.journal, "a") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()

    def moto(self, method, path, query=""):
        """A request straight to moto, bypassing the signature check (control endpoints)."""
        with self.auth_lock or contextlib.nullcontext():
            return self.moto_unchecked(method, path, query)

    def moto_unchecked(self, method, path, query=""):
        from moto import settings

        saved = settings.INITIAL_NO_AUTH_ACTION_COUNT
        settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
        try:
            return self.moto_call(method, path, query)
        finally:
            settings.INITIAL_NO_AUTH_ACTION_COUNT = saved

    def moto_call(self, method, path, query=""):
        env = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "0",
            "HTTP_HOST": "127.0.0.1",
            # moto checks that a request is signed, not the signature.
            "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=test/20200101/us-east-1/s3/aws4_request, "
            "SignedHeaders=host, Signature=0",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.url_scheme": "http",
            "CONTENT_LENGTH": "0",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.errors": sys.stderr,
        }
        result = {}

        def sr(status, headers, exc_info=None):
            result["status"] = int(status.split()[0])

        body = b"".join(self.app(env, sr))
        return result.get("status", 500), body

    def control(self, path, environ, start_response):
        q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        status, ctype, body = 200, "application/json", b""
        if path == "/_edgerec/stats":
            with self.lock:
                body = json.dumps({"requests": self.requests}).encode()
        elif path == "/_edgerec/uploads":
            st, xml = self.moto("GET", "/" + q["bucket"], "uploads")
            ups = []
            for block in re.findall(rb"<Upload>(.*?)</Upload>", xml, re.S):
                key = re.search(rb"<Key>(.*?)</Key>", block)
                uid = re.search(rb"<UploadId>(.*?)</UploadId>", block)
                ups.append([key.group(1).decode() if key else "", uid.group(1).decode() if uid else ""])
            body = json.dumps({"status": st, "uploads": ups}).encode()
        elif path == "/_edgerec/keys":
            st, xml = self.moto("GET", "/" + q["bucket"], "list-type=2&max-keys=1000")
            keys = [k.decode() for k in re.findall(rb"<Key>(.*?)</Key>", xml)]
            body = json.dumps({"status": st, "keys": keys}).encode()
        elif path == "/_edgerec/create":
            st, _ = self.moto("PUT", "/" + q["bucket"])
            body = json.dumps({"status": st}).encode()
        elif path == "/_edgerec/create_multipart":
            st, xml = self.moto("POST", "/" + q["bucket"] + "/" + q["key"], "uploads")
            uid = re.search(rb"<UploadId>(.*?)</UploadId>", xml)
            body = json.dumps({"status": st, "upload_id": uid.group(1).decode() if uid else None}).encode()
        elif path == "/_edgerec/object":
            st, data = self.moto("GET", "/" + q["bucket"] + "/" + q["key"])
            status, ctype, body = st, "application/octet-stream", data
        else:
            status, body = 404, b"{}"
        start_response(f"{status} X", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [body]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bucket", action="append", default=[])
    ap.add_argument("--html", action="store_true")
    ap.add_argument("--auth", action="store_true")
    ap.add_argument("--journal")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.html:
        app = html_app
    else:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        moto_app = DomainDispatcherApplication(create_backend_app)
        app = Recorder(moto_app, args.journal)
        for b in args.bucket:
            st, body = app.moto("PUT", "/" + b)
            if st != 200:
                print(f"cannot create bucket {b}: {st} {body[:200]!r}", file=sys.stderr)
                sys.exit(1)
    ready = f"ready {args.port}"
    if args.auth and not args.html:
        app.auth_lock = threading.Lock()
        key_id, secret = enable_auth()
        ready += f" {key_id} {secret}"
    print(ready, flush=True)
    run_simple("127.0.0.1", args.port, app, threaded=True)


if __name__ == "__main__":
    main()
