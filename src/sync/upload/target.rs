//! Upload targets: the object store client of each `[[upload.targets]]` entry (S3-compatible
//! through object_store, or a local directory), its credentials, and the request
//! object_store does not offer: listing a bucket's incomplete multipart uploads (for the
//! orphan sweep).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer, AwsCredential, Checksum};
use object_store::client::HttpRequest;
use object_store::local::LocalFileSystem;
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjPath;
use object_store::RetryConfig;

use super::error::UploadError;
use super::http::PacedConnector;
use super::limiter::Limiter;
use crate::config::upload::{TargetKind, UploadTarget};

pub(super) enum Backend {
    S3(Arc<AmazonS3>),
    /// The store, and the directory it writes into.
    File(Arc<LocalFileSystem>, PathBuf),
}

/// Signs and sends the S3 requests object_store has no call for.
struct Lister {
    credential: AwsCredential,
    client: reqwest::Client,
}

/// A configured target with its client.
pub struct Target {
    pub cfg: UploadTarget,
    pub(super) backend: Backend,
    pub(super) limiter: Arc<Limiter>,
    lister: Option<Lister>,
    /// Where objects are reachable: `https://endpoint/bucket` or `file:///dir`.
    base_url: String,
    prefix: String,
}

impl Target {
    /// Build the client of `cfg`. Credentials: the config, else `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`), else `credentials_file`. Instance
    /// metadata is never queried.
    pub fn build(
        cfg: &UploadTarget,
        limiter: Arc<Limiter>,
        part_size: u64,
    ) -> Result<Target, UploadError> {
        let terr = |m: String| UploadError::Target {
            target: cfg.name.clone(),
            message: m,
        };
        match &cfg.kind {
            TargetKind::File { dir } => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| terr(format!("cannot create {}: {e}", dir.display())))?;
                // A relative directory is relative to the working directory, once.
                let dir = std::fs::canonicalize(dir)
                    .map_err(|e| terr(format!("cannot use {}: {e}", dir.display())))?;
                let fs = LocalFileSystem::new_with_prefix(&dir).map_err(|e| terr(e.to_string()))?;
                Ok(Target {
                    cfg: cfg.clone(),
                    backend: Backend::File(Arc::new(fs), dir.clone()),
                    limiter,
                    lister: None,
                    base_url: format!("file://{}", dir.display())
                        .trim_end_matches('/')
                        .into(),
                    prefix: String::new(),
                })
            }
            TargetKind::S3 { bucket, prefix } => {
                let (id, secret, token) = credentials(cfg).map_err(terr)?;
                let signing = AwsCredential {
                    key_id: id.clone(),
                    secret_key: secret.clone(),
                    token: token.clone(),
                };
                let bucket_endpoint = bucket_endpoint(cfg, bucket);
                // A part at the capped rate must fit into one request's time limit.
                let timeout = match limiter.rate() {
                    Some(r) => Duration::from_secs(60 + 2 * part_size / r.max(1)),
                    None => Duration::from_secs(300),
                };
                let mut b = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(&cfg.region)
                    .with_access_key_id(id)
                    .with_secret_access_key(secret)
                    .with_allow_http(cfg.allow_http)
                    .with_retry(RetryConfig {
                        max_retries: 0,
                        retry_timeout: Duration::from_secs(1),
                        ..RetryConfig::default()
                    })
                    .with_http_connector(PacedConnector {
                        limiter: limiter.clone(),
                        allow_http: cfg.allow_http,
                        timeout,
                    });
                if let Some(t) = token {
                    b = b.with_token(t);
                }
                if cfg.endpoint.is_some() || cfg.virtual_hosted {
                    b = b
                        .with_endpoint(&bucket_endpoint)
                        .with_virtual_hosted_style_request(true);
                }
                if cfg.checksum {
                    b = b.with_checksum_algorithm(Checksum::SHA256);
                }
                let s3 = b.build().map_err(|e| terr(e.to_string()))?;
                Ok(Target {
                    cfg: cfg.clone(),
                    backend: Backend::S3(Arc::new(s3)),
                    limiter,
                    lister: Some(Lister {
                        credential: signing,
                        client: super::http::client(cfg.allow_http, Duration::from_secs(60))
                            .map_err(|e| terr(e.to_string()))?,
                    }),
                    base_url: bucket_endpoint,
                    prefix: prefix.clone(),
                })
            }
        }
    }

    /// The prefix keys go under (no leading or trailing `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The object's URL (without credentials): the callback's `video_url`.
    pub fn url(&self, key: &str) -> String {
        format!("{}/{}", self.base_url, key)
    }

    pub(super) fn err(&self, op: &'static str, key: &str, e: object_store::Error) -> UploadError {
        UploadError::store(&self.cfg.name, op, key, e)
    }

    /// Abort a multipart upload (an orphan, or one being restarted). A file target has
    /// none to abort.
    pub async fn abort(&self, key: &str, upload_id: &str) -> Result<(), UploadError> {
        let Backend::S3(s3) = &self.backend else {
            return Ok(());
        };
        let path = ObjPath::parse(key).map_err(|e| UploadError::Target {
            target: self.cfg.name.clone(),
            message: format!("bad object key {key}: {e}"),
        })?;
        s3.abort_multipart(&path, &upload_id.to_string())
            .await
            .map_err(|e| self.err("AbortMultipartUpload", key, e))
    }

    /// The incomplete multipart uploads under `prefix` (ListMultipartUploads, every page):
    /// `(key, upload id)`. A file target has none.
    pub async fn list_multipart(&self, prefix: &str) -> Result<Vec<(String, String)>, UploadError> {
        let Some(lister) = &self.lister else {
            return Ok(Vec::new());
        };
        let fail = |message: String, transient: bool, not_found: bool| UploadError::Store {
            target: self.cfg.name.clone(),
            op: "ListMultipartUploads",
            key: prefix.to_string(),
            message,
            transient,
            not_found,
        };
        let mut out = Vec::new();
        let mut marker: Option<(String, String)> = None;
        for _page in 0..1000 {
            let mut url = url::Url::parse(&format!("{}/", self.base_url))
                .map_err(|e| fail(e.to_string(), false, false))?;
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("uploads", "");
                q.append_pair("prefix", prefix);
                if let Some((k, u)) = &marker {
                    q.append_pair("key-marker", k);
                    q.append_pair("upload-id-marker", u);
                }
            }
            let mut req: HttpRequest = http::Request::builder()
                .method(http::Method::GET)
                .uri(url.as_str())
                .body(object_store::client::HttpRequestBody::from(Vec::new()))
                .map_err(|e| fail(e.to_string(), false, false))?;
            AwsAuthorizer::new(&lister.credential, "s3", &self.cfg.region)
                .try_authorize(&mut req, None)
                .map_err(|e| fail(e.to_string(), false, false))?;
            let answer = lister
                .client
                .get(url.as_str())
                .headers(req.headers().clone())
                .send()
                .await
                .map_err(|e| fail(e.without_url().to_string(), true, false))?;
            let status = answer.status();
            let body = answer
                .text()
                .await
                .map_err(|e| fail(e.without_url().to_string(), true, false))?;
            if !status.is_success() {
                let code = quick_xml::de::from_str::<ErrorXml>(&body)
                    .map(|e| e.code)
                    .unwrap_or_default();
                return Err(fail(
                    format!("status {status} {code}"),
                    status.is_server_error() || status.as_u16() == 429,
                    status.as_u16() == 404,
                ));
            }
            let page = parse_uploads(&body);
            out.extend(page.uploads);
            match page.next {
                Some(next) => marker = Some(next),
                None => break,
            }
        }
        Ok(out)
    }
}

