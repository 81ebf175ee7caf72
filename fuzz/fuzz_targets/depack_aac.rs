//! AAC RTP depacketizer (RFC 3640 AU headers, AAC-hbr).
#![no_main]
use edgerec::media::ingest::depack::{aac::Aac, Depacketizer};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let fmtp: Vec<(String, String)> = [
        ("mode", "AAC-hbr"),
        ("sizelength", "13"),
        ("indexlength", "3"),
        ("indexdeltalength", "3"),
        ("config", "1188"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let aac = Aac::new(48_000, &fmtp).expect("a valid fmtp");
    edgerec_fuzz::depacketize(Depacketizer::Aac(aac), data);
});
