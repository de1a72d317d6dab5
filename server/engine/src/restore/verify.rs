//! Reading a stored archive without restoring it: its manifest, a full integrity check, and
//! the comparison of what was read with the record (DESIGN section 4, data safety 3).

use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::archive::{ProgressFn, VerifyReport};
use crate::core::Core;
use crate::jobs::JobId;
use crate::{Error, Result};

impl Core {
    /// The archive limits used by validation (entry count, sizes, expansion).
    pub fn archive_limits(&self) -> crate::archive::verify::Limits {
        crate::archive::verify::Limits::default()
    }

    /// The keys that open archives stored here encrypted (`encrypt_local`): the instance
    /// key, when there is one.
    pub(crate) async fn archive_keys(&self) -> Result<Vec<age::x25519::Identity>> {
        crate::encryption::local_keys(self.state()).await
    }

    /// The keys to try on an archive someone brings (an upload, an import, the CLI): the
    /// one they give (a pasted key or kit; blank is none), then the instance key. A given
    /// key that is not one is refused with the reason.
    pub(crate) async fn keys_with(
        &self,
        identity: Option<&str>,
    ) -> Result<Vec<age::x25519::Identity>> {
        let mut keys = Vec::new();
        if let Some(text) = identity.filter(|t| !t.trim().is_empty()) {
            keys.push(crate::encryption::parse_identity(text)?);
        }
        keys.extend(self.archive_keys().await?);
        Ok(keys)
    }

    /// Reads `manifest.json` of a backup job's archive.
    pub async fn job_manifest(&self, id: JobId) -> Result<wire::Manifest> {
        let path = self.archive_path(id).await?;
        let keys = self.archive_keys().await?;
        tokio::task::spawn_blocking(move || read_manifest(&path, &keys))
            .await
            .map_err(|e| Error::internal("reading the manifest failed", e))?
    }

    /// Full integrity check of a job's archive without restoring.
    pub async fn verify_job(&self, id: JobId) -> Result<VerifyReport> {
        let path = self.archive_path(id).await?;
        let report = self
            .verify_file(&path, None, crate::archive::no_progress())
            .await?;
        self.check_against_record(id, report.archive_bytes, &report.sha256)
            .await?;
        Ok(report)
    }

    /// Full integrity check of any archive file; an encrypted one is read through
    /// `identity` (a pasted key or kit), if given, and the instance key.
    pub async fn verify_file(
        &self,
        path: &Path,
        identity: Option<&str>,
        progress: ProgressFn,
    ) -> Result<VerifyReport> {
        if !path.is_file() {
            return Err(Error::not_found(format!(
                "{} is not a file",
                path.display()
            )));
        }
        let schema = self.content().schema().await?;
        let limits = self.archive_limits();
        let keys = self.keys_with(identity).await?;
        let path = path.to_path_buf();
        // Cancellable: when the caller goes away (the client of an upload or a verify
        // disconnects and the request future is dropped), the guard cancels the token and
        // the blocking read stops at its next buffer instead of running to the end.
        let cancel = CancellationToken::new();
        let _stop_when_dropped = cancel.clone().drop_guard();
        tokio::task::spawn_blocking(move || {
            crate::archive::verify::verify_archive(
                &path, &limits, &schema, &keys, &cancel, progress,
            )
        })
        .await
        .map_err(|e| Error::internal("verification failed", e))?
    }

    /// Refuses an archive whose bytes (as just read) differ from its record.
    pub(crate) async fn check_against_record(
        &self,
        id: JobId,
        size: u64,
        sha256: &str,
    ) -> Result<()> {
        let (rec_size, rec_sha) = self.recorded_digest(id).await?;
        let size_ok = rec_size.is_none_or(|s| s == size);
        let sha_ok = rec_sha.as_deref().is_none_or(|s| s == sha256);
        if size_ok && sha_ok {
            return Ok(());
        }
        Err(Error::rejected(format!(
            "the archive of job {id} has changed since it was made (its {} no longer matches the record); it is refused and nothing was changed",
            if size_ok { "SHA-256" } else { "size" }
        )))
    }
}

/// Reads `manifest.json` (the first entry) of an archive without reading the rest; an
/// archive stored encrypted is read through `keys`.
pub fn read_manifest(path: &Path, keys: &[age::x25519::Identity]) -> Result<wire::Manifest> {
    use std::io::Read;
    let gz = flate2::read::MultiGzDecoder::new(crate::encryption::open_plain(path, keys)?);
    let mut archive = tar::Archive::new(gz);
    let mut entries = archive
        .entries()
        .map_err(|e| Error::rejected("the archive is not a readable tar.gz").with_source(e))?;
    let mut first = match entries.next() {
        Some(Ok(e)) => e,
        _ => {
            return Err(Error::rejected(
                "the archive is empty or not a readable tar.gz",
            ));
        }
    };
    let name = first
        .path()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name != "manifest.json" {
        return Err(Error::rejected(format!(
            "the archive does not start with manifest.json (found {name:?})"
        )));
    }
    let mut buf = Vec::new();
    (&mut first)
        .take(16 << 20)
        .read_to_end(&mut buf)
        .map_err(|e| Error::rejected("manifest.json cannot be read").with_source(e))?;
    let value: serde_json::Value = serde_json::from_slice(&buf)
        .map_err(|e| Error::rejected("manifest.json is not valid JSON").with_source(e))?;
    serde_json::from_value(value)
        .map_err(|e| Error::rejected(format!("manifest.json does not follow format v1: {e}")))
}
