//! Self-tests of the power-loss filesystem peer (`tests/peers/powerloss_fs.py`), with real
//! syscalls through a real FUSE mount: it forgets what a power cut could lose (data not
//! fsynced, entries of a directory not fsynced, the old name after a rename, a torn write
//! beyond its 4 KiB prefix) and keeps what was made durable; its faults reach the caller
//! with the right errno; it keeps up with concurrent writers and unmounts cleanly.
//!
//! Skipped, with a message, where `/dev/fuse` or pyfuse3 is missing, unless `CI` is set.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::files_under;
use common::powerloss::*;

/// `len` bytes that differ with `seed`.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The errno of a call that must fail.
fn errno<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("not an OS error: {e}")),
    }
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Creates `path` with `data`, fsyncs it, and fsyncs its directory: durable.
fn write_durable(path: &Path, data: &[u8]) {
    let mut f = File::create(path).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
    sync_dir(path.parent().unwrap()).unwrap();
}

fn open_rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

#[test]
fn unsynced_data_is_lost_and_synced_data_survives_a_cut() {
    let Some(fs) = PowerlossFs::start("plfs_data") else {
        return;
    };
    let f = fs.path("f");
    write_durable(&f, b"");

    fs::write(&f, b"never synced").unwrap();
    assert_eq!(read(&f), b"never synced", "reads see pending data");
    let st = fs.status();
    assert_eq!(
        (st.pending_files, st.pending_bytes, st.pending_dirs),
        (1, 4096, 0)
    );
    let cut = fs.cut();
    assert_eq!(cut.dropped_bytes, 4096);
    assert_eq!(read(&f), b"", "unsynced data survived a cut");

    // After the cut the mount goes on: synced data stays, data written after the sync goes.
    let mut h = open_rw(&f);
    h.write_all(b"synced").unwrap();
    h.sync_data().unwrap();
    assert_eq!(fs.status().pending_files, 0);
    h.write_all(b", then lost").unwrap();
    assert_eq!(read(&f), b"synced, then lost");
    fs.cut();
    assert_eq!(read(&f), b"synced");
    assert_eq!(fs.status().cuts, 2);

    // A handle opened before a cut is dead: the process that held it lost power too.
    assert_eq!(errno(h.write_all(b"x")), libc::EIO);
    drop(h);
    let mut h = open_rw(&f);
    h.seek(SeekFrom::End(0)).unwrap();
    h.write_all(b" and more").unwrap();
    h.sync_all().unwrap();
    fs.cut();
    assert_eq!(read(&f), b"synced and more");
}

#[test]
fn pending_writes_over_synced_data_read_back_merged_and_a_cut_restores_the_synced_bytes() {
    let Some(fs) = PowerlossFs::start("plfs_layers") else {
        return;
    };
    let f = fs.path("f");
    let base = pattern(1, 1_000_003);
    write_durable(&f, &base);

    // Unaligned overwrites across page boundaries, and an extension.
    let mut expect = base.clone();
    let mut h = open_rw(&f);
    for (i, (off, len)) in [(4095usize, 2), (10_000, 70_000), (999_000, 5_000)]
        .into_iter()
        .enumerate()
    {
        let data = pattern(100 + i as u64, len);
        h.seek(SeekFrom::Start(off as u64)).unwrap();
        h.write_all(&data).unwrap();
        if expect.len() < off + len {
            expect.resize(off + len, 0);
        }
        expect[off..off + len].copy_from_slice(&data);
    }
    drop(h);
    assert!(
        read(&f) == expect,
        "reads do not merge pending pages over synced data"
    );
    fs.cut();
    assert!(read(&f) == base, "a cut did not restore the synced bytes");

    // The same writes, synced: they are the new durable content.
    let mut h = open_rw(&f);
    h.seek(SeekFrom::Start(10_000)).unwrap();
    h.write_all(&expect[10_000..80_000]).unwrap();
    h.seek(SeekFrom::Start(999_000)).unwrap();
    h.write_all(&expect[999_000..]).unwrap();
    h.seek(SeekFrom::Start(4095)).unwrap();
    h.write_all(&expect[4095..4097]).unwrap();
    h.sync_data().unwrap();
    drop(h);
    fs.cut();
    assert!(read(&f) == expect, "synced writes did not survive");
}

