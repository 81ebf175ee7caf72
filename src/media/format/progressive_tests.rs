//! Tests of the progressive writer: real clips checked with ffprobe / ffmpeg, the layout and
//! sample tables checked with mp4-atom, torn and foreign inputs.

use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use mp4_atom::Codec;

use super::*;
use crate::media::format::fmp4::encode_init;
use crate::media::format::scan::scan;
use crate::media::format::testutil::{self, Audio, Video};

/// MD5 of every decoded frame of one stream (`ffmpeg -f md5`), timestamps excluded.
fn decoded_md5(path: &Path, stream: &str) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-map", stream, "-f", "md5", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn convert(fmp4: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let n = write_progressive(Cursor::new(fmp4), &mut out).unwrap();
    assert_eq!(n, out.len() as u64, "returned byte count");
    out
}

#[test]
fn progressive_copy_is_moov_first_and_decodes_to_the_same_frames() {
    let dir = tempfile::tempdir().unwrap();
    let src = testutil::make_clip(dir.path(), Video::H264, Some(Audio::Aac), 3);
    let (start, frags) = testutil::load_clip(&src);
    let fmp4 = dir.path().join("segment.mp4");
    std::fs::write(&fmp4, testutil::write_fmp4(&start, &frags)).unwrap();
    let prog = dir.path().join("segment.progressive.mp4");
    let bytes = convert(&std::fs::read(&fmp4).unwrap());
    std::fs::write(&prog, &bytes).unwrap();

    assert_eq!(
        testutil::top_level_kinds(&bytes),
        ["ftyp", "uuid", "moov", "mdat"]
    );
    let probe = testutil::ffprobe(&prog);
    let streams = probe["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2, "{probe}");
    assert_eq!(streams[0]["codec_name"], "h264");
    assert_eq!(streams[1]["codec_name"], "aac");
    assert_eq!(streams[0]["nb_frames"], "75");
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((2.9..3.2).contains(&duration), "duration {duration}");
    assert_eq!(testutil::ffmpeg_decode_errors(&prog), "");
    assert_eq!(testutil::decoded_frames(&prog, "v:0"), 75);
    for stream in ["0:v:0", "0:a:0"] {
        assert_eq!(
            decoded_md5(&prog, stream),
            decoded_md5(&fmp4, stream),
            "{stream} decodes differently from the fMP4"
        );
    }
    assert_eq!(
        decoded_md5(&prog, "0:v:0"),
        decoded_md5(&src, "0:v:0"),
        "video decodes differently from the source clip"
    );
}

#[test]
fn chunk_offsets_and_sizes_point_at_the_recorded_samples() {
    let dir = tempfile::tempdir().unwrap();
    let src = testutil::make_clip(dir.path(), Video::H264, Some(Audio::Aac), 2);
    let (start, frags) = testutil::load_clip(&src);
    let bytes = convert(&testutil::write_fmp4(&start, &frags));
    let moov = testutil::find_moov(&bytes);
    assert!(moov.mvex.is_none());
    for (t, trak) in moov.trak.iter().enumerate() {
        let stbl = &trak.mdia.minf.stbl;
        let StszSamples::Different { sizes } = &stbl.stsz.samples else {
            panic!("expected per-sample sizes");
        };
        let offsets = &stbl.stco.as_ref().unwrap().entries;
        // Walk the chunks with stsc, and compare each sample's bytes with what was recorded.
        let recorded: Vec<_> = frags
            .iter()
            .flat_map(|f| f.runs.iter().filter(|r| r.track == t))
            .flat_map(|r| &r.samples)
            .collect();
        assert_eq!(sizes.len(), recorded.len());
        let mut n = 0;
        for (c, &offset) in offsets.iter().enumerate() {
            let per_chunk = stbl
                .stsc
                .entries
                .iter()
                .rev()
                .find(|e| e.first_chunk as usize <= c + 1)
                .unwrap()
                .samples_per_chunk;
            let mut at = offset as usize;
            for _ in 0..per_chunk {
                assert_eq!(&bytes[at..at + sizes[n] as usize], &recorded[n].data[..]);
                at += sizes[n] as usize;
                n += 1;
            }
        }
        assert_eq!(n, recorded.len(), "every sample is in a chunk");
        let sync: Vec<u32> = (1..=recorded.len() as u32)
            .filter(|&i| recorded[i as usize - 1].keyframe)
            .collect();
        match &stbl.stss {
            Some(stss) => assert_eq!(stss.entries, sync),
            None => assert_eq!(sync.len(), recorded.len(), "no stss means all sync"),
        }
        assert_eq!(
            trak.mdia.mdhd.duration,
            recorded.iter().map(|s| u64::from(s.duration)).sum::<u64>()
        );
    }
    assert!(matches!(
        moov.trak[0].mdia.minf.stbl.stsd.codecs[0],
        Codec::Avc1(_)
    ));
    assert!(
        moov.trak[0].mdia.minf.stbl.ctts.is_some(),
        "B-frames need ctts"
    );
}

#[test]
fn scan_reads_meta_and_duration_of_a_progressive_copy() {
    let dir = tempfile::tempdir().unwrap();
    let src = testutil::make_clip(dir.path(), Video::H264, None, 2);
    let (start, frags) = testutil::load_clip(&src);
    let bytes = convert(&testutil::write_fmp4(&start, &frags));
    let s = scan(Cursor::new(&bytes)).unwrap();
    assert_eq!(s.meta, Some(start.meta.clone()));
    assert_eq!(s.duration_ms, 2000);
    assert_eq!(s.fragments, 0);
    assert_eq!(s.complete_end, bytes.len() as u64);
}

#[test]
fn a_torn_segment_converts_up_to_its_last_complete_fragment() {
    let dir = tempfile::tempdir().unwrap();
    let src = testutil::make_clip(dir.path(), Video::H264, Some(Audio::Aac), 3);
    let (start, frags) = testutil::load_clip(&src);
    let whole = testutil::write_fmp4(&start, &frags);
    let torn = &whole[..whole.len() - 100];
    let prog = dir.path().join("torn.mp4");
    std::fs::write(&prog, convert(torn)).unwrap();
    assert_eq!(testutil::ffmpeg_decode_errors(&prog), "");
    let last_video = frags.last().unwrap().runs[0].samples.len() as u64;
    assert_eq!(testutil::decoded_frames(&prog, "v:0"), 75 - last_video);
}

#[test]
fn a_late_starting_track_gets_an_empty_edit() {
    let dir = tempfile::tempdir().unwrap();
    let src = testutil::make_clip(dir.path(), Video::H264, Some(Audio::Aac), 2);
    let (start, mut frags) = testutil::load_clip(&src);
    // Drop the first fragment's audio: audio now starts one second in.
    frags[0].runs.retain(|r| r.track == 0);
    let audio_start = frags[1].runs[1].base_decode_time;
    let bytes = convert(&testutil::write_fmp4(&start, &frags));
    let moov = testutil::find_moov(&bytes);
    let elst = moov.trak[1].edts.as_ref().unwrap().elst.as_ref().unwrap();
    assert_eq!(elst.entries[0].media_time, None);
    assert_eq!(
        elst.entries[0].segment_duration,
        audio_start * 1000 / 48_000
    );
    assert!(moov.trak[0].edts.is_none());

    let prog = dir.path().join("late-audio.mp4");
    std::fs::write(&prog, &bytes).unwrap();
    assert_eq!(testutil::ffmpeg_decode_errors(&prog), "");
    let probe = testutil::ffprobe(&prog);
    let audio_start_s = testutil::stream_f64(&probe, 1, "start_time");
    assert!(
        (0.95..1.1).contains(&audio_start_s),
        "audio starts at {audio_start_s}"
    );
}

#[test]
fn a_file_without_an_init_is_refused() {
    let err =
        write_progressive(Cursor::new(b"\0\0\0\x10ftypiso6\0\0\0\0"), Vec::new()).unwrap_err();
    assert!(matches!(err, FormatError::Malformed { .. }), "{err}");
}

#[test]
fn a_progressive_file_is_not_converted_again() {
    let init = encode_init(&testutil::synthetic_start()).unwrap();
    let once = convert(&init);
    let err = write_progressive(Cursor::new(&once), Vec::new()).unwrap_err();
    assert!(err.to_string().contains("mvex"), "{err}");
}

#[test]
fn stsc_has_one_entry_per_change_in_chunk_size() {
    let entries = stsc_entries(&[(3, 0), (3, 2), (1, 4), (3, 6)]);
    let got: Vec<(u32, u32)> = entries
        .iter()
        .map(|e| (e.first_chunk, e.samples_per_chunk))
        .collect();
    assert_eq!(got, [(1, 3), (3, 1), (4, 3)]);
}

#[test]
fn a_decode_time_gap_lengthens_the_previous_sample() {
    use crate::media::format::boxes::FragSample;
    let sample = |offset| FragSample {
        duration: 10,
        size: 1,
        flags: 0x0200_0000,
        cts: 0,
        offset,
    };
    let mut chunks = Vec::new();
    let mut table = Table::default();
    let first = TrackFragment {
        track_id: 1,
        base_decode_time: Some(0),
        samples: vec![sample(100), sample(101)],
    };
    let after_gap = TrackFragment {
        track_id: 1,
        base_decode_time: Some(50),
        samples: vec![sample(200)],
    };
    table.add(&first, &mut chunks);
    table.add(&after_gap, &mut chunks);
    let stts: Vec<(u32, u32)> = table
        .stts
        .iter()
        .map(|e| (e.sample_count, e.sample_delta))
        .collect();
    assert_eq!(stts, [(1, 10), (1, 40), (1, 10)]);
    assert_eq!(table.duration, 60);
    assert_eq!(chunks.len(), 2, "non-contiguous samples start a new chunk");
}
