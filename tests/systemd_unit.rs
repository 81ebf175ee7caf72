//! The systemd files in `systemd/`: the unit passes `systemd-analyze verify`, its exposure
//! score from `systemd-analyze security` is 2.0 or lower, it declares what issue 6 asks
//! (notify + watchdog, restart, mount dependency, the hardening list, a dedicated user), and
//! the sysusers/tmpfiles snippets really create that user and the data directory it writes.
//!
//! Everything runs offline on unit files (no running systemd needed): `verify` on a copy
//! whose `ExecStart` points at the binary cargo built (verify insists the program exists),
//! `security --offline=true`, and `systemd-sysusers` / `systemd-tmpfiles` with `--root=` a
//! temporary directory.

#[allow(unused_imports)] // each test file uses a part of the shared helpers
mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn unit_path() -> PathBuf {
    repo().join("systemd/edgerec.service")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{cmd:?}: {e} (is the systemd package installed? make test-deps)")
    });
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every `Key=value` of `section` in a unit file, in order (repeated keys kept).
fn entries(unit: &str, section: &str) -> Vec<(String, String)> {
    let mut current = String::new();
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            current = line[1..line.len() - 1].to_string();
            continue;
        }
        if current == section {
            let (k, v) = line.split_once('=').expect("Key=value");
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

fn values<'a>(entries: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    entries
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn one<'a>(entries: &'a [(String, String)], key: &str) -> &'a str {
    let v = values(entries, key);
    assert_eq!(v.len(), 1, "{key}= should be set exactly once: {v:?}");
    v[0]
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let dir = workdir("systemd_verify");
    let unit = fs::read_to_string(unit_path()).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/edgerec run"));
    // Same file, but with the program verify can find on this machine.
    let copy = dir.path().join("edgerec.service");
    fs::write(
        &copy,
        unit.replace("/usr/bin/edgerec", bin().to_str().unwrap()),
    )
    .unwrap();
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&copy));
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {stderr}"
    );
    // Warnings (unknown keys, bad values) are printed but do not fail verify: none allowed.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("edgerec.service"))
        .collect();
    assert!(ours.is_empty(), "verify warned about the unit: {ours:?}");
}

#[test]
fn unit_security_exposure_is_at_most_2_0() {
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit_path()));
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for edgerec.service"))
        .unwrap_or_else(|| {
            panic!(
                "no overall exposure line; stdout:\n{stdout}\nstderr:\n{}",
                text(&out.stderr)
            )
        });
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    assert!(
        score <= 2.0,
        "exposure {score} > 2.0; the full assessment:\n{stdout}"
    );
}

#[test]
fn unit_declares_notify_watchdog_restart_mounts_and_the_hardening_list() {
    let unit = fs::read_to_string(unit_path()).unwrap();
    let u = entries(&unit, "Unit");
    let s = entries(&unit, "Service");
    let i = entries(&unit, "Install");

    assert_eq!(one(&s, "Type"), "notify");
    let watchdog = humantime::parse_duration(one(&s, "WatchdogSec")).unwrap();
    assert!(
        watchdog.as_secs() >= 10,
        "WatchdogSec={watchdog:?} is too tight for an SD card that stalls on fsync"
    );
    assert_eq!(one(&s, "Restart"), "on-failure");
    assert_eq!(one(&u, "RequiresMountsFor"), "/var/lib/edgerec");
    assert_eq!(one(&s, "ReadWritePaths"), "/var/lib/edgerec");
    assert_eq!(one(&s, "User"), "edgerec");
    assert_eq!(
        one(&s, "ExecStart"),
        "/usr/bin/edgerec run --config /etc/edgerec/edgerec.toml"
    );
    assert_eq!(one(&i, "WantedBy"), "multi-user.target");

    for (key, want) in [
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(one(&s, key), want, "{key}=");
    }
    let families: Vec<&str> = one(&s, "RestrictAddressFamilies")
        .split_whitespace()
        .collect();
    assert_eq!(families, ["AF_UNIX", "AF_INET", "AF_INET6"]);
    assert!(
        values(&s, "SystemCallFilter").contains(&"@system-service"),
        "SystemCallFilter=@system-service"
    );
}

