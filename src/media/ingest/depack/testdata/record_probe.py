#!/usr/bin/python3
"""A probe RTSP RECORD server, to see what a publisher really sends and does.

It accepts OPTIONS/ANNOUNCE/SETUP/RECORD/TEARDOWN (TCP-interleaved and UDP), logs every
request to stderr, saves the ANNOUNCEd SDP and the first RTP packets of each channel, and
can answer the SETUP of some tracks with an error status, to see what the publisher does
then. Not used by the tests; it made the captures in this directory (see README.md).

    record_probe.py --port 18554 --dump DIR [--packets 12]
    record_probe.py --port 18554 --refuse PCMU --status "461 Unsupported Transport"

``--dump`` writes ``DIR/announce.sdp`` and ``DIR/chN.rtp`` (the first ``--packets`` RTP
packets of channel N, each led by a 16-bit big-endian length: the format of the
``*.rtp`` files here; UDP pairs are numbered as channels in SETUP order). ``--refuse`` is a
regular expression on the track's encoding (from ``a=rtpmap``, or the static payload type's
name such as ``PCMU/8000``). Exits after ``--seconds`` without a new connection.
"""
import argparse
import os
import re
import socket
import sys
import threading

STATIC = {"0": "PCMU/8000", "8": "PCMA/8000", "9": "G722/8000", "14": "MPA/90000"}

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--refuse", help="regex on the encoding of tracks whose SETUP is refused")
ap.add_argument("--status", default="404 Not Found", help="the refusal's status line")
ap.add_argument("--dump", help="directory for the SDP and packets")
ap.add_argument("--packets", type=int, default=12)
ap.add_argument("--seconds", type=float, default=30)
args = ap.parse_args()

counts = {}
lock = threading.Lock()


def log(*x):
    print(*x, file=sys.stderr, flush=True)


def got(channel, data):
    with lock:
        n = counts.get(channel, 0)
        counts[channel] = n + 1
        if args.dump and n < args.packets and channel % 2 == 0:
            with open(os.path.join(args.dump, "ch%d.rtp" % channel), "ab") as f:
                f.write(len(data).to_bytes(2, "big") + data)


def udp_reader(sock, channel):
    while True:
        try:
            d, _ = sock.recvfrom(65535)
        except OSError:
            return
        got(channel, d)


def serve(conn):
    buf = b""
    tracks = []  # [control, encoding]
    next_channel = 0

    def more():
        nonlocal buf
        d = conn.recv(65536)
        if not d:
            raise EOFError
        buf += d

    while True:
        while len(buf) < 4:
            more()
        if buf[:1] == b"$":
            ch, n = buf[1], int.from_bytes(buf[2:4], "big")
            while len(buf) < 4 + n:
                more()
            got(ch, buf[4 : 4 + n])
            buf = buf[4 + n :]
            continue
        while b"\r\n\r\n" not in buf:
            more()
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        hdr = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdr[k.strip().lower()] = v.strip()
        n = int(hdr.get("content-length", "0"))
        while len(buf) < n:
            more()
        body, buf = buf[:n], buf[n:]
        log(">>", lines[0], "| Transport:", hdr.get("transport", ""))
        method, url = lines[0].split(" ")[:2]
        status, extra = "200 OK", ""
        if method == "ANNOUNCE":
            sdp = body.decode()
            log(sdp)
            if args.dump:
                with open(os.path.join(args.dump, "announce.sdp"), "w", newline="") as f:
                    f.write(sdp)
            for line in sdp.splitlines():
                if line.startswith("m="):
                    tracks.append([None, STATIC.get(line.split()[3])])
                elif line.startswith("a=rtpmap:") and tracks:
                    tracks[-1][1] = line.split(" ", 1)[1]
                elif line.startswith("a=control:") and tracks:
                    tracks[-1][0] = line.split(":", 1)[1]
        elif method == "OPTIONS":
            extra = "Public: OPTIONS, ANNOUNCE, SETUP, RECORD, TEARDOWN\r\n"
        elif method == "SETUP":
            enc = next((t[1] for t in tracks if t[0] and url.endswith(t[0])), None) or "?"
            transport = hdr.get("transport", "")
            if args.refuse and re.search(args.refuse, enc):
                status = args.status
                log("   refusing the SETUP of", enc)
            elif "interleaved" in transport:
                extra = "Transport: %s\r\nSession: 1;timeout=60\r\n" % transport
            else:
                client = re.search(r"client_port=(\d+)-(\d+)", transport)
                pair = []
                for i in range(2):
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    s.bind(("127.0.0.1", 0))
                    threading.Thread(
                        target=udp_reader, args=(s, next_channel + i), daemon=True
                    ).start()
                    pair.append(s.getsockname()[1])
                next_channel += 2
                extra = (
                    "Transport: RTP/AVP/UDP;unicast;client_port=%s-%s;server_port=%d-%d;"
                    "mode=record\r\nSession: 1;timeout=60\r\n"
                    % (client.group(1), client.group(2), pair[0], pair[1])
                )
        elif method == "RECORD":
            extra = "Session: 1;timeout=60\r\n"
        resp = "RTSP/1.0 %s\r\nCSeq: %s\r\n%sContent-Length: 0\r\n\r\n" % (
            status,
            hdr.get("cseq", "0"),
            extra,
        )
        log("<<", resp.split("\r\n")[0])
        conn.sendall(resp.encode())
        if method == "TEARDOWN":
            return


def handle(conn):
    try:
        serve(conn)
    except (EOFError, ConnectionResetError) as e:
        log("connection closed:", repr(e))
    log("packets per channel:", dict(sorted(counts.items())))


srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", args.port))
srv.listen(4)
srv.settimeout(args.seconds)
print("READY", flush=True)
try:
    while True:
        c, _ = srv.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()
except socket.timeout:
    pass