#[test]
fn truncates_and_o_trunc_are_pending_until_fsync_and_holes_read_as_zeros() {
    let Some(fs) = PowerlossFs::start("plfs_sizes") else {
        return;
    };
    let f = fs.path("f");
    let base = pattern(2, 10_000);
    write_durable(&f, &base);

    // Shrink, grow, write past a pending shrink: the cut-off bytes read as zeros, not as
    // the synced bytes underneath.
    let h = open_rw(&f);
    h.set_len(3000).unwrap();
    assert_eq!(read(&f), &base[..3000]);
    h.set_len(8000).unwrap();
    let mut expect = base[..3000].to_vec();
    expect.resize(8000, 0);
    assert!(read(&f) == expect);
    let mut w = open_rw(&f);
    w.seek(SeekFrom::Start(9000)).unwrap();
    w.write_all(b"Z").unwrap();
    expect.resize(9000, 0);
    expect.push(b'Z');
    assert!(read(&f) == expect);
    fs.cut();
    assert!(read(&f) == base, "a pending truncate survived a cut");

    // open(O_TRUNC) is a pending truncate too.
    fs::write(&f, b"short").unwrap();
    assert_eq!(read(&f), b"short");
    fs.cut();
    assert!(read(&f) == base, "an unsynced O_TRUNC survived a cut");

    // ftruncate + fsync is durable.
    let h = open_rw(&f);
    h.set_len(1234).unwrap();
    h.sync_all().unwrap();
    drop(h);
    fs.cut();
    assert_eq!(read(&f), &base[..1234]);

    // O_APPEND writes at the end, whatever the file offset.
    let mut a = OpenOptions::new().append(true).open(&f).unwrap();
    a.write_all(b"<a>").unwrap();
    a.write_all(b"<b>").unwrap();
    a.sync_data().unwrap();
    drop(a);
    fs.cut();
    let mut expect = base[..1234].to_vec();
    expect.extend_from_slice(b"<a><b>");
    assert!(read(&f) == expect);

    // A sparse file: zeros up to the first byte written, kept as such.
    let s = fs.path("sparse");
    let mut h = File::create(&s).unwrap();
    h.seek(SeekFrom::Start(1 << 20)).unwrap();
    h.write_all(b"tail").unwrap();
    h.sync_all().unwrap();
    sync_dir(&fs.mount).unwrap();
    drop(h);
    fs.cut();
    let got = read(&s);
    assert_eq!(got.len(), (1 << 20) + 4);
    assert!(got[..1 << 20].iter().all(|&b| b == 0));
    assert_eq!(&got[1 << 20..], b"tail");
}

#[test]
fn a_rename_not_followed_by_a_directory_fsync_is_undone_by_a_cut() {
    let Some(fs) = PowerlossFs::start("plfs_rename") else {
        return;
    };
    let seg = fs.path("seg");
    let tmp = fs.path("seg.tmp");
    write_durable(&seg, b"old");

    // Write a temporary, fsync it, rename it over the old file, but no directory fsync.
    let mut t = File::create(&tmp).unwrap();
    t.write_all(b"new").unwrap();
    t.sync_all().unwrap();
    drop(t);
    fs::rename(&tmp, &seg).unwrap();
    assert_eq!(read(&seg), b"new");
    assert_eq!(fs.status().pending_dirs, 1);
    fs.cut();
    assert_eq!(
        read(&seg),
        b"old",
        "the replaced file is not back after a cut"
    );
    assert!(!tmp.exists(), "the temporary's entry was never durable");

    // The same with a directory fsync after the rename: the new content survives.
    let mut t = File::create(&tmp).unwrap();
    t.write_all(b"new").unwrap();
    t.sync_all().unwrap();
    drop(t);
    fs::rename(&tmp, &seg).unwrap();
    sync_dir(&fs.mount).unwrap();
    assert_eq!(fs.status().pending_dirs, 0);
    fs.cut();
    assert_eq!(read(&seg), b"new");
    assert!(!tmp.exists());

    // A plain rename, undone: the old name is back, the new one gone.
    fs::rename(&seg, fs.path("moved")).unwrap();
    fs.cut();
    assert_eq!(read(&seg), b"new");
    assert!(!fs.path("moved").exists());
}

