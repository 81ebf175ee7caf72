//! The board presets in `boards/`: one folder per supported board, each with a config that
//! `edgerec check` accepts, a camera pipe command that is valid shell, settings tuned for
//! flash wear, a data directory the systemd unit may write, and a README.

#[allow(unused_imports)] // each test file uses a part of the shared helpers
mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use edgerec::config::Config;
use edgerec::media::source::SourceSpec;

const BOARDS: [&str; 4] = ["jetson-orin-nano", "rpi-zero-2w", "rpi4", "rpi5"];

fn board_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(repo().join("boards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn preset(dir: &std::path::Path) -> (PathBuf, Config) {
    let path = dir.join("edgerec.toml");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let config = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, config)
}

#[test]
fn there_is_one_folder_per_supported_board() {
    let names: Vec<String> = board_dirs()
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, BOARDS);
    for dir in board_dirs() {
        for file in ["edgerec.toml", "README.md"] {
            assert!(dir.join(file).is_file(), "{} has no {file}", dir.display());
        }
    }
}

#[test]
fn edgerec_check_accepts_every_preset() {
    for dir in board_dirs() {
        let cfg = dir.join("edgerec.toml");
        let out = cli(&["check", "--config", cfg.to_str().unwrap()], &dir);
        assert_eq!(
            out.code,
            0,
            "edgerec check {}: {}{}",
            cfg.display(),
            out.stdout,
            out.stderr
        );
        assert!(out.stdout.contains("1 recorded"), "{}", out.stdout);
    }
}

#[test]
fn every_preset_records_a_camera_pipe_whose_command_is_valid_shell() {
    for dir in board_dirs() {
        let (path, config) = preset(&dir);
        assert_eq!(config.streams.len(), 1, "{}", path.display());
        let stream = &config.streams[0];
        let SourceSpec::Pipe { command, .. } = SourceSpec::parse(&stream.source).unwrap() else {
            panic!("{}: not a pipe: source: {}", path.display(), stream.source);
        };
        assert!(
            stream.fps_milli.is_some(),
            "{}: a camera pipe gets an fps hint",
            path.display()
        );
        // The pipe runs with `sh -c`: parentheses in GStreamer caps and the like must be quoted.
        let out = Command::new("sh")
            .args(["-n", "-c", &command])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: `sh -n` rejects the pipe command: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        // The README documents the camera program the preset runs.
        let program = command.split_whitespace().next().unwrap();
        let readme = fs::read_to_string(dir.join("README.md")).unwrap();
        assert!(
            readme.contains(program),
            "{}/README.md does not mention {program}",
            dir.display()
        );
    }
}

#[test]
fn presets_record_where_the_systemd_unit_may_write_and_require_the_storage_marker() {
    let unit = fs::read_to_string(repo().join("systemd/edgerec.service")).unwrap();
    let writable: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ReadWritePaths="))
        .collect();
    for dir in board_dirs() {
        let (path, config) = preset(&dir);
        let root = &config.storage.root;
        assert!(
            writable.iter().any(|w| root.starts_with(w)),
            "{}: storage.root {} is outside the unit's ReadWritePaths {writable:?}",
            path.display(),
            root.display()
        );
        assert!(
            config.storage.require_marker,
            "{}: an unmounted card must not fill the root filesystem",
            path.display()
        );
    }
}

#[test]
fn presets_are_tuned_for_flash_wear_and_a_typical_card() {
    for dir in board_dirs() {
        let (path, config) = preset(&dir);
        let stream = &config.streams[0];
        let template = edgerec::config::rules::resolve(&config, &stream.app, &stream.name)
            .unwrap_or_else(|| panic!("{}: the camera is not recorded", path.display()));
        assert!(
            template.fragment >= Duration::from_secs(1),
            "{}: fragment {:?} syncs too often for flash",
            path.display(),
            template.fragment
        );
        assert!(
            template.interval >= Duration::from_secs(120),
            "{}: interval {:?} creates too many files",
            path.display(),
            template.interval
        );
        // Between a small SD card's share and a 256 GB SSD's.
        let gib = config.storage.max_bytes >> 30;
        assert!(
            (8..=240).contains(&gib),
            "{}: max_bytes {gib} GiB",
            path.display()
        );
    }
}
