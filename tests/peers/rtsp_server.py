#!/usr/bin/python3
"""RTSP test peer for edgerec's integration tests and benchmark.

Serves MP4 files (H.264 or H.265 video, optional AAC audio) over RTSP, TCP-interleaved and
UDP, with gst-rtsp-server. Every client gets its own copy of the clip from the start (a
non-shared media factory), looped forever with timestamps that keep increasing across
loops, paced in real time.

    /usr/bin/python3 tests/peers/rtsp_server.py --port 8554 --mount /cam=clip.mp4 \
        [--mount /other=clip2.mp4] [--ts /raw=stream.ts] [--protocols tcp|udp] \
        [--latm] [--user U --password W] [--host 127.0.0.1]

``--ts MOUNT=FILE`` serves the H.264 of an MPEG-TS file once (no loop, no audio) through
``filesrc ! tsdemux ! h264parse ! rtph264pay``, paced in real time by its timestamps:
parameter sets that change inside the stream (say, two encodes of different sizes
concatenated) reach the client within one RTSP session. (MPEG-TS rather than raw Annex-B,
because h264parse gives raw input decode times but no presentation times, and the
payloader needs those.) ``--protocols`` restricts the
lower transports every mount offers (default: both TCP-interleaved and UDP), so a test can
prove which one a client uses. ``--latm`` sends AAC as MP4A-LATM (``rtpmp4apay``, RFC 6416,
what many encoders send) instead of MPEG4-GENERIC (``rtpmp4gpay``, RFC 3640).

Prints ``READY <port>`` on stdout once listening, nothing else. Errors go to stderr and end
the process with a non-zero status. SIGTERM/SIGINT stop it cleanly.

How the loop works: the media pipeline a client plays is ``appsrc ! rtpXpay`` per track.
A separate "reader" pipeline per client (``filesrc ! qtdemux ! parse ! appsink``) feeds
those appsrcs; at end of file it seeks back to 0 and adds the clip length to every
timestamp it forwards. The appsrcs' bounded queues block the reader, and the RTSP sinks
sync on the clock, so data flows at real-time speed. A track the client did not SETUP
(a recorder that cannot use the audio) is dropped by its pump from the PLAY on, since
nothing takes it and its appsrc would otherwise block the reader, and so the video. Needs the distribution's python3
(``/usr/bin/python3``) for PyGObject.
"""

import argparse
import signal
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

# How far (in time) the reader may run ahead of what the RTSP sinks have sent.
QUEUE_NS = 500 * Gst.MSECOND


def die(msg):
    sys.stderr.write("rtsp_server: %s\n" % msg)
    sys.stderr.flush()
    sys.exit(2)


def reader_description(path, with_audio):
    """The gst-launch description of a pipeline demuxing ``path`` into per-track appsinks."""
    loc = path.replace("\\", "\\\\").replace('"', '\\"')
    queue = "queue max-size-time=2000000000 max-size-bytes=0 max-size-buffers=0"
    sink = "appsink sync=false emit-signals=false max-buffers=16"
    desc = 'filesrc location="%s" ! qtdemux name=d d.video_0 ! %s ! parsebin ! %s name=v' % (
        loc,
        queue,
        sink,
    )
    if with_audio:
        desc += " d.audio_0 ! %s ! aacparse ! %s name=a" % (queue, sink)
    return desc


def has_audio(path):
    """Whether the MP4 file has an audio track (asks qtdemux which pads it makes)."""
    pipe = Gst.Pipeline()
    src = Gst.ElementFactory.make("filesrc")
    src.set_property("location", path)
    demux = Gst.ElementFactory.make("qtdemux")
    pipe.add(src)
    pipe.add(demux)
    src.link(demux)
    pads = []
    done = threading.Event()
    demux.connect("pad-added", lambda _d, pad: pads.append(pad.get_name()))
    demux.connect("no-more-pads", lambda _d: done.set())
    pipe.set_state(Gst.State.PAUSED)
    done.wait(10)
    pipe.set_state(Gst.State.NULL)
    if not done.is_set():
        die("cannot parse %s as MP4" % path)
    return any(p.startswith("audio_") for p in pads)


