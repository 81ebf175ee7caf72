//! `edgerec export`: what the playback API serves, written to files without HTTP: one MP4
//! cut on key frames (`-o clip.mp4`), or an HLS VOD playlist whose URIs are the recorded
//! files' paths relative to it (`--m3u8 out.m3u8`). Rows come from the running recorder
//! (control socket) or, when none runs, from the index, as for `edgerec segments`.

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::storage::playback::{self, read};
use crate::storage::store::SegmentRow;

/// Arguments of `edgerec export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[arg(short, long, default_value = "/etc/edgerec/edgerec.toml")]
    pub config: PathBuf,
    /// The stream to export.
    #[arg(long)]
    pub stream: String,
    /// Start: ms since the Unix epoch, or an RFC 3339 time (`2026-12-07T22:00:00Z`).
    #[arg(long)]
    pub start: String,
    /// How long, e.g. `10s` or `5min`.
    #[arg(long, conflicts_with = "end", required_unless_present = "end")]
    pub duration: Option<String>,
    /// End, instead of --duration (same forms as --start).
    #[arg(long)]
    pub end: Option<String>,
    /// Write one MP4 (fragmented, cut on key frames) to this file.
    #[arg(short, long, conflicts_with = "m3u8", required_unless_present = "m3u8")]
    pub output: Option<PathBuf>,
    /// Write an HLS VOD playlist (byte ranges into the recorded files) to this file.
    #[arg(long)]
    pub m3u8: Option<PathBuf>,
}

/// Runs `edgerec export` with the stream's `rows` (already read from the recorder or
/// the index) under the store `root`.
pub fn run(args: &ExportArgs, root: &Path, rows: &[SegmentRow]) -> anyhow::Result<ExitCode> {
    let start_ms = parse_time(&args.start).context("--start")?;
    let end_ms = match (&args.duration, &args.end) {
        (Some(d), _) => {
            let d = humantime::parse_duration(d).context("--duration")?;
            start_ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        }
        (None, Some(e)) => parse_time(e).context("--end")?,
        (None, None) => anyhow::bail!("give --duration or --end"),
    };
    anyhow::ensure!(
        end_ms > start_ms,
        "--end (or --duration) must be after --start"
    );
    let files = read::load(root, rows, &args.stream, start_ms, end_ms)?;
    let which = || format!("stream {:?}", args.stream);
    if let Some(out) = &args.output {
        let cut =
            playback::mp4_cut(&files, start_ms, (end_ms - start_ms) as u64).with_context(which)?;
        write_atomically(out, |f| {
            read::write_pieces(cut.pieces(), f)?;
            Ok(())
        })?;
        println!(
            "{}: {} bytes, {:.3} s from {} (ETag {})",
            out.display(),
            cut.len(),
            (cut.end_ms - cut.start_ms) as f64 / 1000.0,
            cut.start_ms,
            cut.etag()
        );
    } else if let Some(out) = &args.m3u8 {
        let dir = absolute(out.parent().unwrap_or(Path::new(".")))?;
        let text = playback::vod_m3u8(&files, start_ms, end_ms, |r| {
            uri_path(&relative(&dir, &r.path))
        })
        .with_context(which)?;
        write_atomically(out, |f| Ok(f.write_all(text.as_bytes())?))?;
        println!(
            "{}: {} segments",
            out.display(),
            text.matches("#EXTINF").count()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Characters a relative URI path cannot hold as they are (a playlist line, and a quoted
/// `EXT-X-MAP` attribute): controls, space, `"`, `#`, `%`, `?` and the like.
const URI_ESCAPE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'?')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// A relative path as a URI reference (`/` separated, percent-encoded).
fn uri_path(p: &Path) -> String {
    let s = p.to_string_lossy();
    percent_encoding::utf8_percent_encode(&s, URI_ESCAPE).to_string()
}

/// Ms since the Unix epoch, or an RFC 3339 time.
fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let t = humantime::parse_rfc3339_weak(s).with_context(|| {
        format!("{s:?} is neither ms since the Unix epoch nor an RFC 3339 time")
    })?;
    Ok(t.duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64)
}

/// Writes `path` through a temporary file beside it, renamed over it once complete, so a
/// failed export leaves no partial file (and an existing one untouched).
fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut w = std::io::BufWriter::new(file);
        fill(&mut w)?;
        w.into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    let p = if p.as_os_str().is_empty() {
        Path::new(".")
    } else {
        p
    };
    p.canonicalize()
        .with_context(|| format!("the output directory {}", p.display()))
}

/// `to` relative to the directory `from` (both absolute), with `..` where needed.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let to = to.canonicalize().unwrap_or_else(|_| to.to_path_buf());
    let a: Vec<Component> = from.components().collect();
    let b: Vec<Component> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..a.len() {
        out.push("..");
    }
    for c in &b[common..] {
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_out_of_the_playlists_directory() {
        assert_eq!(
            relative(Path::new("/a/b"), Path::new("/a/b/c/d.mp4")),
            Path::new("c/d.mp4")
        );
        assert_eq!(
            relative(Path::new("/a/x/y"), Path::new("/a/b/d.mp4")),
            Path::new("../../b/d.mp4")
        );
    }

    #[test]
    fn uris_of_names_with_spaces_or_quotes_are_percent_encoded() {
        assert_eq!(
            uri_path(Path::new("../front door/a\"b#1.mp4")),
            "../front%20door/a%22b%231.mp4"
        );
    }

    #[test]
    fn times_are_epoch_ms_or_rfc_3339() {
        assert_eq!(parse_time("1800000000000").unwrap(), 1_800_000_000_000);
        assert_eq!(
            parse_time("2027-01-15T08:00:00Z").unwrap(),
            1_800_000_000_000
        );
        assert!(parse_time("yesterday").is_err());
    }
}
