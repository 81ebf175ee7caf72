//! Cleaning up after crashes, at start (before any transfer runs):
//!
//! - `UploadParts` entries whose segment is gone or no longer pending: their multipart
//!   upload is aborted and the entry dropped;
//! - incomplete multipart uploads the service lists under this device's key prefix that no
//!   pending segment's progress names (a kill between CreateMultipartUpload and saving its
//!   id): aborted. Only a prefix that names the device (the key template starts with
//!   `{device}`) or the target's own URL prefix is listed, never a whole shared bucket;
//! - staging files a `file://` target's copy left behind (`<key>#<n>`), under the same
//!   prefix: removed.

use std::collections::HashSet;
use std::path::Path;

use tracing::{info, warn};

use super::shared::{blocking, pending};
use super::target::{Backend, Target};
use super::target_name;
use super::transfer::Progress;
use super::worker::Worker;
use crate::storage::store::{AuxOp, AuxTable};

impl Worker {
    /// Sweep the targets `names` (no transfer may run meanwhile); returns those whose
    /// listing failed, to sweep again later.
    pub(super) async fn sweep_orphans(&mut self, names: Vec<String>) -> Vec<String> {
        let known = self.forget_orphaned_progress().await;
        let mut failed = Vec::new();
        for name in names {
            if !self.sweep_target(&name, &known).await {
                failed.push(name);
            }
        }
        failed
    }

    /// Drop the progress of segments that are gone or no longer pending (aborting their
    /// multipart uploads); returns the upload ids still in use.
    async fn forget_orphaned_progress(&mut self) -> HashSet<String> {
        let store = self.shared.store.clone();
        let entries = blocking(move || {
            let entries = store.aux_scan(AuxTable::UploadParts, 0, 100_000)?;
            let mut out = Vec::new();
            for (id, v) in entries {
                let row = store.segment(id)?;
                out.push((id, Progress::decode(&v), row));
            }
            Ok(out)
        })
        .await;
        let mut known = HashSet::new();
        let Ok(entries) = entries else {
            return known;
        };
        let mut remove = Vec::new();
        for (id, progress, row) in entries {
            if row.as_ref().is_some_and(pending) {
                if let Some(mp) = progress.multipart {
                    known.insert(mp.upload_id);
                }
                continue;
            }
            if let Some(mp) = progress.multipart {
                let names: Vec<String> = match row
                    .as_ref()
                    .and_then(|r| target_name(&self.shared.cfg, &r.app, &r.stream))
                {
                    Some(n) => vec![n.to_string()],
                    None => self
                        .shared
                        .up
                        .targets
                        .iter()
                        .map(|t| t.name.clone())
                        .collect(),
                };
                for n in names {
                    if let Ok(t) = self.target(&n).await {
                        abort(&t, &mp.key, &mp.upload_id).await;
                    }
                }
            }
            remove.push(AuxOp::remove(AuxTable::UploadParts, id));
        }
        if !remove.is_empty() {
            let store = self.shared.store.clone();
            if let Err(e) = blocking(move || store.aux_commit(remove, None, false)).await {
                warn!(error = %e, "cannot forget orphaned upload progress");
            }
        }
        known
    }

    /// List `name`'s incomplete uploads under this device's prefix and abort those not in
    /// `known`; remove a file target's staging files. False when the listing failed.
    async fn sweep_target(&mut self, name: &str, known: &HashSet<String>) -> bool {
        let Ok(t) = self.target(name).await else {
            return false;
        };
        let (prefix, own) = t
            .cfg
            .key
            .fixed_prefix(t.prefix(), &self.shared.cfg.device_id);
        if let Backend::File(_, dir) = &t.backend {
            let (dir, prefix) = (dir.clone(), prefix.clone());
            match blocking(move || Ok(remove_staging(&dir, &prefix))).await {
                Ok(n) if n > 0 => {
                    info!(target_name = %name, files = n, "removed staging files of copies cut short")
                }
                _ => {}
            }
            return true;
        }
        if !own && t.prefix().is_empty() {
            info!(target_name = %name, "not sweeping for orphaned uploads: the key template does not start with {{device}} and the target has no prefix, so the bucket may be shared");
            return true;
        }
        match t.list_multipart(&prefix).await {
            Ok(list) => {
                for (key, id) in list {
                    if !known.contains(&id) {
                        abort(&t, &key, &id).await;
                    }
                }
                true
            }
            Err(e) => {
                warn!(target_name = %name, error = %e, "cannot list incomplete multipart uploads; trying again later");
                false
            }
        }
    }
}

async fn abort(t: &Target, key: &str, upload_id: &str) {
    match t.abort(key, upload_id).await {
        Ok(()) => info!(target_name = %t.cfg.name, key, "aborted an orphaned multipart upload"),
        Err(e) => {
            warn!(target_name = %t.cfg.name, key, error = %e, "could not abort an orphaned multipart upload")
        }
    }
}

/// Remove object_store's staging files (`<name>#<digits>`) under `dir` whose path relative
/// to `dir` starts with `prefix`. Returns how many went. Blocking.
pub(super) fn remove_staging(dir: &Path, prefix: &str) -> usize {
    // Walk from the deepest directory the prefix names completely.
    let start = match prefix.rsplit_once('/') {
        Some((d, _)) => dir.join(d),
        None => dir.to_path_buf(),
    };
    let mut removed = 0;
    let mut stack = vec![start];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            let rel = p.strip_prefix(dir).unwrap_or(&p).to_string_lossy();
            if ft.is_dir() {
                stack.push(p.clone());
            } else if rel.starts_with(prefix)
                && is_staging(&rel)
                && std::fs::remove_file(&p).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

/// `name#<digits>`: a staging file of object_store's local store.
fn is_staging(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(a, n)| {
        !a.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_staging_files_under_the_prefix_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("edge-1/cam")).unwrap();
        std::fs::create_dir_all(d.join("edge-2/cam")).unwrap();
        for f in [
            "edge-1/cam/a.mp4",
            "edge-1/cam/b.mp4#1",
            "edge-1/cam/c#x.mp4",
            "edge-2/cam/d.mp4#3",
        ] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        assert_eq!(remove_staging(d, "edge-1/"), 1);
        assert!(!d.join("edge-1/cam/b.mp4#1").exists());
        assert!(d.join("edge-1/cam/a.mp4").exists());
        assert!(d.join("edge-1/cam/c#x.mp4").exists());
        assert!(
            d.join("edge-2/cam/d.mp4#3").exists(),
            "another device's copy"
        );
    }
}