class Clip:
    """What a mount serves: the file, its tracks' caps (probed once at start)."""

    def __init__(self, path, latm=False):
        self.path = path
        self.latm = latm
        self.video_caps = None
        self.audio_caps = None
        self._probe()

    def _probe(self):
        with_audio = has_audio(self.path)
        pipe = Gst.parse_launch(reader_description(self.path, with_audio))
        pipe.set_state(Gst.State.PAUSED)
        if pipe.get_state(10 * Gst.SECOND)[0] == Gst.StateChangeReturn.SUCCESS:
            self.video_caps = pipe.get_by_name("v").get_static_pad("sink").get_current_caps()
            if with_audio:
                apad = pipe.get_by_name("a").get_static_pad("sink")
                self.audio_caps = apad.get_current_caps()
        pipe.set_state(Gst.State.NULL)
        if self.video_caps is None:
            die("cannot read a video track from %s" % self.path)
        name = self.video_caps.get_structure(0).get_name()
        if name not in ("video/x-h264", "video/x-h265"):
            die("%s: unsupported video codec %s (H.264 or H.265 only)" % (self.path, name))

    def launch(self):
        """The media pipeline description for one client."""
        vname = self.video_caps.get_structure(0).get_name()
        pay = "rtph264pay" if vname == "video/x-h264" else "rtph265pay"
        src = (
            "appsrc name=src%d format=time is-live=false block=true "
            "max-bytes=0 max-buffers=0 max-time=%d stream-type=stream"
        )
        desc = "( %s ! %s name=pay0 pt=96 config-interval=-1 " % (src % (0, QUEUE_NS), pay)
        if self.audio_caps is not None:
            apay = "rtpmp4apay" if self.latm else "rtpmp4gpay"
            desc += "%s ! %s name=pay1 pt=97 " % (src % (1, QUEUE_NS), apay)
        return desc + ")"


class Feeder:
    """Reads one clip in a loop into one client's appsrcs."""

    def __init__(self, clip, vsrc, asrc):
        self.clip = clip
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.offset = 0  # ns added to every timestamp in the current loop
        self.loop_end = 0  # highest (pts + duration) seen in the current loop, source time
        self.pipe = Gst.parse_launch(reader_description(clip.path, asrc is not None))
        vsrc.set_property("caps", clip.video_caps)
        self.pumps = [(self.pipe.get_by_name("v"), vsrc)]
        if asrc is not None:
            asrc.set_property("caps", clip.audio_caps)
            self.pumps.append((self.pipe.get_by_name("a"), asrc))
        self.threads = []
        self.started = False
        self.unwanted = set()  # indexes of the tracks the client did not set up

    def start(self):
        with self.lock:
            if self.started:
                return
            self.started = True
        self.pipe.set_state(Gst.State.PLAYING)
        self.drained = [False] * len(self.pumps)
        for i, (sink, src) in enumerate(self.pumps):
            t = threading.Thread(target=self._pump, args=(i, sink, src), daemon=True)
            t.start()
            self.threads.append(t)

    def _pump(self, index, sink, src):
        # Each pump forwards one track. A pump that has drained its track marks itself
        # done; the last one to do so rewinds the reader and moves the offset by the clip
        # length, so no sample of a loop can get the next loop's offset.
        while not self.stopped.is_set():
            sample = sink.emit("try-pull-sample", 100 * Gst.MSECOND)
            if sample is None:
                if sink.get_property("eos"):
                    self._at_eos(index)
                continue
            if index in self.unwanted:
                sample = None
                continue
            buf = sample.get_buffer()
            # Drop our reference now: appsink reuses its sample object only if nobody
            # else holds it.
            sample = None
            out = buf.copy()
            with self.lock:
                offset = self.offset
                if buf.pts != Gst.CLOCK_TIME_NONE:
                    dur = buf.duration if buf.duration != Gst.CLOCK_TIME_NONE else 0
                    self.loop_end = max(self.loop_end, buf.pts + dur)
            if buf.pts != Gst.CLOCK_TIME_NONE:
                out.pts = buf.pts + offset
            if buf.dts != Gst.CLOCK_TIME_NONE:
                out.dts = buf.dts + offset
            buf = None
            if src.emit("push-buffer", out) != Gst.FlowReturn.OK:
                self.stop()
                return

    def _at_eos(self, index):
        with self.lock:
            self.drained[index] = True
            if not all(self.drained):
                return
            self.drained = [False] * len(self.drained)
            self.offset += self.loop_end
            self.loop_end = 0
            ok = self.pipe.seek_simple(
                Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.ACCURATE, 0
            )
            if not ok:
                sys.stderr.write("rtsp_server: cannot rewind %s\n" % self.clip.path)
                self.stopped.set()

    def drop_tracks(self, indexes):
        """The client set up only some tracks: the others are read and thrown away."""
        for i in indexes:
            if i < len(self.pumps):
                self.unwanted.add(i)
                # Wake a pump blocked on the full appsrc nobody reads.
                self.pumps[i][1].set_property("max-time", 0)
                self.pumps[i][1].set_property("max-bytes", 0)

    def stop(self):
        self.stopped.set()

    def close(self):
        self.stopped.set()
        for t in self.threads:
            if t is not threading.current_thread():
                t.join(2)
        self.pipe.set_state(Gst.State.NULL)


