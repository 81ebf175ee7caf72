//! One segment file to one object: a single PUT for small files, a multipart upload with
//! persisted part progress for large ones, then a HEAD to verify the size. The next part is
//! read from disk (on the blocking pool) while the current one is sent.
//!
//! Resume protocol (S3 targets): the multipart upload id and the ETag of every completed
//! part are saved in [`AuxTable::UploadParts`] under the segment id with a durable commit
//! **after** the service acknowledged the part and **before** the next part starts. After a
//! crash the upload continues at the first part not recorded; a part that was sent but not
//! recorded is sent again (S3 replaces a part uploaded twice under the same number). If the
//! service no longer knows the upload id (aborted, expired), the file starts over.
//!
//! Before every part the transfer asks whether it may go on ([`FileJob::may_continue`]):
//! when uploads are paused or the window closed, it stops there with
//! [`UploadError::Held`], and resumes from the next part later.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3;
use object_store::local::LocalFileSystem;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::error::UploadError;
use super::failure::Failure;
use super::limiter::chunk_size;
use super::target::{Backend, Target};
use crate::storage::store::{AuxOp, AuxTable, Store};

/// What survives a restart of one segment's upload (postcard in `UploadParts`): its file
/// and part progress, and its failures so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Files of the segment already uploaded and verified (in `row.files` order).
    pub files_done: u32,
    /// The multipart upload of the next file, if one is under way.
    pub multipart: Option<Multipart>,
    /// Failed attempts, the last error and the next retry time.
    pub failure: Option<Failure>,
}

/// The layout before failures were saved (0.1 development builds): decoded so that an
/// upgrade resumes multipart uploads instead of starting them over.
#[derive(Deserialize)]
struct ProgressV0 {
    files_done: u32,
    multipart: Option<Multipart>,
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

    /// Decode either layout; garbage means "start over".
    pub fn decode(b: &[u8]) -> Progress {
        if let Ok(p) = postcard::from_bytes::<Progress>(b) {
            return p;
        }
        match postcard::from_bytes::<ProgressV0>(b) {
            Ok(v0) => Progress {
                files_done: v0.files_done,
                multipart: v0.multipart,
                failure: None,
            },
            Err(_) => Progress::default(),
        }
    }

    /// The progress of segment `id` (blocking).
    pub fn load(store: &Store, id: u64) -> Result<Progress, UploadError> {
        Ok(store
            .aux_get(AuxTable::UploadParts, id)?
            .map(|b| Progress::decode(&b))
            .unwrap_or_default())
    }
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
    /// Asked before every part: false stops the transfer there ([`UploadError::Held`]).
    pub may_continue: &'a (dyn Fn() -> bool + Send + Sync),
}

impl FileJob<'_> {
    fn check(&self) -> Result<(), UploadError> {
        if (self.may_continue)() {
            Ok(())
        } else {
            Err(UploadError::Held)
        }
    }

    /// Start reading part `idx` on the blocking pool.
    fn read_part(&self, idx: u64) -> ReadAhead {
        let off = idx * self.part_size;
        ReadAhead::start(&self.path, off, self.part_size.min(self.size - off))
    }
}

