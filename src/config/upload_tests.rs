//! Unit tests of the `[upload]` config section.

use super::*;

fn raw_target(url: &str) -> RawTarget {
    RawTarget {
        name: "vod".into(),
        url: url.into(),
        endpoint: None,
        region: None,
        key: None,
        access_key_id: None,
        secret_access_key: None,
        credentials_file: None,
        allow_http: false,
        virtual_hosted: false,
        checksum: false,
    }
}

fn raw(targets: Vec<RawTarget>) -> RawUpload {
    RawUpload {
        bandwidth: None,
        windows: vec![],
        concurrency: None,
        part_size: None,
        order: None,
        delete_after_upload: false,
        targets,
    }
}

#[test]
fn rates_in_bits_and_bytes_per_second_parse() {
    assert_eq!(parse_rate("2Mbit/s"), Ok(250_000));
    assert_eq!(parse_rate("500 kbit/s"), Ok(62_500));
    assert_eq!(parse_rate("1MiB/s"), Ok(1 << 20));
    assert!(parse_rate("2Mbit").unwrap_err().contains("/s"));
    assert!(parse_rate("fast/s").is_err());
    assert!(parse_rate("10bit/s").unwrap_err().contains("minimum"));
}

#[test]
fn s3_url_splits_into_bucket_and_prefix() {
    let t = target("t", &raw_target("s3://bkt/rec/ordings/")).unwrap();
    assert_eq!(
        t.kind,
        TargetKind::S3 {
            bucket: "bkt".into(),
            prefix: "rec/ordings".into()
        }
    );
    assert_eq!(t.region, "us-east-1");
}

#[test]
fn file_targets_are_absolute_or_relative_like_file_sources() {
    let dir = |url: &str| match target("upload.targets[0]", &raw_target(url)).unwrap().kind {
        TargetKind::File { dir } => dir,
        k => panic!("{url}: {k:?}"),
    };
    assert_eq!(dir("file:///var/up"), PathBuf::from("/var/up"));
    assert_eq!(dir("file:/var/up/"), PathBuf::from("/var/up/"));
    assert_eq!(dir("file:uploads"), PathBuf::from("uploads"));
    assert_eq!(dir("file:data/up/"), PathBuf::from("data/up"));
}

#[test]
fn bad_urls_name_the_field() {
    for url in [
        "http://x/y",
        "s3:///nobucket",
        "file://host/dir",
        "file:",
        "file:///",
        "file:../up",
        "s3://b/../x",
    ] {
        let e = target("upload.targets[0]", &raw_target(url))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("upload.targets[0].url"), "{url}: {e}");
    }
}

#[test]
fn plain_http_endpoint_needs_allow_http() {
    let mut t = raw_target("s3://b");
    t.endpoint = Some("http://127.0.0.1:9000".into());
    let e = target("upload.targets[0]", &t).unwrap_err().to_string();
    assert!(e.contains("allow_http"), "{e}");
    t.allow_http = true;
    assert!(target("upload.targets[0]", &t).is_ok());
}

#[test]
fn debug_output_hides_the_secret() {
    let mut t = raw_target("s3://b");
    t.access_key_id = Some("AKIDEXAMPLE".into());
    t.secret_access_key = Some("wJalrXUtnFEMI".into());
    let s = format!("{:?}", target("t", &t).unwrap());
    assert!(
        !s.contains("wJalrXUtnFEMI") && !s.contains("AKIDEXAMPLE"),
        "{s}"
    );
}

#[test]
fn a_template_naming_an_unknown_target_is_refused() {
    let uses = vec![("templates[0].upload".to_string(), "nope".to_string())];
    let e = validate(Some(&raw(vec![raw_target("s3://b")])), &uses)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("templates[0].upload"), "{e}");
    assert!(e.contains("\"vod\""), "{e}");
    let e = validate(None, &uses).unwrap_err().to_string();
    assert!(e.contains("no [upload] section"), "{e}");
}

#[test]
fn part_size_below_the_s3_minimum_is_refused() {
    let mut r = raw(vec![]);
    r.part_size = Some(RawSize::Str("1MiB".into()));
    let e = validate(Some(&r), &[]).unwrap_err().to_string();
    assert!(e.starts_with("upload.part_size"), "{e}");
}

#[test]
fn unknown_policy_and_order_are_refused() {
    assert!(policy(Some("yolo"))
        .unwrap_err()
        .to_string()
        .starts_with("storage.policy"));
    assert_eq!(policy(Some("deny_new")).unwrap(), StoragePolicy::DenyNew);
    let mut r = raw(vec![]);
    r.order = Some("random".into());
    assert!(validate(Some(&r), &[])
        .unwrap_err()
        .to_string()
        .starts_with("upload.order"));
}

#[test]
fn a_parse_error_never_echoes_a_secret() {
    let text = "device_id = \"d\"\n[upload]\n[[upload.targets]]\nname = \"v\"\nurl = \"s3://b\"\nsecret_access_key = \"sup3rs3cret\" oops\n";
    let e = crate::config::Config::from_toml_str(text)
        .unwrap_err()
        .to_string();
    assert!(!e.contains("sup3rs3cret"), "{e}");
    assert!(e.contains("secret_access_key = \"***\""), "{e}");
    assert!(e.contains("line 6"), "{e}");
}