#[test]
fn a_rename_across_directories_is_durable_per_directory() {
    let Some(fs) = PowerlossFs::start("plfs_rename_dirs") else {
        return;
    };
    fs::create_dir(fs.path("src")).unwrap();
    fs::create_dir(fs.path("dst")).unwrap();
    sync_dir(&fs.mount).unwrap();
    let from = fs.path("src/f");
    let to = fs.path("dst/f");
    write_durable(&from, b"data");

    // Only the target directory synced: after a cut the file has both names.
    fs::rename(&from, &to).unwrap();
    sync_dir(&fs.path("dst")).unwrap();
    fs.cut();
    assert_eq!(read(&from), b"data");
    assert_eq!(read(&to), b"data");

    // Only the source directory synced: after a cut it has neither.
    fs::remove_file(&to).unwrap();
    sync_dir(&fs.path("dst")).unwrap();
    fs::rename(&from, &to).unwrap();
    sync_dir(&fs.path("src")).unwrap();
    fs.cut();
    assert!(
        !from.exists() && !to.exists(),
        "a half-synced rename kept a name"
    );

    // A directory moves as a unit: syncing its new parent is enough.
    fs::create_dir(fs.path("src/sub")).unwrap();
    sync_dir(&fs.path("src")).unwrap();
    write_durable(&fs.path("src/sub/x"), b"x");
    fs::rename(fs.path("src/sub"), fs.path("dst/sub")).unwrap();
    sync_dir(&fs.path("dst")).unwrap();
    fs.cut();
    assert!(!fs.path("src/sub").exists());
    assert_eq!(read(&fs.path("dst/sub/x")), b"x");
}

#[test]
fn a_new_entry_survives_a_cut_only_if_its_directory_was_fsynced() {
    let Some(fs) = PowerlossFs::start("plfs_entries") else {
        return;
    };
    // Data fsynced, directory not: gone, as on ext4 without a directory fsync.
    let g = fs.path("g");
    let mut h = File::create(&g).unwrap();
    h.write_all(b"data").unwrap();
    h.sync_all().unwrap();
    drop(h);
    fs.cut();
    assert!(
        !g.exists(),
        "a file whose directory was never fsynced survived"
    );

    // Data and directory fsynced: kept.
    write_durable(&g, b"data");
    fs.cut();
    assert_eq!(read(&g), b"data");

    // Directory fsynced, data not: the entry stays, empty.
    File::create(fs.path("empty"))
        .unwrap()
        .write_all(b"lost")
        .unwrap();
    sync_dir(&fs.mount).unwrap();
    fs.cut();
    assert_eq!(read(&fs.path("empty")), b"");

    // A new directory, fsynced in its parent: kept, but a file made in it only with the
    // file's own fsync is not.
    fs::create_dir(fs.path("d")).unwrap();
    sync_dir(&fs.mount).unwrap();
    let mut h = File::create(fs.path("d/x")).unwrap();
    h.write_all(b"x").unwrap();
    h.sync_all().unwrap();
    drop(h);
    fs.cut();
    assert!(fs.path("d").is_dir());
    assert_eq!(fs::read_dir(fs.path("d")).unwrap().count(), 0);

    // A new directory whose contents were synced, but not its parent: all gone.
    fs::create_dir(fs.path("e")).unwrap();
    write_durable(&fs.path("e/y"), b"y");
    fs::create_dir(fs.path("e/sub")).unwrap();
    sync_dir(&fs.path("e")).unwrap();
    fs.cut();
    assert!(!fs.path("e").exists());

    // A symlink is an entry like any other.
    std::os::unix::fs::symlink("g", fs.path("link")).unwrap();
    assert_eq!(read(&fs.path("link")), b"data");
    fs.cut();
    assert!(fs.path("link").symlink_metadata().is_err());
    std::os::unix::fs::symlink("g", fs.path("link")).unwrap();
    sync_dir(&fs.mount).unwrap();
    fs.cut();
    assert_eq!(fs::read_link(fs.path("link")).unwrap(), Path::new("g"));

    assert_eq!(files_under(&fs.mount), ["empty", "g", "link"]);
    let durable = fs.durable();
    assert_eq!(durable["files"], serde_json::json!({"/empty": 0, "/g": 4}));
    assert_eq!(durable["dirs"], serde_json::json!(["/d"]));
    assert_eq!(durable["symlinks"], serde_json::json!({"/link": "g"}));
}

