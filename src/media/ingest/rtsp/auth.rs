//! Publish credentials on RTSP: Basic (RFC 7617) and Digest with MD5, without qop
//! (RFC 2069 style, which ffmpeg, GStreamer and encoders speak). Pure: the connection
//! supplies the nonce it issued.

use base64::Engine;
use md5::{Digest, Md5};

use crate::config::IngestUser;

/// The realm in challenges.
pub const REALM: &str = "edgerec";

/// The `WWW-Authenticate` values of a 401: Digest first (preferred), then Basic.
pub fn challenges(nonce: &str) -> [String; 2] {
    [
        format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=MD5"),
        format!("Basic realm=\"{REALM}\""),
    ]
}

fn hex_md5(s: &str) -> String {
    let d = Md5::digest(s.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh nonce for a connection: `seed` (peer and connection id) keeps nonces distinct,
/// and 64 bits from the process's random hash keys make them unpredictable, so a response
/// sniffed from one connection cannot be replayed by a publisher that reconnects from the
/// same address and port after a restart (when connection ids start over).
pub fn nonce(seed: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(seed.as_bytes());
    hex_md5(&format!("{seed}/{:016x}", h.finish()))
}

/// Whether `authorization` (the header value) proves one of `users` for `method`.
/// `nonce` is the one this connection issued.
pub fn check(authorization: &str, method: &str, nonce: &str, users: &[IngestUser]) -> bool {
    let (scheme, rest) = authorization
        .trim()
        .split_once(' ')
        .unwrap_or((authorization, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
            return false;
        };
        let Ok(text) = String::from_utf8(raw) else {
            return false;
        };
        let Some((user, pass)) = text.split_once(':') else {
            return false;
        };
        return users
            .iter()
            .any(|u| u.user == user && constant_eq(u.password.as_bytes(), pass.as_bytes()));
    }
    if !scheme.eq_ignore_ascii_case("digest") {
        return false;
    }
    let params = digest_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    let (Some(user), Some(realm), Some(n), Some(uri), Some(response)) = (
        get("username"),
        get("realm"),
        get("nonce"),
        get("uri"),
        get("response"),
    ) else {
        return false;
    };
    if n != nonce || realm != REALM {
        return false;
    }
    let Some(u) = users.iter().find(|u| u.user == user) else {
        return false;
    };
    let ha1 = hex_md5(&format!("{user}:{REALM}:{}", u.password));
    let ha2 = hex_md5(&format!("{method}:{uri}"));
    let expected = match (get("qop"), get("nc"), get("cnonce")) {
        (Some(qop), Some(nc), Some(cnonce)) => {
            hex_md5(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"))
        }
        _ => hex_md5(&format!("{ha1}:{nonce}:{ha2}")),
    };
    constant_eq(
        expected.as_bytes(),
        response.to_ascii_lowercase().as_bytes(),
    )
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `k="v", k2=v2` pairs; quoted values may contain commas.
fn digest_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() && out.len() < 32 {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (q[..end].to_owned(), &q[end + 1..]),
                None => (q.to_owned(), ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (after[..end].trim().to_owned(), &after[end..]),
                None => (after.trim().to_owned(), ""),
            }
        };
        out.push((key, value));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Vec<IngestUser> {
        vec![IngestUser {
            user: "pub".into(),
            password: "s3cret".into(),
        }]
    }

    #[test]
    fn basic_accepts_the_right_password_only() {
        let ok = base64::engine::general_purpose::STANDARD.encode("pub:s3cret");
        let bad = base64::engine::general_purpose::STANDARD.encode("pub:nope");
        assert!(check(&format!("Basic {ok}"), "ANNOUNCE", "n", &users()));
        assert!(!check(&format!("Basic {bad}"), "ANNOUNCE", "n", &users()));
        assert!(!check("Basic !!!", "ANNOUNCE", "n", &users()));
    }

    #[test]
    fn nonces_differ_even_for_the_same_peer_and_connection_id() {
        let a = nonce("127.0.0.1:5000/0");
        let b = nonce("127.0.0.1:5000/0");
        assert_eq!(a.len(), 32);
        assert_ne!(
            a, b,
            "a nonce must not be derivable from the peer and connection id"
        );
    }

    #[test]
    fn digest_is_checked_against_the_issued_nonce() {
        let nonce = "abc123";
        let ha1 = hex_md5("pub:edgerec:s3cret");
        let ha2 = hex_md5("ANNOUNCE:rtsp://h/live/cam9");
        let resp = hex_md5(&format!("{ha1}:{nonce}:{ha2}"));
        let h = format!(
            "Digest username=\"pub\", realm=\"edgerec\", nonce=\"{nonce}\", uri=\"rtsp://h/live/cam9\", response=\"{resp}\""
        );
        assert!(check(&h, "ANNOUNCE", nonce, &users()));
        assert!(!check(&h, "ANNOUNCE", "other", &users()));
        assert!(!check(&h, "RECORD", nonce, &users()));
        assert!(!check("Digest garbage", "ANNOUNCE", nonce, &users()));
    }
}
