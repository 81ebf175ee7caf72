use super::*;

const H264: &[u8] = include_bytes!("testdata/bframes.h264");
const H265: &[u8] = include_bytes!("testdata/bframes.hevc");

/// Feeds `data` in chunks of `chunk` bytes and returns every access unit.
fn units(data: &[u8], chunk: usize) -> Vec<AccessUnit> {
    let mut sc = StartCodes::default();
    let mut asm: Option<AuAssembler> = None;
    let mut nals = Vec::new();
    let mut out = Vec::new();
    for c in data.chunks(chunk) {
        sc.push(c, &mut nals);
        for n in nals.drain(..) {
            if asm.is_none() {
                asm = detect_codec(&n).map(AuAssembler::new);
            }
            if let Some(a) = asm.as_mut() {
                out.extend(a.push(n));
            }
        }
    }
    if let Some(a) = asm.as_mut() {
        if let Some(n) = sc.finish() {
            out.extend(a.push(n));
        }
        out.extend(a.finish());
    }
    out
}

/// The NAL types inside a length-prefixed access unit.
fn nal_types(codec: VideoCodec, au: &AccessUnit) -> Vec<u8> {
    let mut d = &au.data[..];
    let mut t = Vec::new();
    while d.len() >= 4 {
        let n = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize;
        t.push(h26x::nal_type(codec, &d[4..4 + n]));
        d = &d[4 + n..];
    }
    assert!(d.is_empty(), "length prefixes cover the unit exactly");
    t
}

#[test]
fn h264_stream_splits_into_one_unit_per_picture_however_it_is_read() {
    for chunk in [1, 7, 188, 4096, H264.len()] {
        let aus = units(H264, chunk);
        assert_eq!(aus.len(), 14, "chunk {chunk}");
        let keys: Vec<bool> = aus.iter().map(|a| a.key).collect();
        assert!(keys[0] && keys[7], "IDR every 7 frames: {keys:?}");
        assert_eq!(keys.iter().filter(|k| **k).count(), 2);
        let p = aus[0].params.as_ref().unwrap();
        assert_eq!((p.width, p.height, p.codec), (128, 96, VideoCodec::H264));
        for a in &aus {
            let types = nal_types(VideoCodec::H264, a);
            assert!(!types.iter().any(|t| matches!(t, 7..=9)), "{types:?}");
            assert!(types.iter().any(|t| matches!(t, 1 | 5)));
        }
        // Parameters did not change: one shared allocation.
        assert!(aus
            .iter()
            .all(|a| Arc::ptr_eq(a.params.as_ref().unwrap(), p)));
    }
}

#[test]
fn h265_stream_splits_and_builds_hvcc() {
    let aus = units(H265, 333);
    assert_eq!(aus.len(), 14);
    // x265 opens its second GOP with a CRA picture (a key frame that is not an IDR).
    let keys: Vec<usize> = (0..14).filter(|i| aus[*i].key).collect();
    assert_eq!(keys, vec![0, 6]);
    assert!(aus[0].idr && !aus[6].idr);
    let p = aus[0].params.as_ref().unwrap();
    assert_eq!((p.width, p.height, p.codec), (128, 96, VideoCodec::H265));
    assert!(p.rfc6381.starts_with("hvc1."), "{}", p.rfc6381);
    for a in &aus {
        let types = nal_types(VideoCodec::H265, a);
        assert!(!types.iter().any(|t| matches!(t, 32..=35)), "{types:?}");
    }
}

#[test]
fn b_frames_get_presentation_keys_out_of_decode_order() {
    for (data, idr2) in [(H264, Some(7)), (H265, None)] {
        let aus = units(data, 4096);
        let mut poc = PocCounter::default();
        let keys: Vec<(u64, i64)> = aus.iter().map(|a| poc.key(a)).collect();
        // Each picture has its own key; the IDR starts a period at POC 0.
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), keys.len(), "{keys:?}");
        assert_eq!(keys[0].1, 0);
        if let Some(i) = idr2 {
            assert_eq!(keys[i], (keys[0].0 + 1, 0), "{keys:?}");
        }
        // B-frames: some picture is shown before one decoded earlier.
        assert!(keys.windows(2).any(|w| w[1] < w[0]), "{keys:?}");
    }
}

#[test]
fn codec_is_detected_from_parameter_sets_and_delimiters() {
    assert_eq!(detect_codec(&[0x67, 0x64, 0]), Some(VideoCodec::H264));
    assert_eq!(detect_codec(&[0x09, 0xf0]), Some(VideoCodec::H264));
    assert_eq!(detect_codec(&[0x40, 0x01, 0x0c]), Some(VideoCodec::H265));
    assert_eq!(detect_codec(&[0x46, 0x01, 0x50]), Some(VideoCodec::H265));
    assert_eq!(detect_codec(&[0x65, 0x88]), None, "a slice proves nothing");
    assert_eq!(detect_codec(&[0x40]), None);
}

#[test]
fn three_and_four_byte_start_codes_and_garbage_before_the_first() {
    let mut sc = StartCodes::default();
    let mut out = Vec::new();
    sc.push(&[9, 9, 0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3], &mut out);
    sc.push(&[0, 0, 0], &mut out);
    sc.push(&[1, 0x65, 4, 0], &mut out);
    assert_eq!(
        out,
        vec![
            Bytes::from_static(&[0x67, 1, 2]),
            Bytes::from_static(&[0x68, 3])
        ]
    );
    assert_eq!(sc.finish(), Some(Bytes::from_static(&[0x65, 4, 0])));
}

#[test]
fn random_bytes_never_panic_the_splitter_or_assembler() {
    let mut x = 0x1234_5678_9abc_def1u64;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for codec in [VideoCodec::H264, VideoCodec::H265] {
        let mut sc = StartCodes::default();
        let mut asm = AuAssembler::new(codec);
        let mut nals = Vec::new();
        for _ in 0..3000 {
            let len = (rand() % 64) as usize;
            // Plenty of zeros and ones so start codes and parameter sets do occur.
            let chunk: Vec<u8> = (0..len)
                .map(|_| match rand() % 8 {
                    0..=2 => 0,
                    3 => 1,
                    4 => [0x67, 0x68, 0x65, 0x40, 0x42, 0x44, 0x26][(rand() % 7) as usize],
                    _ => rand() as u8,
                })
                .collect();
            sc.push(&chunk, &mut nals);
            let mut poc = PocCounter::default();
            for n in nals.drain(..) {
                if let Some(au) = asm.push(n) {
                    poc.key(&au);
                }
            }
        }
        asm.finish();
    }
}