#[test]
fn a_unix_socket_can_live_on_the_mount() {
    let Some(fs) = PowerlossFs::start("plfs_socket") else {
        return;
    };
    // edgerec keeps its control socket in the storage root.
    let path = fs.path("control.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    client.write_all(b"?").unwrap();
    let mut byte = [0u8];
    listener.accept().unwrap().0.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"?");
    // Its entry is an entry like any other.
    fs.cut();
    assert!(path.symlink_metadata().is_err());
}

#[test]
fn an_unlink_not_followed_by_a_directory_fsync_comes_back_after_a_cut() {
    let Some(fs) = PowerlossFs::start("plfs_unlink") else {
        return;
    };
    let objects = fs.backing.join("objects");
    let f = fs.path("f");
    write_durable(&f, b"still here");
    fs::remove_file(&f).unwrap();
    assert!(!f.exists());
    fs.cut();
    assert_eq!(read(&f), b"still here", "an unsynced unlink survived a cut");

    // With the directory fsynced, it is gone, and so is its data on the backing disk.
    let before = fs::read_dir(&objects).unwrap().count();
    fs::remove_file(&f).unwrap();
    sync_dir(&fs.mount).unwrap();
    assert_eq!(fs::read_dir(&objects).unwrap().count(), before - 1);
    fs.cut();
    assert!(!f.exists());

    // rmdir, likewise.
    fs::create_dir(fs.path("d")).unwrap();
    sync_dir(&fs.mount).unwrap();
    fs::remove_dir(fs.path("d")).unwrap();
    fs.cut();
    assert!(fs.path("d").is_dir(), "an unsynced rmdir survived a cut");
    fs::remove_dir(fs.path("d")).unwrap();
    sync_dir(&fs.mount).unwrap();
    fs.cut();
    assert!(!fs.path("d").exists());
}

#[test]
fn cut_tear_keeps_a_4k_aligned_prefix_of_the_last_pending_write() {
    let Some(fs) = PowerlossFs::start("plfs_tear") else {
        return;
    };
    let f = fs.path("f");
    let head = pattern(3, 8192);
    let other = fs.path("other");
    write_durable(&f, &head);
    write_durable(&other, b"other");

    // An earlier pending write elsewhere, then the last one: 40000 bytes at 8192.
    let mut o = open_rw(&other);
    o.write_all(b"OTHER").unwrap();
    let tail = pattern(4, 40_000);
    let mut h = open_rw(&f);
    h.seek(SeekFrom::Start(8192)).unwrap();
    assert_eq!(h.write(&tail).unwrap(), tail.len(), "one write call");
    let cut = fs.cut_tear(None);
    let torn = cut.torn.expect("a pending write to tear");
    assert_eq!(torn.path.as_deref(), Some("/f"));
    assert_eq!((torn.offset, torn.length), (8192, 40_000));
    // Half of it is 20000 bytes, to 28192; the 4 KiB boundary below is 24576.
    assert_eq!(torn.kept, 24576 - 8192);
    let got = read(&f);
    assert_eq!(got.len(), 24576);
    assert!(got[..8192] == head[..] && got[8192..] == tail[..16384]);
    assert_eq!(
        read(&other),
        b"other",
        "a write before the last one survived"
    );

    // KEEP given: 5000 bytes, to 13192, kept to 12288.
    let mut h = open_rw(&f);
    h.seek(SeekFrom::Start(8192)).unwrap();
    let tail2 = pattern(5, 40_000);
    h.write_all(&tail2).unwrap();
    let torn = fs.cut_tear(Some(5000)).torn.unwrap();
    assert_eq!(torn.kept, 4096);
    let got = read(&f);
    assert_eq!(got.len(), 24576, "a tear inside the file keeps its size");
    assert!(got[8192..12288] == tail2[..4096] && got[12288..] == tail[4096..16384]);

    // A write that does not reach a 4 KiB boundary keeps nothing; nothing pending, no tear.
    let mut h = open_rw(&f);
    h.seek(SeekFrom::Start(24576)).unwrap();
    h.write_all(&[7u8; 4000]).unwrap();
    assert_eq!(fs.cut_tear(None).torn.unwrap().kept, 0);
    assert_eq!(read(&f).len(), 24576);
    assert!(fs.cut_tear(None).torn.is_none());
}