#[test]
fn sysusers_and_tmpfiles_create_the_user_and_its_data_directory() {
    let dir = workdir("systemd_snippets");
    let root = dir.path();
    fs::create_dir_all(root.join("etc")).unwrap();
    let sysusers = repo().join("systemd/edgerec-sysusers.conf");
    let tmpfiles = repo().join("systemd/edgerec-tmpfiles.conf");

    let out = run(Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.display()))
        .arg(&sysusers));
    assert!(out.status.success(), "sysusers: {}", text(&out.stderr));
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("edgerec:"))
        .unwrap_or_else(|| panic!("no edgerec user in {passwd}"));
    let fields: Vec<&str> = user.split(':').collect();
    assert_eq!(fields[5], "/var/lib/edgerec", "home: {user}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "shell: {user}");
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid < 1000, "a system user: {user}");
    let group = fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(
        group
            .lines()
            .any(|l| l.starts_with("video:") && l.split(':').nth(3).unwrap().contains("edgerec")),
        "edgerec is in group video (board cameras): {group}"
    );

    let out = run(Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", root.display()))
        .arg("--create")
        .arg(&tmpfiles));
    assert!(out.status.success(), "tmpfiles: {}", text(&out.stderr));
    let data = root.join("var/lib/edgerec");
    let meta = fs::metadata(&data).unwrap_or_else(|e| panic!("{}: {e}", data.display()));
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o750);
    if is_root() {
        assert_eq!(meta.uid(), uid, "owned by edgerec");
    }
    assert_same_data_dir(&data, root);
}

/// The unit's writable path, the sysusers home and the tmpfiles directory are one place.
fn assert_same_data_dir(data: &Path, root: &Path) {
    let rel = data.strip_prefix(root).unwrap();
    let abs = Path::new("/").join(rel);
    let unit = fs::read_to_string(unit_path()).unwrap();
    let s = entries(&unit, "Service");
    assert_eq!(Path::new(one(&s, "ReadWritePaths")), abs);
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// The Jetson drop-in must really lift the device allow-list (NVIDIA's nvmap/nvhost nodes
/// are not in it): `DevicePolicy=auto` alone keeps the base unit's `DeviceAllow=` entries
/// in force. systemd loads the unit with the drop-in without complaint, the resulting device
/// policy opens the devices, and the exposure stays within budget.
#[test]
fn jetson_drop_in_opens_the_devices_and_keeps_the_exposure_within_budget() {
    let dir = workdir("systemd_jetson");
    let unit = fs::read_to_string(unit_path()).unwrap();
    fs::write(
        dir.path().join("edgerec.service"),
        unit.replace("/usr/bin/edgerec", bin().to_str().unwrap()),
    )
    .unwrap();
    let dropins = dir.path().join("edgerec.service.d");
    fs::create_dir(&dropins).unwrap();
    fs::copy(
        repo().join("boards/jetson-orin-nano/edgerec.service.d/jetson.conf"),
        dropins.join("jetson.conf"),
    )
    .unwrap();
    let unit_copy = dir.path().join("edgerec.service");

    let out = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit_copy));
    assert!(out.status.success(), "verify: {}", text(&out.stderr));

    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit_copy));
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains("jetson.conf"),
        "systemd complained about the drop-in: {stderr}"
    );
    // systemd's own rule, which `security` does not model (it reports any
    // `DevicePolicy=auto` as "no device ACL"): `auto` opens every device only while no
    // `DeviceAllow=` entry is left, and an empty `DeviceAllow=` clears the list so far.
    let dropin = fs::read_to_string(dropins.join("jetson.conf")).unwrap();
    let mut allow: Vec<String> = Vec::new();
    let mut policy = String::from("auto");
    for (k, v) in entries(&unit, "Service")
        .into_iter()
        .chain(entries(&dropin, "Service"))
    {
        match k.as_str() {
            "DeviceAllow" if v.is_empty() => allow.clear(),
            "DeviceAllow" => allow.push(v),
            "DevicePolicy" => policy = v,
            _ => {}
        }
    }
    assert_eq!(policy, "auto", "the drop-in should set DevicePolicy=auto");
    assert!(
        allow.is_empty(),
        "DeviceAllow= entries {allow:?} stay in force under the drop-in, so DevicePolicy=auto \
         does not open NVIDIA's nvmap/nvhost nodes"
    );
    let score: f64 = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{stdout}"));
    assert!(score <= 2.0, "Jetson exposure {score} > 2.0:\n{stdout}");
}
