//! Jobs: list, run, cancel, delete, restore, manifest. The same engine calls as the REST API.

use leptos::prelude::*;

use crate::model::{JobId, JobPage, JobView, Manifest, PluginLogLineView};

/// One page of the history, newest first.
#[server]
pub async fn list_jobs(limit: i64, offset: i64) -> Result<JobPage, crate::error::AppError> {
    let (engine, _) = super::ssr::require_admin().await?;
    let (jobs, total) = engine
        .list_jobs(&engine::jobs::JobFilter {
            limit,
            offset,
            ..Default::default()
        })
        .await
        .map_err(crate::error::AppError::from)?;
    Ok(JobPage { jobs, total })
}

/// Queues a backup now.
#[server]
pub async fn run_backup(include_recordings: bool) -> Result<JobView, crate::error::AppError> {
    let (engine, who) = super::ssr::require_admin().await?;
    engine
        .start_backup(
            crate::model::JobTrigger::Manual,
            Some(who.username),
            Some(include_recordings),
        )
        .await
        .map_err(crate::error::AppError::from)
}

/// Cancels a pending or running job.
#[server]
pub async fn cancel_job(id: JobId) -> Result<JobView, crate::error::AppError> {
    let (engine, _) = super::ssr::require_admin().await?;
    engine
        .cancel_job(id)
        .await
        .map_err(crate::error::AppError::from)
}

/// Deletes a finished job and its archive.
#[server]
pub async fn delete_job(id: JobId) -> Result<(), crate::error::AppError> {
    let (engine, _) = super::ssr::require_admin().await?;
    engine
        .delete_job(id)
        .await
        .map_err(crate::error::AppError::from)
}

/// Restores a backup (a safety backup is taken first).
#[server]
pub async fn restore_job(id: JobId) -> Result<JobView, crate::error::AppError> {
    let (engine, who) = super::ssr::require_admin().await?;
    engine
        .start_restore(id, Some(who.username))
        .await
        .map_err(crate::error::AppError::from)
}

/// The manifest of a backup's archive.
#[server]
pub async fn job_manifest(id: JobId) -> Result<Manifest, crate::error::AppError> {
    let (engine, _) = super::ssr::require_admin().await?;
    Ok(engine.job_manifest(id).await?)
}

/// What plugins logged during a job (live while it runs, kept with it afterwards).
#[server]
pub async fn job_plugin_log(id: JobId) -> Result<Vec<PluginLogLineView>, crate::error::AppError> {
    let (engine, _) = super::ssr::require_admin().await?;
    engine
        .plugin_log(id)
        .await
        .map_err(crate::error::AppError::from)
}
