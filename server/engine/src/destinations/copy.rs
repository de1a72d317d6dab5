//! Copies off this machine (DESIGN section 10): after every successful backup each enabled
//! destination gets the archive, in parallel; retries; retention per destination; import.
//!
//! A copy, per destination: upload (multipart, hashing what is sent: sha256 of the whole,
//! MD5 of each part) -> compare with the job's size and sha256 (the local file did not change
//! under us) -> check what the store holds: its size, and the ETag it computed from the
//! bytes it received (S3's multipart ETag, the MD5 of the parts' MD5s) against ours; a store
//! whose ETags follow another scheme is read back in full and hashed instead -> write the
//! sidecar, last -> prune the destination's oldest copies beyond its `retention_count`.
//!
//! A failed copy never fails the backup and never stops the other destinations: it is a
//! `copies[]` entry with its reason, a warning on the job naming the destination, and the
//! destination's `last_error`. Cancel during the copy step stops the copies (each is marked
//! failed, "canceled by request", and can be retried); the backup itself is complete by then
//! (retention already ran), so it is kept and the job succeeds with a warning.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;

use super::DestinationRow;
use super::s3::{Bucket, Digest256};
use crate::archive::{Progress, ProgressFn};
use crate::core::Core;
use crate::jobs::{Job, JobId, JobKind, JobStatus, RemoveOnDrop};
use crate::{Error, ErrorKind, Result};
use wire::DestinationId;
use wire::destination::{RemoteArchive, SIDECAR_FORMAT, Sidecar};

/// What is sent: the local file, under which name, and its digest.
#[derive(Debug, Clone)]
pub(crate) struct CopySource {
    pub(crate) path: PathBuf,
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) sha256: String,
    pub(crate) encrypted: bool,
    /// The sidecar's manifest summary.
    pub(crate) summary: Summary,
}

#[derive(Debug, Clone)]
pub(crate) struct Summary {
    pub(crate) created_at: String,
    pub(crate) app_version: String,
    pub(crate) schema_version: i64,
    pub(crate) include_recordings: bool,
    pub(crate) trigger: String,
}

/// Where a backup writes the encrypted form of its plain archive for the copies, in the same
/// pass as the archive (see [`Core::encrypted_copy_plan`]).
pub(crate) struct CopyPlan {
    pub(crate) path: PathBuf,
    pub(crate) recipients: Vec<age::x25519::Recipient>,
    guard: RemoveOnDrop,
}

/// The encrypted form a backup made beside its archive, ready to send.
pub(crate) struct Premade {
    path: PathBuf,
    size: u64,
    sha256: String,
    guard: RemoveOnDrop,
}

impl CopyPlan {
    /// What became of the planned file: ready to send, or `None` (the copies then encrypt
    /// the archive themselves, as a retry does).
    pub(crate) fn made(
        self,
        outcome: Option<crate::archive::writer::EncryptedCopy>,
    ) -> Option<Premade> {
        match outcome? {
            Ok((size, sha256)) => Some(Premade {
                path: self.path,
                size,
                sha256,
                guard: self.guard,
            }),
            Err(why) => {
                tracing::warn!(%why, "the encrypted copy made with the archive was given up; the copies encrypt it afterwards");
                None
            }
        }
    }
}

impl Core {
    /// For a plain local archive `name` of `job` in `dir`: the file its encrypted form is
    /// written to, in the same pass, when an enabled destination wants encrypted copies and
    /// encryption is set up ("encrypt once"). `None` otherwise.
    pub(crate) async fn encrypted_copy_plan(
        &self,
        job: JobId,
        dir: &Path,
        name: &str,
    ) -> Result<Option<CopyPlan>> {
        let wanted = self
            .destination_rows()
            .await?
            .iter()
            .any(|d| d.enabled && d.encrypt);
        if !wanted {
            return Ok(None);
        }
        let Some(recipients) = crate::encryption::recipients(self.state()).await? else {
            return Ok(None);
        };
        let staging = copy_staging(dir, job)?;
        Ok(Some(CopyPlan {
            path: staging.0.join(format!("{name}.age")),
            recipients,
            guard: staging,
        }))
    }

