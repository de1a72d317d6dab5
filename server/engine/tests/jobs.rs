//! The job core in process: the runner, the backup and restore pipelines, retention, cancel,
//! veto and abort, plugin panics and crash repair, against a real [`Engine`] on a temp data
//! dir. No wasmtime, no HTTP, no spawned binary.
//!
//! Plugins are [`ScriptedPlugins`]: like rustic_core's in-memory backend, a fake is just
//! another implementation of the I/O trait ([`PluginRuntime`]). Its reply at every hook point
//! is scripted ([`Step`]), it can contribute a directory and a generated file, say where a
//! contributed directory goes back on restore, and it records every call it gets (what,
//! which job), so tests assert the order of hooks.
//!
//! Layout: the fake; the fixture ([`Fixture`]: a data dir, an engine, its runner, and a folder
//! outside the data dir for plugin content); then one section per subject. Every test has its
//! own temp dir and takes well under a second of work.
//!
//! Two tests here were written as findings (a veto at a non-gate point failed the backup; a
//! post-restore failure marked a completed restore failed) and pass since those were fixed.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use engine::jobs::{Job, JobFilter, JobId, JobKind, JobStatus, JobTrigger};
use engine::plugins::{
    Annotation, Contributions, DirectoryContribution, DirectoryTarget, FileContribution, HookPoint,
    HookReport, JobContext, PluginRuntime, RestoreInput, RestorePlan,
};
use engine::{Engine, EngineConfig};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------
// The scripted plugin runtime
// ---------------------------------------------------------------------------------------

/// The one plugin the fake runtime pretends to host.
const PLUGIN: &str = "scripted";
const PLUGIN_VERSION: &str = "1.0.0";

/// What the fake does when it is called at one point.
#[derive(Clone)]
enum Step {
    Proceed,
    /// Proceed with one annotation.
    Annotate(String),
    /// `HookReport.veto`, as the runtime reports it: the fake does not apply the gate rule
    /// itself, so a veto at a non-gate shows whether the engine does.
    Veto(String),
    /// `HookReport.abort`: a plugin with failure policy `abort` failed.
    Abort(String),
    /// `HookReport.warnings`: a plugin with failure policy `warn` failed.
    Warn(String),
    /// Sleeps this long, looking at the job's cancel flag every 2 ms (what `host.cancelled`
    /// gives a real plugin); returns early, as a plain proceed, when the job is canceled.
    Slow(Duration),
    /// Panics (a host bug, not a plugin error): the engine must fail the job and go on.
    Panic,
    /// Anything else: runs the closure on the calling (blocking) thread.
    Run(Arc<dyn Fn(&JobContext) -> HookReport + Send + Sync>),
}

/// One call the runtime got.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    /// A hook point (`pre-backup` ...), or `collect`, `plan-restore`, `restore`, `cancel`,
    /// `job-finished`.
    what: String,
    job: i64,
}

#[derive(Default)]
struct Script {
    hooks: BTreeMap<&'static str, Step>,
    /// How `collect` behaves; `Proceed` contributes what is below.
    collect: Option<Step>,
    /// Directories `collect` contributes: (name, host folder).
    directories: Vec<(String, PathBuf)>,
    /// A file `collect` generates in its scratch folder: (relative name, content).
    file: Option<(String, Vec<u8>)>,
    /// Where `plan_restore` puts a contributed directory back: name -> target folder.
    restore_targets: BTreeMap<String, PathBuf>,
}

/// A [`PluginRuntime`] whose behaviour per point is scripted, and which records every call.
#[derive(Default)]
struct ScriptedPlugins {
    script: Mutex<Script>,
    calls: Mutex<Vec<Call>>,
    /// Jobs `cancel_job` was called for (cleared by `job_finished`, as the host does).
    canceled: Mutex<HashSet<i64>>,
    /// Slow steps that returned early because their job was canceled.
    cut_short: Mutex<Vec<Call>>,
}

