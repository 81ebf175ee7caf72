//! The Debian package (`scripts/deb.sh`): contents and control data as `dpkg-deb -c` and
//! `dpkg-deb -I` report them, and a packaged binary that accepts the packaged config.
//!
//! Every run packages the binary cargo built for this machine (amd64 here), so the script is
//! tested without a cross build. `make test` also builds the arm64 and armhf packages from
//! the release cross builds (`make deb`) and passes them in `EDGEREC_DEBS` (space-separated
//! paths): each is inspected the same way, its binary's ELF machine must match the package
//! architecture, and it runs `edgerec check` under qemu-user when `EDGEREC_QEMU_<ARCH>` names
//! the runner (e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu`).

#[allow(unused_imports)] // each test file uses a part of the shared helpers
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .arg(deb)
        .output()
        .expect("run dpkg-deb");
    assert!(
        out.status.success(),
        "dpkg-deb {args:?} {}: {}",
        deb.display(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn cargo_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Builds the package for this machine's binary into `out` and returns its path.
fn build_host_deb(out: &Path) -> PathBuf {
    let result = Command::new(repo().join("scripts/deb.sh"))
        // The unstripped debug binary takes minutes to xz; the format is the same.
        .env("DEB_COMPRESS", "none")
        .arg("amd64")
        .arg(bin())
        .arg(out)
        .output()
        .expect("run scripts/deb.sh");
    assert!(
        result.status.success(),
        "scripts/deb.sh: {}",
        text(&result.stderr)
    );
    let path = PathBuf::from(text(&result.stdout).trim());
    assert_eq!(
        path,
        out.join(format!("edgerec_{}_amd64.deb", cargo_version()))
    );
    path
}

/// `(mode, path)` of every entry `dpkg-deb -c` lists, paths without the leading `.`.
fn contents(deb: &Path) -> Vec<(String, String)> {
    dpkg_deb(&["-c"], deb)
        .lines()
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cols[1], "root/root", "owned by root: {l}");
            let path = cols[5].trim_start_matches('.').to_string();
            (cols[0].to_string(), path)
        })
        .collect()
}

fn field(info: &str, name: &str) -> String {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name}: in\n{info}"))
        .to_string()
}

/// The package architecture from the file name `edgerec_VERSION_ARCH.deb`.
fn arch_of(deb: &Path) -> String {
    let name = deb.file_stem().unwrap().to_str().unwrap();
    name.rsplit('_').next().unwrap().to_string()
}

/// ELF `e_machine` of a file: 0x3e x86-64, 0xb7 AArch64, 0x28 ARM.
fn elf_machine(path: &Path) -> u16 {
    let b = fs::read(path).unwrap();
    assert_eq!(&b[..4], b"\x7fELF", "{} is not ELF", path.display());
    u16::from_le_bytes([b[18], b[19]])
}

