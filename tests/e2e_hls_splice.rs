//! End to end: HLS splicing (`resume_window`). An RTMP push from ffmpeg that drops and comes
//! back within the window continues the **same** playlist after one `EXT-X-DISCONTINUITY`
//! — also when edgerec was killed with `kill -9` in the gap — and the playlist is finished
//! (`EXT-X-ENDLIST`) only once the window passed without a return; a return with other
//! codec parameters gets a new `EXT-X-MAP`. ffmpeg reads every playlist clean and hls.js in
//! Chromium plays the spliced one past the discontinuity.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use common::browser::{play, StaticServer};
use common::*;

/// A recorder of HLS (1 s segments) with the RTMP server on `port`.
fn config(dir: &Path, port: u16, resume_window: &str) -> (PathBuf, PathBuf) {
    let root = dir.join("data");
    let toml = TestConfig {
        formats: vec!["hls".into()],
        interval: "1s".into(),
        fragment: "500ms".into(),
        ..TestConfig::new(&root)
    }
    .to_toml()
    .replacen(
        "\n[[rules]]",
        &format!("resume_window = \"{resume_window}\"\n\n[[rules]]"),
        1,
    ) + &format!("\n[ingest]\nrtmp = \"127.0.0.1:{port}\"\n");
    let cfg = dir.join("edgerec.toml");
    std::fs::write(&cfg, toml).unwrap();
    (cfg, root)
}

fn start(cfg: &Path, port: u16) -> Daemon {
    let daemon = Daemon::start(cfg);
    let up = wait_until(Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "RTMP server never listened; log:\n{}", daemon.log());
    daemon
}

/// Push `clip` to `live/cam` until it ends, then wait until the stream's segments are all
/// closed (the session is over).
fn push_whole(clip: &Path, port: u16, cfg: &Path, daemon: &Daemon) {
    let mut ffmpeg: Child = rtmp_push(clip, &format!("rtmp://127.0.0.1:{port}/live/cam"));
    let status = wait_timeout(&mut ffmpeg, Duration::from_secs(30));
    if status.is_none() {
        let _ = ffmpeg.kill();
        let _ = ffmpeg.wait();
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "ffmpeg push failed; log:\n{}",
        daemon.log()
    );
    let settled = wait_until(Duration::from_secs(20), || {
        let rows = segments(cfg);
        let mine: Vec<_> = rows.iter().filter(|r| r.stream == "cam").collect();
        !mine.is_empty() && mine.iter().all(|r| r.state == "closed")
    });
    assert!(settled, "{:#?}\nlog:\n{}", segments(cfg), daemon.log());
}

/// The closed `.m4s` files of `cam`, in recording order.
fn m4s_files(cfg: &Path) -> Vec<String> {
    let rows = segments(cfg);
    let mut rows: Vec<&SegmentRow> = closed_of(&rows, "cam");
    rows.sort_by_key(|r| r.seq);
    rows.iter().map(|r| r.files[0].path.clone()).collect()
}

fn discontinuities(p: &Playlist) -> usize {
    p.text.matches("#EXT-X-DISCONTINUITY\n").count()
}

/// Each playlist passes the RFC checks and ffmpeg decodes it clean; together they list
/// every closed `.m4s` once.
fn check_all(pls: &[Playlist], root: &Path, cfg: &Path) {
    let mut listed = Vec::new();
    for pl in pls {
        pl.check(root);
        assert_decodes(&pl.path);
        listed.extend(pl.entries.iter().map(|e| pl.file_of(e, root)));
    }
    let mut all = m4s_files(cfg);
    all.sort();
    listed.sort();
    assert_eq!(listed, all, "every .m4s in exactly one playlist");
}

#[test]
fn a_push_back_within_the_window_continues_the_playlist_and_hls_js_plays_past_the_splice() {
    let clip = clip(&ClipSpec::h264(4, 1));
    let dir = workdir("hls-splice");
    let port = free_port();
    let (cfg, root) = config(dir.path(), port, "8s");
    let mut daemon = start(&cfg, port);
    push_whole(&clip, port, &cfg, &daemon);
    let first = playlists(&root);
    assert_eq!(first.len(), 1, "{first:#?}");
    assert!(
        !first[0].ended,
        "finished in the window:\n{}",
        first[0].text
    );
    // The push is gone for about 5 s, then comes back.
    std::thread::sleep(Duration::from_secs(5));
    assert!(!playlists(&root)[0].ended, "finished within the window");
    push_whole(&clip, port, &cfg, &daemon);
    // Finished once the window passed without another return.
    let ended = wait_until(Duration::from_secs(20), || {
        playlists(&root).iter().all(|p| p.ended)
    });
    let log = stop_clean(&mut daemon);
    let pls = playlists(&root);
    assert!(ended, "{pls:#?}\nlog:\n{log}");
    assert_eq!(pls.len(), 1, "one spliced recording: {pls:#?}");
    let pl = &pls[0];
    assert_eq!(discontinuities(pl), 1, "{}", pl.text);
    assert_eq!(pl.text.matches("#EXT-X-ENDLIST").count(), 1, "{}", pl.text);
    assert_eq!(
        pl.text.matches("#EXT-X-MAP:").count(),
        1,
        "same codec parameters, same init: {}",
        pl.text
    );
    check_all(&pls, &root, &cfg);
    // The splice comes after the first push's segments, before the second's.
    let before = pl.text.split("#EXT-X-DISCONTINUITY").next().unwrap();
    let first_uris = first[0].entries.iter().map(|e| e.uri.as_str());
    assert!(
        first_uris.clone().all(|u| before.contains(u)),
        "{}",
        pl.text
    );
    assert!(pl.duration_s() > 7.0, "{}", pl.text);

    // hls.js in Chromium, past the first push's 4 s.
    let server = StaticServer::start(&root);
    let rel = pl.path.strip_prefix(&root).unwrap().to_str().unwrap();
    let r = play(&server.url(rel), "hls", 6.5);
    assert_eq!(r["ok"], true, "hls.js: {r:#}\n{}", pl.text);
}

