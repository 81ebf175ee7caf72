//! End to end: the decoder configuration record in edgerec's files equals the one
//! `ffmpeg -c copy out.mp4` writes for the same stream, on every network path (issue 11,
//! "one codec toolkit"). One recorder per codec pulls the clip from the RTSP test peer
//! (`tests/peers/rtsp_server.py`, gst-rtsp-server) and takes ffmpeg's RTSP push (and, for
//! H.264, its RTMP push) at the same time. The `avcC`/`hvcC` boxes are found by a box walk
//! written here, not by edgerec's code; every file is also probed and decoded by ffmpeg.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// The body of the first `want` box on the path moov/trak/mdia/minf/stbl/stsd/<entry>.
fn find_box(data: &[u8], want: &[u8; 4]) -> Option<Vec<u8>> {
    let mut at = 0;
    while at + 8 <= data.len() {
        let size32 = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = data[at + 4..at + 8].try_into().unwrap();
        let (header, size) = match size32 {
            1 => (
                16,
                u64::from_be_bytes(data.get(at + 8..at + 16)?.try_into().unwrap()) as usize,
            ),
            0 => (8, data.len() - at),
            n => (8, n),
        };
        if size < header || at + size > data.len() {
            return None;
        }
        let body = &data[at + header..at + size];
        if &kind == want {
            return Some(body.to_vec());
        }
        // Bytes before the child boxes: stsd has version/flags and an entry count, a visual
        // sample entry 78 bytes of fixed fields (ISO/IEC 14496-12 §12.1.3).
        let skip = match &kind {
            b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl" => Some(0),
            b"stsd" => Some(8),
            b"avc1" | b"avc3" | b"hvc1" | b"hev1" => Some(78),
            _ => None,
        };
        if let Some(found) = skip.and_then(|s| find_box(body.get(s..)?, want)) {
            return Some(found);
        }
        at += size;
    }
    None
}

fn config_box(path: &Path, want: &[u8; 4]) -> Vec<u8> {
    let data = std::fs::read(path).unwrap();
    find_box(&data, want).unwrap_or_else(|| {
        panic!(
            "no {} box in {}",
            String::from_utf8_lossy(want),
            path.display()
        )
    })
}

/// `ffmpeg -i CLIP -c copy ref.mp4`: the reference record.
fn ffmpeg_copy(clip: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("ffmpeg-copy.mp4");
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-y", "-i"])
        .arg(clip)
        .args(["-c", "copy"])
        .arg(&out)
        .status()
        .expect("run ffmpeg");
    assert!(st.success(), "ffmpeg -c copy failed");
    out
}

/// Records `clip` through RTSP pull (stream `pull`), ffmpeg's RTSP push (`rtsppush`) and,
/// with `rtmp`, ffmpeg's RTMP push (`rtmppush`); returns the first finished file of each.
fn record_paths(clip: &Path, dir: &Path, rtmp: bool) -> Vec<(&'static str, PathBuf)> {
    let peer = RtspPeer::start(&[("/cam", clip)]);
    let root = dir.join("data");
    let (rtsp_port, rtmp_port) = (free_port(), free_port());
    let mut toml = TestConfig::new(&root)
        .stream("pull", &format!("{}?transport=tcp", peer.url("/cam")))
        .to_toml();
    toml += &format!("\n[ingest]\nrtsp = \"127.0.0.1:{rtsp_port}\"\nsession_timeout = \"5s\"\n");
    if rtmp {
        toml += &format!("rtmp = \"127.0.0.1:{rtmp_port}\"\n");
    }
    let cfg = dir.join("edgerec.toml");
    std::fs::write(&cfg, toml).unwrap();
    let mut daemon = Daemon::start(&cfg);
    let mut ports = vec![rtsp_port];
    if rtmp {
        ports.push(rtmp_port);
    }
    for port in &ports {
        let up = wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok()
        });
        assert!(up, "push server never listened; log:\n{}", daemon.log());
    }
    let mut pushes = vec![(
        "rtsp",
        format!("rtsp://127.0.0.1:{rtsp_port}/live/rtsppush"),
    )];
    if rtmp {
        pushes.push(("flv", format!("rtmp://127.0.0.1:{rtmp_port}/live/rtmppush")));
    }
    let children: Vec<_> = pushes
        .iter()
        .map(|(format, url)| {
            let mut c = Command::new("ffmpeg");
            c.args(["-hide_banner", "-nostdin", "-v", "error", "-re", "-i"])
                .arg(clip)
                .args(["-c", "copy", "-f", format]);
            if *format == "rtsp" {
                c.args(["-rtsp_transport", "tcp"]);
            }
            c.arg(url)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run ffmpeg")
        })
        .collect();
    for (mut child, (format, _)) in children.into_iter().zip(&pushes) {
        let st = wait_timeout(&mut child, Duration::from_secs(60));
        assert!(
            st.is_some_and(|s| s.success()),
            "ffmpeg {format} push failed ({st:?}); log:\n{}",
            daemon.log()
        );
    }
    let log = stop_clean(&mut daemon);
    drop(peer);
    let mut names = vec!["pull", "rtsppush"];
    if rtmp {
        names.push("rtmppush");
    }
    names
        .into_iter()
        .map(|name| {
            let file = segment_files(&root)
                .into_iter()
                .find(|f| f.starts_with(&format!("{name}/")))
                .unwrap_or_else(|| panic!("no file for stream {name}; log:\n{log}"));
            let file = root.join(file);
            assert_decodes(&file);
            (name, file)
        })
        .collect()
}

