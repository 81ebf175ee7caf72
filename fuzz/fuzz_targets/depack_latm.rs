//! MP4A-LATM RTP depacketizer (RFC 6416), with the config from the SDP (`cpresent=0`, as
//! ffmpeg sends it) and in-band (`cpresent=1`), on the same input.
#![no_main]
use edgerec::media::ingest::depack::{latm::Latm, Depacketizer};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for fmtp in [
        &[("cpresent", "0"), ("config", "400023103fc0")][..],
        &[("cpresent", "1")][..],
    ] {
        let fmtp: Vec<(String, String)> = fmtp
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let latm = Latm::new(48_000, &fmtp).expect("a valid fmtp");
        edgerec_fuzz::depacketize(Depacketizer::Latm(latm), data);
    }
});
