//! The RTSP push server's request handling: framing, requests, interleaved RTP.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgerec_fuzz::rtsp_connection(data));
