#!/usr/bin/env python3
"""Upload benchmark: edgerec's uploader against a plain single PUT of the same bytes and
against a reference multipart client with the same part size, all to moto's S3 server on
loopback (tests/peers/s3_server.py, in the venv scripts/moto-venv.sh makes). Writes a
Markdown report.

Phase 1 records one large segment (a high-bitrate clip replayed as fast as possible) with
uploads held back by a closed time window. Phase 2 starts edgerec without streams and with
the window open, so the process does nothing but upload: its CPU time (rusage) divided by the
bytes gives CPU seconds per uploaded GB.

Timing: edgerec's upload time is its own measurement, the `elapsed_ms` of its `uploaded` log
line (from reading the row to the recorded commit: file reads, signing, every request, the
HEAD check, the durable index commits). The two baselines are timed by this script
(time.monotonic) from their first request to the last answer: one plain PUT (Python's
http.client, no signing, no checks), and a minimal multipart client (CreateMultipartUpload,
the same parts one after another, CompleteMultipartUpload, no signing, no checks), which
shows what moto's multipart handling costs by itself, so the report separates moto's cost
from edgerec's.
"""
import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, r.read()


def config(root, port, stream_clip, window_closed, part_size):
    lines = [
        'device_id = "bench"',
        "[storage]",
        f'root = "{root}"',
        'max_bytes = "20GiB"',
        'min_free = "1MiB"',
        "require_marker = false",
        "[[templates]]",
        'name = "t"',
        'formats = ["fmp4"]',
        'interval = "2h"',
        'upload = "vod"',
        "[[rules]]",
        'template = "t"',
    ]
    if stream_clip:
        lines += ["[[streams]]", 'name = "big"', f'source = "file:{stream_clip}?realtime=false"']
    lines += ["[upload]", f'part_size = "{part_size}"']
    if window_closed:
        t = time.localtime(time.time() + 7200)
        lines.append(f'windows = ["{t.tm_hour:02}:00-{t.tm_hour:02}:30"]')
    lines += [
        "[[upload.targets]]",
        'name = "vod"',
        'url = "s3://bench/rec"',
        f'endpoint = "http://127.0.0.1:{port}"',
        'key = "{stream}/{file}"',
        'access_key_id = "bench"',
        'secret_access_key = "bench-secret"',
        "allow_http = true",
    ]
    return "\n".join(lines) + "\n"


# moto checks that a request is signed, not the signature.
FAKE_AUTH = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=bench/20200101/us-east-1/s3/aws4_request, "
    "SignedHeaders=host, Signature=0"
}


def reference_multipart(port, key, data, part_size):
    """Upload `data` as a multipart upload with `part_size` parts, plainly; returns seconds."""
    import re

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    t0 = time.monotonic()
    c.request("POST", f"/bench/{key}?uploads", headers=FAKE_AUTH)
    r = c.getresponse()
    body = r.read()
    assert r.status == 200, body
    upload_id = re.search(rb"<UploadId>(.*?)</UploadId>", body).group(1).decode()
    etags = []
    for n, off in enumerate(range(0, len(data), part_size), start=1):
        c.request(
            "PUT",
            f"/bench/{key}?partNumber={n}&uploadId={upload_id}",
            body=data[off : off + part_size],
            headers=FAKE_AUTH,
        )
        r = c.getresponse()
        r.read()
        assert r.status == 200
        etags.append(r.getheader("ETag"))
    parts = "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in enumerate(etags, 1)
    )
    c.request(
        "POST",
        f"/bench/{key}?uploadId={upload_id}",
        body=f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode(),
        headers=FAKE_AUTH,
    )
    r = c.getresponse()
    r.read()
    assert r.status == 200
    return time.monotonic() - t0, len(etags)


def size_bytes(s):
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    for u, m in units.items():
        if s.endswith(u):
            return int(float(s[: -len(u)]) * m)
    return int(s)


