//! Plugin administration on the engine: Backstop's own files as the mount rule sees them,
//! and installing, updating and removing plugins through the plugin runtime
//! ([`crate::plugins::PluginRuntime`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::plugins::*;
use crate::{Error, Result};

impl crate::core::Core {
    /// Backstop's own files as [`check_mount`] sees them: the data dir, both DB files, the
    /// saved backup folder and every folder a succeeded backup's archive lives in, the
    /// plugins folder.
    pub async fn own_files(&self) -> Result<OwnFiles> {
        let settings = crate::settings::load(self.state()).await?;
        let mut archive_dirs = vec![settings.resolved_path(self.data_dir())];
        // Archives made before the backup folder changed stay where they were made.
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT archive_dir FROM jobs WHERE kind = 'backup' AND status = 'succeeded' AND archive_dir IS NOT NULL",
        )
        .fetch_all(self.state())
        .await?;
        archive_dirs.extend(rows.into_iter().map(|(d,)| PathBuf::from(d)));
        let data_dir = self.data_dir().to_path_buf();
        let state_db = sqlite_file(&self.config().state_db_url);
        let content_db = sqlite_file(&self.config().content_db_url);
        // Canonicalizing touches the filesystem: off the async workers.
        tokio::task::spawn_blocking(move || {
            OwnFiles::resolve(
                &data_dir,
                state_db.as_deref(),
                content_db.as_deref(),
                &archive_dirs,
            )
        })
        .await
        .map_err(|e| Error::internal("checking the plugin grants failed", e))
    }

    /// Applies an admin's change to a plugin (`PUT /api/backups/plugins/{id}/`): every
    /// mount it grants is checked against Backstop's own files ([`check_mount`]) as well as
    /// by the runtime; a refused change answers with `grants.mounts.<name>` field errors
    /// and stores nothing.
    pub async fn update_plugin(&self, id: &str, update: &PluginUpdate) -> Result<PluginView> {
        let mut refused = BTreeMap::new();
        if let Some(mounts) = update
            .grants
            .as_ref()
            .and_then(|g| g.mounts.clone())
            .filter(|m| !m.is_empty())
        {
            let own = self.own_files().await?;
            refused = tokio::task::spawn_blocking(move || {
                mounts
                    .iter()
                    // A relative path is refused by the runtime ("give an absolute folder").
                    .filter(|(_, path)| path.is_absolute())
                    .filter_map(|(name, path)| {
                        let reason = check_mount(&crate::settings::resolve_path(path), &own)?;
                        Some((format!("grants.mounts.{name}"), reason))
                    })
                    .collect::<BTreeMap<_, _>>()
            })
            .await
            .map_err(|e| Error::internal("checking the plugin grants failed", e))?;
        }
        apply_update(self.state(), &**self.plugins(), id, update, refused).await
    }
}
