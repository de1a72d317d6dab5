//! How the engine sees plugins: through these traits only, so the pipeline can be tested
//! without wasmtime. `plugin-host` implements [`PluginRuntime`] with WebAssembly components;
//! [`NoPlugins`] is the empty implementation.
//!
//! Calls are synchronous: the engine invokes them from blocking threads, and the host runs
//! each call on its own runtime with its own deadline.
//!
//! Besides hooks and content, the trait carries (all with default bodies, so [`NoPlugins`]
//! and test doubles stay one-liners): restore planning and restore calls, cancellation,
//! the admin's view of installed plugins ([`PluginView`]) and their grants
//! ([`PluginRecord`], stored in the state DB table `plugin_grants` by [`load_records`] /
//! [`save_record`]).
//!
//! An admin's grant may not reach Backstop's own files (DESIGN section 7): [`OwnFiles`]
//! lists them resolved, [`check_mount`] is the pure rule, and [`crate::Engine::update_plugin`]
//! applies it before anything is stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{Error, Result};

/// A point in a job where hooks run. `pre-*` points are gates: a veto there stops the job
/// (when the plugin holds the `veto` grant); elsewhere a veto becomes an annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookPoint {
    PreBackup,
    PostCollect,
    PreArchive,
    PostArchive,
    PostBackup,
    PreRestore,
    PostExtract,
    PreApply,
    PostRestore,
}

impl HookPoint {
    pub fn as_str(self) -> &'static str {
        match self {
            HookPoint::PreBackup => "pre-backup",
            HookPoint::PostCollect => "post-collect",
            HookPoint::PreArchive => "pre-archive",
            HookPoint::PostArchive => "post-archive",
            HookPoint::PostBackup => "post-backup",
            HookPoint::PreRestore => "pre-restore",
            HookPoint::PostExtract => "post-extract",
            HookPoint::PreApply => "pre-apply",
            HookPoint::PostRestore => "post-restore",
        }
    }
    /// Whether a veto at this point can stop the job.
    pub fn is_gate(self) -> bool {
        matches!(
            self,
            HookPoint::PreBackup
                | HookPoint::PreArchive
                | HookPoint::PreRestore
                | HookPoint::PreApply
        )
    }
}

/// What a job tells plugins about itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobContext {
    pub job_id: i64,
    pub kind: String,
    pub trigger: String,
    pub include_recordings: bool,
    /// Facts known so far (e.g. `estimated_bytes`, `archive_path`), as strings.
    pub facts: Vec<(String, String)>,
    /// Where a plugin's `host.progress(done, total)` goes while it runs for this job.
    #[serde(skip)]
    pub progress: PluginProgress,
}

/// The job's progress as plugins report it: `host.progress(done, total)` becomes the job's
/// progress with step `plugin` (done and total are shown as bytes). Empty outside a job.
#[derive(Clone, Default)]
pub struct PluginProgress(Option<Arc<dyn Fn(u64, u64) + Send + Sync>>);

impl PluginProgress {
    pub fn new(f: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    /// Reports progress; `done` is clamped to `total` when a total is given.
    pub fn report(&self, done: u64, total: u64) {
        if let Some(f) = &self.0 {
            f(if total > 0 { done.min(total) } else { done }, total);
        }
    }
}

impl std::fmt::Debug for PluginProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "PluginProgress(job)"
        } else {
            "PluginProgress(none)"
        })
    }
}

/// A note a plugin attached to a step; stored with the job and written to the manifest.
pub use wire::Annotation;

/// The combined outcome of one hook point across all enabled plugins.
#[derive(Debug, Clone, Default)]
pub struct HookReport {
    pub annotations: Vec<Annotation>,
    /// Set when a plugin with the veto grant vetoed at a gate: (plugin id, reason).
    pub veto: Option<(String, String)>,
    /// Plugin failures that the policy says to report (`warn`) or that abort (`abort`).
    pub warnings: Vec<String>,
    pub abort: Option<String>,
}

