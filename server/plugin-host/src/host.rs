//! [`PluginHost`]: the engine's [`PluginRuntime`] made of WebAssembly components.
//!
//! It discovers plugins in `<plugins_dir>/<id>/{plugin.toml, plugin.wasm}`, holds the
//! admin's grants (loaded from and saved to the state DB by the engine), and turns every
//! engine call into sandboxed calls, one plugin at a time in id order, applying each
//! plugin's failure policy to what goes wrong and checking everything that comes back
//! (paths beneath their grants, sizes under their caps) before the engine sees it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use engine::plugins::{
    Annotation, ApprovedPermissions, Contributions, DirectoryContribution, DirectoryTarget,
    FileContribution, HookPoint, HookReport, JobContext, PluginLimits, PluginLogLine, PluginRecord,
    PluginRuntime, PluginUpdate, PluginView, RestoreInput, RestorePlan,
};
use engine::{Error, ErrorKind, Result};
use wasmtime_wasi::FsPerms;

use crate::manifest::{Access, Export, FailurePolicy, Manifest};
use crate::paths::{self, Expect};
use crate::sandbox::{
    CallError, CallOutcome, CallSetup, Compiled, Contribution, HookContext, HookOutcome, MAX_LINES,
    Request, Response, RestoreRequest, Sandbox, ScratchCap, WitHookPoint, WitJobContext,
};

/// Limits applied when neither the manifest nor the grants say, and the ceilings no grant
/// can exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_mb: u64,
    pub timeout_ms: u64,
    pub log_kb: u64,
    pub inline_kb: u64,
    /// How large `/scratch` may grow during a collect call (see `sandbox::ScratchCap`).
    pub scratch_mb: u64,
}

/// Startup configuration of the plugin host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where plugins are discovered: `<plugins_dir>/<id>/{plugin.toml, plugin.wasm}`.
    pub plugins_dir: PathBuf,
    /// Precompiled components (`None`: compile in memory at every start).
    pub cache_dir: Option<PathBuf>,
    /// Worker threads of the plugin runtime.
    pub threads: usize,
    pub defaults: Limits,
    pub ceilings: Limits,
    /// Dev mode: check plugin files before every job step and reload changed ones.
    pub dev_reload: bool,
}

impl HostConfig {
    /// The layout of DESIGN section 9: `<data>/plugins/`, precompiled components in
    /// `<data>/plugins/.cache/`.
    pub fn for_data_dir(data_dir: &Path) -> HostConfig {
        let plugins_dir = data_dir.join("plugins");
        HostConfig {
            cache_dir: Some(plugins_dir.join(".cache")),
            plugins_dir,
            threads: 2,
            defaults: Limits {
                memory_mb: 64,
                timeout_ms: 5_000,
                log_kb: 64,
                inline_kb: 256,
                // Config dumps and exports, not media: generous for those, and small next
                // to the archive folder's disk.
                scratch_mb: 256,
            },
            ceilings: Limits {
                memory_mb: 512,
                timeout_ms: 10 * 60_000,
                log_kb: 1024,
                inline_kb: 8 * 1024,
                scratch_mb: 16 * 1024,
            },
            dev_reload: false,
        }
    }
}

/// At most this many annotations per hook call, each at most [`MAX_ANNOTATION`] bytes.
const MAX_ANNOTATIONS: usize = 32;
const MAX_ANNOTATION: usize = 4 * 1024;
/// Contributions one collect call may return.
const MAX_CONTRIBUTIONS: usize = 10_000;
/// Jobs whose plugin logs are kept in memory, and lines kept per job.
const LOG_JOBS: usize = 32;
const LOG_LINES_PER_JOB: usize = 5_000;

/// One discovered plugin folder.
struct Installed {
    id: String,
    manifest: Option<Arc<Manifest>>,
    compiled: Option<Arc<Compiled>>,
    /// Why it cannot run (bad manifest, bad component, missing export).
    broken: Option<String>,
    /// (mtime, len) of both files, to notice changes in dev mode.
    stamp: Vec<(SystemTime, u64)>,
}

/// A plugin that may run now, with everything a call needs.
struct Ready {
    id: String,
    manifest: Arc<Manifest>,
    compiled: Arc<Compiled>,
    record: PluginRecord,
    limits: Limits,
    veto: bool,
    settings: Arc<serde_json::Map<String, serde_json::Value>>,
}

/// The WebAssembly plugin runtime. Build it once per process and share it as
/// `Arc<PluginHost>` (it is the engine's `Arc<dyn PluginRuntime>`).
pub struct PluginHost {
    config: HostConfig,
    sandbox: Sandbox,
    installed: RwLock<BTreeMap<String, Arc<Installed>>>,
    records: RwLock<BTreeMap<String, PluginRecord>>,
    /// Plugin id -> (error, when).
    last_errors: Mutex<HashMap<String, (String, String)>>,
    cancels: Mutex<HashMap<i64, Arc<AtomicBool>>>,
    logs: Mutex<VecDeque<(i64, Vec<PluginLogLine>)>>,
}

