//! HTTP `Range` requests (RFC 9110 §14) against a file of known length.

use std::ops::Range;

/// How to answer a request for a file of `len` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeReply {
    /// 200 with the whole file: no `Range`, one the server ignores (not `bytes`, malformed,
    /// or several ranges — RFC 9110 lets a server answer those with the whole
    /// representation, which every player handles), or one covering the whole file is still
    /// answered as a range (below).
    Whole,
    /// 206 with `Content-Range: bytes {start}-{end - 1}/{len}` and these bytes.
    Partial(Range<u64>),
    /// 416 with `Content-Range: bytes */{len}`: the range starts at or past the end, or
    /// asks for the last 0 bytes.
    Unsatisfiable,
}

impl RangeReply {
    /// The `Content-Range` header value of a 206 or 416 answer for a file of `len` bytes.
    pub fn content_range(&self, len: u64) -> Option<String> {
        match self {
            RangeReply::Whole => None,
            RangeReply::Partial(r) => Some(format!("bytes {}-{}/{len}", r.start, r.end - 1)),
            RangeReply::Unsatisfiable => Some(format!("bytes */{len}")),
        }
    }
}

/// Resolves the `Range` header value `header` (if any) for a file of `len` bytes:
/// `bytes=a-b`, `bytes=a-` and `bytes=-n` (the last n bytes); an end past the file is
/// clamped to it.
pub fn resolve_range(header: Option<&str>, len: u64) -> RangeReply {
    let Some(spec) = header.map(str::trim).and_then(|h| h.strip_prefix("bytes=")) else {
        return RangeReply::Whole;
    };
    if spec.contains(',') {
        return RangeReply::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReply::Whole;
    };
    let num = |s: &str| s.trim().parse::<u64>().ok();
    match (a.trim().is_empty(), b.trim().is_empty()) {
        // -n: the last n bytes.
        (true, false) => match num(b) {
            Some(0) => RangeReply::Unsatisfiable,
            Some(_) if len == 0 => RangeReply::Unsatisfiable,
            Some(n) => RangeReply::Partial(len.saturating_sub(n)..len),
            None => RangeReply::Whole,
        },
        // a-: from a to the end.
        (false, true) => match num(a) {
            Some(a) if a >= len => RangeReply::Unsatisfiable,
            Some(a) => RangeReply::Partial(a..len),
            None => RangeReply::Whole,
        },
        (false, false) => match (num(a), num(b)) {
            (Some(a), Some(b)) if a > b => RangeReply::Whole, // invalid: ignored
            (Some(a), Some(_)) if a >= len => RangeReply::Unsatisfiable,
            (Some(a), Some(b)) => RangeReply::Partial(a..b.min(len - 1) + 1),
            _ => RangeReply::Whole,
        },
        (true, true) => RangeReply::Whole,
    }
}
