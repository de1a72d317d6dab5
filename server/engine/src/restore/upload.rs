//! Uploads: an archive arrives in a temporary file in the archive folder, is validated
//! without changing anything, and is stored under a server-chosen name as a backup record
//! with trigger `upload` (DESIGN section 6, `POST /api/backups/upload/`).

use std::path::{Path, PathBuf};

use crate::archive::ProgressFn;
use crate::archive::file_sha256;
use crate::core::Core;
use crate::jobs::{Job, JobKind, JobTrigger, NewJob};
use crate::{Error, ErrorKind, Result};

/// Where an upload is written while it arrives; removed on drop unless finished.
pub struct UploadTarget {
    path: PathBuf,
    dir: PathBuf,
    done: bool,
}

impl UploadTarget {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UploadTarget {
    fn drop(&mut self) {
        if !self.done {
            crate::archive::writer::discard_file(&self.path);
        }
    }
}

impl Core {
    /// Reserves a temporary file in the archive folder for an incoming upload.
    pub async fn begin_upload(&self) -> Result<UploadTarget> {
        let settings = crate::settings::load(self.state()).await?;
        let dir = settings.resolved_path(self.data_dir());
        crate::settings::ensure_writable_dir(&dir)
            .map_err(|m| Error::new(ErrorKind::Unavailable, m))?;
        let path = dir.join(format!("upload-{}.partial", uuid::Uuid::new_v4()));
        Ok(UploadTarget {
            path,
            dir,
            done: false,
        })
    }

    /// Validates an uploaded file; on success stores it under a server-chosen name and lists
    /// it as a backup job with trigger `upload`. On failure the file is removed (422). With
    /// `encrypt_local` the archive is kept encrypted (`NAME.tar.gz.age`).
    ///
    /// The record comes first (status `running`, claiming the name), then the file gets its
    /// final name (never replacing one), then the record is marked succeeded: a crash in
    /// between leaves a `running` upload that the restart sweep marks failed and whose file
    /// it removes, so no file is ever without its owner.
    pub async fn finish_upload(
        &self,
        target: UploadTarget,
        original_filename: Option<String>,
        identity: Option<&str>,
        requested_by: Option<String>,
    ) -> Result<Job> {
        let target = self.decrypt_upload(target, identity).await?;
        self.finish_stored(target, JobTrigger::Upload, original_filename, requested_by)
            .await
    }

    /// An uploaded (or imported) file that is an age file is decrypted into a new upload
    /// target with the key the admin gave and the instance key (DESIGN section 11); the
    /// encrypted file is removed. A plain `.tar.gz` is returned as it is. A wrong key or a
    /// damaged file is refused (422) and nothing is kept.
    pub(crate) async fn decrypt_upload(
        &self,
        target: UploadTarget,
        identity: Option<&str>,
    ) -> Result<UploadTarget> {
        if !crate::encryption::is_age_file(target.path()) {
            return Ok(target);
        }
        // No key at all is refused by the decryption, naming the emergency kit.
        let ids = self.keys_with(identity).await?;
        let plain = self.begin_upload().await?;
        let (from, to) = (target.path().to_path_buf(), plain.path().to_path_buf());
        tokio::task::spawn_blocking(move || {
            crate::encryption::decrypt_file(&from, &to, &ids, &Default::default())
        })
        .await
        .map_err(|e| Error::internal("the decryption task failed", e))??;
        drop(target);
        Ok(plain)
    }

    /// [`Core::finish_upload`] for an archive that arrived another way (`import`: from a
    /// destination), listed with `trigger`.
    pub(crate) async fn finish_stored(
        &self,
        target: UploadTarget,
        trigger: JobTrigger,
        original_filename: Option<String>,
        requested_by: Option<String>,
    ) -> Result<Job> {
        let report = self
            .verify_file(&target.path, None, crate::archive::no_progress())
            .await?;
        // `encrypt_local`: what is kept is the verified archive, encrypted to the current
        // recipients (so the instance key opens it, whichever key opened the upload).
        let encrypt_to = crate::encryption::local_recipients(self.state()).await?;
        let (mut target, size, sha) = match encrypt_to {
            Some(recipients) => {
                let encrypted = self.begin_upload().await?;
                let (from, to) = (target.path.clone(), encrypted.path.clone());
                let (size, sha) = tokio::task::spawn_blocking(move || {
                    crate::encryption::encrypt_file(
                        &from,
                        &to,
                        &recipients,
                        &Default::default(),
                        &|_| {},
                    )
                })
                .await
                .map_err(|e| Error::internal("the encryption task failed", e))??;
                drop(target);
                (encrypted, size, sha)
            }
            None => {
                let on_disk = std::fs::metadata(&target.path).map(|m| m.len()).ok();
                let (size, sha) = match report.archive_bytes {
                    // The verifier hashed every byte of the file on its way through.
                    n if Some(n) == on_disk => (n, report.sha256.clone()),
                    _ => {
                        let p = target.path.clone();
                        tokio::task::spawn_blocking(move || file_sha256(&p))
                            .await
                            .map_err(|e| Error::internal("hashing the upload failed", e))??
                    }
                };
                (target, size, sha)
            }
        };
        let encrypted = crate::encryption::is_age_file(&target.path);
        let include_recordings = report.manifest.include_recordings;
        // Keep only a printable, bounded form of the client's name: it is shown, never used as a path.
        let original = original_filename.map(|n| {
            let base = n.rsplit(['/', '\\']).next().unwrap_or("").to_owned();
            base.chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect::<String>()
        });
        let id = self
            .insert_upload_record(
                NewJob {
                    kind: JobKind::Backup,
                    trigger,
                    requested_by,
                    include_recordings,
                    source_job_id: None,
                    archive_name: None,
                    archive_dir: Some(target.dir.to_string_lossy().into_owned()),
                    original_filename: original,
                },
                size,
                &sha,
            )
            .await?;
        let stored: Result<()> = async {
            let name = self.claim_archive_name(id, &target.dir, encrypted).await?;
            let final_path = target.dir.join(&name);
            let (from, to, dir) = (target.path.clone(), final_path, target.dir.clone());
            tokio::task::spawn_blocking(move || crate::archive::writer::publish(&from, &to, &dir))
                .await
                .map_err(|e| Error::internal("storing the upload failed", e))?
        }
        .await;
        if let Err(e) = stored {
            self.forget_upload_record(id).await;
            return Err(e);
        }
        target.done = true;
        crate::fault::point("upload.stored");
        self.finish_upload_record(id).await
    }

    /// `backstop restore FILE`: list the file as an upload, then restore it in this process.
    pub async fn restore_file_cli(
        &self,
        file: &Path,
        identity: Option<&str>,
        progress: ProgressFn,
    ) -> Result<Job> {
        let target = self.begin_upload().await?;
        tokio::fs::copy(file, target.path()).await.map_err(|e| {
            Error::invalid(format!("cannot read {}", file.display())).with_source(e)
        })?;
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let upload = self
            .finish_upload(target, name, identity, Some("cli".into()))
            .await?;
        let job = self.start_restore(upload.id, Some("cli".into())).await?;
        self.run_to_completion(job.id, progress).await
    }
}