/// A directory to archive natively under `data/<name>/`.
#[derive(Debug, Clone)]
pub struct DirectoryContribution {
    pub name: String,
    pub path: PathBuf,
    pub contributed_by: String,
}

/// A file to archive under `plugins/<plugin-id>/<relative>`.
#[derive(Debug, Clone)]
pub struct FileContribution {
    pub plugin: String,
    pub relative: String,
    pub path: PathBuf,
}

/// Everything plugins add to one backup.
#[derive(Debug, Clone, Default)]
pub struct Contributions {
    pub directories: Vec<DirectoryContribution>,
    pub files: Vec<FileContribution>,
    /// (plugin id, version) of every plugin that contributed.
    pub plugins: Vec<(String, String)>,
    pub warnings: Vec<String>,
    /// A plugin whose failure policy is `abort` failed: the job must fail with this reason.
    pub abort: Option<String>,
}

/// The engine's view of the plugin system.
pub trait PluginRuntime: Send + Sync {
    /// Runs every enabled plugin's hook at `point`.
    fn run_hooks(&self, point: HookPoint, ctx: &JobContext) -> HookReport;
    /// Asks every enabled contributor for its content. `scratch` is a per-job folder the
    /// host may hand to plugins for generated files.
    fn collect(&self, ctx: &JobContext, scratch: &std::path::Path) -> Contributions;

    /// Whether an enabled plugin contributes the directory `data/<name>/` itself, so a
    /// built-in source for the same name should step aside (see [`BuiltinDirectories`]).
    fn provides_directory(&self, _name: &str) -> bool {
        false
    }

    /// Restore, before anything changes: where each plugin-made `data/<name>/` directory of
    /// the archive goes back. Directories the plan does not place are reported in
    /// `warnings`, never silently dropped.
    fn plan_restore(&self, _ctx: &JobContext, input: &RestoreInput) -> RestorePlan {
        RestorePlan {
            warnings: unplaced_warnings(input, &[]),
            ..RestorePlan::default()
        }
    }

    /// Restore, after the database and directories are in place: every restorer gets its
    /// staged `plugins/<id>/` files. Failures follow each plugin's policy as for hooks.
    fn restore(&self, _ctx: &JobContext, input: &RestoreInput) -> HookReport {
        let mut report = HookReport::default();
        for p in input.plugins.iter().filter(|p| p.files.is_some()) {
            report.warnings.push(format!(
                "plugins/{}/ in the archive was not restored: plugin {} is not installed",
                p.id, p.id
            ));
        }
        report
    }

    /// The job was canceled: calls for it see `cancelled() == true` and running ones stop.
    fn cancel_job(&self, _job_id: i64) {}

    /// The job ended: drop per-job state kept for it (cancel flags).
    fn job_finished(&self, _job_id: i64) {}

    /// Installed plugins as the admin sees them (`GET /api/backups/plugins/`).
    fn describe(&self) -> Vec<PluginView> {
        Vec::new()
    }

    /// Plugin log lines written during one job, oldest first.
    fn job_log(&self, _job_id: i64) -> Vec<PluginLogLine> {
        Vec::new()
    }

    /// Replaces the runtime's grants with the stored ones (at start, after the state DB opened).
    fn load_records(&self, _records: Vec<PluginRecord>) {}

    /// Checks an admin's change and returns the record to store, without applying it. The
    /// caller saves it with [`save_record`] and then calls [`PluginRuntime::apply_record`],
    /// so the runtime never runs with grants the database does not hold.
    fn plan_update(&self, id: &str, _update: &PluginUpdate) -> Result<PluginRecord> {
        Err(Error::not_found(format!("no plugin {id:?} is installed")))
    }

    /// Applies a record saved after [`PluginRuntime::plan_update`].
    fn apply_record(&self, _record: PluginRecord) {}

    /// Installs or replaces a plugin from its `plugin.toml` text and component bytes (admin
    /// upload). Checked before anything is written; the plugin starts disabled.
    fn install(&self, _manifest: &str, _component: &[u8]) -> Result<PluginView> {
        Err(Error::new(
            crate::ErrorKind::Unavailable,
            "this server runs without a plugin host",
        ))
    }
}