    /// The copy step of a backup: every enabled destination, in parallel. Returns the
    /// warnings for the job (one per failed copy, naming the destination). `premade` is the
    /// encrypted form made with the archive, if any.
    pub(crate) async fn copy_to_destinations(
        &self,
        job: JobId,
        archive: &Path,
        premade: Option<Premade>,
        cancel: &CancellationToken,
        progress: &ProgressFn,
    ) -> Vec<String> {
        let rows = match self.destination_rows().await {
            Ok(rows) => rows.into_iter().filter(|d| d.enabled).collect::<Vec<_>>(),
            Err(e) => return vec![format!("no copies were made: {}", e.message())],
        };
        if rows.is_empty() {
            return Vec::new();
        }
        for d in &rows {
            if let Err(e) = self.set_copy(job, d, CopyState::Pending).await {
                return vec![format!("no copies were made: {}", e.message())];
            }
        }
        self.emit_job(job).await;
        let sources = match self
            .copy_sources(job, archive, &rows, premade, cancel, progress)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                let mut warnings = Vec::new();
                for d in &rows {
                    warnings.push(self.copy_failed(job, d, &e).await);
                }
                return warnings;
            }
        };
        let counters: Vec<Arc<AtomicU64>> = rows.iter().map(|_| Arc::default()).collect();
        // Upload and check (a read-back where the ETag cannot tell): twice the copy's size
        // per destination.
        let total: u64 = rows
            .iter()
            .map(|d| sources.for_destination(d).size * 2)
            .sum();
        let report = {
            let counters = counters.clone();
            let progress = progress.clone();
            Arc::new(move || {
                let done = counters.iter().map(|c| c.load(Ordering::Relaxed)).sum();
                progress(Progress {
                    step: "copy",
                    done_bytes: done,
                    total_bytes: total,
                });
            })
        };
        report();
        let copies = rows.iter().zip(&counters).map(|(d, counter)| {
            let report = report.clone();
            let counter = counter.clone();
            let source = sources.for_destination(d);
            async move {
                let tick = move |n: u64| {
                    counter.store(n, Ordering::Relaxed);
                    report();
                };
                self.copy_one(job, d, source, cancel, &tick).await
            }
        });
        futures::future::join_all(copies)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The archive as stored, and its other form when a destination wants that one: the
    /// encrypted form of a plain archive (when encryption is set up), or the plain form of
    /// an archive stored encrypted (`encrypt_local`) for a destination with `encrypt` off.
    /// Made once, the same bytes for every such destination, in a `.staging-copy-*` folder
    /// of the archive folder that is removed when the copies end.
    pub(crate) async fn copy_sources(
        &self,
        job: JobId,
        archive: &Path,
        rows: &[DestinationRow],
        premade: Option<Premade>,
        cancel: &CancellationToken,
        progress: &ProgressFn,
    ) -> Result<Sources> {
        let stored = self.copy_source(job, archive).await?;
        if !rows.iter().any(|d| d.encrypt != stored.encrypted) {
            return Ok(Sources {
                stored,
                other: None,
            });
        }
        if let Some(p) = premade.filter(|_| !stored.encrypted) {
            let other = CopySource {
                name: format!("{}.age", stored.name),
                path: p.path,
                size: p.size,
                sha256: p.sha256,
                encrypted: true,
                summary: stored.summary.clone(),
            };
            return Ok(Sources {
                stored,
                other: Some((other, p.guard)),
            });
        }
        // Encrypting needs recipients; decrypting our own archive needs the instance key.
        let recipients = if stored.encrypted {
            None
        } else {
            match crate::encryption::recipients(self.state()).await? {
                Some(r) => Some(r),
                // Those copies fail with "set up encryption first" (DESIGN section 11).
                None => {
                    return Ok(Sources {
                        stored,
                        other: None,
                    });
                }
            }
        };
        let keys = self.archive_keys().await?;
        let guard = copy_staging(archive.parent().unwrap_or(Path::new(".")), job)?;
        let dir = guard.0.clone();
        let name = match stored.name.strip_suffix(".age") {
            Some(plain) => plain.to_owned(),
            None => format!("{}.age", stored.name),
        };
        let path = dir.join(&name);
        let (src, dst, cancel2, progress2) = (
            archive.to_path_buf(),
            path.clone(),
            cancel.clone(),
            progress.clone(),
        );
        let total = stored.size;
        let (size, sha256) = tokio::task::spawn_blocking(move || match recipients {
            Some(recipients) => {
                crate::encryption::encrypt_file(&src, &dst, &recipients, &cancel2, &|n| {
                    progress2(Progress {
                        step: "encrypt",
                        done_bytes: n,
                        total_bytes: total,
                    })
                })
            }
            None => crate::encryption::decrypt_file(&src, &dst, &keys, &cancel2),
        })
        .await
        .map_err(|e| Error::internal("the encryption task failed", e))??;
        let other = CopySource {
            path,
            name,
            size,
            sha256,
            encrypted: !stored.encrypted,
            summary: stored.summary.clone(),
        };
        Ok(Sources {
            stored,
            other: Some((other, guard)),
        })
    }

    /// One copy, start to end, recorded; `Some(warning)` when it failed.
    async fn copy_one(
        &self,
        job: JobId,
        d: &DestinationRow,
        source: &CopySource,
        cancel: &CancellationToken,
        tick: &(dyn Fn(u64) + Send + Sync),
    ) -> Option<String> {
        if let Err(e) = self.set_copy(job, d, CopyState::Running).await {
            return Some(format!("copy to {} failed: {}", d.name, e.message()));
        }
        self.emit_job(job).await;
        let outcome = self.send(d, source, cancel, tick).await;
        let warning = match outcome {
            Ok((digest, pruned_warning)) => {
                let r = self
                    .set_copy(job, d, CopyState::Succeeded(&digest, source.encrypted))
                    .await;
                self.record_destination_outcome(d.id, Ok(())).await;
                match r {
                    Err(e) => Some(format!(
                        "copy to {} is done but not recorded: {}",
                        d.name,
                        e.message()
                    )),
                    Ok(()) => pruned_warning,
                }
            }
            Err(e) => Some(self.copy_failed(job, d, &e).await),
        };
        self.emit_job(job).await;
        warning
    }

    /// Upload, check, sidecar, retention. Returns the digest and a retention warning.
    async fn send(
        &self,
        d: &DestinationRow,
        source: &CopySource,
        cancel: &CancellationToken,
        tick: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(Digest256, Option<String>)> {
        if d.encrypt && !source.encrypted {
            return Err(Error::invalid(
                "set up encryption first: this destination sends only encrypted copies (or turn its encrypt switch off)",
            ));
        }
        let bucket = Bucket::open(&d.s3_config(), self.config().copy_retry)?;
        let up = bucket
            .upload_file(&source.name, &source.path, cancel, tick)
            .await?;
        let sent = up.digest.clone();
        if sent.size != source.size || sent.sha256 != source.sha256 {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "the local archive changed while it was copied (read {} bytes, sha256 {}; the record says {} bytes, {})",
                    sent.size, sent.sha256, source.size, source.sha256
                ),
            ));
        }
        // What the store holds: its size and the ETag it computed from the bytes it got
        // (the MD5s of the very bytes hashed above); a store whose ETags mean something else
        // is read back in full and hashed.
        let size = source.size;
        if !bucket.holds(&source.name, &up).await? {
            let held = bucket
                .read_back(&source.name, cancel, &|n| tick(size + n))
                .await?;
            if held != sent {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!(
                        "the store holds different bytes than were sent ({} bytes, sha256 {}; sent {} bytes, {})",
                        held.size, held.sha256, sent.size, sent.sha256
                    ),
                ));
            }
        }
        tick(size * 2);
        let s = &source.summary;
        bucket
            .put_sidecar(&Sidecar {
                format: SIDECAR_FORMAT.into(),
                name: source.name.clone(),
                size_bytes: sent.size,
                sha256: sent.sha256.clone(),
                created_at: s.created_at.clone(),
                copied_at: crate::state::now_rfc3339(),
                encrypted: source.encrypted,
                app_version: s.app_version.clone(),
                schema_version: s.schema_version,
                include_recordings: s.include_recordings,
                trigger: s.trigger.clone(),
            })
            .await?;
        let warning = match prune(&bucket, d.retention_count, &source.name).await {
            Ok(_) => None,
            Err(e) => Some(format!(
                "copy to {} is done, but its old copies were not pruned: {}",
                d.name,
                e.message()
            )),
        };
        Ok((sent, warning))
    }

    async fn copy_failed(&self, job: JobId, d: &DestinationRow, e: &Error) -> String {
        let message = if e.kind() == ErrorKind::Canceled {
            "canceled by request".to_owned()
        } else {
            e.message().to_owned()
        };
        tracing::warn!(job = %job, destination = %d.name, error = %e.detailed(), "copy failed");
        if let Err(e) = self.set_copy(job, d, CopyState::Failed(&message)).await {
            tracing::error!(job = %job, error = %e.detailed(), "cannot record a failed copy");
        }
        self.record_destination_outcome(d.id, Err(&message)).await;
        format!("copy to {} failed: {message}", d.name)
    }

    async fn set_copy(&self, job: JobId, d: &DestinationRow, state: CopyState<'_>) -> Result<()> {
        let now = crate::state::now_rfc3339();
        let q = match state {
            CopyState::Pending => sqlx::query(
                "INSERT INTO job_copies (job_id, destination_id, destination, status) VALUES (?, ?, ?, 'pending') \
                 ON CONFLICT (job_id, destination_id) DO UPDATE SET destination = excluded.destination, status = 'pending', \
                 error = NULL, finished_at = NULL",
            )
            .bind(job)
            .bind(d.id)
            .bind(&d.name),
            CopyState::Running => sqlx::query(
                "UPDATE job_copies SET status = 'running', error = NULL WHERE job_id = ? AND destination_id = ?",
            )
            .bind(job)
            .bind(d.id),
            CopyState::Succeeded(digest, encrypted) => sqlx::query(
                "UPDATE job_copies SET status = 'succeeded', error = NULL, size_bytes = ?, sha256 = ?, encrypted = ?, finished_at = ? \
                 WHERE job_id = ? AND destination_id = ?",
            )
            .bind(digest.size as i64)
            .bind(digest.sha256.clone())
            .bind(encrypted)
            .bind(now)
            .bind(job)
            .bind(d.id),
            CopyState::Failed(message) => sqlx::query(
                "UPDATE job_copies SET status = 'failed', error = ?, finished_at = ? WHERE job_id = ? AND destination_id = ?",
            )
            .bind(message.to_owned())
            .bind(now)
            .bind(job)
            .bind(d.id),
        };
        q.execute(self.state()).await?;
        Ok(())
    }

    /// What a copy of `job`'s archive sends: the file, its name and digest from the record,
    /// and the manifest summary read from the archive's first entry.
    async fn copy_source(&self, job: JobId, archive: &Path) -> Result<CopySource> {
        let row = self.job_row(job).await?;
        let (Some(name), Some(size), Some(sha256)) =
            (row.archive_name.clone(), row.size_bytes, row.sha256.clone())
        else {
            return Err(Error::conflict(format!("job {job} has no archive to copy")));
        };
        let path = archive.to_path_buf();
        let keys = self.archive_keys().await?;
        let manifest =
            tokio::task::spawn_blocking(move || crate::restore::read_manifest(&path, &keys))
                .await
                .map_err(|e| Error::internal("reading the manifest failed", e))?
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Internal,
                        format!(
                            "cannot read the manifest of {}: {}",
                            archive.display(),
                            e.message()
                        ),
                    )
                })?;
        Ok(CopySource {
            path: archive.to_path_buf(),
            encrypted: crate::encryption::is_age_name(&name),
            name,
            size: size as u64,
            sha256,
            summary: Summary {
                created_at: manifest.created_at,
                app_version: manifest.app_version,
                schema_version: manifest.database.schema_version,
                include_recordings: manifest.include_recordings,
                trigger: manifest.trigger,
            },
        })
    }

    /// `POST /api/backups/jobs/{id}/copies/{destination_id}/retry/`: the copy is queued
    /// (`pending`) and runs after the job that runs now, in the background. 202 + the job.
    pub async fn retry_copy(&self, job: JobId, destination: DestinationId) -> Result<Job> {
        let view = self.get_job(job).await?;
        if view.kind != JobKind::Backup
            || view.status != JobStatus::Succeeded
            || view.archive_name.is_none()
        {
            return Err(Error::conflict(format!(
                "job {job} is not a succeeded backup with an archive; only those can be copied"
            )));
        }
        let d = self.destination_row(destination).await?;
        if let Some(c) = view.copies.iter().find(|c| c.destination_id == destination)
            && matches!(
                c.status,
                wire::destination::CopyStatus::Pending | wire::destination::CopyStatus::Running
            )
        {
            return Err(Error::conflict(format!(
                "the copy to {} is already under way",
                d.name
            )));
        }
        self.set_copy(job, &d, CopyState::Pending).await?;
        self.emit_job(job).await;
        let core = self.clone();
        tokio::spawn(async move {
            // After the job that runs now, and never beside one: the runner holds this lock.
            let _guard = core.runner().exec.lock().await;
            let path = match core.archive_path(job).await {
                Ok(p) => p,
                Err(e) => {
                    core.copy_failed(job, &d, &e).await;
                    core.emit_job(job).await;
                    return;
                }
            };
            let cancel = CancellationToken::new();
            let sources = match core
                .copy_sources(
                    job,
                    &path,
                    std::slice::from_ref(&d),
                    None,
                    &cancel,
                    &crate::archive::no_progress(),
                )
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    core.copy_failed(job, &d, &e).await;
                    core.emit_job(job).await;
                    return;
                }
            };
            let source = sources.for_destination(&d);
            if let Some(w) = core.copy_one(job, &d, source, &cancel, &|_| {}).await {
                tracing::warn!(job = %job, "{w}");
            }
        });
        self.get_job(job).await
    }

    /// Archives a destination holds (from their sidecars), newest first.
    pub async fn remote_archives(&self, destination: DestinationId) -> Result<Vec<RemoteArchive>> {
        let d = self.destination_row(destination).await?;
        let bucket = Bucket::open(&d.s3_config(), self.config().copy_retry)?;
        Ok(bucket
            .list()
            .await?
            .into_iter()
            .map(|s| RemoteArchive {
                name: s.name,
                size_bytes: s.size_bytes,
                sha256: s.sha256,
                created_at: s.created_at,
                encrypted: s.encrypted,
            })
            .collect())
    }

    /// Disaster recovery: downloads a copy into the archive folder, checks it against its
    /// sidecar and validates it as an upload is validated, then lists it as a backup with
    /// trigger `import` (restorable the usual way). Nothing is kept when any check fails.
    pub async fn import_archive(
        &self,
        destination: DestinationId,
        name: &str,
        identity: Option<&str>,
        requested_by: Option<String>,
    ) -> Result<Job> {
        let d = self.destination_row(destination).await?;
        let bucket = Bucket::open(&d.s3_config(), self.config().copy_retry)?;
        let sidecar = bucket.find(name).await?.ok_or_else(|| {
            Error::not_found(format!(
                "{} holds no complete copy named {name:?} (a copy is complete once its sidecar is written)",
                d.name
            ))
        })?;
        let target = self.begin_upload().await?;
        let got = bucket
            .download(name, target.path(), &CancellationToken::new(), &|_| {})
            .await?;
        if got.size != sidecar.size_bytes || got.sha256 != sidecar.sha256 {
            return Err(Error::rejected(format!(
                "the copy of {name} in {} does not match its sidecar ({} bytes, sha256 {}; the sidecar says {} bytes, {}); nothing was imported",
                d.name, got.size, got.sha256, sidecar.size_bytes, sidecar.sha256
            )));
        }
        // An encrypted copy is decrypted here, into a new file; only the plain archive is kept.
        let target = self.decrypt_upload(target, identity).await?;
        let original = name.strip_suffix(".age").unwrap_or(name).to_owned();
        self.finish_stored(
            target,
            wire::JobTrigger::Import,
            Some(original),
            requested_by,
        )
        .await
    }
}

