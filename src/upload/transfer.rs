//! One segment file to one object: single PUT for small files, multipart with persisted
//! part progress for large ones, then a HEAD to verify the size. The object store clients
//! (S3-compatible through object_store, or a local directory) are built per target.
//!
//! Resume protocol (S3 targets): the multipart upload id and the ETag of every completed
//! part are saved in [`AuxTable::UploadParts`] under the segment id with a durable commit
//! **after** the service acknowledged the part and **before** the next part starts. After a
//! crash the upload continues at the first part not recorded; a part that was sent but not
//! recorded is sent again (S3 replaces a part uploaded twice under the same number). If the
//! service no longer knows the upload id (aborted, expired), the file starts over.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder, Checksum};
use object_store::local::LocalFileSystem;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload, RetryConfig};
use serde::{Deserialize, Serialize};

use super::error::UploadError;
use super::http::PacedConnector;
use super::limiter::{chunk_size, Limiter};
use crate::config::upload::{TargetKind, UploadTarget};
use crate::store::{AuxOp, AuxTable, Store};

/// What survives a restart of one segment's upload (postcard in `UploadParts`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Files of the segment already uploaded and verified (in `row.files` order).
    pub files_done: u32,
    /// The multipart upload of the next file, if one is under way.
    pub multipart: Option<Multipart>,
}

/// A multipart upload under way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Multipart {
    pub key: String,
    pub upload_id: String,
    pub part_size: u64,
    /// ETags of the completed parts, in part order.
    pub parts: Vec<String>,
}

impl Progress {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> Progress {
        postcard::from_bytes(b).unwrap_or_default()
    }

    pub fn load(store: &Store, id: u64) -> Result<Progress, UploadError> {
        Ok(store
            .aux_get(AuxTable::UploadParts, id)?
            .map(|b| Progress::decode(&b))
            .unwrap_or_default())
    }
}

enum Backend {
    S3(Arc<AmazonS3>),
    File(Arc<LocalFileSystem>),
}

/// A configured target with its client.
pub struct Target {
    pub cfg: UploadTarget,
    backend: Backend,
    limiter: Arc<Limiter>,
    /// Where objects are reachable: `https://endpoint/bucket` or `file:///dir`.
    base_url: String,
    prefix: String,
}

