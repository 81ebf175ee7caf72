//! Opus RTP depacketizer.
#![no_main]
use edgerec::media::ingest::depack::{opus::Opus, Depacketizer};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    edgerec_fuzz::depacketize(Depacketizer::Opus(Opus::new(2)), data);
});
