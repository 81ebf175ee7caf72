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

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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