def uploads(edgerec, cfg):
    out = subprocess.run([edgerec, "uploads", "--json", "--config", cfg], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--edgerec", required=True)
    ap.add_argument("--python", required=True, help="the moto venv's python")
    ap.add_argument("--work", required=True)
    ap.add_argument("--frames", type=int, default=70, help="1280x720 noise frames, ~1.4 MB each")
    ap.add_argument("--part-size", default="8MiB")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    clip = os.path.join(args.work, f"noise-{args.frames}.mp4")
    if not os.path.exists(clip):
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
             "nullsrc=s=1280x720:r=25,geq=lum='random(1)*255':cb=128:cr=128",
             "-frames:v", str(args.frames), "-c:v", "libx264", "-preset", "ultrafast",
             "-qp", "4", "-g", "10", "-pix_fmt", "yuv420p", clip],
            check=True,
        )
    port = free_port()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    peer = subprocess.Popen(
        [args.python, os.path.join(repo, "tests/peers/s3_server.py"), "--port", str(port), "--bucket", "bench"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        assert peer.stdout.readline().startswith(b"ready")
        time.sleep(0.5)
        root = os.path.join(args.work, "data")
        subprocess.run(["rm", "-rf", root], check=True)
        cfg = os.path.join(args.work, "edgerec.toml")
        log = open(os.path.join(args.work, "edgerec.log"), "w")

        # Phase 1: record the segment, uploads held back.
        with open(cfg, "w") as f:
            f.write(config(root, port, clip, True, args.part_size))
        rec = subprocess.Popen([args.edgerec, "run", "--config", cfg], stdout=log, stderr=log)
        deadline = time.time() + 120
        while time.time() < deadline:
            u = uploads(args.edgerec, cfg)
            if u and u["backlog"]["count"] >= 1:
                break
            time.sleep(0.5)
        rec.terminate()
        rec.wait()
        rows = json.loads(subprocess.run([args.edgerec, "segments", "--json", "--config", cfg],
                                         capture_output=True, text=True, check=True).stdout)
        seg = rows[0]
        path = os.path.join(root, seg["files"][0]["path"])
        size = os.path.getsize(path)

        # Phase 2: upload only.
        with open(cfg, "w") as f:
            f.write(config(root, port, None, False, args.part_size))
        t0 = time.time()
        up = subprocess.Popen([args.edgerec, "run", "--config", cfg], stdout=log, stderr=log)
        while time.time() < t0 + 300:
            u = uploads(args.edgerec, cfg)
            if u and u["backlog"]["count"] == 0:
                break
            time.sleep(0.2)
        up.terminate()
        _, _, ru = os.wait4(up.pid, 0)
        cpu = ru.ru_utime + ru.ru_stime
        import re

        text = open(os.path.join(args.work, "edgerec.log")).read()
        m = re.findall(r"uploaded segment=\S+ bytes=(\d+) elapsed_ms=(\d+)", text)
        assert m, "no upload in the log"
        wire = int(m[-1][1]) / 1000.0
        name = os.path.basename(path)
        reqs = json.loads(get(port, "/_edgerec/stats")[1])["requests"]
        mine = [r for r in reqs if r["path"] == f"/bench/rec/big/{name}" and r["method"] == "PUT"]
        sent = sum(r["bytes"] for r in mine)

        # The baselines: one plain PUT of the same bytes, timed from request to response,
        # and a plain multipart upload with the same part size.
        data = open(path, "rb").read()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        b0 = time.monotonic()
        c.request("PUT", "/bench/baseline.mp4", body=data, headers={"Content-Type": "application/octet-stream", **FAKE_AUTH})
        r = c.getresponse()
        r.read()
        assert r.status == 200
        base_wire = time.monotonic() - b0
        multi_wire, multi_parts = reference_multipart(port, "reference.mp4", data, size_bytes(args.part_size))

        mib = size / (1 << 20)
        report = f"""# Upload benchmark

`make bench` (benches/upload_bench.py): one {mib:.1f} MiB segment uploaded by edgerec
(part size {args.part_size}, no bandwidth cap) to moto's S3 server on loopback, against two
clients written for the comparison (Python's http.client, no signing, no checks), timed by the
script from their first request to their last answer: one plain PUT of the same file, and a
multipart upload of it in {multi_parts} parts of the same size, one after another. edgerec's
time is its own (`elapsed_ms` of the `uploaded` log line): reading the file (the next part is
read while one is sent), signing, {len(mine)} part requests, completing, the HEAD check and the
durable index commits (one per part and one at the end).

| | seconds | MiB/s | relative to the PUT | relative to plain multipart |
| --- | --- | --- | --- | --- |
| plain single PUT | {base_wire:.2f} | {mib / base_wire:.1f} | 1.00 | |
| plain multipart ({multi_parts} parts) | {multi_wire:.2f} | {mib / multi_wire:.1f} | {base_wire / multi_wire:.2f} | 1.00 |
| edgerec upload | {wire:.2f} | {mib / wire:.1f} | {base_wire / wire:.2f} | {multi_wire / wire:.2f} |

The plain multipart row is moto's own cost of a multipart upload (it stores every part, then
assembles the object at completion). The last column compares edgerec with that: 1.00 would
mean edgerec adds nothing to moto's cost; above 1, edgerec is faster than the sequential
reference (it reads the next part while sending one and keeps its connection open).

edgerec sent {sent} body bytes for a {size}-byte file. CPU time of the upload-only process
(start to drained, rusage user+system): {cpu:.2f} s, **{cpu / (size / 1e9):.1f} CPU s per
uploaded GB** (this includes process start and recovery; on loopback, moto's own Python request
handling dominates the wall time of both).
"""
        with open(args.out, "w") as f:
            f.write(report)
        print(report)
    finally:
        peer.kill()
        peer.wait()


if __name__ == "__main__":
    sys.exit(main())