/// A new, empty `.staging-copy-<job>` folder in the archive folder `dir`, removed when the
/// guard is dropped (and by the restart sweep after a crash).
fn copy_staging(dir: &Path, job: JobId) -> Result<RemoveOnDrop> {
    let path = dir.join(format!(".staging-copy-{job}"));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path)
        .map_err(|e| Error::internal(format!("cannot create {}", path.display()), e))?;
    Ok(RemoveOnDrop(path))
}

/// What the copies of one archive send.
pub(crate) struct Sources {
    /// The archive as the archive folder holds it.
    stored: CopySource,
    /// Its other form (encrypted, or plain), and the guard that removes its staging folder.
    other: Option<(CopySource, RemoveOnDrop)>,
}

impl Sources {
    /// What `d` gets: the form it wants (encrypted or not) when there is one; otherwise the
    /// stored archive (which `send` refuses, plain, for a destination that wants encryption).
    fn for_destination(&self, d: &DestinationRow) -> &CopySource {
        match &self.other {
            Some((other, _)) if d.encrypt == other.encrypted => other,
            _ => &self.stored,
        }
    }
}

enum CopyState<'a> {
    Pending,
    Running,
    Succeeded(&'a Digest256, bool),
    Failed(&'a str),
}

/// Deletes the oldest copies beyond `keep` (0 keeps all). Only copies with a Backstop sidecar
/// are candidates, and `newest` (the copy just made) never is. Returns how many went.
async fn prune(bucket: &Bucket, keep: i64, newest: &str) -> Result<usize> {
    if keep <= 0 {
        return Ok(0);
    }
    let listed = bucket.list().await?;
    let others: Vec<&Sidecar> = listed.iter().filter(|s| s.name != newest).collect();
    let keep_others = (keep as usize).saturating_sub(1);
    let mut pruned = 0;
    for old in others.into_iter().skip(keep_others) {
        bucket.delete_copy(&old.name).await?;
        pruned += 1;
    }
    Ok(pruned)
}
