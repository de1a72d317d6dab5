//! How the engine sees plugins: through these traits only, so the pipeline can be tested
//! without wasmtime. `plugin-host` implements [`PluginRuntime`] with WebAssembly components;
//! [`NoPlugins`] is the empty implementation.
//!
//! Calls are synchronous: the engine invokes them from blocking threads, and the host runs
//! each call on its own runtime with its own deadline.

use std::path::PathBuf;

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
            HookPoint::PreBackup | HookPoint::PreArchive | HookPoint::PreRestore | HookPoint::PreApply
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
}

/// A note a plugin attached to a step; stored with the job and written to the manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Annotation {
    pub plugin: String,
    pub step: String,
    pub text: String,
}

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
}

/// The engine's view of the plugin system.
pub trait PluginRuntime: Send + Sync {
    /// Runs every enabled plugin's hook at `point`.
    fn run_hooks(&self, point: HookPoint, ctx: &JobContext) -> HookReport;
    /// Asks every enabled contributor for its content. `scratch` is a per-job folder the
    /// host may hand to plugins for generated files.
    fn collect(&self, ctx: &JobContext, scratch: &std::path::Path) -> Contributions;
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
/// (The recordings plugin replaces the second half when it is installed.)
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
            contributed_by: "backstop".into(),
        });
        if self.recordings && ctx.include_recordings {
            c.directories.push(DirectoryContribution {
                name: "recordings".into(),
                path: self.data_dir.join("recordings"),
                contributed_by: "backstop".into(),
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