#[test]
fn a_gap_longer_than_the_window_gives_two_finished_playlists() {
    let clip = clip(&ClipSpec::h264(3, 1));
    let dir = workdir("hls-splice-late");
    let port = free_port();
    let (cfg, root) = config(dir.path(), port, "2s");
    let mut daemon = start(&cfg, port);
    push_whole(&clip, port, &cfg, &daemon);
    // The timer finishes the first recording once its window passed.
    let first_ended = wait_until(Duration::from_secs(15), || {
        playlists(&root).first().is_some_and(|p| p.ended)
    });
    assert!(
        first_ended,
        "{:#?}\nlog:\n{}",
        playlists(&root),
        daemon.log()
    );
    push_whole(&clip, port, &cfg, &daemon);
    let both = wait_until(Duration::from_secs(15), || {
        let pls = playlists(&root);
        pls.len() == 2 && pls.iter().all(|p| p.ended)
    });
    let log = stop_clean(&mut daemon);
    let pls = playlists(&root);
    assert!(both, "{pls:#?}\nlog:\n{log}");
    for pl in &pls {
        assert_eq!(discontinuities(pl), 0, "{}", pl.text);
    }
    check_all(&pls, &root, &cfg);
}

#[test]
fn kill_9_in_the_gap_then_a_return_within_the_window_continues_the_same_playlist() {
    let clip = clip(&ClipSpec::h264(3, 1));
    let dir = workdir("hls-splice-kill");
    let port = free_port();
    let (cfg, root) = config(dir.path(), port, "10s");
    let mut daemon = start(&cfg, port);
    push_whole(&clip, port, &cfg, &daemon);
    daemon.kill9();
    let torn = playlists(&root);
    assert_eq!(torn.len(), 1, "{torn:#?}");
    assert!(!torn[0].ended, "{}", torn[0].text);

    // The restart's recovery keeps the waiting playlist open, and the push continues it.
    let mut daemon = start(&cfg, port);
    assert!(!playlists(&root)[0].ended, "finished by recovery");
    push_whole(&clip, port, &cfg, &daemon);
    let pls = playlists(&root);
    assert_eq!(pls.len(), 1, "{pls:#?}\nlog:\n{}", daemon.log());
    assert!(
        !pls[0].ended,
        "ENDLIST before the window passed:\n{}",
        pls[0].text
    );
    let ended = wait_until(Duration::from_secs(20), || playlists(&root)[0].ended);
    let log = stop_clean(&mut daemon);
    let pls = playlists(&root);
    assert!(ended, "{pls:#?}\nlog:\n{log}");
    assert_eq!(pls.len(), 1, "{pls:#?}");
    assert_eq!(discontinuities(&pls[0]), 1, "{}", pls[0].text);
    for (a, b) in torn[0].entries.iter().zip(&pls[0].entries) {
        assert_eq!(a.uri, b.uri, "{}", pls[0].text);
    }
    assert!(pls[0].entries.len() > torn[0].entries.len());
    check_all(&pls, &root, &cfg);
}

#[test]
fn a_return_with_another_resolution_gets_a_new_init_section_and_map() {
    let small = clip(&ClipSpec::h264(3, 1));
    let large = clip(&ClipSpec {
        width: 480,
        height: 360,
        ..ClipSpec::h264(3, 1)
    });
    let dir = workdir("hls-splice-map");
    let port = free_port();
    let (cfg, root) = config(dir.path(), port, "4s");
    let mut daemon = start(&cfg, port);
    push_whole(&small, port, &cfg, &daemon);
    push_whole(&large, port, &cfg, &daemon);
    let ended = wait_until(Duration::from_secs(15), || {
        playlists(&root).iter().all(|p| p.ended)
    });
    let log = stop_clean(&mut daemon);
    let pls = playlists(&root);
    assert!(ended, "{pls:#?}\nlog:\n{log}");
    assert_eq!(pls.len(), 1, "{pls:#?}");
    let pl = &pls[0];
    assert_eq!(discontinuities(pl), 1, "{}", pl.text);
    let maps: Vec<&str> = pl
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .map(|m| m.trim_end_matches('"'))
        .collect();
    assert_eq!(maps.len(), 2, "{}", pl.text);
    assert!(maps[1].ends_with("-1.init.mp4"), "{}", pl.text);
    let dir_of = pl.path.parent().unwrap();
    for m in &maps {
        assert!(dir_of.join(m).is_file(), "{m}");
    }
    // The new MAP comes right after the discontinuity.
    assert!(
        pl.text.contains(&format!(
            "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"{}\"\n",
            maps[1]
        )),
        "{}",
        pl.text
    );
    // ffmpeg's HLS demuxer keeps the first init section's decoder configuration across an
    // EXT-X-MAP change (so it cannot read this playlist as a whole): each segment is read
    // alone instead, and hls.js, which does switch init sections, plays across the splice.
    pl.check(&root);
    for e in &pl.entries {
        assert_decodes(&root.join(pl.file_of(e, &root)));
    }
    let server = StaticServer::start(&root);
    let rel = pl.path.strip_prefix(&root).unwrap().to_str().unwrap();
    let r = play(&server.url(rel), "hls", 4.5);
    assert_eq!(r["ok"], true, "hls.js: {r:#}\n{}", pl.text);
}