/// One page of a ListMultipartUploads answer.
#[derive(Debug, Default, PartialEq, Eq)]
struct UploadsPage {
    /// `(key, upload id)` of each upload.
    uploads: Vec<(String, String)>,
    /// The markers of the next page, when truncated.
    next: Option<(String, String)>,
}

/// The elements of a ListMultipartUploadsResult document the sweep needs.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ListUploadsXml {
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
    #[serde(rename = "Upload")]
    uploads: Vec<UploadXml>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct UploadXml {
    key: Option<String>,
    upload_id: Option<String>,
}

/// The code of an S3 error document (`<Error><Code>AccessDenied</Code>...`).
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ErrorXml {
    code: String,
}

/// Parse a ListMultipartUploadsResult document (the few elements needed). A document that
/// is not one (an error document) lists nothing.
fn parse_uploads(xml: &str) -> UploadsPage {
    let doc: ListUploadsXml = match quick_xml::de::from_str(xml) {
        Ok(doc) => doc,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable ListMultipartUploads answer; no uploads listed");
            return UploadsPage::default();
        }
    };
    let uploads = doc
        .uploads
        .into_iter()
        .filter_map(|u| Some((u.key?, u.upload_id?)))
        .collect();
    let next = match (
        doc.is_truncated,
        doc.next_key_marker,
        doc.next_upload_id_marker,
    ) {
        (true, Some(k), Some(u)) => Some((k, u)),
        _ => None,
    };
    UploadsPage { uploads, next }
}

