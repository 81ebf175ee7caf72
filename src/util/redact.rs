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

/// Key names whose values are secrets (matched case-insensitively inside the name:
/// `secret_access_key`, `password`, `aws_session_token`...).
const SECRET_KEYS: [&str; 3] = ["secret", "password", "token"];

/// Redacts a TOML parse error message, whose snippet echoes the offending source line:
/// on a line that assigns a secret key (`secret_access_key = "..."`, `password = ...`),
/// the value becomes `"***"`, and that value is removed from the rest of the message too
/// (toml may quote it again, as in "invalid type: string ..."). URLs lose their userinfo
/// ([`redact_url`]).
pub fn redact_toml_error(message: &str) -> String {
    let mut secrets: Vec<String> = Vec::new();
    let lines: Vec<String> = message
        .lines()
        .map(|l| redact_assignments(l, &mut secrets))
        .collect();
    let mut out = lines.join("\n");
    for v in secrets.iter().filter(|v| !v.is_empty()) {
        out = out.replace(v.as_str(), "***");
    }
    redact_url(&out)
}

/// `line` with the value of every secret key assigned on it replaced by `"***"`; the
/// values go to `secrets`.
fn redact_assignments(line: &str, secrets: &mut Vec<String>) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq]
            .rsplit(|c: char| c.is_whitespace() || matches!(c, '{' | ',' | '|' | '.' | '['))
            .find(|k| !k.is_empty())
            .unwrap_or_default()
            .trim_matches(|c| c == '"' || c == '\'')
            .to_ascii_lowercase();
        out.push_str(&rest[..=eq]);
        let after = &rest[eq + 1..];
        if !SECRET_KEYS.iter().any(|s| key.contains(s)) {
            rest = after;
            continue;
        }
        // The value: a quoted string (to its closing quote, or the end of the line), or
        // a bare word up to `,` / `}`.
        let v = after.trim_start();
        let end = match v.chars().next() {
            Some(q @ ('"' | '\'')) => v[1..].find(q).map_or(v.len(), |i| i + 2),
            _ => v.find([',', '}']).unwrap_or(v.len()),
        };
        let value = v[..end].trim().trim_matches(|c| c == '"' || c == '\'');
        secrets.push(value.to_string());
        out.push_str(" \"***\"");
        rest = &v[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_error_snippet_never_shows_a_secret_value() {
        let msg = "TOML parse error at line 3, column 40\n  |\n3 | secret_access_key = \"wJalrXUtnFEMI\" x\n  |                                        ^\nunexpected content, expected nothing";
        let r = redact_toml_error(msg);
        assert!(!r.contains("wJalrXUtnFEMI"), "{r}");
        assert!(r.contains("3 | secret_access_key = \"***\" x"), "{r}");
        assert!(r.contains("unexpected content"), "{r}");
        let msg = "TOML parse error at line 9, column 12\n  |\n9 | password = hunter2\n  |            ^\ninvalid type: string \"hunter2\", expected a quoted string";
        let r = redact_toml_error(msg);
        assert!(!r.contains("hunter2"), "{r}");
        // Inline tables, other keys and URLs.
        let r = redact_toml_error("1 | users = [{ name = \"a\", password = \"pw1\" }");
        assert!(!r.contains("pw1"), "{r}");
        let r = redact_toml_error("2 | source = \"rtsp://admin:pw2@cam/x\"\nbad");
        assert!(!r.contains("pw2") && r.contains("rtsp://***@cam/x"), "{r}");
        let plain = "4 | max_bytes = \"2GiX\"\ninvalid size";
        assert_eq!(redact_toml_error(plain), plain);
    }

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