/// Everything a package must hold and say; returns where it was extracted.
fn inspect(deb: &Path, work: &Path) -> PathBuf {
    let arch = arch_of(deb);
    let entries = contents(deb);
    let mode = |p: &str| {
        entries
            .iter()
            .find(|(_, path)| path == p)
            .map(|(m, _)| m.clone())
            .unwrap_or_else(|| panic!("{} lacks {p}; it holds {entries:?}", deb.display()))
    };
    assert_eq!(mode("/usr/bin/edgerec"), "-rwxr-xr-x");
    for f in [
        "/usr/lib/systemd/system/edgerec.service",
        "/usr/lib/sysusers.d/edgerec.conf",
        "/usr/lib/tmpfiles.d/edgerec.conf",
        "/etc/edgerec/edgerec.toml",
        "/usr/share/doc/edgerec/copyright",
    ] {
        assert_eq!(mode(f), "-rw-r--r--", "{f}");
    }
    for board in ["rpi4", "rpi5", "rpi-zero-2w", "jetson-orin-nano"] {
        mode(&format!("/usr/share/edgerec/boards/{board}/edgerec.toml"));
    }
    // Nothing outside the usual places (e.g. no stray build paths).
    for (_, p) in &entries {
        assert!(
            p == "/"
                || ["/usr/", "/etc/edgerec/", "/etc/"]
                    .iter()
                    .any(|d| p.starts_with(d)),
            "unexpected path {p} in {}",
            deb.display()
        );
    }

    let info = dpkg_deb(&["-I"], deb);
    assert_eq!(field(&info, "Package"), "edgerec");
    assert_eq!(field(&info, "Version"), cargo_version());
    assert_eq!(field(&info, "Architecture"), arch);
    assert!(field(&info, "Depends").contains("libc6"));
    for script in ["postinst", "prerm", "postrm", "conffiles"] {
        assert!(info.contains(script), "no {script} in\n{info}");
    }

    let root = work.join(format!("root-{arch}"));
    let control = work.join(format!("control-{arch}"));
    let x = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(&root)
        .status()
        .unwrap();
    assert!(x.success());
    let e = Command::new("dpkg-deb")
        .arg("-e")
        .arg(deb)
        .arg(&control)
        .status()
        .unwrap();
    assert!(e.success());

    assert_eq!(
        fs::read_to_string(control.join("conffiles"))
            .unwrap()
            .trim(),
        "/etc/edgerec/edgerec.toml"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let out = Command::new("sh")
            .arg("-n")
            .arg(control.join(script))
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {}", text(&out.stderr));
    }
    let postinst = fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("systemd-sysusers edgerec.conf"));
    assert!(postinst.contains("systemd-tmpfiles --create edgerec.conf"));

    // The packaged unit and snippets are the repository's, byte for byte.
    for (packaged, ours) in [
        (
            "usr/lib/systemd/system/edgerec.service",
            "systemd/edgerec.service",
        ),
        (
            "usr/lib/sysusers.d/edgerec.conf",
            "systemd/edgerec-sysusers.conf",
        ),
        (
            "usr/lib/tmpfiles.d/edgerec.conf",
            "systemd/edgerec-tmpfiles.conf",
        ),
        ("etc/edgerec/edgerec.toml", "packaging/edgerec.toml"),
    ] {
        assert_eq!(
            fs::read(root.join(packaged)).unwrap(),
            fs::read(repo().join(ours)).unwrap(),
            "{packaged}"
        );
    }
    let want_machine = match arch.as_str() {
        "amd64" => 0x3e,
        "arm64" => 0xb7,
        "armhf" => 0x28,
        other => panic!("unexpected architecture {other}"),
    };
    assert_eq!(
        elf_machine(&root.join("usr/bin/edgerec")),
        want_machine,
        "{}: the binary is not for {arch}",
        deb.display()
    );
    root
}

/// `edgerec check` with the packaged binary on the packaged default config and presets.
fn check_packaged_configs(root: &Path, runner: &[String]) {
    let binary = root.join("usr/bin/edgerec");
    let mut configs = vec![root.join("etc/edgerec/edgerec.toml")];
    for entry in fs::read_dir(root.join("usr/share/edgerec/boards")).unwrap() {
        configs.push(entry.unwrap().path().join("edgerec.toml"));
    }
    for cfg in configs {
        let mut cmd = match runner.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        let out = cmd
            .args(["check", "--config"])
            .arg(&cfg)
            .output()
            .unwrap_or_else(|e| panic!("run {runner:?} {}: {e}", binary.display()));
        assert!(
            out.status.success(),
            "{runner:?} packaged edgerec check {}: {}{}",
            cfg.display(),
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(text(&out.stdout).contains(": ok"), "{}", text(&out.stdout));
    }
}

#[test]
fn host_package_holds_the_binary_unit_config_user_and_data_directory() {
    let dir = workdir("deb_host");
    let deb = build_host_deb(dir.path());
    let root = inspect(&deb, dir.path());
    check_packaged_configs(&root, &[]);
    // The default config records nothing until a stream is added.
    let cfg = edgerec::config::Config::from_toml_str(
        &fs::read_to_string(root.join("etc/edgerec/edgerec.toml")).unwrap(),
    )
    .unwrap();
    assert!(cfg.streams.is_empty());
    assert_eq!(cfg.storage.root, Path::new("/var/lib/edgerec"));
    assert!(cfg.storage.require_marker);
}

#[test]
fn cross_built_packages_from_make_deb_pass_the_same_inspection() {
    let Ok(list) = std::env::var("EDGEREC_DEBS") else {
        eprintln!("EDGEREC_DEBS not set: `make test` sets it after `make deb`; nothing to inspect");
        return;
    };
    let debs: Vec<PathBuf> = list.split_whitespace().map(PathBuf::from).collect();
    assert!(!debs.is_empty(), "EDGEREC_DEBS is empty");
    let dir = workdir("deb_cross");
    for deb in debs {
        let arch = arch_of(&deb);
        let root = inspect(&deb, dir.path());
        let var = format!("EDGEREC_QEMU_{}", arch.to_uppercase());
        if let Ok(runner) = std::env::var(&var) {
            let runner: Vec<String> = runner.split_whitespace().map(String::from).collect();
            check_packaged_configs(&root, &runner);
        }
    }
}