#[test]
fn write_faults_give_eio_and_enospc_and_store_nothing() {
    let Some(fs) = PowerlossFs::start("plfs_write_faults") else {
        return;
    };
    let f = fs.path("f");
    write_durable(&f, b"abc");
    let mut h = open_rw(&f);

    fs.fail("write", "EIO", None);
    assert_eq!(errno(h.write(b"x")), libc::EIO);
    assert_eq!(errno(h.set_len(1)), libc::EIO);
    fs.clear();
    fs.fail("write", "ENOSPC", None);
    assert_eq!(errno(h.write(b"x")), libc::ENOSPC);
    assert_eq!(errno(fs::write(&f, b"truncating")), libc::ENOSPC);
    assert_eq!(read(&f), b"abc", "a failed write stored something");
    assert_eq!(fs.status().faults, ["fail write ENOSPC"]);

    fs.clear();
    assert!(fs.status().faults.is_empty());
    h.write_all(b"x").unwrap();
    h.sync_all().unwrap();
    assert_eq!(read(&f), b"xbc");
}

#[test]
fn an_fsync_eio_fails_the_fsync_and_keeps_the_data_pending() {
    let Some(fs) = PowerlossFs::start("plfs_fsync_eio") else {
        return;
    };
    let f = fs.path("f");
    write_durable(&f, b"old");
    fs::write(&f, b"new").unwrap();
    File::create(fs.path("g")).unwrap();

    fs.fail("fsync", "EIO", None);
    let h = open_rw(&f);
    assert_eq!(errno(h.sync_all()), libc::EIO);
    assert_eq!(errno(h.sync_data()), libc::EIO);
    assert_eq!(errno(sync_dir(&fs.mount)), libc::EIO);
    let st = fs.status();
    assert_eq!((st.pending_files, st.pending_dirs), (1, 1));

    fs.clear();
    h.sync_all().unwrap();
    sync_dir(&fs.mount).unwrap();
    fs.cut();
    assert_eq!(read(&f), b"new");
    assert!(fs.path("g").exists());
}

#[test]
fn readonly_gives_erofs_to_every_modification_until_cleared() {
    let Some(fs) = PowerlossFs::start("plfs_readonly") else {
        return;
    };
    let f = fs.path("f");
    write_durable(&f, b"data");
    fs::create_dir(fs.path("d")).unwrap();
    sync_dir(&fs.mount).unwrap();
    let mut writer = open_rw(&f);
    writer.write_all(b"D").unwrap();

    fs.readonly(None);
    let erofs = libc::EROFS;
    assert_eq!(errno(writer.write_all(b"x")), erofs);
    assert_eq!(errno(writer.sync_all()), erofs, "fsync of pending data");
    assert_eq!(errno(File::create(fs.path("new"))), erofs);
    assert_eq!(errno(OpenOptions::new().write(true).open(&f)), erofs);
    assert_eq!(errno(fs::create_dir(fs.path("d2"))), erofs);
    assert_eq!(errno(fs::remove_file(&f)), erofs);
    assert_eq!(errno(fs::remove_dir(fs.path("d"))), erofs);
    assert_eq!(errno(fs::rename(&f, fs.path("g"))), erofs);
    assert_eq!(
        errno(fs::set_permissions(&f, fs::Permissions::from_mode(0o600))),
        erofs
    );
    assert_eq!(errno(std::os::unix::fs::symlink("f", fs.path("l"))), erofs);
    // Reading still works.
    let mut s = String::new();
    File::open(&f).unwrap().read_to_string(&mut s).unwrap();
    assert_eq!(s, "Data");

    fs.clear();
    writer.write_all(b"x").unwrap();
    writer.sync_all().unwrap();
    File::create(fs.path("new")).unwrap();
    sync_dir(&fs.mount).unwrap();
    fs.cut();
    assert_eq!(read(&f), b"Dxta");
    assert!(fs.path("new").exists());
}