/// One file to upload.
pub struct FileJob<'a> {
    pub store: &'a Arc<Store>,
    pub segment: u64,
    pub path: PathBuf,
    pub key: String,
    pub size: u64,
    pub part_size: u64,
    /// Bytes of this segment acknowledged so far (for `edgerec uploads`).
    pub done: &'a AtomicU64,
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
                let fs = LocalFileSystem::new_with_prefix(dir).map_err(|e| terr(e.to_string()))?;
                Ok(Target {
                    cfg: cfg.clone(),
                    backend: Backend::File(Arc::new(fs)),
                    limiter,
                    base_url: format!("file://{}", dir.display())
                        .trim_end_matches('/')
                        .into(),
                    prefix: String::new(),
                })
            }
            TargetKind::S3 { bucket, prefix } => {
                let (id, secret, token) = credentials(cfg).map_err(terr)?;
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

    fn err(&self, op: &'static str, key: &str, e: object_store::Error) -> UploadError {
        UploadError::store(&self.cfg.name, op, key, e)
    }

    /// Upload one file, resuming from `progress`, and verify its size. `progress` is saved
    /// after every part (S3 targets).
    pub async fn upload_file(
        &self,
        job: &FileJob<'_>,
        progress: &mut Progress,
    ) -> Result<(), UploadError> {
        let path = ObjPath::parse(&job.key).map_err(|e| UploadError::Target {
            target: self.cfg.name.clone(),
            message: format!("bad object key {}: {e}", job.key),
        })?;
        match &self.backend {
            Backend::S3(s3) => {
                if job.size <= job.part_size {
                    let data = read_range(&job.path, 0, job.size).await?;
                    s3.put(&path, PutPayload::from(data))
                        .await
                        .map_err(|e| self.err("PUT", &job.key, e))?;
                    job.done.fetch_add(job.size, Ordering::Relaxed);
                } else {
                    self.multipart(s3, &path, job, progress).await?;
                }
            }
            Backend::File(fs) => {
                // A local copy is quick to redo: no part progress is kept.
                let mut up = fs
                    .put_multipart(&path)
                    .await
                    .map_err(|e| self.err("CREATE", &job.key, e))?;
                let mut off = 0;
                while off < job.size {
                    let n = job.part_size.min(job.size - off);
                    let data = read_range(&job.path, off, n).await?;
                    let step = self.limiter.rate().map_or(usize::MAX, chunk_size);
                    let mut sent = 0usize;
                    while sent < data.len() {
                        let c = step.min(data.len() - sent);
                        self.limiter.acquire(c).await;
                        sent += c;
                    }
                    if let Err(e) = up.put_part(PutPayload::from(data)).await {
                        let _ = up.abort().await;
                        return Err(self.err("WRITE", &job.key, e));
                    }
                    off += n;
                    job.done.fetch_add(n, Ordering::Relaxed);
                }
                up.complete()
                    .await
                    .map_err(|e| self.err("COMPLETE", &job.key, e))?;
            }
        }
        self.verify(&path, job).await
    }

    async fn multipart(
        &self,
        s3: &Arc<AmazonS3>,
        path: &ObjPath,
        job: &FileJob<'_>,
        progress: &mut Progress,
    ) -> Result<(), UploadError> {
        let resumable = progress
            .multipart
            .as_ref()
            .is_some_and(|m| m.key == job.key && m.part_size == job.part_size);
        if !resumable {
            if let Some(old) = progress.multipart.take() {
                self.abort(&old.key, &old.upload_id).await;
            }
            let upload_id = s3
                .create_multipart(path)
                .await
                .map_err(|e| self.err("CreateMultipartUpload", &job.key, e))?;
            progress.multipart = Some(Multipart {
                key: job.key.clone(),
                upload_id,
                part_size: job.part_size,
                parts: Vec::new(),
            });
            save(job.store, job.segment, progress).await?;
        }
        let mp = progress.multipart.clone().expect("set above");
        let n_parts = job.size.div_ceil(job.part_size) as usize;
        let mut parts = mp.parts.clone();
        job.done
            .fetch_add(parts.len() as u64 * job.part_size, Ordering::Relaxed);
        for idx in parts.len()..n_parts {
            let off = idx as u64 * job.part_size;
            let n = job.part_size.min(job.size - off);
            let data = read_range(&job.path, off, n).await?;
            match s3
                .put_part(path, &mp.upload_id, idx, PutPayload::from(data))
                .await
            {
                Ok(p) => parts.push(p.content_id),
                Err(e) => return Err(self.forget_if_gone(job, progress, "UploadPart", e).await),
            }
            if let Some(m) = progress.multipart.as_mut() {
                m.parts = parts.clone();
            }
            save(job.store, job.segment, progress).await?;
            job.done.fetch_add(n, Ordering::Relaxed);
        }
        let ids = parts
            .iter()
            .map(|c| PartId {
                content_id: c.clone(),
            })
            .collect();
        if let Err(e) = s3.complete_multipart(path, &mp.upload_id, ids).await {
            return Err(self
                .forget_if_gone(job, progress, "CompleteMultipartUpload", e)
                .await);
        }
        Ok(())
    }

    /// A part or completion failed; if the service no longer knows the upload, forget it
    /// so the next attempt starts the file over.
    async fn forget_if_gone(
        &self,
        job: &FileJob<'_>,
        progress: &mut Progress,
        op: &'static str,
        e: object_store::Error,
    ) -> UploadError {
        let err = self.err(op, &job.key, e);
        if matches!(
            err,
            UploadError::Store {
                not_found: true,
                ..
            }
        ) {
            progress.multipart = None;
            if let Err(e) = save(job.store, job.segment, progress).await {
                return e;
            }
        }
        err
    }

    async fn verify(&self, path: &ObjPath, job: &FileJob<'_>) -> Result<(), UploadError> {
        let meta = match &self.backend {
            Backend::S3(s3) => s3.head(path).await,
            Backend::File(fs) => fs.head(path).await,
        }
        .map_err(|e| self.err("HEAD", &job.key, e))?;
        if meta.size != job.size {
            return Err(UploadError::Verify {
                target: self.cfg.name.clone(),
                key: job.key.clone(),
                got: meta.size,
                want: job.size,
            });
        }
        Ok(())
    }

    /// Abort a multipart upload (an orphan, or one being restarted). Failures are logged
    /// only: S3 lifecycle rules clean up what is left.
    pub async fn abort(&self, key: &str, upload_id: &str) {
        if let Backend::S3(s3) = &self.backend {
            let Ok(path) = ObjPath::parse(key) else {
                return;
            };
            match s3.abort_multipart(&path, &upload_id.to_string()).await {
                Ok(()) => {
                    tracing::info!(target_name = %self.cfg.name, key, "aborted an orphaned multipart upload")
                }
                Err(e) => {
                    tracing::warn!(target_name = %self.cfg.name, key, error = %self.err("AbortMultipartUpload", key, e), "could not abort a multipart upload")
                }
            }
        }
    }
}

/// Save `progress` durably (one group commit per part).
pub async fn save(store: &Arc<Store>, id: u64, progress: &Progress) -> Result<(), UploadError> {
    let store = store.clone();
    let op = AuxOp::put(AuxTable::UploadParts, id, progress.encode());
    tokio::task::spawn_blocking(move || store.aux_commit(vec![op], None, true))
        .await
        .map_err(|e| UploadError::Target {
            target: String::new(),
            message: e.to_string(),
        })??;
    Ok(())
}

/// Read `len` bytes at `offset` of a segment file, off the async runtime.
pub async fn read_range(path: &Path, offset: u64, len: u64) -> Result<Bytes, UploadError> {
    let p = path.to_path_buf();
    let res = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut f = std::fs::File::open(&p)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact(&mut buf)?;
        Ok(buf)
    })
    .await;
    match res {
        Ok(Ok(v)) => Ok(Bytes::from(v)),
        Ok(Err(source)) => Err(UploadError::Read {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) => Err(UploadError::Read {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
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
    fn progress_round_trips_and_garbage_means_start_over() {
        let p = Progress {
            files_done: 1,
            multipart: Some(Multipart {
                key: "a/b.mp4".into(),
                upload_id: "xyz".into(),
                part_size: 8 << 20,
                parts: vec!["\"e1\"".into(), "\"e2\"".into()],
            }),
        };
        assert_eq!(Progress::decode(&p.encode()), p);
        assert_eq!(Progress::decode(&[0xff, 0xff]), Progress::default());
    }

    #[test]
    fn credentials_file_default_profile_is_read() {
        let text = "[other]\naws_access_key_id = X\n[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n";
        assert_eq!(
            parse_credentials(text),
            Some(("AK".into(), "SK".into(), None))
        );
        assert_eq!(parse_credentials("[default]\naws_access_key_id=A\n"), None);
    }
}
