//! The RTMP chunk stream reader: message reassembly across chunk streams, bounded.
#![no_main]
use edgerec::media::ingest::rtmp::chunk::{ChunkReader, Read};
use edgerec::media::ingest::rtmp::RtmpLimits;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let limits = RtmpLimits {
        max_media: 256 << 10,
        max_command: 16 << 10,
        max_buffered: 512 << 10,
        read_size: 4096,
    };
    let mut r = ChunkReader::new(limits.clone());
    let mut buf = data;
    while let Ok(Read::Chunk(n, m)) = r.read(buf) {
        assert!(n > 0 && n <= buf.len());
        if let Some(m) = m {
            assert!(m.payload.len() <= limits.max_media);
        }
        assert!(r.buffered() <= limits.max_buffered);
        buf = &buf[n..];
    }
});