/// The `data/<name>/` directories of an archive that `targets` does not place and that no
/// built-in source restores (`logos`, `recordings` made by `backstop`), as warnings.
pub fn unplaced_warnings(input: &RestoreInput, targets: &[DirectoryTarget]) -> Vec<String> {
    input
        .directories
        .iter()
        .filter(|d| d.contributed_by != BUILTIN_CONTRIBUTOR)
        .filter(|d| !targets.iter().any(|t| t.name == d.name))
        .map(|d| {
            format!(
                "data/{}/ in the archive was not restored: plugin {} is not installed or enabled, or did not say where it goes",
                d.name, d.contributed_by
            )
        })
        .collect()
}

/// `contributed_by` of the built-in directories.
pub const BUILTIN_CONTRIBUTOR: &str = "backstop";

/// A `data/<name>/` directory listed in an archive's manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArchivedDirectory {
    pub name: String,
    pub contributed_by: String,
}

/// A plugin listed in an archive's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedPlugin {
    pub id: String,
    pub version: String,
    /// The extracted `plugins/<id>/` folder, when the archive holds files for it and they
    /// are staged (`None` during [`PluginRuntime::plan_restore`]).
    pub files: Option<PathBuf>,
}

/// What a restore tells plugins about the archive.
#[derive(Debug, Clone, Default)]
pub struct RestoreInput {
    pub directories: Vec<ArchivedDirectory>,
    pub plugins: Vec<ArchivedPlugin>,
}

/// Where a plugin-made `data/<name>/` directory goes back. `target` is beneath a folder the
/// admin granted the plugin with `restore` access; the engine swaps the staged tree there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryTarget {
    pub name: String,
    pub plugin: String,
    pub target: PathBuf,
}

/// The outcome of [`PluginRuntime::plan_restore`].
#[derive(Debug, Clone, Default)]
pub struct RestorePlan {
    pub targets: Vec<DirectoryTarget>,
    pub warnings: Vec<String>,
    /// A plugin whose policy is `abort` failed: the restore must stop before changing anything.
    pub abort: Option<String>,
}

pub use wire::plugin::{
    ApprovedPermissions, GrantsUpdate, PluginGrants, PluginLimits, PluginList, PluginLogLine,
    PluginUpdate, PluginView, RequestedMount, SettingSpec,
};

/// One row of `plugin_grants`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PluginRecord {
    pub plugin_id: String,
    pub enabled: bool,
    pub approved_version: Option<String>,
    pub grants: PluginGrants,
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// Reads every row of `plugin_grants`. A row whose JSON does not parse is logged and read
/// as disabled with no grants, so one bad row cannot keep the server from starting.
pub async fn load_records(pool: &sqlx::SqlitePool) -> Result<Vec<PluginRecord>> {
    let rows: Vec<(String, i64, Option<String>, String, String)> =
        sqlx::query_as("SELECT plugin_id, enabled, approved_version, grants, settings FROM plugin_grants ORDER BY plugin_id")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(plugin_id, enabled, approved_version, grants, settings)| {
            let parsed = serde_json::from_str::<PluginGrants>(&grants)
                .and_then(|g| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&settings).map(|s| (g, s)));
            match parsed {
                Ok((grants, settings)) => PluginRecord { plugin_id, enabled: enabled != 0, approved_version, grants, settings },
                Err(e) => {
                    tracing::error!(plugin = %plugin_id, error = %e, "stored plugin grants are corrupt; the plugin stays disabled");
                    PluginRecord { plugin_id, ..PluginRecord::default() }
                }
            }
        })
        .collect())
}

