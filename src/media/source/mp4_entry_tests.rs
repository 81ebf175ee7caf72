use mp4_atom::{Audio, Avc1, Esds, FixedPoint, Hdlr, Mdhd, Mdia, Minf, Opus, Stbl, Stsd, Tkhd};

use super::*;
use crate::media::codec::testdata::FFMPEG_AVCC;

fn trak(handler: &[u8; 4], timescale: u32, entry: Codec) -> Trak {
    Trak {
        tkhd: Tkhd {
            track_id: 7,
            ..Default::default()
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale,
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: FourCC::new(handler),
                name: String::new(),
            },
            minf: Minf {
                stbl: Stbl {
                    stsd: Stsd {
                        codecs: vec![entry],
                    },
                    ..Default::default()
                },
                ..Default::default()
            },
        },
        ..Default::default()
    }
}

fn audio(channels: u16) -> Audio {
    Audio {
        data_reference_index: 1,
        channel_count: channels,
        sample_size: 16,
        sample_rate: FixedPoint::new(48_000, 0),
    }
}

/// An `esds` holding ES_Descriptor(ES_ID=1) { DecoderConfig(`oti`) { DSI(11 90) } SL(02) }:
/// AAC-LC, 48 kHz, stereo.
fn esds(oti: u8) -> Esds {
    let mut dcd = vec![oti, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    dcd.extend_from_slice(&[0x05, 0x02, 0x11, 0x90]);
    let mut es = vec![0x00, 0x01, 0x00, 0x04, dcd.len() as u8];
    es.extend_from_slice(&dcd);
    es.extend_from_slice(&[0x06, 0x01, 0x02]);
    let mut payload = vec![0, 0, 0, 0, 0x03, 0x80, 0x80, 0x80, es.len() as u8];
    payload.extend_from_slice(&es);
    Esds::decode_body(&mut &payload[..]).unwrap()
}

fn usable(k: TrackKind) -> (TrackParams, Option<u8>) {
    match k {
        TrackKind::Usable { params, nal_length } => (params, nal_length),
        TrackKind::Other(what) => panic!("not usable: {what}"),
    }
}

#[test]
fn aac_config_comes_from_the_esds_decoder_specific_info() {
    let entry = Mp4a {
        audio: audio(0),
        esds: esds(0x40),
        btrt: None,
        taic: None,
    };
    let (id, kind) = describe(&trak(b"soun", 48_000, entry.into())).unwrap();
    assert_eq!(id, 7);
    let (params, nal) = usable(kind);
    let TrackParams::Audio(a) = params else {
        panic!("{params:?}")
    };
    assert_eq!(
        (a.codec, a.sample_rate, a.channels),
        (AudioCodec::Aac, 48_000, 2)
    );
    assert_eq!(&a.config[..], [0x11, 0x90]);
    assert_eq!((a.timescale, a.frame_samples, nal), (48_000, 1024, None));
}

#[test]
fn mp4a_of_another_object_type_is_named_not_recorded() {
    let entry = Mp4a {
        audio: audio(2),
        esds: esds(0x6b),
        btrt: None,
        taic: None,
    };
    let (_, kind) = describe(&trak(b"soun", 44_100, entry.into())).unwrap();
    assert_eq!(
        kind,
        TrackKind::Other("audio/mp4a (object type 0x6b)".into())
    );
}

#[test]
fn opus_entry_gives_the_opus_head_of_its_dops() {
    let dops = Dops {
        output_channel_count: 2,
        pre_skip: 312,
        input_sample_rate: 48_000,
        output_gain: 0,
        channel_mapping: None,
    };
    let entry = Opus {
        audio: audio(2),
        dops,
        btrt: None,
    };
    let (params, _) = usable(describe(&trak(b"soun", 48_000, entry.into())).unwrap().1);
    let TrackParams::Audio(a) = params else {
        panic!("{params:?}")
    };
    assert_eq!(
        (a.codec, a.sample_rate, a.channels),
        (AudioCodec::Opus, 48_000, 2)
    );
    // Version 1, 2 channels, pre-skip 312, 48 kHz, gain 0, family 0 (RFC 7845 §5.1).
    assert_eq!(&a.config[..], [1, 2, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0]);
}

#[test]
fn avc_entry_record_is_rebuilt_by_the_codec_toolkit_and_its_nal_length_size_kept() {
    let mut avcc = Avcc::decode_body(&mut &FFMPEG_AVCC[..]).unwrap();
    avcc.length_size = 2;
    avcc.ext = None; // a muxer that left out the High-profile trailer
    let entry = Avc1 {
        visual: Visual {
            width: 1280,
            height: 720,
            ..Default::default()
        },
        avcc,
        ..Default::default()
    };
    let (params, nal) = usable(describe(&trak(b"vide", 90_000, entry.into())).unwrap().1);
    let TrackParams::Video(v) = params else {
        panic!("{params:?}")
    };
    assert_eq!(v.rfc6381, "avc1.64001F");
    assert_eq!(nal, Some(2));
    assert_eq!(&v.config[..], FFMPEG_AVCC);
}

#[test]
fn video_of_zero_size_or_zero_timescale_is_an_error() {
    let entry = || Avc1 {
        visual: Visual {
            width: 0,
            height: 240,
            ..Default::default()
        },
        ..Default::default()
    };
    let e = describe(&trak(b"vide", 90_000, entry().into())).unwrap_err();
    assert!(e.to_string().contains("size 0x240"), "{e}");
    let e = describe(&trak(b"vide", 0, entry().into())).unwrap_err();
    assert!(e.to_string().contains("timescale 0"), "{e}");
}

#[test]
fn unknown_entries_are_named_by_handler_and_box_type() {
    let mp4v = Codec::Unknown(FourCC::new(b"mp4v"), vec![0; 78]);
    let (_, kind) = describe(&trak(b"vide", 90_000, mp4v.clone())).unwrap();
    assert_eq!(kind, TrackKind::Other("video/mp4v".into()));
    let (_, kind) = describe(&trak(b"text", 1000, mp4v)).unwrap();
    assert_eq!(kind, TrackKind::Other("text/mp4v".into()));
    // A codec mp4-atom knows but edgerec does not record.
    let vp09 = mp4_atom::Vp09::default();
    let (_, kind) = describe(&trak(b"vide", 90_000, vp09.into())).unwrap();
    assert_eq!(kind, TrackKind::Other("video/vp09".into()));
}