#[test]
fn h264_high_profile_avcc_is_byte_identical_to_ffmpegs_on_rtsp_pull_rtsp_push_and_rtmp_push() {
    let clip = clip(&ClipSpec {
        preset: "veryfast", // x264 uses 8x8 transforms: High profile
        audio: false,
        ..ClipSpec::h264(6, 1)
    });
    let dir = workdir("codec-avcc");
    let reference = config_box(&ffmpeg_copy(&clip, dir.path()), b"avcC");
    assert_eq!(reference[1], 100, "the clip is not High profile");
    for (path, file) in record_paths(&clip, dir.path(), true) {
        assert_eq!(
            config_box(&file, b"avcC"),
            reference,
            "{path}: avcC differs from ffmpeg's ({})",
            file.display()
        );
        let p = probe(&file);
        assert_eq!(p.stream("video").unwrap().profile, "High", "{path}");
    }
}

/// The fields of an `hvcC` (ISO/IEC 14496-15 §8.3.3.1) the comparison covers.
#[derive(Debug, PartialEq, Eq)]
struct Hvcc {
    /// profile space, tier, profile idc, compatibility flags, constraint flags, level.
    profile_tier_level: Vec<u8>,
    chroma_format: u8,
    bit_depth_luma: u8,
    bit_depth_chroma: u8,
    /// NAL units of the VPS, SPS and PPS arrays. ffmpeg also stores x265's SEI (its
    /// encoder settings) in a fourth array; edgerec leaves SEI in the samples, where the
    /// stream carries it, so SEI arrays are not compared.
    parameter_sets: Vec<(u8, Vec<Vec<u8>>)>,
}

fn hvcc_fields(r: &[u8]) -> Hvcc {
    assert!(r.len() >= 23 && r[0] == 1, "not an hvcC: {r:02x?}");
    let mut parameter_sets = Vec::new();
    let mut at = 23;
    for _ in 0..r[22] {
        let t = r[at] & 0x3f;
        let n = u16::from_be_bytes([r[at + 1], r[at + 2]]);
        at += 3;
        let mut nals = Vec::new();
        for _ in 0..n {
            let len = usize::from(u16::from_be_bytes([r[at], r[at + 1]]));
            nals.push(r[at + 2..at + 2 + len].to_vec());
            at += 2 + len;
        }
        if (32..=34).contains(&t) {
            parameter_sets.push((t, nals));
        }
    }
    Hvcc {
        profile_tier_level: r[1..13].to_vec(),
        chroma_format: r[16] & 3,
        bit_depth_luma: (r[17] & 7) + 8,
        bit_depth_chroma: (r[18] & 7) + 8,
        parameter_sets,
    }
}

#[test]
fn h265_main10_hvcc_fields_equal_ffmpegs_on_rtsp_pull_and_rtsp_push() {
    let clip = clip(&ClipSpec {
        codec: "h265",
        pix_fmt: "yuv420p10le",
        audio: false,
        ..ClipSpec::h264(6, 1)
    });
    let dir = workdir("codec-hvcc");
    let reference = hvcc_fields(&config_box(&ffmpeg_copy(&clip, dir.path()), b"hvcC"));
    assert_eq!(reference.profile_tier_level[0] & 0x1f, 2, "not Main 10");
    assert_eq!(
        (reference.bit_depth_luma, reference.bit_depth_chroma),
        (10, 10)
    );
    assert_eq!(reference.parameter_sets.len(), 3);
    for (path, file) in record_paths(&clip, dir.path(), false) {
        assert_eq!(
            hvcc_fields(&config_box(&file, b"hvcC")),
            reference,
            "{path}: hvcC differs from ffmpeg's ({})",
            file.display()
        );
        let p = probe(&file);
        let v = p.stream("video").unwrap();
        assert_eq!(
            (v.pix_fmt.as_str(), v.profile.as_str()),
            ("yuv420p10le", "Main 10"),
            "{path}"
        );
    }
}