/// Inserts or replaces one row of `plugin_grants`.
pub async fn save_record(pool: &sqlx::SqlitePool, record: &PluginRecord) -> Result<()> {
    let grants = serde_json::to_string(&record.grants)
        .map_err(|e| Error::internal("cannot encode plugin grants", e))?;
    let settings = serde_json::to_string(&record.settings)
        .map_err(|e| Error::internal("cannot encode plugin settings", e))?;
    sqlx::query(
        "INSERT INTO plugin_grants (plugin_id, enabled, approved_version, grants, settings) VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (plugin_id) DO UPDATE SET enabled = excluded.enabled, approved_version = excluded.approved_version, \
         grants = excluded.grants, settings = excluded.settings",
    )
    .bind(&record.plugin_id)
    .bind(record.enabled as i64)
    .bind(&record.approved_version)
    .bind(grants)
    .bind(settings)
    .execute(pool)
    .await?;
    Ok(())
}

/// Loads the stored grants into a runtime: call once after the state DB is open.
pub async fn sync_records(pool: &sqlx::SqlitePool, runtime: &dyn PluginRuntime) -> Result<()> {
    runtime.load_records(load_records(pool).await?);
    Ok(())
}

/// Applies an admin's change: the runtime checks it, then it is stored, then applied, with
/// field errors found by the caller (`refused`, see [`crate::Engine::update_plugin`], the only
/// way in, which keeps mounts off Backstop's own files) reported together
/// with the runtime's own; anything refused stores nothing.
pub(crate) async fn apply_update(
    pool: &sqlx::SqlitePool,
    runtime: &dyn PluginRuntime,
    id: &str,
    update: &PluginUpdate,
    refused: BTreeMap<String, String>,
) -> Result<PluginView> {
    let record = match runtime.plan_update(id, update) {
        Ok(record) if refused.is_empty() => record,
        Ok(_) => return Err(Error::fields(refused)),
        // Field errors from both sides at once; ours name the safety reason, so they win
        // for the same mount.
        Err(e) if !refused.is_empty() && !e.field_errors().is_empty() => {
            let mut fields = e.field_errors().clone();
            fields.extend(refused);
            return Err(Error::fields(fields));
        }
        // Unknown or broken plugin: that answer (404, 409) comes first.
        Err(e) => return Err(e),
    };
    save_record(pool, &record).await?;
    runtime.apply_record(record);
    runtime
        .describe()
        .into_iter()
        .find(|v| v.id == id)
        .ok_or_else(|| Error::not_found(format!("no plugin {id:?} is installed")))
}

/// Backstop's own files, resolved (see [`crate::settings::resolve_path`]): what no plugin
/// mount may be, contain or lie within.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnFiles {
    /// The data dir: never granted itself; inside it only `managed` folders are.
    pub data_dir: PathBuf,
    /// `<data>/recordings` and `<data>/logos`: the folders inside the data dir a plugin may
    /// be granted (with anything below them).
    pub managed: Vec<PathBuf>,
    /// (what it is, path): the state and content DB files, every archive folder, the
    /// plugins folder. These may live outside the data dir, so they are checked on their own.
    pub own: Vec<(String, PathBuf)>,
}

impl OwnFiles {
    /// Resolves the layout. `state_db` and `content_db` are the database files (`None` for
    /// an in-memory DB); `archive_dirs` every folder holding archives. Touches the
    /// filesystem (canonicalize): call it from a blocking thread.
    pub fn resolve(
        data_dir: &Path,
        state_db: Option<&Path>,
        content_db: Option<&Path>,
        archive_dirs: &[PathBuf],
    ) -> OwnFiles {
        use crate::settings::resolve_path;
        let mut own = Vec::new();
        if let Some(p) = state_db {
            own.push(("the state database".to_owned(), resolve_path(p)));
        }
        if let Some(p) = content_db {
            own.push(("the content database".to_owned(), resolve_path(p)));
        }
        for d in archive_dirs {
            let d = resolve_path(d);
            if !own.iter().any(|(_, p)| *p == d) {
                own.push(("the archive folder".to_owned(), d));
            }
        }
        own.push((
            "the plugins folder".to_owned(),
            resolve_path(&data_dir.join("plugins")),
        ));
        OwnFiles {
            data_dir: resolve_path(data_dir),
            managed: ["recordings", "logos"]
                .into_iter()
                .map(|n| resolve_path(&data_dir.join(n)))
                .collect(),
            own,
        }
    }
}