#[test]
fn a_stalled_fsync_blocks_until_the_stall_ends_or_is_cleared() {
    let Some(fs) = PowerlossFs::start("plfs_stall") else {
        return;
    };
    let f = fs.path("f");
    write_durable(&f, b"");
    let mut h = open_rw(&f);
    h.write_all(b"data").unwrap();

    fs.stall_fsync(600.0, None);
    let (tx, rx) = mpsc::channel();
    let syncer = std::thread::spawn(move || {
        let r = h.sync_all().map_err(|e| e.raw_os_error());
        let _ = tx.send(r);
        h
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(1500)).is_err(),
        "fsync returned during a 600 s stall"
    );
    // The rest of the filesystem goes on meanwhile, and the data is still pending.
    fs::write(fs.path("other"), b"other").unwrap();
    assert_eq!(read(&fs.path("other")), b"other");
    assert_eq!(read(&f), b"data");
    assert_eq!(fs.status().pending_files, 2, "f and other");

    fs.clear();
    let r = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("fsync still blocked after clear");
    assert_eq!(r, Ok(()));
    let mut h = syncer.join().unwrap();
    assert_eq!(fs.status().pending_files, 1, "other only");

    // A short stall ends by itself, no sooner than it says.
    fs.stall_fsync(1.0, None);
    h.write_all(b"more").unwrap();
    let t = Instant::now();
    h.sync_data().unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "a 1 s stall returned after {:?}",
        t.elapsed()
    );
    fs.clear();
    h.write_all(b"!").unwrap();
    h.sync_data().unwrap();
    fs.cut();
    assert_eq!(read(&f), b"datamore!");
}

#[test]
fn a_fault_under_a_path_prefix_leaves_other_paths_alone() {
    let Some(fs) = PowerlossFs::start("plfs_prefix") else {
        return;
    };
    for d in ["a", "b", "ab"] {
        fs::create_dir(fs.path(d)).unwrap();
    }
    sync_dir(&fs.mount).unwrap();
    let (ax, by, abz) = (fs.path("a/x"), fs.path("b/y"), fs.path("ab/z"));
    for p in [&ax, &by, &abz] {
        write_durable(p, b"");
    }
    let (mut a, mut b, mut ab) = (open_rw(&ax), open_rw(&by), open_rw(&abz));

    fs.fail("write", "EIO", Some("/a"));
    fs.fail("fsync", "EIO", Some("/b/"));
    fs.readonly(Some("/ab"));
    assert_eq!(
        fs.status().faults,
        ["fail write EIO /a", "fail fsync EIO /b", "readonly /ab"]
    );

    assert_eq!(errno(a.write_all(b"a")), libc::EIO);
    b.write_all(b"b").unwrap();
    assert_eq!(errno(ab.write_all(b"ab")), libc::EROFS);
    assert_eq!(errno(b.sync_all()), libc::EIO);
    assert_eq!(errno(sync_dir(&fs.path("b"))), libc::EIO);
    a.sync_all().unwrap();
    sync_dir(&fs.path("a")).unwrap();
    assert_eq!(errno(File::create(fs.path("ab/new"))), libc::EROFS);
    File::create(fs.path("a/new")).unwrap();
    File::create(fs.path("new")).unwrap();
    sync_dir(&fs.mount).unwrap();

    fs.clear();
    a.write_all(b"a").unwrap();
    ab.write_all(b"ab").unwrap();
    for h in [&a, &b, &ab] {
        h.sync_all().unwrap();
    }
    fs.cut();
    assert_eq!(read(&ax), b"a");
    assert_eq!(read(&by), b"b");
    assert_eq!(read(&abz), b"ab");
}