/// `https://endpoint/bucket` (path style) or `https://bucket.endpoint` (virtual-hosted);
/// AWS's regional endpoint when none is configured.
fn bucket_endpoint(cfg: &UploadTarget, bucket: &str) -> String {
    match (&cfg.endpoint, cfg.virtual_hosted) {
        (Some(e), false) => format!("{}/{bucket}", e.trim_end_matches('/')),
        (Some(e), true) => match e.split_once("://") {
            Some((scheme, host)) => format!("{scheme}://{bucket}.{}", host.trim_end_matches('/')),
            None => format!("https://{bucket}.{e}"),
        },
        (None, true) => format!("https://{bucket}.s3.{}.amazonaws.com", cfg.region),
        (None, false) => format!("https://s3.{}.amazonaws.com/{bucket}", cfg.region),
    }
}

/// Access key id, secret and session token: config, then environment, then the file.
fn credentials(cfg: &UploadTarget) -> Result<(String, String, Option<String>), String> {
    if let (Some(id), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) {
        return Ok((id.clone(), secret.clone(), None));
    }
    if let (Ok(id), Ok(secret)) = (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Ok((id, secret, std::env::var("AWS_SESSION_TOKEN").ok()));
    }
    if let Some(file) = &cfg.credentials_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read credentials_file {}: {e}", file.display()))?;
        return parse_credentials(&text).ok_or_else(|| {
            format!(
                "credentials_file {} has no aws_access_key_id and aws_secret_access_key in [default]",
                file.display()
            )
        });
    }
    Err("no credentials: set access_key_id and secret_access_key, the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY environment variables, or credentials_file".into())
}

/// The `[default]` profile of an AWS-style credentials file (keys outside any section count
/// too).
fn parse_credentials(text: &str) -> Option<(String, String, Option<String>)> {
    let (mut id, mut secret, mut token) = (None, None, None);
    let mut in_default = true;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') || l.starts_with(';') || l.is_empty() {
            continue;
        }
        if l.starts_with('[') {
            in_default = l == "[default]";
            continue;
        }
        if !in_default {
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some((id?, secret?, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_file_default_profile_is_read() {
        let text = "[other]\naws_access_key_id = X\n[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n";
        assert_eq!(
            parse_credentials(text),
            Some(("AK".into(), "SK".into(), None))
        );
        assert_eq!(parse_credentials("[default]\naws_access_key_id=A\n"), None);
    }

    #[test]
    fn a_list_multipart_uploads_answer_gives_keys_ids_and_the_next_page() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult><Bucket>vod</Bucket><KeyMarker></KeyMarker>
<NextKeyMarker>rec/b&amp;c.mp4</NextKeyMarker><NextUploadIdMarker>id2</NextUploadIdMarker>
<IsTruncated>true</IsTruncated>
<Upload><Key>rec/a.mp4</Key><UploadId>id1</UploadId><Initiated>2024</Initiated></Upload>
<Upload><UploadId>id2</UploadId><Key>rec/b&amp;c.mp4</Key></Upload>
</ListMultipartUploadsResult>"#;
        let page = parse_uploads(xml);
        assert_eq!(
            page.uploads,
            vec![
                ("rec/a.mp4".to_string(), "id1".to_string()),
                ("rec/b&c.mp4".to_string(), "id2".to_string())
            ]
        );
        assert_eq!(page.next, Some(("rec/b&c.mp4".into(), "id2".into())));
        let last = xml.replace("<IsTruncated>true", "<IsTruncated>false");
        assert_eq!(parse_uploads(&last).next, None);
        assert_eq!(
            parse_uploads("<Error><Code>AccessDenied</Code></Error>"),
            UploadsPage::default()
        );
    }
}
