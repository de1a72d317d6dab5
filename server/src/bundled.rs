//! The first-party plugins (`recordings`, `custom-dirs`, `space-guard`) ship inside the
//! `backstop` binary (embedded by `build.rs`) and are installed into `<data>/plugins/` by
//! `backstop serve`, disabled until an admin enables them (`BACKSTOP_BUNDLED_PLUGINS=0`
//! turns this off).
//!
//! The rules, so an admin's choice always wins:
//! - a plugin folder that is absent is installed, and a marker `.bundled-<id>` records the
//!   SHA-256 of what was installed;
//! - a folder Backstop installed and nobody changed (its files still hash to the marker) is
//!   upgraded when the binary carries another version; the host then asks for approval
//!   again if the new version requests more;
//! - a folder the admin replaced (another hash), or removed after it was installed (marker
//!   present, folder gone), is left alone.
//!
//! Each install is written into a dot-folder and renamed into place, so the host never
//! loads a half-written plugin.

use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// Installs or upgrades the bundled plugins in `plugins_dir` by the rules above; returns
/// the ids written now (installed for the first time or upgraded).
pub fn install(plugins_dir: &Path) -> io::Result<Vec<&'static str>> {
    install_from(plugins_dir, BUNDLED)
}

/// [`install`] into the data dir's plugins folder, off the async workers. A failure is
/// logged, never fatal: the server starts without them.
pub async fn install_in_data_dir(data_dir: &std::path::Path) -> Vec<&'static str> {
    let dir = plugin_host::HostConfig::for_data_dir(data_dir).plugins_dir;
    match tokio::task::spawn_blocking(move || install(&dir)).await {
        Ok(Ok(ids)) => {
            if !ids.is_empty() {
                tracing::info!(plugins = ?ids, "installed the bundled first-party plugins (disabled until enabled)");
            }
            ids
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot install the bundled plugins; the server starts without them");
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(error = %e, "installing the bundled plugins failed");
            Vec::new()
        }
    }
}

/// The recordings plugin's one mount defaults to `<data>/recordings/` when nothing is
/// granted yet, so enabling it is one click. Granting goes through the same checks as an
/// admin's change ([`engine::Engine::update_plugin`]); the plugin stays disabled.
pub async fn grant_recordings_folder(engine: &engine::Engine, data_dir: &std::path::Path) {
    let granted = engine
        .plugin_view("recordings")
        .await
        .map(|v| !v.grants.mounts.is_empty())
        .unwrap_or(true);
    if granted {
        return;
    }
    let update = engine::plugins::PluginUpdate {
        grants: Some(engine::plugins::GrantsUpdate {
            mounts: Some([("recordings".to_owned(), data_dir.join("recordings"))].into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    if let Err(e) = engine.update_plugin("recordings", &update).await {
        tracing::warn!(error = %e, "cannot grant the recordings plugin its default folder");
    }
}

fn install_from(
    plugins_dir: &Path,
    bundled: &[(&'static str, &str, &[u8])],
) -> io::Result<Vec<&'static str>> {
    std::fs::create_dir_all(plugins_dir)?;
    let mut written = Vec::new();
    for &(id, toml, wasm) in bundled {
        let dest = plugins_dir.join(id);
        let marker = plugins_dir.join(format!(".bundled-{id}"));
        let ours = digest(toml.as_bytes(), wasm);
        let recorded = std::fs::read_to_string(&marker).ok();
        let install = match (&recorded, dest.exists()) {
            (None, false) => true,
            (None, true) | (Some(_), false) => false,
            (Some(recorded), true) => {
                let installed = match (
                    std::fs::read(dest.join("plugin.toml")),
                    std::fs::read(dest.join("plugin.wasm")),
                ) {
                    (Ok(t), Ok(w)) => Some(digest(&t, &w)),
                    _ => None,
                };
                installed.as_deref() == Some(recorded.trim()) && recorded.trim() != ours
            }
        };
        if !install {
            continue;
        }
        let staging = plugins_dir.join(format!(".bundle-{id}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)?;
        std::fs::write(staging.join("plugin.toml"), toml)?;
        std::fs::write(staging.join("plugin.wasm"), wasm)?;
        let old = plugins_dir.join(format!(".bundle-old-{id}-{}", std::process::id()));
        if dest.exists() {
            std::fs::rename(&dest, &old)?;
        }
        std::fs::rename(&staging, &dest)?;
        let _ = std::fs::remove_dir_all(&old);
        std::fs::write(&marker, &ours)?;
        written.push(id);
    }
    Ok(written)
}

fn digest(toml: &[u8], wasm: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update((toml.len() as u64).to_le_bytes());
    h.update(toml);
    h.update(wasm);
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &[(&str, &str, &[u8])] = &[("p", "version = \"1\"", b"wasm-1")];
    const V2: &[(&str, &str, &[u8])] = &[("p", "version = \"2\"", b"wasm-2")];

    fn read(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("p/plugin.toml")).unwrap()
    }

    #[test]
    fn installs_once_then_upgrades_only_an_untouched_copy() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(install_from(dir.path(), V1).unwrap(), ["p"]);
        assert_eq!(install_from(dir.path(), V1).unwrap(), Vec::<&str>::new());
        assert_eq!(install_from(dir.path(), V2).unwrap(), ["p"]);
        assert_eq!(read(dir.path()), "version = \"2\"");
        // No staging folders are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn an_admins_replacement_or_removal_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        install_from(dir.path(), V1).unwrap();
        std::fs::write(dir.path().join("p/plugin.toml"), "version = \"admin\"").unwrap();
        assert!(install_from(dir.path(), V2).unwrap().is_empty());
        assert_eq!(read(dir.path()), "version = \"admin\"");
        std::fs::remove_dir_all(dir.path().join("p")).unwrap();
        assert!(install_from(dir.path(), V2).unwrap().is_empty());
        assert!(!dir.path().join("p").exists());
    }

    #[test]
    fn a_plugin_the_admin_installed_first_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("p")).unwrap();
        std::fs::write(dir.path().join("p/plugin.toml"), "mine").unwrap();
        assert!(install_from(dir.path(), V1).unwrap().is_empty());
        assert_eq!(read(dir.path()), "mine");
    }
}