#[test]
fn concurrent_writers_keep_exactly_what_they_synced() {
    let Some(fs) = PowerlossFs::start("plfs_writers") else {
        return;
    };
    const WRITERS: u64 = 4;
    const CHUNK: usize = 128 * 1024;
    const CHUNKS: usize = 62; // synced every 4 chunks: the last 2 are pending at the cut
    fs::create_dir(fs.path("cams")).unwrap();
    sync_dir(&fs.mount).unwrap();
    for w in 0..WRITERS {
        File::create(fs.path(&format!("cams/{w}"))).unwrap();
    }
    sync_dir(&fs.path("cams")).unwrap();

    let t = Instant::now();
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let path = fs.path(&format!("cams/{w}"));
            std::thread::spawn(move || {
                let mut f = OpenOptions::new().append(true).open(&path).unwrap();
                let mut synced = 0;
                for c in 0..CHUNKS {
                    f.write_all(&pattern(w * 1000 + c as u64, CHUNK)).unwrap();
                    if c % 4 == 3 {
                        f.sync_data().unwrap();
                        synced = (c + 1) * CHUNK;
                    }
                }
                synced
            })
        })
        .collect();
    let synced: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let bytes = WRITERS as usize * CHUNKS * CHUNK;
    eprintln!(
        "{} MiB by {WRITERS} writers in {:?}",
        bytes >> 20,
        t.elapsed()
    );
    let st = fs.status();
    assert_eq!(st.pending_files, WRITERS);
    assert_eq!(st.pending_bytes, WRITERS * 2 * CHUNK as u64);

    fs.cut();
    for (w, &n) in synced.iter().enumerate() {
        assert_eq!(n, 60 * CHUNK);
        let got = read(&fs.path(&format!("cams/{w}")));
        assert_eq!(got.len(), n, "writer {w}");
        for c in 0..n / CHUNK {
            assert!(
                got[c * CHUNK..(c + 1) * CHUNK] == pattern(w as u64 * 1000 + c as u64, CHUNK)[..],
                "writer {w} chunk {c} differs"
            );
        }
    }
}

#[test]
fn statfs_is_the_backing_filesystems() {
    let Some(fs) = PowerlossFs::start("plfs_statfs") else {
        return;
    };
    let statvfs = |p: &Path| {
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: statvfs is plain old data; zeroed is a valid value to be overwritten.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid C string and a pointer to a statvfs we own.
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
        st
    };
    let (m, b) = (statvfs(&fs.mount), statvfs(&fs.backing));
    assert_eq!(
        (m.f_blocks, m.f_frsize, m.f_files),
        (b.f_blocks, b.f_frsize, b.f_files)
    );
}

#[test]
fn the_control_socket_refuses_bad_commands() {
    let Some(fs) = PowerlossFs::start("plfs_control") else {
        return;
    };
    for bad in [
        "explode",
        "fail write EBOGUS",
        "fail read EIO",
        "stall fsync soon",
        "readonly relative/path",
        "cut tear lots",
        "",
    ] {
        assert!(fs.command(bad).is_err(), "{bad:?} was accepted");
    }
    assert!(fs.command("ping").is_ok());
    assert!(fs.status().faults.is_empty());
}

#[test]
fn sigterm_unmounts_even_with_an_fsync_stalled_and_a_file_open() {
    let Some(fs) = PowerlossFs::start("plfs_sigterm") else {
        return;
    };
    let f = fs.path("f");
    write_durable(&f, b"");
    let mut h = open_rw(&f);
    h.write_all(b"x").unwrap();
    fs.stall_fsync(600.0, None);
    let syncer = std::thread::spawn(move || {
        let _ = h.sync_all();
        h
    });
    std::thread::sleep(Duration::from_millis(300));
    let mount = fs.mount.clone();
    let status = fs.unmount();
    assert!(status.success(), "peer exit status {status}");
    assert!(!is_mounted(&mount));
    drop(syncer.join().unwrap());
}