class LoopingFactory(GstRtspServer.RTSPMediaFactory):
    """A non-shared factory: each client gets a fresh media and a fresh feeder."""

    def __init__(self, clip):
        super().__init__()
        self.clip = clip
        self.set_shared(False)
        self.set_launch(clip.launch())
        self.connect("media-configure", self._on_configure)

    def _on_configure(self, _factory, media):
        bin_ = media.get_element()
        vsrc = bin_.get_by_name("src0")
        asrc = bin_.get_by_name("src1")
        feeder = Feeder(self.clip, vsrc, asrc)
        # Start reading when the appsrc first asks for data (it has started, so pushes
        # are accepted; the media is prerolling and waits for them). Stop with the media.
        vsrc.connect("need-data", lambda _src, _len: feeder.start())
        media.connect("unprepared", lambda _m: feeder.close())
        media._edgerec_feeder = feeder  # keep it alive as long as the media
        media._edgerec_setup = set()  # stream indexes the client set up


def on_setup(_client, ctx):
    setup = getattr(ctx.media, "_edgerec_setup", None)
    if setup is not None and ctx.stream is not None:
        setup.add(ctx.stream.get_index())


def on_play(_client, ctx):
    feeder = getattr(ctx.media, "_edgerec_feeder", None)
    if feeder is not None:
        setup = ctx.media._edgerec_setup
        feeder.drop_tracks([i for i in range(ctx.media.n_streams()) if i not in setup])


def on_client(_server, client):
    client.connect("setup-request", on_setup)
    client.connect("play-request", on_play)


class TsFactory(GstRtspServer.RTSPMediaFactory):
    """A non-shared factory serving an MPEG-TS file's H.264 once, parameter changes included."""

    def __init__(self, path):
        super().__init__()
        loc = path.replace("\\", "\\\\").replace('"', '\\"')
        self.set_shared(False)
        self.set_launch(
            '( filesrc location="%s" ! tsdemux ! h264parse ! '
            "rtph264pay name=pay0 pt=96 config-interval=-1 )" % loc
        )


PROTOCOLS = {
    "any": None,
    "tcp": GstRtsp.RTSPLowerTrans.TCP,
    "udp": GstRtsp.RTSPLowerTrans.UDP,
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--mount",
        action="append",
        default=[],
        help="MOUNT=FILE, e.g. /cam=clip.mp4 (repeatable)",
    )
    p.add_argument(
        "--ts",
        action="append",
        default=[],
        help="MOUNT=FILE, an MPEG-TS with H.264, served once (repeatable)",
    )
    p.add_argument("--protocols", choices=sorted(PROTOCOLS), default="any")
    p.add_argument("--latm", action="store_true", help="AAC as MP4A-LATM (rtpmp4apay)")
    p.add_argument("--user")
    p.add_argument("--password")
    a = p.parse_args()
    if (a.user is None) != (a.password is None):
        p.error("--user and --password go together")
    if not a.mount and not a.ts:
        p.error("at least one --mount or --ts")
    return a


def main():
    args = parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()

    auth = None
    if args.user is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)

    mounts_given = [(m, False) for m in args.mount] + [(m, True) for m in args.ts]
    for m, ts in mounts_given:
        if "=" not in m:
            die("--mount/--ts want MOUNT=FILE, got %r" % m)
        path, file_ = m.split("=", 1)
        if not path.startswith("/"):
            path = "/" + path
        factory = TsFactory(file_) if ts else LoopingFactory(Clip(file_, args.latm))
        if PROTOCOLS[args.protocols] is not None:
            factory.set_protocols(PROTOCOLS[args.protocols])
        if auth is not None:
            role = Gst.Structure.new_from_string(
                "user, media.factory.access=(boolean)true, "
                "media.factory.construct=(boolean)true"
            )
            factory.add_role_from_structure(role)
        mounts.add_factory(path, factory)

    server.connect("client-connected", on_client)
    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        die("cannot listen on %s:%d" % (args.host, args.port))
    # Drop sessions of clients that vanished without TEARDOWN (e.g. killed recorders).
    GLib.timeout_add_seconds(2, lambda: server.get_session_pool().cleanup() >= 0)
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    sys.stdout.write("READY %d\n" % args.port)
    sys.stdout.flush()
    loop.run()


if __name__ == "__main__":
    main()
