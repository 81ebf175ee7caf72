//! Keeping credentials out of logs and error messages.
//!
//! Camera URLs carry passwords (`rtsp://admin:secret@192.168.1.64/...`). Every log line and
//! every error message that may contain a URL goes through [`redact_url`] first, so a
//! password never reaches a log file, a terminal or an MQTT event.

/// Replaces the userinfo (`user:password@`) of every URL-looking part of `s` with `***`.
///
/// Works on any text, not only on a bare URL: `"connect to rtsp://a:b@host/x failed"` becomes
/// `"connect to rtsp://***@host/x failed"`. The authority ends at the first `/`, `?`, `#`,
/// whitespace, quote or angle bracket; the userinfo is everything up to its *last* `@` (a
/// password may itself contain an unescaped `@`). Text without `scheme://user@` comes back
/// unchanged.
pub fn redact_url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find("://") {
        let authority_start = pos + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        let authority_len = after
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`') || c.is_whitespace()
            })
            .unwrap_or(after.len());
        let authority = &after[..authority_len];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[authority_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_user_and_password_with_stars() {
        assert_eq!(
            redact_url("rtsp://admin:s3cret@192.168.1.64:554/Streaming/101"),
            "rtsp://***@192.168.1.64:554/Streaming/101"
        );
    }

    #[test]
    fn replaces_a_user_without_password() {
        assert_eq!(redact_url("rtsp://admin@cam/x"), "rtsp://***@cam/x");
    }

    #[test]
    fn leaves_urls_without_credentials_alone() {
        let s = "rtsp://192.168.1.64:554/path?channel=1&user=x";
        assert_eq!(redact_url(s), s);
    }

    #[test]
    fn redacts_every_url_inside_a_longer_message() {
        let s = "DESCRIBE rtsp://a:b@cam1/x failed, tried rtsp://c:d@cam2 too";
        let r = redact_url(s);
        assert_eq!(
            r,
            "DESCRIBE rtsp://***@cam1/x failed, tried rtsp://***@cam2 too"
        );
        assert!(!r.contains(":b@") && !r.contains(":d@"));
    }

    #[test]
    fn hides_a_password_that_contains_an_at_sign() {
        let r = redact_url("rtsp://admin:p@ss@cam:554/live");
        assert_eq!(r, "rtsp://***@cam:554/live");
        assert!(!r.contains("p@ss"));
    }

    #[test]
    fn does_not_treat_an_at_sign_in_the_path_as_userinfo() {
        let s = "rtsp://cam/live@main";
        assert_eq!(redact_url(s), s);
    }

    #[test]
    fn handles_quoted_urls_and_text_without_urls() {
        assert_eq!(
            redact_url("url \"rtsp://u:p@h/x\" bad"),
            "url \"rtsp://***@h/x\" bad"
        );
        assert_eq!(redact_url("no url here"), "no url here");
        assert_eq!(redact_url(""), "");
        assert_eq!(redact_url("://"), "://");
    }
}
