//! H.264 RTP depacketizer (single NAL, STAP-A, FU-A).
#![no_main]
use edgerec::media::frame::VideoCodec;
use edgerec::media::ingest::depack::{video::Video, Depacketizer};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let d = Depacketizer::Video(Box::new(Video::new(VideoCodec::H264, &[])));
    edgerec_fuzz::depacketize(d, data);
});
