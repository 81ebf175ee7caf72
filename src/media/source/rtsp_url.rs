//! A camera URL's credentials, taken out of it for retina (which wants them apart and
//! decoded), so the URL itself can be shown redacted.

use retina::client::Credentials;

/// The URL without userinfo, and the userinfo as retina credentials.
pub fn split_credentials(url: &url::Url) -> (url::Url, Option<Credentials>) {
    let mut clean = url.clone();
    if url.username().is_empty() && url.password().is_none() {
        return (clean, None);
    }
    // Cannot fail for a URL with a host, which SourceSpec::parse guarantees.
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    let creds = Credentials {
        username: percent_decode(url.username()),
        password: percent_decode(url.password().unwrap_or("")),
    };
    (clean, Some(creds))
}

/// Percent-decodes a URL's user or password; a malformed escape (`%zz`, a cut `%4`) stays
/// as written, and bytes that are not UTF-8 become U+FFFD.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url_and_are_percent_decoded() {
        let url = url::Url::parse("rtsp://ad%40min:p%3Ass@cam:554/live?ch=1").unwrap();
        let (clean, creds) = split_credentials(&url);
        assert_eq!(clean.as_str(), "rtsp://cam:554/live?ch=1");
        let creds = creds.unwrap();
        assert_eq!(creds.username, "ad@min");
        assert_eq!(creds.password, "p:ss");
    }

    #[test]
    fn url_without_credentials_gives_none() {
        let url = url::Url::parse("rtsp://cam/live").unwrap();
        let (clean, creds) = split_credentials(&url);
        assert_eq!(clean, url);
        assert!(creds.is_none());
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%"), "%");
    }
}