const OWN_FILES: &str = "a plugin may not reach Backstop's own files";

/// Why `mount` (resolved) may not be granted to a plugin, or `None` when it may. Pure:
/// paths compare component by component (`a/b` is not inside `a/bc`).
pub fn check_mount(mount: &Path, own: &OwnFiles) -> Option<String> {
    let m = mount.display();
    let data = &own.data_dir;
    if mount == data {
        return Some(format!(
            "{m} is the data folder: grant a folder outside it, or recordings/ or logos/ inside it"
        ));
    }
    if data.starts_with(mount) {
        return Some(format!(
            "{m} contains the data folder ({}): {OWN_FILES}",
            data.display()
        ));
    }
    for (what, path) in &own.own {
        let relation = if mount == path {
            "is"
        } else if path.starts_with(mount) {
            "contains"
        } else if mount.starts_with(path) {
            "is inside"
        } else {
            continue;
        };
        return Some(format!(
            "{m} {relation} {what} ({}): {OWN_FILES}",
            path.display()
        ));
    }
    if mount.starts_with(data) && !own.managed.iter().any(|d| mount.starts_with(d)) {
        return Some(format!(
            "{m} is inside the data folder ({}): only recordings/ and logos/ there (or folders below them) may be granted",
            data.display()
        ));
    }
    None
}

/// The file of a `sqlite:` URL, or `None` for an in-memory database or a URL that does
/// not parse (opening it failed already, so there is nothing on disk to protect).
pub(crate) fn sqlite_file(url: &str) -> Option<PathBuf> {
    use std::str::FromStr;
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let file = options.get_filename();
    // sqlx names in-memory databases `file:sqlx-in-memory-<n>`.
    let in_memory = url.contains(":memory:")
        || url.contains("mode=memory")
        || file.to_string_lossy().starts_with("file:sqlx-in-memory");
    (!in_memory).then(|| file.to_path_buf())
}

/// No plugins: hooks proceed, nothing is contributed.
pub struct NoPlugins;

impl PluginRuntime for NoPlugins {
    fn run_hooks(&self, _point: HookPoint, _ctx: &JobContext) -> HookReport {
        HookReport::default()
    }
    fn collect(&self, _ctx: &JobContext, _scratch: &std::path::Path) -> Contributions {
        Contributions::default()
    }
}

/// Something that adds content to a backup: the built-in directories, and the plugin
/// runtime. The pipeline asks every source in turn and never knows which is which.
pub trait ContentSource: Send + Sync {
    fn collect(&self, ctx: &JobContext, scratch: &std::path::Path) -> Contributions;
}

/// The built-in source: `logos/` always, `recordings/` when the job includes recordings.
/// The recordings plugin replaces the second half when it is enabled: build this with
/// `recordings: !runtime.provides_directory("recordings")` so the archive never holds two
/// `data/recordings/` trees.
pub struct BuiltinDirectories {
    pub data_dir: PathBuf,
    pub recordings: bool,
}

impl ContentSource for BuiltinDirectories {
    fn collect(&self, ctx: &JobContext, _scratch: &std::path::Path) -> Contributions {
        let mut c = Contributions::default();
        c.directories.push(DirectoryContribution {
            name: "logos".into(),
            path: self.data_dir.join("logos"),
            contributed_by: BUILTIN_CONTRIBUTOR.into(),
        });
        if self.recordings && ctx.include_recordings {
            c.directories.push(DirectoryContribution {
                name: "recordings".into(),
                path: self.data_dir.join("recordings"),
                contributed_by: BUILTIN_CONTRIBUTOR.into(),
            });
        }
        c
    }
}

