//! The RTMP handshake, server side (RTMP specification 1.0, §5.2), in its simple form:
//! C0 (version 3) + C1 (1536 bytes) in; S0 + S1 + S2 (an echo of C1) out; then C2 in.
//! ffmpeg, OBS (librtmp) and GStreamer publish with it; the digest variant is only
//! checked by Flash players. Pure.

use super::RtmpError;

/// Length of C1, C2, S1 and S2.
pub const PACKET: usize = 1536;
/// The only protocol version in use (6 = RTMPE, not supported).
const VERSION: u8 = 3;

/// Checks C0+C1 (`PACKET + 1` bytes) and returns S0+S1+S2.
///
/// `time` goes into S1's time field; `seed` fills S1's random part (it need not be
/// secret: the simple handshake authenticates nothing).
pub fn respond(c0c1: &[u8], time: u32, seed: u32) -> Result<Vec<u8>, RtmpError> {
    let Some((&version, c1)) = c0c1.split_first() else {
        return Err(RtmpError::Handshake {
            reason: "connection closed before C0".into(),
        });
    };
    if version != VERSION {
        let hint = match version {
            6 | 8 => " (RTMPE encryption is not supported; use plain rtmp://)",
            0x16 => " (looks like TLS; rtmps:// is not supported)",
            b'A'..=b'Z' => " (looks like a text protocol such as HTTP)",
            _ => "",
        };
        return Err(RtmpError::Handshake {
            reason: format!("version byte 0x{version:02x}, expected 0x03{hint}"),
        });
    }
    if c1.len() != PACKET {
        return Err(RtmpError::Handshake {
            reason: format!("C1 has {} bytes, expected {PACKET}", c1.len()),
        });
    }
    let mut out = Vec::with_capacity(1 + 2 * PACKET);
    out.push(VERSION);
    // S1: time, four zero bytes (a zero version selects the simple handshake), random.
    out.extend_from_slice(&time.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    let mut x = seed | 1;
    while out.len() < 1 + PACKET {
        // xorshift32: cheap filler, different per connection.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.extend_from_slice(&x.to_be_bytes());
    }
    // S2: C1's time, our time, C1's random echoed.
    out.extend_from_slice(&c1[0..4]);
    out.extend_from_slice(&time.to_be_bytes());
    out.extend_from_slice(&c1[8..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s2_echoes_c1_and_s1_is_a_simple_handshake() {
        let mut c0c1 = vec![3u8];
        c0c1.extend((0..PACKET).map(|i| i as u8));
        let out = respond(&c0c1, 77, 1234).unwrap();
        assert_eq!(out.len(), 1 + 2 * PACKET);
        assert_eq!(out[0], 3);
        assert_eq!(&out[1..5], &77u32.to_be_bytes());
        assert_eq!(&out[5..9], &[0; 4]);
        let s2 = &out[1 + PACKET..];
        assert_eq!(&s2[0..4], &c0c1[1..5]);
        assert_eq!(&s2[8..], &c0c1[9..]);
    }

    #[test]
    fn wrong_version_is_refused_with_a_hint() {
        let mut c0c1 = vec![b'G'];
        c0c1.extend([0u8; PACKET]);
        let e = respond(&c0c1, 0, 0).unwrap_err().to_string();
        assert!(e.contains("0x47") && e.contains("HTTP"), "{e}");
        c0c1[0] = 6;
        assert!(respond(&c0c1, 0, 0)
            .unwrap_err()
            .to_string()
            .contains("RTMPE"));
    }
}
