//! Upload errors, and which of them are worth a quick retry.

use std::path::PathBuf;

/// Why an upload attempt failed. Every variant names the segment file or the object.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The object store refused or failed a request.
    #[error("{op} {key} on target \"{target}\": {message}")]
    Store {
        target: String,
        op: &'static str,
        key: String,
        message: String,
        /// 5xx, timeouts, resets, throttling: retried quickly.
        transient: bool,
        /// The service said the bucket, object or multipart upload does not exist.
        not_found: bool,
    },
    /// A segment file could not be read (disk error, file gone).
    #[error("cannot read segment file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// After completion the object's size is not the file's: the service did not store
    /// what was sent.
    #[error("{key} on target \"{target}\" has {got} bytes after upload, expected {want}; the endpoint may not be an S3 service")]
    Verify {
        target: String,
        key: String,
        got: u64,
        want: u64,
    },
    /// The target cannot be used as configured (no credentials, a bad key).
    #[error("target \"{target}\": {message}")]
    Target { target: String, message: String },
    /// The index could not record progress.
    #[error("index: {0}")]
    Index(#[from] crate::storage::store::StoreError),
    /// Not a failure: the transfer stopped at a part boundary because uploads were paused
    /// or the time window closed. It resumes from the next part.
    #[error("stopped at a part boundary (uploads paused or outside their time window); resumes from the next part")]
    Held,
}

impl UploadError {
    /// Transient errors are retried with the short backoff and raise no alarm at first;
    /// the others (403, missing bucket, unreadable file, bad config) raise an alarm and are
    /// retried slowly. No error drops the job.
    pub fn is_transient(&self) -> bool {
        match self {
            UploadError::Store { transient, .. } => *transient,
            UploadError::Index(_) => true,
            _ => false,
        }
    }

    /// Build a [`UploadError::Store`] from object_store's error, telling transient from
    /// permanent by its variant and HTTP status. Credentials never appear: object_store
    /// messages carry no secrets, and URLs are redacted anyway.
    pub fn store(target: &str, op: &'static str, key: &str, e: object_store::Error) -> UploadError {
        use object_store::Error as E;
        let message = crate::util::redact::redact_url(&e.to_string());
        let (transient, not_found) = match &e {
            E::NotFound { .. } => (false, true),
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => (false, false),
            E::Generic { .. } => match status_in(&message) {
                Some(s) if (400..500).contains(&s) && s != 408 && s != 429 => (false, s == 404),
                Some(_) => (true, false),
                // A 2xx answer that is not S3's (no ETag, not XML): a captive portal, a web
                // server, a wrong endpoint. Retrying soon will not help.
                None if not_s3(&message) => (false, false),
                None => (true, false),
            },
            E::JoinError { .. } => (true, false),
            _ => (false, false),
        };
        UploadError::Store {
            target: target.to_string(),
            op,
            key: key.to_string(),
            message,
            transient,
            not_found,
        }
    }
}

/// object_store's words for a successful answer it cannot understand.
fn not_s3(message: &str) -> bool {
    [
        "missing from response",
        "Unable to extract metadata",
        "Error parsing",
        "invalid XML",
        "deserializ",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// The HTTP status in an object_store message ("... status code: 503 Service ...").
fn status_in(message: &str) -> Option<u16> {
    let i = message.find("status code: ")? + "status code: ".len();
    message.get(i..i + 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(msg: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: msg.to_string().into(),
        }
    }

    #[test]
    fn server_errors_and_throttling_are_transient_client_errors_are_not() {
        let t = |m: &str| UploadError::store("vod", "PUT", "k", generic(m)).is_transient();
        assert!(t(
            "Server returned non-2xx status code: 503 Service Unavailable: SlowDown"
        ));
        assert!(t(
            "Server returned non-2xx status code: 429 Too Many Requests"
        ));
        assert!(t("error sending request: connection reset"));
        assert!(!t(
            "Server returned non-2xx status code: 400 Bad Request: InvalidArgument"
        ));
    }

    #[test]
    fn missing_and_forbidden_are_permanent() {
        let nf = object_store::Error::NotFound {
            path: "k".into(),
            source: "NoSuchBucket".into(),
        };
        let e = UploadError::store("vod", "PUT", "k", nf);
        assert!(!e.is_transient());
        assert!(matches!(
            e,
            UploadError::Store {
                not_found: true,
                ..
            }
        ));
        let pd = object_store::Error::PermissionDenied {
            path: "k".into(),
            source: "AccessDenied".into(),
        };
        assert!(!UploadError::store("vod", "PUT", "k", pd).is_transient());
    }
}
