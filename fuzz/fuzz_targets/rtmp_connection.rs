//! A whole RTMP publisher connection (handshake, chunks, AMF0 commands, FLV tags), fed in
//! the read sizes the fuzzer chose.
#![no_main]
use edgerec::media::ingest::rtmp::{Connection, Item, RtmpLimits};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let limits = RtmpLimits {
        max_media: 256 << 10,
        max_command: 16 << 10,
        max_buffered: 512 << 10,
        read_size: 4096,
    };
    let mut conn = Connection::new(limits, 0, 7);
    for read in edgerec_fuzz::packets(data) {
        let read = &read[..read.len().min(conn.room())];
        if conn.receive(read).is_err() {
            return;
        }
        loop {
            match conn.poll() {
                Ok(Some(Item::Publish { .. })) => conn.accept(),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        let _ = conn.take_output();
    }
});