/// Locks a mutex even if a scripted panic poisoned it (the fake drops its guards before it
/// panics, but a test failure must not turn into a second, confusing one).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ScriptedPlugins {
    fn on(&self, point: HookPoint, step: Step) -> &Self {
        lock(&self.script).hooks.insert(point.as_str(), step);
        self
    }
    fn on_collect(&self, step: Step) -> &Self {
        lock(&self.script).collect = Some(step);
        self
    }
    /// Every hook and `collect` proceed again (contributions and targets stay).
    fn reset_steps(&self) {
        let mut s = lock(&self.script);
        s.hooks.clear();
        s.collect = None;
    }
    fn contribute_directory(&self, name: &str, path: &Path) {
        lock(&self.script)
            .directories
            .push((name.to_owned(), path.to_owned()));
    }
    fn contribute_file(&self, relative: &str, content: &[u8]) {
        lock(&self.script).file = Some((relative.to_owned(), content.to_vec()));
    }
    fn restore_directory_into(&self, name: &str, target: &Path) {
        lock(&self.script)
            .restore_targets
            .insert(name.to_owned(), target.to_owned());
    }

    fn record(&self, what: &str, job: i64) {
        lock(&self.calls).push(Call {
            what: what.to_owned(),
            job,
        });
    }
    fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }
    /// What the runtime was asked for job `id`, in order.
    fn calls_for(&self, id: JobId) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.job == id.get())
            .map(|c| c.what)
            .collect()
    }
    fn was_called(&self, what: &str, id: JobId) -> bool {
        self.calls_for(id).iter().any(|w| w == what)
    }
    fn cut_short(&self) -> Vec<Call> {
        lock(&self.cut_short).clone()
    }

    /// Runs a scripted step for a job at `what` and turns it into a report.
    fn perform(&self, step: Step, what: &str, ctx: &JobContext) -> HookReport {
        let mut report = HookReport::default();
        match step {
            Step::Proceed => {}
            Step::Annotate(text) => report.annotations.push(Annotation {
                plugin: PLUGIN.into(),
                step: what.into(),
                text,
            }),
            Step::Veto(reason) => report.veto = Some((PLUGIN.into(), reason)),
            Step::Abort(reason) => report.abort = Some(reason),
            Step::Warn(text) => report.warnings.push(text),
            Step::Slow(length) => {
                let end = Instant::now() + length;
                while Instant::now() < end {
                    if lock(&self.canceled).contains(&ctx.job_id) {
                        lock(&self.cut_short).push(Call {
                            what: what.into(),
                            job: ctx.job_id,
                        });
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Step::Panic => panic!("scripted plugin panics at {what}"),
            Step::Run(f) => report = f(ctx),
        }
        report
    }
}

impl PluginRuntime for ScriptedPlugins {
    fn run_hooks(&self, point: HookPoint, ctx: &JobContext) -> HookReport {
        self.record(point.as_str(), ctx.job_id);
        let step = lock(&self.script)
            .hooks
            .get(point.as_str())
            .cloned()
            .unwrap_or(Step::Proceed);
        self.perform(step, point.as_str(), ctx)
    }

    fn collect(&self, ctx: &JobContext, scratch: &Path) -> Contributions {
        self.record("collect", ctx.job_id);
        let (step, directories, file) = {
            let s = lock(&self.script);
            (
                s.collect.clone().unwrap_or(Step::Proceed),
                s.directories.clone(),
                s.file.clone(),
            )
        };
        let report = self.perform(step, "collect", ctx);
        let mut c = Contributions {
            warnings: report.warnings,
            abort: report.abort,
            ..Contributions::default()
        };
        for (name, path) in directories {
            c.directories.push(DirectoryContribution {
                name,
                path,
                contributed_by: PLUGIN.into(),
            });
        }
        if let Some((relative, content)) = file {
            // Like the host: the plugin writes into its own folder of the job's scratch.
            let path = scratch.join(PLUGIN).join(&relative);
            std::fs::create_dir_all(path.parent().expect("a file in a folder"))
                .expect("create the scratch folder");
            std::fs::write(&path, content).expect("write the generated file");
            c.files.push(FileContribution {
                plugin: PLUGIN.into(),
                relative,
                path,
            });
        }
        if !c.directories.is_empty() || !c.files.is_empty() {
            c.plugins.push((PLUGIN.into(), PLUGIN_VERSION.into()));
        }
        c
    }

    fn plan_restore(&self, ctx: &JobContext, input: &RestoreInput) -> RestorePlan {
        self.record("plan-restore", ctx.job_id);
        let wanted = lock(&self.script).restore_targets.clone();
        let targets: Vec<DirectoryTarget> = input
            .directories
            .iter()
            .filter(|d| d.contributed_by == PLUGIN)
            .filter_map(|d| {
                Some(DirectoryTarget {
                    name: d.name.clone(),
                    plugin: PLUGIN.into(),
                    target: wanted.get(&d.name)?.clone(),
                })
            })
            .collect();
        RestorePlan {
            warnings: engine::plugins::unplaced_warnings(input, &targets),
            targets,
            abort: None,
        }
    }

    fn restore(&self, ctx: &JobContext, _input: &RestoreInput) -> HookReport {
        self.record("restore", ctx.job_id);
        HookReport::default()
    }

    fn cancel_job(&self, job_id: i64) {
        self.record("cancel", job_id);
        lock(&self.canceled).insert(job_id);
    }

    fn job_finished(&self, job_id: i64) {
        self.record("job-finished", job_id);
        lock(&self.canceled).remove(&job_id);
    }
}

// ---------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------

/// A data dir with a seeded engine and its runner, and `ext/`, a folder outside the data dir
/// where plugin content lives.
struct Fixture {
    /// Holds `data/`, `ext/` and anything a test keeps aside; removed on drop.
    tmp: TempDir,
    data: PathBuf,
    ext: PathBuf,
    plugins: Arc<ScriptedPlugins>,
    engine: Engine,
    shutdown: CancellationToken,
    runner: Option<tokio::task::JoinHandle<()>>,
}

/// Long enough for any job here on a loaded 2-core machine; a hang fails instead of waiting.
const JOB_TIMEOUT: Duration = Duration::from_secs(20);

async fn open_engine(data: &Path, plugins: Arc<ScriptedPlugins>) -> Engine {
    let mut config = EngineConfig::for_data_dir(data);
    // Small demo set: 6 channels, 3 logos, 3 recordings; enough rows and files to compare.
    config.demo_channels = 6;
    Engine::open_with_plugins(config, plugins)
        .await
        .expect("open the engine")
}

impl Fixture {
    async fn new() -> Fixture {
        let tmp = TempDir::new().expect("temp dir");
        let data = tmp.path().join("data");
        let ext = tmp.path().join("ext");
        std::fs::create_dir_all(&ext).expect("create ext/");
        let plugins = Arc::new(ScriptedPlugins::default());
        let engine = open_engine(&data, plugins.clone()).await;
        let shutdown = CancellationToken::new();
        let runner = Some(engine.spawn_runner(shutdown.clone()));
        Fixture {
            tmp,
            data,
            ext,
            plugins,
            engine,
            shutdown,
            runner,
        }
    }

    /// A folder `ext/<name>` with two files, contributed by the plugin as `data/<name>/`.
    fn with_contributed_directory(&self, name: &str) -> PathBuf {
        let dir = self.ext.join(name);
        write(&dir.join("a.txt"), "plugin content a");
        write(&dir.join("sub/b.txt"), "plugin content b");
        self.plugins.contribute_directory(name, &dir);
        dir
    }

    fn backups_dir(&self) -> PathBuf {
        self.data.join("backups")
    }

    /// Every entry of `<data>/backups`, hidden ones (`.staging-*`) and `.partial` files too.
    fn backup_folder_entries(&self) -> Vec<String> {
        entries(&self.backups_dir())
    }

    async fn start_backup(&self) -> Job {
        self.engine
            .start_backup(JobTrigger::Manual, None, None)
            .await
            .expect("queue a backup")
    }

    /// Queues a backup and waits for its end.
    async fn backup(&self) -> Job {
        let job = self.start_backup().await;
        self.wait(job.id).await
    }

    async fn restore(&self, source: JobId) -> Job {
        let job = self
            .engine
            .start_restore(source, None)
            .await
            .expect("queue a restore");
        self.wait(job.id).await
    }

    /// Waits until job `id` has ended and returns it.
    async fn wait(&self, id: JobId) -> Job {
        let deadline = Instant::now() + JOB_TIMEOUT;
        loop {
            let job = self.engine.get_job(id).await.expect("read the job");
            if !job.status.is_active() {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} did not end within {JOB_TIMEOUT:?}: {job:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the runtime has been called at `what` for job `id`.
    async fn wait_for_call(&self, what: &str, id: JobId) {
        let deadline = Instant::now() + JOB_TIMEOUT;
        while !self.plugins.was_called(what, id) {
            assert!(
                Instant::now() < deadline,
                "no {what} call for job {id}; calls: {:?}",
                self.plugins.calls()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn jobs(&self) -> Vec<Job> {
        let (jobs, _) = self
            .engine
            .list_jobs(&JobFilter {
                limit: 1000,
                ..JobFilter::default()
            })
            .await
            .expect("list jobs");
        jobs
    }

    async fn stop_runner(&mut self) {
        self.shutdown.cancel();
        if let Some(runner) = self.runner.take() {
            runner.await.expect("the runner ends cleanly");
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a file in a folder")).expect("create folder");
    std::fs::write(path, text).expect("write file");
}

/// Names in a folder, sorted (empty when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Every regular file below `dir`, relative path -> content.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).expect("read folder").flatten() {
            let path = e.path();
            if e.file_type().expect("file type").is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("below root");
                out.insert(
                    rel.to_string_lossy().into_owned(),
                    std::fs::read(&path).expect("read file"),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Copies a tree (files and folders) from `from` to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for (rel, bytes) in tree(from) {
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().expect("a file in a folder")).expect("create");
        std::fs::write(dest, bytes).expect("copy file");
    }
}

/// The content rows a restore must bring back: channel names and the channel groups.
async fn content_rows(engine: &Engine) -> (Vec<(i64, String)>, Vec<(i64, String)>) {
    let channels = sqlx::query_as("SELECT id, name FROM channels ORDER BY id")
        .fetch_all(engine.content().sqlite().unwrap())
        .await
        .expect("read channels");
    let groups = sqlx::query_as("SELECT id, name FROM channel_groups ORDER BY id")
        .fetch_all(engine.content().sqlite().unwrap())
        .await
        .expect("read channel groups");
    (channels, groups)
}

/// Changes the content DB, `logos/` and (when given) a contributed folder after a backup.
async fn change_everything(f: &Fixture, contributed: Option<&Path>) {
    sqlx::query("UPDATE channels SET name = 'Renamed after the backup' WHERE id = 1")
        .execute(f.engine.content().sqlite().unwrap())
        .await
        .expect("rename a channel");
    sqlx::query("INSERT INTO channel_groups (id, name) VALUES (99, 'Added after the backup')")
        .execute(f.engine.content().sqlite().unwrap())
        .await
        .expect("add a group");
    let logos = f.data.join("logos");
    write(&logos.join("logo-00001.svg"), "<svg>changed</svg>");
    write(&logos.join("added-after-the-backup.svg"), "<svg>new</svg>");
    std::fs::remove_file(logos.join("logo-00002.svg")).expect("remove a logo");
    if let Some(dir) = contributed {
        write(&dir.join("a.txt"), "changed after the backup");
        write(&dir.join("new.txt"), "added after the backup");
    }
}

fn annotation(step: &str, text: &str) -> Annotation {
    Annotation {
        plugin: PLUGIN.into(),
        step: step.into(),
        text: text.into(),
    }
}

/// The hook points of a backup, in pipeline order.
const BACKUP_HOOKS: [HookPoint; 5] = [
    HookPoint::PreBackup,
    HookPoint::PostCollect,
    HookPoint::PreArchive,
    HookPoint::PostArchive,
    HookPoint::PostBackup,
];

// ---------------------------------------------------------------------------------------
// Backup pipeline: hooks, annotations, contributed content
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn backup_runs_hooks_in_pipeline_order_and_keeps_annotations_in_job_and_manifest() {
    let f = Fixture::new().await;
    for point in BACKUP_HOOKS {
        f.plugins
            .on(point, Step::Annotate(format!("seen at {}", point.as_str())));
    }
    let job = f.backup().await;

    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(job.error, None);
    assert_eq!(
        f.plugins.calls_for(job.id),
        [
            "pre-backup",
            "collect",
            "post-collect",
            "pre-archive",
            "post-archive",
            "post-backup",
            "job-finished"
        ]
    );
    let all: Vec<Annotation> = BACKUP_HOOKS
        .iter()
        .map(|p| annotation(p.as_str(), &format!("seen at {}", p.as_str())))
        .collect();
    assert_eq!(job.annotations, all);
    // The manifest is written at the archive step: it holds what was said up to pre-archive.
    let manifest = f.engine.job_manifest(job.id).await.expect("manifest");
    assert_eq!(manifest.annotations, all[..3]);
    assert_eq!(manifest.trigger, "manual");
    let name = job.archive_name.clone().expect("an archive name");
    assert_eq!(f.backup_folder_entries(), [name]);
}

#[tokio::test]
async fn backup_archives_a_contributed_directory_and_a_generated_file() {
    let f = Fixture::new().await;
    f.with_contributed_directory("custom");
    f.plugins
        .contribute_file("report.txt", b"generated by the plugin");
    let job = f.backup().await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");

    let manifest = f.engine.job_manifest(job.id).await.expect("manifest");
    let custom = manifest
        .directories
        .iter()
        .find(|d| d.name == "custom")
        .unwrap_or_else(|| panic!("no data/custom in {manifest:?}"));
    assert_eq!(custom.contributed_by, PLUGIN);
    assert_eq!(custom.files, 2);
    assert_eq!(
        serde_json::to_value(&manifest.plugins).expect("plugins encode"),
        json!([{"id": PLUGIN, "version": PLUGIN_VERSION, "files": 1, "bytes": 23}])
    );
    // The scratch folder went with the staging folder.
    assert_eq!(f.backup_folder_entries(), [job.archive_name.unwrap()]);
}

#[tokio::test]
async fn warnings_from_hooks_and_collect_are_kept_on_a_succeeded_backup() {
    let f = Fixture::new().await;
    f.plugins
        .on(
            HookPoint::PostCollect,
            Step::Warn("plugin scripted failed at post-collect: out of fuel".into()),
        )
        .on_collect(Step::Warn(
            "plugin scripted failed at collect: no such file".into(),
        ));
    let job = f.backup().await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(
        job.warnings,
        [
            "plugin scripted failed at collect: no such file",
            "plugin scripted failed at post-collect: out of fuel"
        ]
    );
}

#[tokio::test]
async fn queued_backups_run_one_at_a_time_in_id_order() {
    let f = Fixture::new().await;
    // The first one lingers at pre-archive so the others are queued behind it.
    f.plugins
        .on(HookPoint::PreArchive, Step::Slow(Duration::from_millis(50)));
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(f.start_backup().await.id);
    }
    for id in &ids {
        assert_eq!(f.wait(*id).await.status, JobStatus::Succeeded);
    }
    // Each job's calls are contiguous (no two jobs ran at once) and jobs ran by id.
    let mut order: Vec<i64> = f.plugins.calls().into_iter().map(|c| c.job).collect();
    order.dedup();
    assert_eq!(order, ids.iter().map(|i| i.get()).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------
// Veto and abort
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn veto_at_pre_backup_fails_the_job_with_the_reason_and_leaves_no_file() {
    let f = Fixture::new().await;
    f.plugins.on(
        HookPoint::PreBackup,
        Step::Veto("the disk is nearly full".into()),
    );
    let job = f.backup().await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(
        job.error.as_deref(),
        Some("plugin scripted stopped the job at pre-backup: the disk is nearly full")
    );
    assert_eq!(job.archive_name, None);
    assert!(!job.can_download && !job.can_restore);
    assert_eq!(
        f.plugins.calls_for(job.id),
        ["pre-backup", "job-finished"],
        "nothing runs after the gate"
    );
    assert_eq!(f.backup_folder_entries(), Vec::<String>::new());
}

#[tokio::test]
async fn veto_at_post_archive_is_not_a_gate_and_the_backup_succeeds() {
    let f = Fixture::new().await;
    f.plugins.on(
        HookPoint::PostArchive,
        Step::Veto("too late to stop".into()),
    );
    let job = f.backup().await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert!(f.plugins.was_called("post-backup", job.id));
    assert_eq!(f.backup_folder_entries(), [job.archive_name.unwrap()]);
}

#[tokio::test]
async fn abort_policy_at_pre_archive_fails_the_job_and_leaves_no_file() {
    let f = Fixture::new().await;
    f.plugins.on(
        HookPoint::PreArchive,
        Step::Abort("plugin scripted failed at pre-archive: it trapped".into()),
    );
    let job = f.backup().await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(
        job.error.as_deref(),
        Some("plugin scripted failed at pre-archive: it trapped")
    );
    assert_eq!(job.archive_name, None, "no name is claimed before the gate");
    assert_eq!(f.backup_folder_entries(), Vec::<String>::new());
}

#[tokio::test]
async fn abort_policy_at_post_archive_fails_the_job_and_removes_its_archive() {
    let f = Fixture::new().await;
    f.plugins.on(
        HookPoint::PostArchive,
        Step::Abort("plugin scripted failed at post-archive: it trapped".into()),
    );
    let job = f.backup().await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(
        job.error.as_deref(),
        Some("plugin scripted failed at post-archive: it trapped")
    );
    // The record keeps its name (never reused), but the file it owned is gone.
    assert!(job.archive_name.is_some());
    assert_eq!(f.backup_folder_entries(), Vec::<String>::new());
    assert!(!f.plugins.was_called("post-backup", job.id));
}

#[tokio::test]
async fn abort_policy_in_collect_fails_the_job_and_leaves_no_file() {
    let f = Fixture::new().await;
    f.plugins.on_collect(Step::Abort(
        "plugin scripted failed at collect: it trapped".into(),
    ));
    let job = f.backup().await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(
        job.error.as_deref(),
        Some("plugin scripted failed at collect: it trapped")
    );
    assert_eq!(f.backup_folder_entries(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------
// A panicking plugin call
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_panicking_hook_fails_the_job_and_the_runner_goes_on() {
    let f = Fixture::new().await;
    f.plugins.on(HookPoint::PostCollect, Step::Panic);
    let job = f.backup().await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.as_deref(), Some("a plugin hook task failed"));
    assert_eq!(f.backup_folder_entries(), Vec::<String>::new());

    f.plugins.reset_steps();
    let next = f.backup().await;
    assert_eq!(next.status, JobStatus::Succeeded, "{next:?}");
}

#[tokio::test]
async fn a_panicking_collect_fails_the_job_and_the_runner_goes_on() {
    let f = Fixture::new().await;
    f.plugins.on_collect(Step::Panic);
    let job = f.backup().await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.as_deref(), Some("collecting content failed"));
    assert_eq!(f.backup_folder_entries(), Vec::<String>::new());

    f.plugins.reset_steps();
    assert_eq!(f.backup().await.status, JobStatus::Succeeded);
}

#[tokio::test]
async fn a_panicking_pre_restore_hook_fails_the_restore_and_changes_nothing() {
    let f = Fixture::new().await;
    let source = f.backup().await;
    change_everything(&f, None).await;
    let (rows, logos) = (content_rows(&f.engine).await, tree(&f.data.join("logos")));
    f.plugins.on(HookPoint::PreRestore, Step::Panic);
    let job = f.restore(source.id).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.as_deref(), Some("a plugin hook task failed"));
    assert_eq!(content_rows(&f.engine).await, rows);
    assert_eq!(tree(&f.data.join("logos")), logos);
}

// ---------------------------------------------------------------------------------------
// Cancel
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn cancel_while_a_slow_pre_archive_hook_runs_ends_the_job_canceled_with_no_file() {
    let f = Fixture::new().await;
    f.plugins
        .on(HookPoint::PreArchive, Step::Slow(Duration::from_secs(10)));
    let job = f.start_backup().await;
    f.wait_for_call("pre-archive", job.id).await;

    let asked = Instant::now();
    f.engine.cancel_job(job.id).await.expect("cancel");
    let job = f.wait(job.id).await;
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "cancel took {:?}",
        asked.elapsed()
    );
    assert_eq!(job.status, JobStatus::Canceled);
    assert_eq!(job.error.as_deref(), Some("canceled by request"));
    assert_eq!(
        f.plugins.cut_short(),
        [Call {
            what: "pre-archive".into(),
            job: job.id.get()
        }],
        "the plugin call saw the cancel"
    );
    assert_eq!(f.backup_folder_entries(), Vec::<String>::new());
    // A finished job can no longer be canceled.
    let again = f.engine.cancel_job(job.id).await.expect_err("refused");
    assert_eq!(again.kind(), engine::ErrorKind::Conflict);
    assert_eq!(
        again.message(),
        format!(
            "job {} is canceled; only pending or running jobs can be canceled",
            job.id
        )
    );
}

#[tokio::test]
async fn cancel_of_a_queued_backup_ends_it_before_it_starts() {
    let f = Fixture::new().await;
    f.plugins
        .on(HookPoint::PreArchive, Step::Slow(Duration::from_secs(10)));
    let first = f.start_backup().await;
    f.wait_for_call("pre-archive", first.id).await;
    let queued = f.start_backup().await;
    assert_eq!(queued.status, JobStatus::Pending);

    let canceled = f.engine.cancel_job(queued.id).await.expect("cancel");
    assert_eq!(canceled.status, JobStatus::Canceled);
    assert_eq!(
        canceled.error.as_deref(),
        Some("canceled before it started")
    );
    f.engine.cancel_job(first.id).await.expect("cancel");
    assert_eq!(f.wait(first.id).await.status, JobStatus::Canceled);
    // Let the runner look at the queue again: the canceled job never runs.
    f.plugins.reset_steps();
    assert_eq!(f.backup().await.status, JobStatus::Succeeded);
    assert_eq!(f.plugins.calls_for(queued.id), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------------------

/// Lists backup `source`'s archive again as an upload (trigger `upload`).
async fn upload_copy_of(f: &Fixture, source: &Job) -> Job {
    let from = f
        .engine
        .archive_path(source.id)
        .await
        .expect("source archive");
    let target = f.engine.begin_upload().await.expect("begin upload");
    std::fs::copy(&from, target.path()).expect("copy the archive");
    f.engine
        .finish_upload(target, Some("from-elsewhere.tar.gz".into()), None, None)
        .await
        .expect("finish upload")
}

#[tokio::test]
async fn retention_keeps_the_newest_two_backups_and_never_prunes_an_upload() {
    let f = Fixture::new().await;
    f.engine
        .save_settings(&json!({"retention_count": 2}))
        .await
        .expect("save settings");
    let first = f.backup().await;
    let upload = upload_copy_of(&f, &first).await;
    assert_eq!(upload.trigger, JobTrigger::Upload);
    assert_eq!(upload.status, JobStatus::Succeeded);
    // Queued together: each run prunes after itself.
    let mut rest = Vec::new();
    for _ in 0..3 {
        rest.push(f.start_backup().await.id);
    }
    let mut made = vec![first];
    for id in rest {
        let job = f.wait(id).await;
        assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
        made.push(job);
    }

    for pruned in &made[..2] {
        let e = f.engine.get_job(pruned.id).await.expect_err("pruned");
        assert_eq!(e.message(), format!("no job {}", pruned.id));
    }
    let kept: Vec<JobId> = f.jobs().await.iter().map(|j| j.id).collect();
    assert_eq!(kept, [made[3].id, made[2].id, upload.id], "newest first");
    let mut files: Vec<String> = [&made[2], &made[3], &upload]
        .iter()
        .map(|j| j.archive_name.clone().expect("a name"))
        .collect();
    files.sort();
    assert_eq!(f.backup_folder_entries(), files);
    // Every kept record's file is the one it was listed with (size and sha256).
    for j in [&made[2], &made[3], &upload] {
        f.engine.archive_path(j.id).await.expect("intact archive");
    }
}

#[tokio::test]
async fn post_backup_hooks_run_after_retention() {
    let f = Fixture::new().await;
    f.engine
        .save_settings(&json!({"retention_count": 1}))
        .await
        .expect("save settings");
    assert_eq!(f.backup().await.status, JobStatus::Succeeded);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let backups = f.backups_dir();
    {
        let seen = seen.clone();
        f.plugins.on(
            HookPoint::PostBackup,
            Step::Run(Arc::new(move |_| {
                let archives: Vec<String> = entries(&backups)
                    .into_iter()
                    .filter(|n| n.ends_with(".tar.gz"))
                    .collect();
                lock(&seen).push(archives);
                HookReport::default()
            })),
        );
    }
    let second = f.backup().await;
    assert_eq!(second.status, JobStatus::Succeeded);
    assert_eq!(*lock(&seen), [vec![second.archive_name.unwrap()]]);
}

#[tokio::test]
async fn a_failure_at_post_backup_is_a_warning_and_the_backup_is_kept() {
    let f = Fixture::new().await;
    f.engine
        .save_settings(&json!({"retention_count": 1}))
        .await
        .expect("save settings");
    let first = f.backup().await;
    f.plugins.on(
        HookPoint::PostBackup,
        Step::Abort("plugin scripted failed at post-backup: it trapped".into()),
    );
    let job = f.backup().await;
    // Retention already pruned the first backup: failing this one would lose both.
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(
        job.warnings,
        ["a plugin failed after the backup was complete \
          (plugin scripted failed at post-backup: it trapped); the backup is kept"]
    );
    assert!(f.engine.get_job(first.id).await.is_err(), "pruned");
    assert_eq!(
        f.backup_folder_entries(),
        [job.archive_name.clone().unwrap()]
    );
    f.engine.archive_path(job.id).await.expect("intact archive");
}

// ---------------------------------------------------------------------------------------
// Restore
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn restore_brings_back_rows_logos_and_contributed_directory_after_a_safety_backup() {
    let f = Fixture::new().await;
    let custom = f.with_contributed_directory("custom");
    f.plugins.restore_directory_into("custom", &custom);
    let source = f.backup().await;
    assert_eq!(source.status, JobStatus::Succeeded, "{source:?}");
    let rows = content_rows(&f.engine).await;
    let logos = tree(&f.data.join("logos"));
    let plugin_tree = tree(&custom);

    change_everything(&f, Some(&custom)).await;
    assert_ne!(content_rows(&f.engine).await, rows);
    let job = f.restore(source.id).await;

    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(job.kind, JobKind::Restore);
    assert_eq!(job.source_job_id, Some(source.id));
    assert_eq!(content_rows(&f.engine).await, rows);
    assert_eq!(tree(&f.data.join("logos")), logos);
    assert_eq!(tree(&custom), plugin_tree);

    let safety: Vec<Job> = f
        .jobs()
        .await
        .into_iter()
        .filter(|j| j.trigger == JobTrigger::PreRestore)
        .collect();
    assert_eq!(safety.len(), 1, "one safety backup");
    let safety = &safety[0];
    assert_eq!(safety.status, JobStatus::Succeeded);
    assert!(safety.id > job.id, "made by the restore");
    let manifest = f.engine.job_manifest(safety.id).await.expect("manifest");
    assert_eq!(manifest.trigger, "pre-restore");
    assert_eq!(
        job.warnings,
        [format!(
            "safety backup of the previous state: job {} ({})",
            safety.id,
            safety.archive_name.clone().unwrap()
        )]
    );
    // The restore's hooks in order, with the safety backup's whole pipeline inside it.
    let order: Vec<(String, bool)> = f
        .plugins
        .calls()
        .into_iter()
        .filter(|c| c.job == job.id.get() || c.job == safety.id.get())
        .map(|c| (c.what, c.job == job.id.get()))
        .collect();
    let restore = |w: &str| (w.to_owned(), true);
    let safety_step = |w: &str| (w.to_owned(), false);
    assert_eq!(
        order,
        [
            restore("pre-restore"),
            restore("plan-restore"),
            safety_step("pre-backup"),
            safety_step("collect"),
            safety_step("post-collect"),
            safety_step("pre-archive"),
            safety_step("post-archive"),
            safety_step("post-backup"),
            safety_step("job-finished"),
            restore("post-extract"),
            restore("pre-apply"),
            restore("restore"),
            restore("post-restore"),
            restore("job-finished"),
        ]
    );
    // Nothing of the restore is left in the data dir.
    assert!(!f.data.join(".restore-swap.json").exists());
    assert!(
        !entries(&f.data).iter().any(|n| n.starts_with(".staging")),
        "{:?}",
        entries(&f.data)
    );
    assert!(
        !entries(&f.ext).iter().any(|n| n.starts_with(".backstop-")),
        "{:?}",
        entries(&f.ext)
    );
}

#[tokio::test]
async fn veto_at_pre_restore_fails_the_restore_and_changes_nothing() {
    let f = Fixture::new().await;
    let source = f.backup().await;
    change_everything(&f, None).await;
    let rows = content_rows(&f.engine).await;
    let logos = tree(&f.data.join("logos"));
    f.plugins.on(
        HookPoint::PreRestore,
        Step::Veto("a recording is in progress".into()),
    );
    let job = f.restore(source.id).await;

    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(
        job.error.as_deref(),
        Some("plugin scripted stopped the job at pre-restore: a recording is in progress")
    );
    assert_eq!(content_rows(&f.engine).await, rows);
    assert_eq!(tree(&f.data.join("logos")), logos);
    assert!(
        !entries(&f.data)
            .iter()
            .any(|n| n.starts_with(".restore-swap") || n.starts_with(".staging")),
        "no journal, no staging: {:?}",
        entries(&f.data)
    );
    assert!(
        !f.jobs()
            .await
            .iter()
            .any(|j| j.trigger == JobTrigger::PreRestore),
        "the gate comes before the safety backup"
    );
    assert_eq!(
        f.backup_folder_entries(),
        [source.archive_name.clone().unwrap()]
    );
    assert_eq!(f.plugins.calls_for(job.id), ["pre-restore", "job-finished"]);
}

#[tokio::test]
async fn cancel_is_refused_once_the_restore_has_swapped_and_it_completes() {
    let f = Fixture::new().await;
    let source = f.backup().await;
    let rows = content_rows(&f.engine).await;
    change_everything(&f, None).await;
    f.plugins.on(
        HookPoint::PostRestore,
        Step::Slow(Duration::from_millis(300)),
    );
    let job = f
        .engine
        .start_restore(source.id, None)
        .await
        .expect("queue a restore");
    f.wait_for_call("post-restore", job.id).await;

    let running = f.engine.get_job(job.id).await.expect("job");
    assert_eq!(running.status, JobStatus::Running);
    assert!(!running.can_cancel, "past the point of no return");
    let e = f.engine.cancel_job(job.id).await.expect_err("refused");
    assert_eq!(e.kind(), engine::ErrorKind::Conflict);
    assert_eq!(
        e.message(),
        "the restore is already swapping directories into place and can no longer be canceled"
    );
    let job = f.wait(job.id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(content_rows(&f.engine).await, rows);
    assert_eq!(f.plugins.cut_short(), Vec::<Call>::new());
}

#[tokio::test]
async fn a_failure_at_post_restore_keeps_the_completed_restore_succeeded() {
    let f = Fixture::new().await;
    let source = f.backup().await;
    let rows = content_rows(&f.engine).await;
    change_everything(&f, None).await;
    let reason = "plugin scripted failed at post-restore: it trapped";
    f.plugins
        .on(HookPoint::PostRestore, Step::Abort(reason.into()));
    let job = f.restore(source.id).await;
    assert_eq!(content_rows(&f.engine).await, rows, "the restore went in");
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert!(
        job.warnings.iter().any(|w| w.contains(reason)),
        "{:?}",
        job.warnings
    );
}

// ---------------------------------------------------------------------------------------
// Crash repair
// ---------------------------------------------------------------------------------------

/// The paths a restore journal names: the staging root, and each move's staged and parked copy.
fn journal_paths(journal: &Value) -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from(journal["staging_root"].as_str().unwrap())];
    for m in journal["moves"].as_array().expect("moves") {
        out.push(PathBuf::from(m[1].as_str().unwrap()));
        out.push(PathBuf::from(m[2].as_str().unwrap()));
    }
    out
}

/// A restore stopped in the journal's `staging` phase: a kill -9 while the `post-extract` hook
/// runs. In process, the on-disk state at that moment is copied (journal and every path it
/// names that exists), the restore is canceled (which cleans up, as it must), and then the
/// copy is put back and the job's record set back to `running`: exactly what the crash leaves.
/// A fresh engine over the same data dir then runs the restart sweep.
#[tokio::test]
async fn crash_repair_in_the_staging_phase_removes_only_journal_paths_and_fails_the_job() {
    let mut f = Fixture::new().await;
    let custom = f.with_contributed_directory("custom");
    f.plugins.restore_directory_into("custom", &custom);
    let source = f.backup().await;
    assert_eq!(source.status, JobStatus::Succeeded, "{source:?}");
    change_everything(&f, Some(&custom)).await;
    let rows = content_rows(&f.engine).await;
    let logos = tree(&f.data.join("logos"));
    let plugin_tree = tree(&custom);

    f.plugins
        .on(HookPoint::PostExtract, Step::Slow(Duration::from_secs(10)));
    let restore = f
        .engine
        .start_restore(source.id, None)
        .await
        .expect("queue a restore");
    f.wait_for_call("post-extract", restore.id).await;

    // The crash state.
    let journal_file = f.data.join(".restore-swap.json");
    let journal_bytes = std::fs::read(&journal_file).expect("a journal while staging");
    let journal: Value = serde_json::from_slice(&journal_bytes).expect("journal JSON");
    assert_eq!(journal["phase"], "staging");
    assert_eq!(journal["job_id"], restore.id.get());
    let snapshot = f.tmp.path().join("crash-snapshot");
    let mut existing = Vec::new();
    for (i, p) in journal_paths(&journal).into_iter().enumerate() {
        if p.exists() {
            copy_tree(&p, &snapshot.join(i.to_string()));
            existing.push((i, p));
        }
    }
    let staged_custom = f
        .ext
        .join(format!(".backstop-restore-{}-custom", restore.id));
    assert!(
        existing.iter().any(|(_, p)| *p == staged_custom),
        "the journal names the staged copy next to the plugin's target: {journal}"
    );

    // Cancel before the swap: everything goes, nothing changed.
    f.engine.cancel_job(restore.id).await.expect("cancel");
    let canceled = f.wait(restore.id).await;
    assert_eq!(canceled.status, JobStatus::Canceled, "{canceled:?}");
    assert!(!journal_file.exists());
    for (_, p) in &existing {
        assert!(!p.exists(), "{} left after cancel", p.display());
    }
    assert_eq!(content_rows(&f.engine).await, rows);
    assert_eq!(tree(&f.data.join("logos")), logos);
    assert_eq!(tree(&custom), plugin_tree);
    f.stop_runner().await;

    // Put the crash state back.
    for (i, p) in &existing {
        copy_tree(&snapshot.join(i.to_string()), p);
    }
    std::fs::write(&journal_file, &journal_bytes).expect("put the journal back");
    sqlx::query(
        "UPDATE jobs SET status = 'running', error = NULL, finished_at = NULL WHERE id = ?",
    )
    .bind(restore.id)
    .execute(f.engine.state())
    .await
    .expect("the record as the crash left it");
    // Paths the journal does not name, some of them with names a restore would make.
    let other_job = f
        .ext
        .join(format!(".backstop-restore-{}-custom", restore.id.get() + 1));
    write(&other_job.join("keep.txt"), "not named by the journal");
    write(
        &f.ext.join("unrelated/keep.txt"),
        "not named by the journal",
    );
    write(&f.data.join("notes.txt"), "not named by the journal");
    f.engine.close().await;

    let engine = open_engine(&f.data, f.plugins.clone()).await;
    engine.restart_sweep().await.expect("restart sweep");

    assert!(!journal_file.exists(), "the journal is gone");
    assert!(!f.data.join(".restore-swap.json.unreadable").exists());
    for (_, p) in &existing {
        assert!(!p.exists(), "{} left after repair", p.display());
    }
    assert!(other_job.join("keep.txt").exists());
    assert!(f.ext.join("unrelated/keep.txt").exists());
    assert!(f.data.join("notes.txt").exists());
    assert_eq!(tree(&custom), plugin_tree, "the live target is as it was");
    assert_eq!(tree(&f.data.join("logos")), logos);
    assert_eq!(content_rows(&engine).await, rows);
    let job = engine.get_job(restore.id).await.expect("the restore job");
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(
        job.error.as_deref(),
        Some("interrupted by restart before anything was changed; the previous state is as it was")
    );
    // The source archive and its record are untouched.
    engine.archive_path(source.id).await.expect("source intact");
}

/// A journal is trusted only when every path in it is one a restore makes. This one
/// (written by hand, in `SwapJournal`'s JSON shape) names a folder of the admin's as a
/// staged copy: the sweep deletes nothing and keeps the journal for a person to read.
#[tokio::test]
async fn crash_repair_deletes_nothing_when_the_journal_names_a_path_backstop_does_not_make() {
    let mut f = Fixture::new().await;
    f.stop_runner().await;
    let important = f.ext.join("important");
    write(&important.join("keep.txt"), "the admin's own files");
    let parked = f.ext.join(".backstop-previous-7-custom");
    write(&parked.join("keep.txt"), "parked");
    let root = f.data.join(".staging-restore-7");
    let journal = json!({
        "job_id": 7,
        "phase": "staging",
        "staging_root": root,
        "database_json": root.join("database.json"),
        "moves": [[f.ext.join("custom"), important, parked]],
    });
    let journal_file = f.data.join(".restore-swap.json");
    std::fs::write(&journal_file, journal.to_string()).expect("write journal");
    f.engine.close().await;

    let engine = open_engine(&f.data, f.plugins.clone()).await;
    engine.restart_sweep().await.expect("restart sweep");

    assert!(important.join("keep.txt").exists(), "never deleted");
    assert!(parked.join("keep.txt").exists(), "nothing of it deleted");
    assert!(!journal_file.exists());
    assert_eq!(
        std::fs::read_to_string(f.data.join(".restore-swap.json.unreadable")).expect("kept"),
        journal.to_string()
    );
}

/// A backup killed after its archive was complete but before its retention ran is kept at
/// the next start (stop 20), and its retention runs then: with "keep 1" the older backup is
/// pruned, so no more than N backups are listed. (Found by the randomized model test.)
#[tokio::test]
async fn a_backup_kept_at_the_start_gets_its_retention() {
    let mut f = Fixture::new().await;
    let older = f.backup().await;
    let newer = f.backup().await;
    assert_eq!(
        (older.status, newer.status),
        (JobStatus::Succeeded, JobStatus::Succeeded)
    );
    let older_file = f
        .engine
        .archive_path(older.id)
        .await
        .expect("older archive");
    f.stop_runner().await;
    // The crash state: the newer backup's record complete (name, size, sha256, file stamp)
    // but still running, and "keep 1" saved, as if it was killed before retention.
    sqlx::query("UPDATE jobs SET status = 'running', finished_at = NULL WHERE id = ?")
        .bind(newer.id)
        .execute(f.engine.state())
        .await
        .expect("the record as the crash left it");
    f.engine
        .save_settings(&json!({"retention_count": 1}))
        .await
        .expect("save settings");
    f.engine.close().await;

    let engine = open_engine(&f.data, f.plugins.clone()).await;
    engine.restart_sweep().await.expect("restart sweep");
    let kept = engine.get_job(newer.id).await.expect("kept");
    assert_eq!(kept.status, JobStatus::Succeeded);
    assert!(
        kept.warnings.iter().any(|w| w.contains("restarted")),
        "{kept:?}"
    );
    engine
        .archive_path(newer.id)
        .await
        .expect("its archive is intact");
    assert!(
        engine.get_job(older.id).await.is_err(),
        "retention 1 pruned the older record"
    );
    assert!(!older_file.exists(), "and its file");
}