/// Every plugin runtime is a content source through its `collect`.
impl<T: PluginRuntime + ?Sized> ContentSource for std::sync::Arc<T> {
    fn collect(&self, ctx: &JobContext, scratch: &std::path::Path) -> Contributions {
        PluginRuntime::collect(&**self, ctx, scratch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Data dir `/srv/data` with both DBs inside it, archives in `/mnt/archive`.
    fn own() -> OwnFiles {
        let data = Path::new("/srv/data");
        OwnFiles {
            data_dir: data.into(),
            managed: vec![data.join("recordings"), data.join("logos")],
            own: vec![
                ("the state database".into(), data.join("state.db")),
                ("the content database".into(), data.join("app.db")),
                ("the archive folder".into(), "/mnt/archive".into()),
                ("the archive folder".into(), data.join("backups")),
                ("the plugins folder".into(), data.join("plugins")),
            ],
        }
    }

    fn check(mount: &str) -> Option<String> {
        check_mount(Path::new(mount), &own())
    }

    #[test]
    fn mount_may_not_be_or_contain_the_data_dir() {
        assert_eq!(
            check("/srv/data").as_deref(),
            Some(
                "/srv/data is the data folder: grant a folder outside it, or recordings/ or logos/ inside it"
            )
        );
        assert_eq!(
            check("/srv").as_deref(),
            Some(
                "/srv contains the data folder (/srv/data): a plugin may not reach Backstop's own files"
            )
        );
        assert_eq!(check("/srv/data2"), None, "a sibling is outside");
    }

    #[test]
    fn mount_may_not_reach_the_archive_or_plugins_folder() {
        assert_eq!(
            check("/mnt/archive").as_deref(),
            Some(
                "/mnt/archive is the archive folder (/mnt/archive): a plugin may not reach Backstop's own files"
            )
        );
        assert_eq!(
            check("/mnt/archive/old").as_deref(),
            Some(
                "/mnt/archive/old is inside the archive folder (/mnt/archive): a plugin may not reach Backstop's own files"
            )
        );
        assert_eq!(
            check("/mnt").as_deref(),
            Some(
                "/mnt contains the archive folder (/mnt/archive): a plugin may not reach Backstop's own files"
            )
        );
        assert_eq!(
            check("/srv/data/backups").as_deref(),
            Some(
                "/srv/data/backups is the archive folder (/srv/data/backups): a plugin may not reach Backstop's own files"
            )
        );
        assert_eq!(
            check("/srv/data/plugins/.cache").as_deref(),
            Some(
                "/srv/data/plugins/.cache is inside the plugins folder (/srv/data/plugins): a plugin may not reach Backstop's own files"
            )
        );
        // Component-wise: `/mnt/archive2` is another folder.
        assert_eq!(check("/mnt/archive2"), None);
        assert_eq!(check("/mnt/arch"), None);
    }

    #[test]
    fn mount_may_not_reach_a_database_kept_outside_the_data_dir() {
        let mut own = own();
        own.own.push((
            "the state database".into(),
            "/var/lib/backstop/state.db".into(),
        ));
        assert_eq!(
            check_mount(Path::new("/var/lib/backstop"), &own).as_deref(),
            Some(
                "/var/lib/backstop contains the state database (/var/lib/backstop/state.db): a plugin may not reach Backstop's own files"
            )
        );
        assert_eq!(check_mount(Path::new("/var/lib/other"), &own), None);
    }

    #[test]
    fn inside_the_data_dir_only_managed_folders_may_be_granted() {
        assert_eq!(check("/srv/data/recordings"), None);
        assert_eq!(check("/srv/data/logos"), None);
        assert_eq!(check("/srv/data/recordings/2024"), None);
        assert_eq!(
            check("/srv/data/elsewhere").as_deref(),
            Some(
                "/srv/data/elsewhere is inside the data folder (/srv/data): only recordings/ and logos/ there (or folders below them) may be granted"
            )
        );
        assert!(check("/srv/data/recordingsx").is_some(), "component-wise");
        assert_eq!(check("/etc/nginx"), None, "outside the data dir");
    }

    #[test]
    fn sqlite_file_of_a_url() {
        assert_eq!(
            sqlite_file("sqlite:///srv/data/state.db"),
            Some(PathBuf::from("/srv/data/state.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:///srv/data/app.db?mode=rwc"),
            Some(PathBuf::from("/srv/data/app.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
    }
}
