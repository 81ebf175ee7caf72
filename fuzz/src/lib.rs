//! Helpers shared by the fuzz targets: splitting one fuzz input into packets, and driving
//! a depacketizer or an RTSP connection with them. Each target is a few lines around these.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use edgerec::media::ingest::depack::{Depacketizer, Rtp};
use edgerec::media::ingest::rtsp::framing::{Framer, Item};
use edgerec::media::ingest::rtsp::session::{After, Session};
use edgerec::media::ingest::{Ingest, IngestContext};

/// Splits `data` into packets, each led by a 16-bit big-endian length (clamped to what is
/// left), so the fuzzer controls packet boundaries.
pub fn packets(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([data[0], data[1]])).min(data.len() - 2);
        out.push(&data[2..2 + n]);
        data = &data[2 + n..];
    }
    out
}

/// Feeds every packet that parses as RTP to `d` and drains it, checking the unit bounds
/// the recorder relies on.
pub fn depacketize(mut d: Depacketizer, data: &[u8]) {
    for p in packets(data) {
        if let Ok(rtp) = Rtp::parse(p) {
            let _ = d.push(&rtp);
        }
        let mut n = 0;
        while let Some(u) = d.pull() {
            n += 1;
            assert!(u.data.len() <= 8 << 20, "a unit of {} bytes", u.data.len());
        }
        assert!(n <= 64, "{n} units from one packet");
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    ingest: Ingest,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let toml = format!(
            "device_id = \"d\"\n[storage]\nroot = \"{}\"\nmax_bytes = \"1GiB\"\nmin_free = 0\n\
             [[templates]]\nname = \"t\"\nformats = [\"fmp4\"]\ninterval = \"60s\"\n\
             [[rules]]\ntemplate = \"t\"\napp = \"live\"\n\
             [ingest]\nmax_request_bytes = 8192\nmax_buffered_bytes = \"1MiB\"\n",
            dir.path().display()
        );
        let config = Arc::new(edgerec::config::Config::from_toml_str(&toml).expect("config"));
        let store = Arc::new(edgerec::storage::store::Store::open(dir.path()).expect("store"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let clock: edgerec::util::clock::SharedClock = Arc::new(edgerec::util::clock::SystemClock);
        let recorders = edgerec::pipeline::factory::RecorderFactory {
            device: config.device_id.clone(),
            deny: edgerec::sync::upload::DenyFlag::load(&store),
            store,
            clock: clock.clone(),
            closed: Arc::new(tokio::sync::Notify::new()),
            pacer: None,
            health: edgerec::storage::watchdog::health::StorageHealth::with_defaults(clock.clone()),
            pipes: Default::default(),
            time: None,
        };
        let ingest = Ingest::new(IngestContext {
            config,
            clock,
            cancel: tokio_util::sync::CancellationToken::new(),
            recorder: Arc::new(recorders),
            board: Arc::new(edgerec::media::health::StatusBoard::default()),
        });
        Fixture {
            _dir: dir,
            rt,
            ingest,
        }
    })
}

/// One RTSP publisher connection fed `data` in the read sizes the fuzzer chose (see
/// [`packets`]), through the framing and the protocol state as the server runs them.
pub fn rtsp_connection(data: &[u8]) {
    let f = fixture();
    f.rt.block_on(async {
        let peer: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        let mut framer = Framer::new(f.ingest.limits().max_request_bytes);
        let mut session = Session::new(f.ingest.clone(), peer, "fuzz".into());
        'conn: for read in packets(data) {
            framer.extend(read);
            loop {
                match framer.next_item() {
                    Ok(None) => break,
                    Ok(Some(Item::Interleaved { channel, payload })) => {
                        if session.data(channel, &payload).is_err() {
                            break 'conn;
                        }
                    }
                    Ok(Some(Item::Request(req))) => {
                        let udp = (read.len() % 2 == 0).then_some((40_000, 40_001));
                        let (resp, after, _) = session.handle_with_udp(&req, udp);
                        let mut out = Vec::new();
                        resp.write(&mut out).expect("responses encode");
                        if after == After::Close {
                            break 'conn;
                        }
                    }
                    Err(_) => break 'conn,
                }
            }
            assert!(framer.buffered() <= framer.limit());
        }
        drop(session);
        // Let the push's recording session (if one started) finish.
        tokio::task::yield_now().await;
    });
}
