#!/usr/bin/env python3
"""S3 test peer for the upload tests: moto's S3 server (from the venv scripts/moto-venv.sh
makes) behind a small WSGI middleware that records what it saw.

    s3_server.py --port P [--bucket B ...]        moto, with buckets created at start
    s3_server.py --port P --html                  answers every request 200 with an HTML page

Control endpoints (not S3; under /_edgerec/):
    GET  /_edgerec/stats      JSON: every S3 request seen so far, each with method, path,
                              query, status, body bytes, and the times its body started and
                              finished arriving (monotonic seconds)
    GET  /_edgerec/uploads?bucket=B   JSON list of incomplete multipart uploads (key, id)
    GET  /_edgerec/object?bucket=B&key=K   the object's bytes (404 if missing)
    GET  /_edgerec/keys?bucket=B     JSON list of the bucket's keys
    GET  /_edgerec/create?bucket=B   create a bucket

Prints "ready PORT" on stdout once it accepts connections. Stops on SIGTERM/SIGINT.
"""
import argparse
import io
import json
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


class Recorder:
    """Reads each request body itself (timing it), then hands moto the bytes."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.requests = []

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
        rec = {
            "method": environ.get("REQUEST_METHOD"),
            "path": path,
            "query": environ.get("QUERY_STRING", ""),
            "bytes": got,
            "complete": got == length,
            "t_start": t0 if t0 is not None else t1,
            "t_end": t1,
            "status": None,
        }

        def sr(status, headers, exc_info=None):
            rec["status"] = int(status.split()[0])
            return start_response(status, headers, exc_info)

        out = self.app(environ, sr)
        with self.lock:
            self.requests.append(rec)
        return out

    def moto(self, method, path, query=""):
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
            import re

            ups = []
            for block in re.findall(rb"<Upload>(.*?)</Upload>", xml, re.S):
                key = re.search(rb"<Key>(.*?)</Key>", block)
                uid = re.search(rb"<UploadId>(.*?)</UploadId>", block)
                ups.append([key.group(1).decode() if key else "", uid.group(1).decode() if uid else ""])
            body = json.dumps({"status": st, "uploads": ups}).encode()
        elif path == "/_edgerec/keys":
            st, xml = self.moto("GET", "/" + q["bucket"], "list-type=2&max-keys=1000")
            import re

            keys = [k.decode() for k in re.findall(rb"<Key>(.*?)</Key>", xml)]
            body = json.dumps({"status": st, "keys": keys}).encode()
        elif path == "/_edgerec/create":
            st, _ = self.moto("PUT", "/" + q["bucket"])
            body = json.dumps({"status": st}).encode()
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
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.html:
        app = html_app
    else:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        moto_app = DomainDispatcherApplication(create_backend_app)
        app = Recorder(moto_app)
        for b in args.bucket:
            st, body = app.moto("PUT", "/" + b)
            if st != 200:
                print(f"cannot create bucket {b}: {st} {body[:200]!r}", file=sys.stderr)
                sys.exit(1)
    print(f"ready {args.port}", flush=True)
    run_simple("127.0.0.1", args.port, app, threaded=True)


if __name__ == "__main__":
    main()