impl PluginHost {
    /// Starts the sandbox and loads every plugin found in `config.plugins_dir` (compiling
    /// each once; later starts reuse the precompiled cache). A broken plugin is listed as
    /// `broken` with its reason; it never stops the server from starting.
    pub fn new(config: HostConfig) -> Result<PluginHost> {
        std::fs::create_dir_all(&config.plugins_dir).map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "cannot create the plugins folder {}",
                    config.plugins_dir.display()
                ),
            )
            .with_source(e)
        })?;
        let sandbox = Sandbox::new(
            config.cache_dir.clone(),
            config.threads,
            config.ceilings.memory_mb << 20,
        )
        .map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("the plugin sandbox cannot start: {e:#}"),
            )
        })?;
        let host = PluginHost {
            config,
            sandbox,
            installed: RwLock::new(BTreeMap::new()),
            records: RwLock::new(BTreeMap::new()),
            last_errors: Mutex::new(HashMap::new()),
            cancels: Mutex::new(HashMap::new()),
            logs: Mutex::new(VecDeque::new()),
        };
        host.rescan();
        Ok(host)
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Re-reads the plugins folder: new plugins appear, removed ones disappear, changed
    /// files are loaded again (their compiled form is cached by content hash).
    pub fn rescan(&self) {
        let mut found = BTreeMap::new();
        let entries = match std::fs::read_dir(&self.config.plugins_dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(dir = %self.config.plugins_dir.display(), error = %e, "cannot read the plugins folder");
                return;
            }
        };
        let current = self.installed.read().expect("installed lock").clone();
        for entry in entries.flatten() {
            let dir = entry.path();
            let Some(id) = dir.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if id.starts_with('.') || !dir.is_dir() {
                continue;
            }
            let stamp = stamp_of(&dir);
            let unchanged = current.get(&id).filter(|p| p.stamp == stamp).cloned();
            let plugin = match unchanged {
                Some(p) => p,
                None => Arc::new(self.load_dir(&id, &dir, stamp)),
            };
            found.insert(id, plugin);
        }
        *self.installed.write().expect("installed lock") = found;
    }

    fn load_dir(&self, id: &str, dir: &Path, stamp: Vec<(SystemTime, u64)>) -> Installed {
        let mut p = Installed {
            id: id.to_owned(),
            manifest: None,
            compiled: None,
            broken: None,
            stamp,
        };
        let manifest = match std::fs::read_to_string(dir.join("plugin.toml")) {
            Ok(text) => Manifest::parse(&text).map_err(|e| e.to_string()),
            Err(e) => Err(format!("plugin.toml cannot be read: {e}")),
        };
        let manifest = match manifest {
            Ok(m) if m.id != id => Err(format!(
                "plugin.toml says id {:?} but the folder is named {id:?}",
                m.id
            )),
            other => other,
        };
        match manifest {
            Ok(m) => p.manifest = Some(Arc::new(m)),
            Err(e) => {
                tracing::warn!(plugin = id, error = %e, "plugin not loaded");
                p.broken = Some(e);
                return p;
            }
        }
        let m = p.manifest.clone().expect("set above");
        match self.sandbox.load(&dir.join("plugin.wasm")) {
            Ok(c) => {
                let missing: Vec<&str> = m
                    .exports
                    .iter()
                    .filter(|e| match e {
                        Export::Hooks => !c.exports_hooks(),
                        Export::Contributor => !c.exports_contributor(),
                        Export::Restorer => !c.exports_restorer(),
                    })
                    .map(|e| e.as_str())
                    .collect();
                if missing.is_empty() {
                    tracing::info!(plugin = id, version = %m.version, sha256 = %c.sha256, "plugin loaded");
                    p.compiled = Some(c);
                } else {
                    p.broken = Some(format!(
                        "plugin.toml lists exports the component does not have: {}",
                        missing.join(", ")
                    ));
                }
            }
            Err(e) => p.broken = Some(e.to_string()),
        }
        if let Some(b) = &p.broken {
            tracing::warn!(plugin = id, error = %b, "plugin not loaded");
        }
        p
    }

    /// Installs (or replaces) a plugin from its manifest and component: both are checked
    /// (strict manifest, compilable component with the listed exports) before anything is
    /// written, then moved into place. The plugin starts disabled until the admin enables it;
    /// an upgrade asking for more permissions waits for re-approval.
    pub fn install_plugin(&self, manifest_text: &str, wasm: &[u8]) -> Result<PluginView> {
        let manifest = Manifest::parse(manifest_text).map_err(|e| Error::invalid(e.to_string()))?;
        let id = manifest.id.clone();
        let staging = self
            .config
            .plugins_dir
            .join(format!(".install-{id}-{}", std::process::id()));
        let io = |e: std::io::Error| Error::internal(format!("cannot install plugin {id}"), e);
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(io)?;
        std::fs::write(staging.join("plugin.toml"), manifest_text).map_err(io)?;
        std::fs::write(staging.join("plugin.wasm"), wasm).map_err(io)?;
        let check = self.load_dir(&id, &staging, Vec::new());
        // The folder name differs from the id while staged; only that mismatch is expected.
        if let Some(b) = check.broken {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(Error::invalid(format!(
                "plugin {id} was not installed: {b}"
            )));
        }
        let dest = self.config.plugins_dir.join(&id);
        let old = self
            .config
            .plugins_dir
            .join(format!(".old-{id}-{}", std::process::id()));
        if dest.exists() {
            std::fs::rename(&dest, &old).map_err(io)?;
        }
        std::fs::rename(&staging, &dest).map_err(io)?;
        let _ = std::fs::remove_dir_all(&old);
        self.rescan();
        self.view(&id)
            .ok_or_else(|| Error::internal(format!("plugin {id} vanished after install"), "rescan"))
    }

    /// Copies plugin folders (`<from>/<id>/{plugin.toml, plugin.wasm}`) that are not installed
    /// yet, e.g. the first-party plugins of `plugins/build.sh`. Never overwrites an installed
    /// plugin (an admin's upgrade wins). Returns the ids copied.
    pub fn seed_from(&self, from: &Path, ids: &[&str]) -> Result<Vec<String>> {
        let mut copied = Vec::new();
        for id in ids {
            let (src, dest) = (from.join(id), self.config.plugins_dir.join(id));
            if dest.exists() || !src.join("plugin.wasm").is_file() {
                continue;
            }
            let io = |e: std::io::Error| {
                Error::internal(format!("cannot install the bundled plugin {id}"), e)
            };
            std::fs::create_dir_all(&dest).map_err(io)?;
            for f in ["plugin.toml", "plugin.wasm"] {
                std::fs::copy(src.join(f), dest.join(f)).map_err(io)?;
            }
            copied.push((*id).to_owned());
        }
        if !copied.is_empty() {
            self.rescan();
        }
        Ok(copied)
    }

    fn refresh_if_dev(&self) {
        if self.config.dev_reload {
            self.rescan();
        }
    }

    fn record(&self, id: &str) -> PluginRecord {
        self.records
            .read()
            .expect("records lock")
            .get(id)
            .cloned()
            .unwrap_or_else(|| PluginRecord {
                plugin_id: id.to_owned(),
                ..PluginRecord::default()
            })
    }

    /// The enabled, approved, loadable plugins that export `export`, in id order.
    fn ready(&self, export: Export) -> Vec<Ready> {
        let installed = self.installed.read().expect("installed lock");
        installed
            .values()
            .filter_map(|p| self.ready_one(p, export))
            .collect()
    }

    fn ready_one(&self, p: &Installed, export: Export) -> Option<Ready> {
        let (Some(manifest), Some(compiled)) = (&p.manifest, &p.compiled) else {
            return None;
        };
        if !manifest.exports(export) {
            return None;
        }
        let record = self.record(&p.id);
        if !record.enabled || needs_approval(manifest, &record) {
            return None;
        }
        let mut settings = manifest.default_settings();
        settings.extend(record.settings.clone());
        Some(Ready {
            id: p.id.clone(),
            limits: self.effective_limits(manifest, &record.grants.limits),
            veto: manifest.permissions.veto && record.grants.veto,
            manifest: manifest.clone(),
            compiled: compiled.clone(),
            record,
            settings: Arc::new(settings),
        })
    }

    fn effective_limits(&self, m: &Manifest, granted: &PluginLimits) -> Limits {
        let (d, c) = (self.config.defaults, self.config.ceilings);
        let pick =
            |g: Option<u64>, m: Option<u64>, d: u64, c: u64| g.or(m).unwrap_or(d).clamp(1, c);
        Limits {
            memory_mb: pick(
                granted.memory_mb,
                m.limits.memory_mb,
                d.memory_mb,
                c.memory_mb,
            ),
            timeout_ms: pick(
                granted.timeout_ms,
                m.limits.timeout_ms,
                d.timeout_ms,
                c.timeout_ms,
            ),
            log_kb: pick(granted.log_kb, m.limits.log_kb, d.log_kb, c.log_kb),
            inline_kb: pick(
                granted.inline_kb,
                m.limits.inline_kb,
                d.inline_kb,
                c.inline_kb,
            ),
            scratch_mb: pick(
                granted.scratch_mb,
                m.limits.scratch_mb,
                d.scratch_mb,
                c.scratch_mb,
            ),
        }
    }

    fn cancel_flag(&self, job_id: i64) -> Arc<AtomicBool> {
        self.cancels
            .lock()
            .expect("cancel lock")
            .entry(job_id)
            .or_default()
            .clone()
    }

    /// Call setup: limits, settings, and the mounts this phase may see.
    fn setup(
        &self,
        p: &Ready,
        preopens: Vec<(PathBuf, String, FsPerms)>,
        ctx: &JobContext,
    ) -> CallSetup {
        CallSetup {
            progress: ctx.progress.clone(),
            plugin: p.id.clone(),
            memory_bytes: p.limits.memory_mb << 20,
            timeout: Duration::from_millis(p.limits.timeout_ms),
            log_bytes: (p.limits.log_kb << 10) as usize,
            preopens,
            scratch: None,
            settings: p.settings.clone(),
            cancel: self.cancel_flag(ctx.job_id),
        }
    }

    /// Granted mounts at `/mounts/<name>`: those with `access`, writable when `writable`.
    fn mounts(
        &self,
        p: &Ready,
        access: Option<Access>,
        writable: bool,
    ) -> Vec<(PathBuf, String, FsPerms)> {
        p.manifest
            .mounts
            .iter()
            .filter(|(_, req)| access.is_none_or(|a| req.access.contains(&a)))
            .filter_map(|(name, _)| {
                let host = p.record.grants.mounts.get(name)?;
                let perms = if writable {
                    FsPerms::ReadWrite
                } else {
                    FsPerms::ReadOnly
                };
                Some((host.clone(), format!("/mounts/{name}"), perms))
            })
            .collect()
    }

    /// Keeps the call's log for the job and the plugin's last error; says whether output
    /// was dropped over the cap.
    fn keep_log(&self, job_id: i64, p: &Ready, out: &CallOutcome) -> Option<String> {
        tracing::debug!(plugin = %p.id, job = job_id, elapsed_us = out.elapsed.as_micros() as u64, ok = out.result.is_ok(), "plugin call");
        for l in &out.log {
            tracing::debug!(target: "backstop::plugin", plugin = %l.plugin, level = %l.level, "{}", l.message);
        }
        let mut lines = out.log.clone();
        let dropped = (out.log_dropped > 0).then(|| {
            format!(
                "plugin {}: log output over its {} KiB / {MAX_LINES}-line cap was dropped ({} bytes)",
                p.id, p.limits.log_kb, out.log_dropped
            )
        });
        if let Some(d) = &dropped {
            lines.push(PluginLogLine {
                plugin: p.id.clone(),
                level: "warn".into(),
                message: d.clone(),
                at: engine::state::now_rfc3339(),
            });
        }
        let mut logs = self.logs.lock().expect("log lock");
        if let Some((_, v)) = logs.iter_mut().find(|(id, _)| *id == job_id) {
            let room = LOG_LINES_PER_JOB.saturating_sub(v.len());
            v.extend(lines.into_iter().take(room));
        } else {
            if logs.len() >= LOG_JOBS {
                logs.pop_front();
            }
            lines.truncate(LOG_LINES_PER_JOB);
            logs.push_back((job_id, lines));
        }
        dropped
    }

    /// Applies the failure policy to a failed call.
    fn fail(
        &self,
        p: &Ready,
        step: &str,
        e: &CallError,
        warnings: &mut Vec<String>,
        abort: &mut Option<String>,
    ) {
        let msg = format!("plugin {} at {step}: {e}", p.id);
        self.last_errors
            .lock()
            .expect("errors lock")
            .insert(p.id.clone(), (msg.clone(), engine::state::now_rfc3339()));
        match p.manifest.failure_policy {
            FailurePolicy::Ignore => {
                tracing::info!(plugin = %p.id, step, error = %e, "plugin call failed (policy: ignore)")
            }
            FailurePolicy::Warn => {
                tracing::warn!(plugin = %p.id, step, error = %e, "plugin call failed (policy: warn)");
                warnings.push(msg);
            }
            FailurePolicy::Abort => {
                tracing::warn!(plugin = %p.id, step, error = %e, "plugin call failed (policy: abort)");
                if abort.is_none() {
                    *abort = Some(msg);
                }
            }
        }
    }

    /// Checks one plugin's contributions; all or nothing.
    fn accept(
        &self,
        p: &Ready,
        list: Vec<Contribution>,
        own_scratch: &Path,
        scratch: &Path,
        taken: &mut BTreeSet<String>,
    ) -> std::result::Result<(Vec<DirectoryContribution>, Vec<FileContribution>), String> {
        if list.len() > MAX_CONTRIBUTIONS {
            return Err(format!(
                "{} contributions, over the limit of {MAX_CONTRIBUTIONS}",
                list.len()
            ));
        }
        let inline_cap = (p.limits.inline_kb << 10) as usize;
        let mut inline_total = 0usize;
        let mut names = BTreeSet::new();
        let mut archive_paths = BTreeSet::new();
        let mut dirs = Vec::new();
        let mut files = Vec::new();
        for c in list {
            match c {
                Contribution::Directory(d) => {
                    if !crate::manifest::valid_name(&d.name) {
                        return Err(format!(
                            "directory name {:?} must be letters, digits, '-', '_' or '.'",
                            d.name
                        ));
                    }
                    if taken.contains(&d.name) || names.contains(&d.name) {
                        return Err(format!(
                            "directory name {:?} is already used in this archive",
                            d.name
                        ));
                    }
                    let Some(req) = p.manifest.mounts.get(&d.mount) else {
                        return Err(format!(
                            "mount {:?} is not one of the mounts in its plugin.toml",
                            d.mount
                        ));
                    };
                    if !req.access.contains(&Access::Backup) {
                        return Err(format!("mount {:?} has no backup access", d.mount));
                    }
                    let Some(root) = p.record.grants.mounts.get(&d.mount) else {
                        return Err(format!("mount {:?} is not granted", d.mount));
                    };
                    let path = paths::resolve_beneath(
                        root,
                        &d.path,
                        Expect::Directory,
                        &format!("mount {:?}", d.mount),
                    )
                    .map_err(|e| e.to_string())?;
                    names.insert(d.name.clone());
                    dirs.push(DirectoryContribution {
                        name: d.name,
                        path,
                        contributed_by: p.id.clone(),
                    });
                }
                Contribution::ScratchFile(f) => {
                    let relative =
                        paths::archive_path(&f.archive_path).map_err(|e| e.to_string())?;
                    if !archive_paths.insert(relative.clone()) {
                        return Err(format!("archive path {relative:?} is used twice"));
                    }
                    let path =
                        paths::resolve_beneath(own_scratch, &f.path, Expect::File, "/scratch")
                            .map_err(|e| e.to_string())?;
                    files.push(FileContribution {
                        plugin: p.id.clone(),
                        relative,
                        path,
                    });
                }
                Contribution::Inline(b) => {
                    let relative =
                        paths::archive_path(&b.archive_path).map_err(|e| e.to_string())?;
                    if !archive_paths.insert(relative.clone()) {
                        return Err(format!("archive path {relative:?} is used twice"));
                    }
                    inline_total += b.data.len();
                    if b.data.len() > inline_cap || inline_total > inline_cap {
                        return Err(format!(
                            "inline blob {relative:?} is {} bytes; inline output is limited to {inline_cap} bytes per call",
                            b.data.len()
                        ));
                    }
                    // Written by the host, outside the plugin's own /scratch, so a plugin
                    // cannot race it with a symlink.
                    let path = scratch.join(format!("{}.inline", p.id)).join(&relative);
                    let write = || -> std::io::Result<()> {
                        if let Some(parent) = path.parent() {
                            std::fs::create_dir_all(parent)?;
                        }
                        std::fs::write(&path, &b.data)
                    };
                    write()
                        .map_err(|e| format!("inline blob {relative:?} cannot be stored: {e}"))?;
                    files.push(FileContribution {
                        plugin: p.id.clone(),
                        relative,
                        path,
                    });
                }
            }
        }
        taken.extend(names);
        Ok((dirs, files))
    }

    /// Where a placement goes: beneath the mount's grant, existing or not yet (its parent
    /// must exist and lie beneath the grant).
    fn placement_target(
        &self,
        p: &Ready,
        mount: &str,
        rel: &str,
    ) -> std::result::Result<PathBuf, String> {
        let Some(req) = p.manifest.mounts.get(mount) else {
            return Err(format!(
                "mount {mount:?} is not one of the mounts in its plugin.toml"
            ));
        };
        if !req.access.contains(&Access::Restore) {
            return Err(format!("mount {mount:?} has no restore access"));
        }
        let Some(root) = p.record.grants.mounts.get(mount) else {
            return Err(format!("mount {mount:?} is not granted"));
        };
        let within = format!("mount {mount:?}");
        match paths::resolve_beneath(root, rel, Expect::Directory, &within) {
            Ok(p) => Ok(p),
            Err(paths::PathError::Missing { .. }) => {
                let rel_path = Path::new(rel);
                let (Some(parent), Some(name)) = (rel_path.parent(), rel_path.file_name()) else {
                    return Err(format!("path {rel:?} in {within} names no folder"));
                };
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                let parent = paths::resolve_beneath(
                    root,
                    &parent.to_string_lossy(),
                    Expect::Directory,
                    &within,
                )
                .map_err(|e| e.to_string())?;
                Ok(parent.join(name))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn view(&self, id: &str) -> Option<PluginView> {
        self.describe().into_iter().find(|v| v.id == id)
    }
}

/// Whether the installed manifest asks for more than the admin approved (a new mount, more
/// access, the veto), whatever its version string says: a plugin replaced by one that keeps
/// the version but asks for more waits for approval too. Records saved before approvals
/// were kept (an empty approved set) count as approving the version they name.
fn needs_approval(m: &Manifest, r: &PluginRecord) -> bool {
    let approved = &r.grants.approved;
    let legacy = approved.mounts.is_empty() && !approved.veto;
    if legacy && r.approved_version.as_deref() == Some(m.version.as_str()) {
        return false;
    }
    (m.permissions.veto && !approved.veto)
        || m.mounts.iter().any(|(name, req)| {
            let had = approved.mounts.get(name);
            req.access
                .iter()
                .any(|a| !had.is_some_and(|v| v.iter().any(|x| x == a.as_str())))
        })
}

fn requested_permissions(m: &Manifest) -> ApprovedPermissions {
    ApprovedPermissions {
        mounts: m
            .mounts
            .iter()
            .map(|(n, r)| {
                (
                    n.clone(),
                    r.access.iter().map(|a| a.as_str().to_owned()).collect(),
                )
            })
            .collect(),
        veto: m.permissions.veto,
    }
}

fn stamp_of(dir: &Path) -> Vec<(SystemTime, u64)> {
    ["plugin.toml", "plugin.wasm"]
        .iter()
        .map(|f| {
            std::fs::metadata(dir.join(f))
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
                .unwrap_or((SystemTime::UNIX_EPOCH, 0))
        })
        .collect()
}

fn wit_point(p: HookPoint) -> WitHookPoint {
    match p {
        HookPoint::PreBackup => WitHookPoint::PreBackup,
        HookPoint::PostCollect => WitHookPoint::PostCollect,
        HookPoint::PreArchive => WitHookPoint::PreArchive,
        HookPoint::PostArchive => WitHookPoint::PostArchive,
        HookPoint::PostBackup => WitHookPoint::PostBackup,
        HookPoint::PreRestore => WitHookPoint::PreRestore,
        HookPoint::PostExtract => WitHookPoint::PostExtract,
        HookPoint::PreApply => WitHookPoint::PreApply,
        HookPoint::PostRestore => WitHookPoint::PostRestore,
    }
}

fn wit_job(ctx: &JobContext) -> WitJobContext {
    WitJobContext {
        job_id: ctx.job_id,
        kind: ctx.kind.clone(),
        trigger: ctx.trigger.clone(),
        include_recordings: ctx.include_recordings,
        facts: ctx.facts.clone(),
    }
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A reply of another kind than the call (a host bug, since the sandbox dispatches each
/// request to its own export): an error under the plugin's failure policy, never skipped.
fn wrong_reply(reply: &Response, call: &str) -> CallError {
    let got = match reply {
        Response::Hook(_) => "hook",
        Response::Collect(_) => "collect",
        Response::Plan(_) => "restore plan",
        Response::Restore(_) => "restore",
    };
    CallError::Output(format!(
        "a {got} reply to a {call} call (a Backstop bug; please report it)"
    ))
}

fn annotation(plugin: &str, step: &str, text: String) -> Annotation {
    Annotation {
        plugin: plugin.to_owned(),
        step: step.to_owned(),
        text,
    }
}

/// What every per-plugin loop reports besides its own results: the failures the policy
/// keeps (`warn`) and the first one that stops the job (`abort`).
trait Failures {
    fn failures(&mut self) -> (&mut Vec<String>, &mut Option<String>);
    /// The loop ends here: a plugin aborted the job (or vetoed it).
    fn stops(&self) -> bool;
}

impl Failures for HookReport {
    fn failures(&mut self) -> (&mut Vec<String>, &mut Option<String>) {
        (&mut self.warnings, &mut self.abort)
    }
    fn stops(&self) -> bool {
        self.abort.is_some() || self.veto.is_some()
    }
}

impl Failures for Contributions {
    fn failures(&mut self) -> (&mut Vec<String>, &mut Option<String>) {
        (&mut self.warnings, &mut self.abort)
    }
    fn stops(&self) -> bool {
        self.abort.is_some()
    }
}

impl Failures for RestorePlan {
    fn failures(&mut self) -> (&mut Vec<String>, &mut Option<String>) {
        (&mut self.warnings, &mut self.abort)
    }
    fn stops(&self) -> bool {
        self.abort.is_some()
    }
}

/// What one plugin's turn in a loop came to: nothing to do, done, or a failed call.
type Turn = Option<std::result::Result<(), CallError>>;

impl PluginHost {
    /// One call in the sandbox. Its log is kept for the job; a notice that output was dropped
    /// over the cap becomes a warning.
    fn call(
        &self,
        p: &Ready,
        setup: CallSetup,
        request: Request,
        ctx: &JobContext,
        warnings: &mut Vec<String>,
    ) -> std::result::Result<Response, CallError> {
        let out = self.sandbox.call(p.compiled.clone(), setup, request);
        if let Some(d) = self.keep_log(ctx.job_id, p, &out) {
            warnings.push(d);
        }
        out.result
    }

    /// The loop all four steps share: `turn` runs for each plugin in order; a failed turn
    /// gets that plugin's failure policy ([`PluginHost::fail`]), and the loop ends at the
    /// first abort or veto.
    fn each<'a, T, R: Failures>(
        &self,
        plugins: impl IntoIterator<Item = (&'a Ready, T)>,
        step: &str,
        report: &mut R,
        mut turn: impl FnMut(&'a Ready, T, &mut R) -> Turn,
    ) {
        for (p, item) in plugins {
            if let Some(Err(e)) = turn(p, item, report) {
                let (warnings, abort) = report.failures();
                self.fail(p, step, &e, warnings, abort);
            }
            if report.stops() {
                break;
            }
        }
    }
}

impl PluginRuntime for PluginHost {
    fn run_hooks(&self, point: HookPoint, ctx: &JobContext) -> HookReport {
        self.refresh_if_dev();
        let step = point.as_str();
        let mut report = HookReport::default();
        let ready = self.ready(Export::Hooks);
        self.each(ready.iter().map(|p| (p, ())), step, &mut report, |p, (), report| {
            let setup = self.setup(p, self.mounts(p, None, false), ctx);
            let request = Request::Hook(HookContext {
                point: wit_point(point),
                job: wit_job(ctx),
            });
            let outcome = match self.call(p, setup, request, ctx, &mut report.warnings) {
                Ok(Response::Hook(o)) => o,
                Ok(other) => return Some(Err(wrong_reply(&other, "hook"))),
                Err(e) => return Some(Err(e)),
            };
            match outcome {
                HookOutcome::Proceed(notes) => {
                    let too_long = notes.iter().find(|n| n.len() > MAX_ANNOTATION);
                    if let Some(n) = too_long {
                        return Some(Err(CallError::Output(format!(
                            "an annotation of {} bytes; the limit is {MAX_ANNOTATION}",
                            n.len()
                        ))));
                    }
                    if notes.len() > MAX_ANNOTATIONS {
                        return Some(Err(CallError::Output(format!(
                            "{} annotations; the limit is {MAX_ANNOTATIONS}",
                            notes.len()
                        ))));
                    }
                    report
                        .annotations
                        .extend(notes.into_iter().map(|t| annotation(&p.id, step, t)));
                }
                HookOutcome::Veto(reason) => {
                    let reason = cut(&reason, MAX_ANNOTATION);
                    if point.is_gate() && p.veto {
                        report.veto = Some((p.id.clone(), reason));
                    } else if point.is_gate() {
                        report.warnings.push(format!(
                            "plugin {} asked to stop the job at {step} but holds no veto grant; the job went on ({reason})",
                            p.id
                        ));
                        report.annotations.push(annotation(
                            &p.id,
                            step,
                            format!("veto ignored (no veto grant): {reason}"),
                        ));
                    } else {
                        report.annotations.push(annotation(
                            &p.id,
                            step,
                            format!("veto ignored ({step} is not a gate): {reason}"),
                        ));
                    }
                }
            }
            Some(Ok(()))
        });
        report
    }

    fn collect(&self, ctx: &JobContext, scratch: &Path) -> Contributions {
        self.refresh_if_dev();
        let mut c = Contributions::default();
        let mut taken: BTreeSet<String> = BTreeSet::from(["logos".to_owned()]);
        let ready = self.ready(Export::Contributor);
        self.each(
            ready.iter().map(|p| (p, ())),
            "collect",
            &mut c,
            |p, (), c| {
                let own = scratch.join(&p.id);
                let _ = std::fs::remove_dir_all(&own);
                if let Err(e) = std::fs::create_dir_all(&own) {
                    return Some(Err(CallError::Start(format!(
                        "its scratch folder {} cannot be created: {e}",
                        own.display()
                    ))));
                }
                // A name another enabled plugin `provides` is reserved for it.
                let mut reserved = taken.clone();
                for other in ready.iter().filter(|o| o.id != p.id) {
                    reserved.extend(other.manifest.provides.iter().cloned());
                }
                let mut preopens = self.mounts(p, Some(Access::Backup), false);
                preopens.push((own.clone(), "/scratch".into(), FsPerms::ReadWrite));
                let mut setup = self.setup(p, preopens, ctx);
                setup.scratch = Some(ScratchCap {
                    dir: own.clone(),
                    mb: p.limits.scratch_mb,
                });
                let reply = self.call(
                    p,
                    setup,
                    Request::Collect(wit_job(ctx)),
                    ctx,
                    &mut c.warnings,
                );
                let accepted = match reply {
                    Ok(Response::Collect(Ok(list))) => self
                        .accept(p, list, &own, scratch, &mut reserved)
                        .map_err(CallError::Output),
                    Ok(Response::Collect(Err(msg))) => {
                        Err(CallError::Plugin(cut(&msg, MAX_ANNOTATION)))
                    }
                    Ok(other) => Err(wrong_reply(&other, "collect")),
                    Err(e) => Err(e),
                };
                match accepted {
                    Ok((dirs, files)) => {
                        taken.extend(dirs.iter().map(|d| d.name.clone()));
                        if !dirs.is_empty() || !files.is_empty() {
                            c.plugins.push((p.id.clone(), p.manifest.version.clone()));
                        }
                        c.directories.extend(dirs);
                        c.files.extend(files);
                        Some(Ok(()))
                    }
                    Err(e) => {
                        // Nothing of a failed call is archived: free its disk now rather than
                        // at the end of the job (one stopped for filling /scratch holds the
                        // most).
                        let _ = std::fs::remove_dir_all(&own);
                        Some(Err(e))
                    }
                }
            },
        );
        c
    }

    fn provides_directory(&self, name: &str) -> bool {
        self.ready(Export::Contributor)
            .iter()
            .any(|p| p.manifest.provides.iter().any(|n| n == name))
    }

    fn plan_restore(&self, ctx: &JobContext, input: &RestoreInput) -> RestorePlan {
        self.refresh_if_dev();
        let mut plan = RestorePlan::default();
        let ready = self.ready(Export::Restorer);
        self.each(
            ready.iter().map(|p| (p, ())),
            "restore plan",
            &mut plan,
            |p, (), plan| {
                let dirs: Vec<String> = input
                    .directories
                    .iter()
                    .filter(|d| d.contributed_by == p.id)
                    .map(|d| d.name.clone())
                    .collect();
                if dirs.is_empty() {
                    return None;
                }
                let archived_version = input
                    .plugins
                    .iter()
                    .find(|a| a.id == p.id)
                    .map(|a| a.version.clone())
                    .unwrap_or_default();
                let req = RestoreRequest {
                    job: wit_job(ctx),
                    directories: dirs.clone(),
                    archived_version,
                    staged_files: None,
                };
                let setup = self.setup(p, self.mounts(p, None, false), ctx);
                let placements =
                    match self.call(p, setup, Request::Plan(req), ctx, &mut plan.warnings) {
                        Ok(Response::Plan(Ok(placements))) => placements,
                        Ok(Response::Plan(Err(msg))) => {
                            return Some(Err(CallError::Plugin(cut(&msg, MAX_ANNOTATION))));
                        }
                        Ok(other) => return Some(Err(wrong_reply(&other, "restore plan"))),
                        Err(e) => return Some(Err(e)),
                    };
                // All or nothing: one bad placement refuses the plugin's whole plan.
                let mut targets: Vec<DirectoryTarget> = Vec::new();
                for pl in placements {
                    if !dirs.contains(&pl.name) || targets.iter().any(|t| t.name == pl.name) {
                        return Some(Err(CallError::Output(format!(
                            "a placement for data/{}/, which it did not contribute (or twice)",
                            pl.name
                        ))));
                    }
                    match self.placement_target(p, &pl.mount, &pl.path) {
                        Ok(target) => targets.push(DirectoryTarget {
                            name: pl.name,
                            plugin: p.id.clone(),
                            target,
                        }),
                        Err(e) => return Some(Err(CallError::Output(e))),
                    }
                }
                plan.targets.extend(targets);
                Some(Ok(()))
            },
        );
        plan.warnings
            .extend(engine::plugins::unplaced_warnings(input, &plan.targets));
        plan
    }

    fn restore(&self, ctx: &JobContext, input: &RestoreInput) -> HookReport {
        self.refresh_if_dev();
        let mut report = HookReport::default();
        let ready = self.ready(Export::Restorer);
        let mut work = Vec::new();
        for a in &input.plugins {
            match ready.iter().find(|p| p.id == a.id) {
                Some(p) => work.push((p, a)),
                None if a.files.is_some() => report.warnings.push(format!(
                    "plugins/{}/ in the archive was not restored: plugin {} is not installed, not enabled, or has no restorer",
                    a.id, a.id
                )),
                None => {}
            }
        }
        self.each(work, "restore", &mut report, |p, a, report| {
            // Restore mounts writable, backup-only mounts read-only, staged files read-only.
            let mut preopens = self.mounts(p, Some(Access::Restore), true);
            for (host, guest, _) in self.mounts(p, Some(Access::Backup), false) {
                if !preopens.iter().any(|(_, g, _)| *g == guest) {
                    preopens.push((host, guest, FsPerms::ReadOnly));
                }
            }
            if let Some(files) = &a.files {
                preopens.push((files.clone(), "/staged".into(), FsPerms::ReadOnly));
            }
            let req = RestoreRequest {
                job: wit_job(ctx),
                directories: input
                    .directories
                    .iter()
                    .filter(|d| d.contributed_by == p.id)
                    .map(|d| d.name.clone())
                    .collect(),
                archived_version: a.version.clone(),
                staged_files: a.files.as_ref().map(|_| "/staged".to_owned()),
            };
            let setup = self.setup(p, preopens, ctx);
            match self.call(p, setup, Request::Restore(req), ctx, &mut report.warnings) {
                Ok(Response::Restore(Ok(notes))) => {
                    report.annotations.extend(
                        notes
                            .into_iter()
                            .take(MAX_ANNOTATIONS)
                            .map(|t| annotation(&p.id, "restore", cut(&t, MAX_ANNOTATION))),
                    );
                    Some(Ok(()))
                }
                Ok(Response::Restore(Err(msg))) => {
                    Some(Err(CallError::Plugin(cut(&msg, MAX_ANNOTATION))))
                }
                Ok(other) => Some(Err(wrong_reply(&other, "restore"))),
                Err(e) => Some(Err(e)),
            }
        });
        report
    }

    fn cancel_job(&self, job_id: i64) {
        self.cancel_flag(job_id).store(true, Ordering::Relaxed);
    }

    fn job_finished(&self, job_id: i64) {
        self.cancels.lock().expect("cancel lock").remove(&job_id);
    }

    fn describe(&self) -> Vec<PluginView> {
        self.refresh_if_dev();
        let installed = self.installed.read().expect("installed lock");
        let errors = self.last_errors.lock().expect("errors lock").clone();
        installed
            .values()
            .map(|p| {
                let record = self.record(&p.id);
                let last = errors.get(&p.id).cloned();
                let (last_error, last_error_at) = match (&p.broken, last) {
                    (Some(b), _) => (Some(b.clone()), None),
                    (None, Some((e, at))) => (Some(e), Some(at)),
                    (None, None) => (None, None),
                };
                let m = p.manifest.as_deref();
                let state = if p.broken.is_some() {
                    "broken"
                } else if !record.enabled {
                    "disabled"
                } else if m.is_some_and(|m| needs_approval(m, &record)) {
                    "needs-approval"
                } else {
                    "enabled"
                };
                let limits = m
                    .map(|m| self.effective_limits(m, &record.grants.limits))
                    .unwrap_or(self.config.defaults);
                let mut settings = m.map(|m| m.default_settings()).unwrap_or_default();
                settings.extend(record.settings.clone());
                PluginView {
                    id: p.id.clone(),
                    name: m.map(|m| m.name.clone()).unwrap_or_else(|| p.id.clone()),
                    version: m.map(|m| m.version.clone()).unwrap_or_default(),
                    description: m.map(|m| m.description.clone()).unwrap_or_default(),
                    api: m.map(|m| m.api.clone()).unwrap_or_default(),
                    exports: m
                        .map(|m| m.exports.iter().map(|e| e.as_str().to_owned()).collect())
                        .unwrap_or_default(),
                    state: state.to_owned(),
                    enabled: record.enabled,
                    approved_version: record.approved_version.clone(),
                    failure_policy: m
                        .map(|m| m.failure_policy.as_str().to_owned())
                        .unwrap_or_default(),
                    requested_mounts: m.map(|m| m.requested_mounts()).unwrap_or_default(),
                    requests_veto: m.is_some_and(|m| m.permissions.veto),
                    grants: record.grants.clone(),
                    limits: PluginLimits {
                        memory_mb: Some(limits.memory_mb),
                        timeout_ms: Some(limits.timeout_ms),
                        log_kb: Some(limits.log_kb),
                        inline_kb: Some(limits.inline_kb),
                        scratch_mb: Some(limits.scratch_mb),
                    },
                    settings,
                    settings_schema: m.map(|m| m.settings_schema()).unwrap_or_default(),
                    last_error,
                    last_error_at,
                }
            })
            .collect()
    }

    fn job_log(&self, job_id: i64) -> Vec<PluginLogLine> {
        let logs = self.logs.lock().expect("log lock");
        logs.iter()
            .find(|(id, _)| *id == job_id)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    fn load_records(&self, records: Vec<PluginRecord>) {
        *self.records.write().expect("records lock") = records
            .into_iter()
            .map(|r| (r.plugin_id.clone(), r))
            .collect();
    }

    fn plan_update(&self, id: &str, update: &PluginUpdate) -> Result<PluginRecord> {
        let installed = self
            .installed
            .read()
            .expect("installed lock")
            .get(id)
            .cloned();
        let Some(p) = installed else {
            return Err(Error::not_found(format!("no plugin {id:?} is installed")));
        };
        let Some(m) = p.manifest.clone().filter(|_| p.broken.is_none()) else {
            return Err(Error::conflict(format!(
                "plugin {id} cannot be configured: {}",
                p.broken.as_deref().unwrap_or("it is broken")
            )));
        };
        let mut record = self.record(id);
        let mut fields = BTreeMap::new();
        if let Some(g) = &update.grants {
            if let Some(mounts) = &g.mounts {
                let mut checked = BTreeMap::new();
                for (name, path) in mounts {
                    let key = format!("grants.mounts.{name}");
                    if !m.mounts.contains_key(name) {
                        fields.insert(key, "this plugin requests no such mount".to_owned());
                    } else if !path.is_absolute() {
                        fields.insert(key, "give an absolute folder path".to_owned());
                    } else {
                        match path.canonicalize() {
                            Ok(c) if c.is_dir() => {
                                checked.insert(name.clone(), c);
                            }
                            _ => {
                                fields.insert(
                                    key,
                                    format!("{} is not an existing folder", path.display()),
                                );
                            }
                        }
                    }
                }
                record.grants.mounts = checked;
            }
            if let Some(veto) = g.veto {
                if veto && !m.permissions.veto {
                    fields.insert(
                        "grants.veto".into(),
                        "this plugin does not request the veto".into(),
                    );
                }
                record.grants.veto = veto;
            }
            if let Some(limits) = &g.limits {
                let c = self.config.ceilings;
                for (name, v, max) in [
                    ("memory_mb", limits.memory_mb, c.memory_mb),
                    ("timeout_ms", limits.timeout_ms, c.timeout_ms),
                    ("log_kb", limits.log_kb, c.log_kb),
                    ("inline_kb", limits.inline_kb, c.inline_kb),
                    ("scratch_mb", limits.scratch_mb, c.scratch_mb),
                ] {
                    if let Some(v) = v
                        && (v == 0 || v > max)
                    {
                        fields.insert(
                            format!("grants.limits.{name}"),
                            format!("must be between 1 and {max}"),
                        );
                    }
                }
                record.grants.limits = *limits;
            }
        }
        if let Some(settings) = &update.settings {
            if let Err(errs) = m.check_settings(settings) {
                fields.extend(errs);
            }
            record.settings = settings.clone();
        }
        if let Some(enabled) = update.enabled {
            record.enabled = enabled;
            if enabled {
                // Enabling approves what this version requests.
                record.approved_version = Some(m.version.clone());
                record.grants.approved = requested_permissions(&m);
            }
        }
        if record.enabled {
            for name in m.mounts.keys() {
                if !record.grants.mounts.contains_key(name) {
                    fields
                        .entry(format!("grants.mounts.{name}"))
                        .or_insert_with(|| {
                            "grant a folder for this mount before enabling the plugin".to_owned()
                        });
                }
            }
        }
        if !fields.is_empty() {
            return Err(Error::fields(fields));
        }
        Ok(record)
    }

    fn install(&self, manifest: &str, component: &[u8]) -> Result<PluginView> {
        self.install_plugin(manifest, component)
    }

    fn apply_record(&self, record: PluginRecord) {
        self.records
            .write()
            .expect("records lock")
            .insert(record.plugin_id.clone(), record);
    }
}

#[cfg(test)]
mod approval_tests {
    use super::*;

    fn manifest(version: &str, veto: bool) -> Manifest {
        let text = format!(
            "id = \"p\"\nname = \"P\"\nversion = \"{version}\"\napi = \"0.1.0\"\nexports = [\"hooks\"]\n\
             [permissions]\nveto = {veto}\n[mounts.data]\ndescription = \"d\"\naccess = [\"backup\"]\n"
        );
        Manifest::parse(&text).expect("a valid manifest")
    }

    #[test]
    fn asking_for_more_needs_approval_whatever_the_version_string() {
        let approved_at_1 = PluginRecord {
            plugin_id: "p".into(),
            enabled: true,
            approved_version: Some("1.0.0".into()),
            grants: engine::plugins::PluginGrants {
                approved: requested_permissions(&manifest("1.0.0", false)),
                ..engine::plugins::PluginGrants::default()
            },
            ..PluginRecord::default()
        };
        assert!(!needs_approval(&manifest("1.0.0", false), &approved_at_1));
        assert!(
            !needs_approval(&manifest("1.1.0", false), &approved_at_1),
            "same asks"
        );
        assert!(
            needs_approval(&manifest("1.0.0", true), &approved_at_1),
            "same version, more"
        );
        assert!(
            needs_approval(&manifest("2.0.0", true), &approved_at_1),
            "new version, more"
        );
    }
}
