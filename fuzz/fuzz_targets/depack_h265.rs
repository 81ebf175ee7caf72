//! H.265 RTP depacketizer (single NAL, AP, FU).
#![no_main]
use edgerec::media::frame::VideoCodec;
use edgerec::media::ingest::depack::{video::Video, Depacketizer};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let d = Depacketizer::Video(Box::new(Video::new(VideoCodec::H265, &[])));
    edgerec_fuzz::depacketize(d, data);
});