impl Target {
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
        job.check()?;
        // A file not begun may already be stored: sent before a kill -9 that came before
        // its commit, or recorded before the index was rebuilt. The same size under the
        // same key is taken as that object, and it is not sent again.
        if progress.multipart.is_none() && self.stored_size(&path, job).await == Some(job.size) {
            tracing::info!(key = %job.key, bytes = job.size, "already stored; not sent again");
            job.done.fetch_add(job.size, Ordering::Relaxed);
            return Ok(());
        }
        match &self.backend {
            Backend::S3(s3) if job.size <= job.part_size => {
                let data = read_range(&job.path, 0, job.size).await?;
                s3.put(&path, PutPayload::from(data))
                    .await
                    .map_err(|e| self.err("PUT", &job.key, e))?;
                job.done.fetch_add(job.size, Ordering::Relaxed);
            }
            Backend::S3(s3) => self.multipart(s3.as_ref(), &path, job, progress).await?,
            Backend::File(fs, _) => self.copy(fs.as_ref(), &path, job).await?,
        }
        self.verify(&path, job).await
    }

    /// A local copy: quick to redo, so no part progress is kept; a stop or an error
    /// removes the staging file.
    async fn copy(
        &self,
        fs: &LocalFileSystem,
        path: &ObjPath,
        job: &FileJob<'_>,
    ) -> Result<(), UploadError> {
        let mut up = fs
            .put_multipart(path)
            .await
            .map_err(|e| self.err("CREATE", &job.key, e))?;
        let n_parts = job.size.div_ceil(job.part_size).max(1);
        let mut next = Some(job.read_part(0));
        for idx in 0..n_parts {
            let step = async {
                if idx > 0 {
                    job.check()?;
                }
                let data = next.take().expect("read ahead").wait(&job.path).await?;
                if idx + 1 < n_parts {
                    next = Some(job.read_part(idx + 1));
                }
                let n = data.len() as u64;
                // Pace the copy like a network transfer.
                let step = self.limiter.rate().map_or(usize::MAX, chunk_size);
                let mut sent = 0usize;
                while sent < data.len() {
                    let c = step.min(data.len() - sent);
                    self.limiter.acquire(c).await;
                    sent += c;
                }
                up.put_part(PutPayload::from(data))
                    .await
                    .map_err(|e| self.err("WRITE", &job.key, e))?;
                job.done.fetch_add(n, Ordering::Relaxed);
                Ok::<(), UploadError>(())
            };
            if let Err(e) = step.await {
                let _ = up.abort().await;
                return Err(e);
            }
        }
        up.complete()
            .await
            .map_err(|e| self.err("COMPLETE", &job.key, e))?;
        Ok(())
    }

    async fn multipart(
        &self,
        s3: &AmazonS3,
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
                if let Err(e) = self.abort(&old.key, &old.upload_id).await {
                    tracing::warn!(key = %old.key, error = %e, "could not abort a multipart upload being restarted");
                }
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
        let n_parts = job.size.div_ceil(job.part_size);
        let mut parts = mp.parts.clone();
        job.done
            .fetch_add(parts.len() as u64 * job.part_size, Ordering::Relaxed);
        let first = parts.len() as u64;
        let mut next = (first < n_parts).then(|| job.read_part(first));
        for idx in first..n_parts {
            job.check()?;
            let data = next.take().expect("read ahead").wait(&job.path).await?;
            // Read the next part while this one is sent.
            if idx + 1 < n_parts {
                next = Some(job.read_part(idx + 1));
            }
            let n = data.len() as u64;
            match s3
                .put_part(path, &mp.upload_id, idx as usize, PutPayload::from(data))
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
            let err = self
                .forget_if_gone(job, progress, "CompleteMultipartUpload", e)
                .await;
            // An upload the service no longer knows may be one whose completion went
            // through before a crash came before its commit: then the object is there.
            let gone = matches!(
                err,
                UploadError::Store {
                    not_found: true,
                    ..
                }
            );
            if gone && self.stored_size(path, job).await == Some(job.size) {
                tracing::info!(key = %job.key, "completed before the last stop; not sent again");
                return Ok(());
            }
            return Err(err);
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

    /// The size of the object at `path`; `None` when there is none, or when the service
    /// does not say (a HEAD refused, as AWS refuses one on a missing key to credentials
    /// without `s3:ListBucket`, or failed): the upload then goes ahead and meets any real
    /// problem itself.
    async fn stored_size(&self, path: &ObjPath, job: &FileJob<'_>) -> Option<u64> {
        match self.head(path).await {
            Ok(meta) => Some(meta.size),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => {
                tracing::debug!(key = %job.key, error = %e, "HEAD before upload failed; uploading");
                None
            }
        }
    }

    /// The object's metadata, from either kind of target.
    async fn head(&self, path: &ObjPath) -> object_store::Result<object_store::ObjectMeta> {
        match &self.backend {
            Backend::S3(s3) => s3.head(path).await,
            Backend::File(fs, _) => fs.head(path).await,
        }
    }

    async fn verify(&self, path: &ObjPath, job: &FileJob<'_>) -> Result<(), UploadError> {
        let meta = self
            .head(path)
            .await
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

/// A read of a file range running on the blocking pool.
struct ReadAhead(tokio::task::JoinHandle<std::io::Result<Vec<u8>>>);

impl ReadAhead {
    fn start(path: &Path, offset: u64, len: u64) -> ReadAhead {
        let p = path.to_path_buf();
        ReadAhead(tokio::task::spawn_blocking(move || {
            let mut f = std::fs::File::open(&p)?;
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = vec![0u8; len as usize];
            f.read_exact(&mut buf)?;
            Ok(buf)
        }))
    }

    async fn wait(self, path: &Path) -> Result<Bytes, UploadError> {
        match self.0.await {
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
}

/// Read `len` bytes at `offset` of a segment file, off the async runtime.
pub async fn read_range(path: &Path, offset: u64, len: u64) -> Result<Bytes, UploadError> {
    ReadAhead::start(path, offset, len).wait(path).await
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
            failure: Some(Failure {
                attempts: 3,
                error: "503".into(),
                ..Failure::default()
            }),
        };
        assert_eq!(Progress::decode(&p.encode()), p);
        assert_eq!(Progress::decode(&[0xff, 0xff]), Progress::default());
    }

    #[test]
    fn progress_saved_before_failures_were_kept_still_resumes() {
        #[derive(Serialize)]
        struct Old {
            files_done: u32,
            multipart: Option<Multipart>,
        }
        let mp = Multipart {
            key: "k".into(),
            upload_id: "id".into(),
            part_size: 5 << 20,
            parts: vec!["e".into()],
        };
        let old = postcard::to_allocvec(&Old {
            files_done: 0,
            multipart: Some(mp.clone()),
        })
        .unwrap();
        let p = Progress::decode(&old);
        assert_eq!(p.multipart, Some(mp));
        assert_eq!(p.failure, None);
    }
}
