#!/usr/bin/env python3
"""A webhook receiver for edgerec's end-to-end tests (tests/e2e_webhooks.rs).

Runs in the venv scripts/moto-venv.sh makes (it installs `standardwebhooks` from PyPI).
It is an independent check of edgerec's webhooks:

- POST /hooks: Standard Webhooks. Every request's signature is verified with the
  `standardwebhooks` package (the reference implementation, not ours); a bad one is
  answered 400 and recorded as such.
- POST /tencent: Tencent's recording callback (event 100). `sign` is checked with hashlib
  as md5(key + t), `t` must be in the future.
- POST /gone: always 410 Gone.

Every request is recorded, in arrival order. The control port (a second listener that
stays up) answers:
- GET /log: the records as JSON;
- POST /down?seconds=N: closes the hooks listener (connections are refused) for N seconds.

Usage: webhook_receiver.py --port P --control-port C --secret whsec_... --tencent-key K
"""

import argparse
import hashlib
import json
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

from standardwebhooks.webhooks import Webhook

LOCK = threading.Lock()
RECORDS = []


class Server(socketserver.ThreadingMixIn, HTTPServer):
    allow_reuse_address = True
    daemon_threads = True


def hooks_handler(args):
    wh = Webhook(args.secret)

    class Hooks(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def answer(self, code):
            self.send_response(code)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            path = urlparse(self.path).path
            rec = {"path": path, "at": time.time()}
            if path == "/gone":
                rec["ok"] = True
                code = 410
            elif path == "/hooks":
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = wh.verify(body, headers)
                    rec.update(ok=True, id=headers["webhook-id"], seq=payload.get("event_seq"),
                               kind=payload.get("kind"), body=payload)
                    rec["id_matches_body"] = payload.get("id") == headers["webhook-id"]
                    code = 204
                except Exception as e:  # noqa: BLE001 - any failure is a bad request
                    rec.update(ok=False, error=repr(e))
                    code = 400
            elif path == "/tencent":
                try:
                    p = json.loads(body)
                    want = hashlib.md5((args.tencent_key + str(p["t"])).encode()).hexdigest()
                    ok = p["sign"] == want and p["event_type"] == 100 and p["t"] > time.time()
                    rec.update(ok=ok, body=p)
                    code = 200 if ok else 400
                except Exception as e:  # noqa: BLE001
                    rec.update(ok=False, error=repr(e))
                    code = 400
            else:
                rec["ok"] = False
                code = 404
            rec["code"] = code
            with LOCK:
                RECORDS.append(rec)
            self.answer(code)

    return Hooks


class Hooks:
    """The hooks listener, which can be closed for a while."""

    def __init__(self, args):
        self.args = args
        self.server = None
        self.start()

    def start(self):
        self.server = Server(("127.0.0.1", self.args.port), hooks_handler(self.args))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self, seconds):
        self.server.shutdown()
        self.server.server_close()

        def back():
            time.sleep(seconds)
            while True:
                try:
                    self.start()
                    return
                except OSError:
                    time.sleep(0.2)

        threading.Thread(target=back, daemon=True).start()


def control_handler(hooks):
    class Control(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def reply(self, code, body=b""):
            self.send_response(code)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if urlparse(self.path).path == "/log":
                with LOCK:
                    data = json.dumps(RECORDS).encode()
                self.reply(200, data)
            else:
                self.reply(404)

        def do_POST(self):
            u = urlparse(self.path)
            if u.path == "/down":
                seconds = float(parse_qs(u.query).get("seconds", ["60"])[0])
                hooks.down(seconds)
                self.reply(204)
            else:
                self.reply(404)

    return Control


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--control-port", type=int, required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--tencent-key", required=True)
    args = ap.parse_args()
    hooks = Hooks(args)
    control = Server(("127.0.0.1", args.control_port), control_handler(hooks))
    print("ready", flush=True)
    control.serve_forever()


if __name__ == "__main__":
    main()
