//! The plugin host against the real plugins of `plugins/` (built by `plugins/build.sh` on
//! first use, or taken from `BACKSTOP_PLUGINS_BUILD` when set). Every limit and permission
//! is tested both ways, with the exact error the job records.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use engine::plugins::{
    ArchivedDirectory, ArchivedPlugin, GrantsUpdate, HookPoint, JobContext, PluginRuntime,
    PluginUpdate, RestoreInput,
};
use plugin_host::{HostConfig, PluginHost};

/// The built plugins: `<dir>/<id>/{plugin.toml, plugin.wasm}`.
fn built() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("BACKSTOP_PLUGINS_BUILD") {
            return PathBuf::from(dir);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins");
        let out = root.join("target/backstop-plugins");
        let status = std::process::Command::new(root.join("build.sh"))
            .arg(&out)
            .env("CARGO_TARGET_DIR", root.join("target"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .expect("run plugins/build.sh");
        assert!(status.success(), "plugins/build.sh failed");
        out
    })
}

/// A temp data dir with some plugins installed, and a host over it.
struct Setup {
    dir: tempfile::TempDir,
    host: PluginHost,
}

impl Setup {
    fn data(&self) -> &Path {
        self.dir.path()
    }
}

/// Installs `ids` (with `edit` applied to each plugin.toml) and starts a host with `threads`.
fn setup_with(ids: &[&str], threads: usize, edit: impl Fn(&str, String) -> String) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    for id in ids {
        let to = plugins.join(id);
        std::fs::create_dir_all(&to).expect("mkdir");
        let manifest =
            std::fs::read_to_string(built().join(id).join("plugin.toml")).expect("manifest");
        std::fs::write(to.join("plugin.toml"), edit(id, manifest)).expect("write manifest");
        std::fs::copy(built().join(id).join("plugin.wasm"), to.join("plugin.wasm"))
            .expect("copy wasm");
    }
    let mut config = HostConfig::for_data_dir(dir.path());
    // Shared by every test so each component is compiled once per machine, not per test.
    config.cache_dir = Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache"));
    config.threads = threads;
    let host = PluginHost::new(config).expect("host");
    Setup { dir, host }
}

fn setup(ids: &[&str]) -> Setup {
    setup_with(ids, 2, |_, m| m)
}

/// Sets a manifest's failure policy.
fn policy(p: &str) -> impl Fn(&str, String) -> String {
    move |_, m| {
        m.replace(
            "failure_policy = \"warn\"",
            &format!("failure_policy = \"{p}\""),
        )
    }
}

/// Enables a plugin with mounts, veto and settings, the way the API does.
fn enable(
    host: &PluginHost,
    id: &str,
    mounts: &[(&str, &Path)],
    veto: bool,
    settings: serde_json::Value,
) {
    let update = PluginUpdate {
        enabled: Some(true),
        grants: Some(GrantsUpdate {
            mounts: Some(
                mounts
                    .iter()
                    .map(|(n, p)| ((*n).to_owned(), p.to_path_buf()))
                    .collect(),
            ),
            veto: Some(veto),
            limits: None,
        }),
        settings: settings.as_object().cloned(),
    };
    let record = host
        .plan_update(id, &update)
        .unwrap_or_else(|e| panic!("enable {id}: {e:?}"));
    host.apply_record(record);
}

fn job(id: i64) -> JobContext {
    JobContext {
        job_id: id,
        kind: "backup".into(),
        trigger: "manual".into(),
        include_recordings: true,
        facts: vec![],
        progress: Default::default(),
    }
}

fn mkdirs(base: &Path, rel: &str) -> PathBuf {
    let p = base.join(rel);
    std::fs::create_dir_all(&p).expect("mkdir");
    p
}

fn no_settings() -> serde_json::Value {
    serde_json::json!({})
}

// ---------------------------------------------------------------- contributions

#[test]
fn echo_contributes_a_scratch_file_an_inline_blob_and_a_directory() {
    let s = setup(&["fixture-echo"]);
    let data = mkdirs(s.data(), "mount");
    std::fs::create_dir_all(data.join("sub")).expect("mkdir");
    enable(
        &s.host,
        "fixture-echo",
        &[("data", &data)],
        false,
        serde_json::json!({"greeting": "hi"}),
    );
    let scratch = mkdirs(s.data(), "staging/scratch");
    let reported = Arc::new(Mutex::new(Vec::new()));
    let mut ctx = job(7);
    ctx.progress = engine::plugins::PluginProgress::new({
        let reported = reported.clone();
        move |done, total| reported.lock().unwrap().push((done, total))
    });
    let c = s.host.collect(&ctx, &scratch);
    assert_eq!(
        *reported.lock().unwrap(),
        [(1, 2), (2, 2)],
        "host.progress reaches the job"
    );
    assert!(
        c.warnings.is_empty() && c.abort.is_none(),
        "{:?} {:?}",
        c.warnings,
        c.abort
    );
    assert_eq!(
        c.plugins,
        vec![("fixture-echo".to_owned(), "0.1.0".to_owned())]
    );
    assert_eq!(c.directories.len(), 1);
    assert_eq!(c.directories[0].name, "echo");
    assert_eq!(
        c.directories[0].path,
        data.canonicalize().expect("canon").join("sub")
    );
    assert_eq!(c.directories[0].contributed_by, "fixture-echo");
    let files: Vec<(&str, String)> = c
        .files
        .iter()
        .map(|f| {
            (
                f.relative.as_str(),
                std::fs::read_to_string(&f.path).expect("read"),
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            ("generated.txt", "hi from job 7\n".to_owned()),
            ("meta/inline.json", "{\"ok\":true}".to_owned())
        ]
    );
    let log = s.host.job_log(7);
    assert!(
        log.iter()
            .any(|l| l.message == "collecting for job 7" && l.level == "info"),
        "{log:?}"
    );
}

#[test]
fn recordings_plugin_contributes_data_recordings_when_included_and_places_it_back() {
    let s = setup(&["recordings"]);
    let rec = mkdirs(s.data(), "recordings");
    std::fs::write(rec.join("show.ts"), b"video").expect("write");
    assert!(
        !s.host.provides_directory("recordings"),
        "disabled: the built-in source keeps recordings"
    );
    enable(
        &s.host,
        "recordings",
        &[("recordings", &rec)],
        false,
        no_settings(),
    );
    assert!(
        s.host.provides_directory("recordings"),
        "enabled: the built-in source steps aside"
    );

    let scratch = mkdirs(s.data(), "scratch");
    let c = s.host.collect(&job(1), &scratch);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.directories.len(), 1);
    assert_eq!(c.directories[0].name, "recordings");
    assert_eq!(c.directories[0].path, rec.canonicalize().expect("canon"));

    let without = JobContext {
        include_recordings: false,
        ..job(2)
    };
    let c = s.host.collect(&without, &scratch);
    assert!(
        c.directories.is_empty() && c.plugins.is_empty(),
        "not included: nothing contributed"
    );

    let input = RestoreInput {
        directories: vec![ArchivedDirectory {
            name: "recordings".into(),
            contributed_by: "recordings".into(),
        }],
        plugins: vec![ArchivedPlugin {
            id: "recordings".into(),
            version: "0.1.0".into(),
            files: None,
        }],
    };
    let plan = s.host.plan_restore(&job(3), &input);
    assert!(
        plan.warnings.is_empty() && plan.abort.is_none(),
        "{:?}",
        plan.warnings
    );
    assert_eq!(plan.targets.len(), 1);
    assert_eq!(plan.targets[0].target, rec.canonicalize().expect("canon"));
}

#[test]
fn custom_dirs_contributes_each_listed_directory_and_refuses_one_outside_its_root() {
    let s = setup(&["custom-dirs"]);
    let root = mkdirs(s.data(), "srv");
    mkdirs(&root, "etc/nginx");
    mkdirs(&root, "cron");
    let dirs = serde_json::json!([{"name": "nginx", "path": "etc/nginx"}, {"name": "cron", "path": "cron"}]);
    enable(
        &s.host,
        "custom-dirs",
        &[("root", &root)],
        false,
        serde_json::json!({ "directories": dirs }),
    );
    let scratch = mkdirs(s.data(), "scratch");
    let c = s.host.collect(&job(1), &scratch);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let got: Vec<(&str, PathBuf)> = c
        .directories
        .iter()
        .map(|d| (d.name.as_str(), d.path.clone()))
        .collect();
    let canon = root.canonicalize().expect("canon");
    assert_eq!(
        got,
        [
            ("nginx", canon.join("etc/nginx")),
            ("cron", canon.join("cron"))
        ]
    );

    // Restore: both go back where the settings say; one that left the settings is reported.
    let input = RestoreInput {
        directories: ["nginx", "cron", "gone"]
            .iter()
            .map(|n| ArchivedDirectory {
                name: (*n).into(),
                contributed_by: "custom-dirs".into(),
            })
            .collect(),
        plugins: vec![ArchivedPlugin {
            id: "custom-dirs".into(),
            version: "0.1.0".into(),
            files: None,
        }],
    };
    let plan = s.host.plan_restore(&job(2), &input);
    assert_eq!(
        plan.targets
            .iter()
            .map(|t| t.target.clone())
            .collect::<Vec<_>>(),
        [canon.join("etc/nginx"), canon.join("cron")]
    );
    assert_eq!(
        plan.warnings,
        [
            "data/gone/ in the archive was not restored: plugin custom-dirs is not installed or enabled, or did not say where it goes"
        ]
    );

    let escape = serde_json::json!([{"name": "etc", "path": "../../etc"}]);
    enable(
        &s.host,
        "custom-dirs",
        &[("root", &root)],
        false,
        serde_json::json!({ "directories": escape }),
    );
    let c = s.host.collect(&job(3), &scratch);
    assert!(c.directories.is_empty());
    assert_eq!(
        c.warnings,
        [
            "plugin custom-dirs at collect: returned output that was refused: path \"../../etc\" contains '..'; it must stay inside mount \"root\""
        ]
    );
}

#[test]
fn path_escapes_are_refused_with_the_rule_they_broke() {
    let s = setup(&["fixture-path-escape"]);
    let data = mkdirs(s.data(), "mount");
    mkdirs(&data, "inside");
    mkdirs(s.data(), "outside");
    let scratch = mkdirs(s.data(), "scratch");
    let prefix = "plugin fixture-path-escape at collect: returned output that was refused: ";
    for (attack, want) in [
        (
            "dotdot",
            "path \"inside/../../outside\" contains '..'; it must stay inside mount \"data\"",
        ),
        (
            "absolute",
            "path \"/etc\" is absolute; give a path relative to mount \"data\"",
        ),
        (
            "scratch-dotdot",
            "path \"../../outside/secret.txt\" contains '..'; it must stay inside /scratch",
        ),
        (
            "scratch-absolute",
            "path \"/etc/passwd\" is absolute; give a path relative to /scratch",
        ),
        (
            "inline-dotdot",
            "path \"../../evil.txt\" contains '..'; it must stay inside the plugin's archive folder",
        ),
        (
            "inline-absolute",
            "path \"/evil.txt\" is absolute; give a path relative to the plugin's archive folder",
        ),
        (
            "bad-name",
            "directory name \"../logos\" must be letters, digits, '-', '_' or '.'",
        ),
        (
            "unknown-mount",
            "mount \"not-granted\" is not one of the mounts in its plugin.toml",
        ),
    ] {
        enable(
            &s.host,
            "fixture-path-escape",
            &[("data", &data)],
            false,
            serde_json::json!({ "attack": attack }),
        );
        let c = s.host.collect(&job(1), &scratch);
        assert!(
            c.directories.is_empty() && c.files.is_empty(),
            "{attack}: nothing accepted"
        );
        assert_eq!(c.warnings, [format!("{prefix}{want}")], "{attack}");
    }
    // The same plugin with a harmless path is accepted: the refusals above are the paths.
    enable(
        &s.host,
        "fixture-path-escape",
        &[("data", &data)],
        false,
        serde_json::json!({ "attack": "none" }),
    );
    let c = s.host.collect(&job(1), &scratch);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        c.directories[0].path,
        data.canonicalize().expect("canon").join("inside")
    );
}

#[test]
fn symlinks_out_of_a_mount_or_scratch_are_refused() {
    let s = setup(&["fixture-symlink-escape"]);
    let data = mkdirs(s.data(), "mount");
    let outside = mkdirs(s.data(), "outside");
    std::fs::write(outside.join("secret"), b"secret").expect("write");
    std::os::unix::fs::symlink(&outside, data.join("link")).expect("symlink");
    let scratch = mkdirs(s.data(), "scratch");

    enable(
        &s.host,
        "fixture-symlink-escape",
        &[("data", &data)],
        false,
        serde_json::json!({ "attack": "mount-link" }),
    );
    let c = s.host.collect(&job(1), &scratch);
    assert!(c.directories.is_empty());
    assert_eq!(
        c.warnings,
        [
            "plugin fixture-symlink-escape at collect: returned output that was refused: path \"link\" leads outside mount \"data\""
        ]
    );

    enable(
        &s.host,
        "fixture-symlink-escape",
        &[("data", &data)],
        false,
        serde_json::json!({ "attack": "scratch-link" }),
    );
    let c = s.host.collect(&job(2), &scratch);
    assert!(
        c.files.is_empty(),
        "a symlink out of /scratch is never archived"
    );
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    let w = &c.warnings[0];
    assert!(
        w == "plugin fixture-symlink-escape at collect: returned output that was refused: path \"leak\" leads outside /scratch"
            || w == "plugin fixture-symlink-escape at collect: returned output that was refused: path \"leak\" does not exist in /scratch",
        "{w}"
    );
}

// ---------------------------------------------------------------- limits

#[test]
fn a_spinning_plugin_is_stopped_at_its_deadline_while_other_calls_go_on() {
    // One runtime worker: a spinning guest must hold neither it nor other callers.
    let s = setup_with(&["fixture-spin", "fixture-echo"], 1, |id, m| {
        if id == "fixture-spin" {
            m.replace(
                "exports = [\"contributor\", \"hooks\"]",
                "exports = [\"hooks\"]",
            )
            .replace("timeout_ms = 300", "timeout_ms = 1000")
        } else {
            m
        }
    });
    let data = mkdirs(s.data(), "mount");
    mkdirs(&data, "sub");
    enable(&s.host, "fixture-spin", &[], false, no_settings());
    enable(
        &s.host,
        "fixture-echo",
        &[("data", &data)],
        false,
        no_settings(),
    );
    let scratch = mkdirs(s.data(), "scratch");
    std::thread::scope(|scope| {
        let spinning = scope.spawn(|| {
            let t = Instant::now();
            let report = s.host.run_hooks(HookPoint::PreBackup, &job(1));
            (report, t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        let mut times = Vec::new();
        while !spinning.is_finished() {
            let t = Instant::now();
            let c = s.host.collect(&job(2), &scratch);
            assert!(c.warnings.is_empty(), "{:?}", c.warnings);
            times.push(t.elapsed());
        }
        times.sort();
        let (report, took) = spinning.join().expect("join");
        assert_eq!(
            report.warnings,
            ["plugin fixture-spin at pre-backup: stopped after its 1000 ms deadline"]
        );
        // No tight timing on a shared machine: it stopped (the warning names the deadline)
        // and, while it spun, other calls completed one after another. Had they waited for
        // the spinning call, only one would have run before it ended.
        assert!(
            took >= Duration::from_millis(1000),
            "it ran until its deadline: {took:?}"
        );
        assert!(times.len() >= 3, "other calls ran while it spun: {times:?}");
    });
}

#[test]
fn cancel_stops_a_running_call_promptly() {
    let s = setup_with(&["fixture-spin"], 2, |_, m| {
        m.replace("timeout_ms = 300", "timeout_ms = 60000")
    });
    enable(&s.host, "fixture-spin", &[], false, no_settings());
    std::thread::scope(|scope| {
        let run = scope.spawn(|| {
            let t = Instant::now();
            (s.host.run_hooks(HookPoint::PreBackup, &job(9)), t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(300));
        s.host.cancel_job(9);
        let (report, took) = run.join().expect("join");
        assert_eq!(
            report.warnings,
            ["plugin fixture-spin at pre-backup: stopped: the job was canceled"]
        );
        // The warning says the cancel (not the 60 s deadline) stopped it.
        assert!(
            took < Duration::from_secs(60),
            "before its deadline: {took:?}"
        );
    });
    s.host.job_finished(9);
}

#[test]
fn a_memory_bomb_is_stopped_at_its_cap() {
    let s = setup(&["fixture-memory-bomb"]);
    enable(&s.host, "fixture-memory-bomb", &[], false, no_settings());
    let report = s.host.run_hooks(HookPoint::PreBackup, &job(1));
    assert_eq!(
        report.warnings,
        [
            "plugin fixture-memory-bomb at pre-backup: stopped: it tried to use more than 16 MiB of memory"
        ]
    );
    assert!(report.abort.is_none() && report.veto.is_none());
}

#[test]
fn a_panic_fails_only_its_call_under_each_policy() {
    let prefix = "plugin fixture-panic at pre-backup: trapped: ";
    // warn: a job warning with the trap and the panic message.
    let s = setup(&["fixture-panic", "fixture-echo"]);
    let data = mkdirs(s.data(), "mount");
    enable(&s.host, "fixture-panic", &[], false, no_settings());
    enable(
        &s.host,
        "fixture-echo",
        &[("data", &data)],
        false,
        no_settings(),
    );
    let report = s.host.run_hooks(HookPoint::PostBackup, &job(1));
    assert_eq!(
        report.annotations.len(),
        1,
        "the other plugin still ran: {:?}",
        report.annotations
    );
    let report = s.host.run_hooks(HookPoint::PreBackup, &job(1));
    assert_eq!(report.warnings.len(), 1);
    let w = &report.warnings[0];
    assert!(
        w.starts_with(prefix) && w.contains("fixture panic in on-hook"),
        "{w}"
    );
    assert!(w.contains("wasm `unreachable` instruction executed"), "{w}");
    assert!(report.abort.is_none());
    let view = s
        .host
        .describe()
        .into_iter()
        .find(|v| v.id == "fixture-panic")
        .expect("listed");
    assert_eq!(view.last_error.as_deref(), Some(w.as_str()));

    // ignore: nothing in the job, still the plugin's last error.
    let s = setup_with(&["fixture-panic"], 2, policy("ignore"));
    enable(&s.host, "fixture-panic", &[], false, no_settings());
    let report = s.host.run_hooks(HookPoint::PreBackup, &job(1));
    assert!(
        report.warnings.is_empty() && report.abort.is_none(),
        "{report:?}"
    );
    let view = s
        .host
        .describe()
        .into_iter()
        .find(|v| v.id == "fixture-panic")
        .expect("listed");
    assert!(view.last_error.is_some_and(|e| e.starts_with(prefix)));

    // abort: the job fails with the same message.
    let s = setup_with(&["fixture-panic"], 2, policy("abort"));
    enable(&s.host, "fixture-panic", &[], false, no_settings());
    let report = s.host.run_hooks(HookPoint::PreBackup, &job(1));
    assert!(report.warnings.is_empty());
    let abort = report.abort.expect("abort");
    assert!(
        abort.starts_with(prefix) && abort.contains("fixture panic in on-hook"),
        "{abort}"
    );
    let c = s.host.collect(&job(1), &mkdirs(s.data(), "scratch"));
    assert!(
        c.abort
            .is_some_and(|a| a.starts_with("plugin fixture-panic at collect: trapped: "))
    );
}

#[test]
fn a_log_flood_is_capped_and_the_call_completes() {
    let s = setup(&["fixture-log-flood"]);
    enable(&s.host, "fixture-log-flood", &[], false, no_settings());
    let report = s.host.run_hooks(HookPoint::PostBackup, &job(4));
    assert_eq!(
        report
            .annotations
            .iter()
            .map(|a| a.text.as_str())
            .collect::<Vec<_>>(),
        ["flooded"]
    );
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].starts_with(
            "plugin fixture-log-flood: log output over its 64 KiB / 5000-line cap was dropped ("
        ),
        "{}",
        report.warnings[0]
    );
    let log = s.host.job_log(4);
    let bytes: usize = log.iter().map(|l| l.message.len()).sum();
    assert!(bytes <= 64 * 1024 + 200, "kept {bytes} bytes");
    assert!(log.iter().any(|l| l.message.starts_with("0 flood")));
}

#[test]
fn oversized_output_is_refused_and_a_small_one_accepted() {
    let s = setup(&["fixture-big-inline"]);
    enable(
        &s.host,
        "fixture-big-inline",
        &[],
        false,
        serde_json::json!({ "mib": 8 }),
    );
    let scratch = mkdirs(s.data(), "scratch");
    let c = s.host.collect(&job(1), &scratch);
    assert!(c.files.is_empty());
    assert_eq!(
        c.warnings,
        [
            "plugin fixture-big-inline at collect: returned output that was refused: inline blob \"big.bin\" is 8388608 bytes; inline output is limited to 1048576 bytes per call"
        ]
    );
    let report = s.host.run_hooks(HookPoint::PostBackup, &job(1));
    assert_eq!(
        report.warnings,
        [
            "plugin fixture-big-inline at post-backup: returned output that was refused: an annotation of 1048576 bytes; the limit is 4096"
        ]
    );
    enable(
        &s.host,
        "fixture-big-inline",
        &[],
        false,
        serde_json::json!({ "mib": 1 }),
    );
    let c = s.host.collect(&job(2), &scratch);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        std::fs::metadata(&c.files[0].path).expect("stat").len(),
        1 << 20
    );
}

// ---------------------------------------------------------------- permissions

#[test]
fn a_veto_with_the_grant_stops_a_gate_and_is_an_annotation_elsewhere() {
    let s = setup(&["fixture-veto"]);
    enable(&s.host, "fixture-veto", &[], true, no_settings());
    let report = s.host.run_hooks(HookPoint::PreBackup, &job(1));
    assert_eq!(
        report.veto,
        Some((
            "fixture-veto".to_owned(),
            "fixture veto at pre-backup".to_owned()
        ))
    );
    let report = s.host.run_hooks(HookPoint::PostBackup, &job(1));
    assert!(report.veto.is_none() && report.warnings.is_empty());
    assert_eq!(
        report.annotations[0].text,
        "veto ignored (post-backup is not a gate): fixture veto at post-backup"
    );
    assert_eq!(report.annotations[0].step, "post-backup");
}

#[test]
fn a_veto_without_the_grant_is_an_annotation_and_a_warning() {
    let s = setup(&["fixture-veto"]);
    enable(&s.host, "fixture-veto", &[], false, no_settings());
    let report = s.host.run_hooks(HookPoint::PreBackup, &job(1));
    assert!(report.veto.is_none());
    assert_eq!(
        report.warnings,
        [
            "plugin fixture-veto asked to stop the job at pre-backup but holds no veto grant; the job went on (fixture veto at pre-backup)"
        ]
    );
    assert_eq!(
        report.annotations[0].text,
        "veto ignored (no veto grant): fixture veto at pre-backup"
    );
}

#[test]
fn backup_calls_cannot_write_their_mounts_and_restore_calls_can() {
    let s = setup(&["fixture-ro-write"]);
    let data = mkdirs(s.data(), "mount");
    enable(
        &s.host,
        "fixture-ro-write",
        &[("data", &data)],
        false,
        no_settings(),
    );
    let c = s.host.collect(&job(1), &mkdirs(s.data(), "scratch"));
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0].starts_with(
            "plugin fixture-ro-write at collect: failed: write to /mounts/data/written-at-backup.txt failed: "
        ),
        "{}",
        c.warnings[0]
    );
    assert!(!data.join("written-at-backup.txt").exists());

    let input = RestoreInput {
        directories: vec![],
        plugins: vec![ArchivedPlugin {
            id: "fixture-ro-write".into(),
            version: "0.1.0".into(),
            files: None,
        }],
    };
    let report = s.host.restore(&job(2), &input);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.annotations[0].text, "wrote written-at-restore.txt");
    assert!(data.join("written-at-restore.txt").exists());
}

#[test]
fn the_network_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let target = listener.local_addr().expect("addr").to_string();
    let s = setup(&["fixture-network"]);
    enable(
        &s.host,
        "fixture-network",
        &[],
        false,
        serde_json::json!({ "target": target }),
    );
    let c = s.host.collect(&job(1), &mkdirs(s.data(), "scratch"));
    assert_eq!(c.warnings.len(), 1);
    let w = &c.warnings[0];
    assert!(
        w.starts_with(&format!(
            "plugin fixture-network at collect: failed: tcp connect {target}: "
        )),
        "{w}"
    );
    assert!(
        w.contains("; udp send: ") && w.contains("; lookup example.com: "),
        "{w}"
    );
    assert_eq!(
        listener.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock)
    );
}

// ---------------------------------------------------------------- restore and lifecycle

#[test]
fn restore_hands_each_plugin_its_staged_files_and_reports_missing_plugins() {
    let s = setup(&["fixture-echo"]);
    let data = mkdirs(s.data(), "mount");
    mkdirs(&data, "sub");
    enable(
        &s.host,
        "fixture-echo",
        &[("data", &data)],
        false,
        no_settings(),
    );
    let staged = mkdirs(s.data(), "staged/plugins/fixture-echo");
    std::fs::write(staged.join("generated.txt"), "hello from job 1\n").expect("write");
    let input = RestoreInput {
        directories: vec![
            ArchivedDirectory {
                name: "echo".into(),
                contributed_by: "fixture-echo".into(),
            },
            ArchivedDirectory {
                name: "logos".into(),
                contributed_by: "backstop".into(),
            },
            ArchivedDirectory {
                name: "stuff".into(),
                contributed_by: "gone-plugin".into(),
            },
        ],
        plugins: vec![
            ArchivedPlugin {
                id: "fixture-echo".into(),
                version: "0.1.0".into(),
                files: Some(staged.clone()),
            },
            ArchivedPlugin {
                id: "gone-plugin".into(),
                version: "1.0.0".into(),
                files: Some(staged.clone()),
            },
        ],
    };
    let plan = s.host.plan_restore(&job(5), &input);
    assert_eq!(plan.targets.len(), 1);
    assert_eq!(
        plan.targets[0].target,
        data.canonicalize().expect("canon").join("sub")
    );
    assert_eq!(
        plan.warnings,
        [
            "data/stuff/ in the archive was not restored: plugin gone-plugin is not installed or enabled, or did not say where it goes"
        ]
    );
    let report = s.host.restore(&job(5), &input);
    assert_eq!(report.annotations[0].text, "restored 17 bytes");
    assert_eq!(
        std::fs::read_to_string(data.join("restored.txt")).expect("read"),
        "hello from job 1\n"
    );
    assert_eq!(
        report.warnings,
        [
            "plugins/gone-plugin/ in the archive was not restored: plugin gone-plugin is not installed, not enabled, or has no restorer"
        ]
    );
}

#[test]
fn grants_are_checked_and_a_version_asking_for_more_waits_for_approval() {
    let s = setup(&["fixture-echo", "fixture-panic"]);
    let data = mkdirs(s.data(), "mount");
    // Enabling without the mount, with an unknown mount, a relative path, a veto not requested.
    let update = PluginUpdate {
        enabled: Some(true),
        grants: Some(GrantsUpdate {
            mounts: Some([("other".to_owned(), PathBuf::from("rel"))].into()),
            veto: Some(true),
            limits: Some(engine::plugins::PluginLimits {
                memory_mb: Some(100_000),
                ..Default::default()
            }),
        }),
        settings: Some(
            serde_json::json!({"greeting": 5, "nope": 1})
                .as_object()
                .cloned()
                .expect("object"),
        ),
    };
    let err = s
        .host
        .plan_update("fixture-echo", &update)
        .expect_err("refused");
    let fields = err.field_errors();
    assert!(!fields.is_empty(), "refused without field errors: {err}");
    assert_eq!(
        fields["grants.mounts.other"],
        "this plugin requests no such mount"
    );
    assert_eq!(
        fields["grants.mounts.data"],
        "grant a folder for this mount before enabling the plugin"
    );
    assert_eq!(
        fields["grants.veto"],
        "this plugin does not request the veto"
    );
    assert_eq!(
        fields["grants.limits.memory_mb"],
        "must be between 1 and 512"
    );
    assert_eq!(fields["settings.greeting"], "must be text");
    assert_eq!(fields["settings.nope"], "this plugin has no such setting");
    assert_eq!(
        s.host
            .plan_update("nope", &PluginUpdate::default())
            .expect_err("404")
            .kind(),
        engine::ErrorKind::NotFound
    );

    enable(
        &s.host,
        "fixture-echo",
        &[("data", &data)],
        false,
        no_settings(),
    );
    enable(&s.host, "fixture-panic", &[], false, no_settings());
    let state = |id: &str| {
        s.host
            .describe()
            .into_iter()
            .find(|v| v.id == id)
            .expect("listed")
            .state
    };
    assert_eq!(state("fixture-echo"), "enabled");

    // A new version asking for the veto (more) waits; one asking for nothing more runs.
    let dir = s.data().join("plugins");
    let bump = |id: &str, extra: &str| {
        let p = dir.join(id).join("plugin.toml");
        let m = std::fs::read_to_string(&p)
            .expect("read")
            .replace("version = \"0.1.0\"", "version = \"0.2.0\"");
        std::fs::write(&p, format!("{m}{extra}")).expect("write");
    };
    bump("fixture-echo", "\n[permissions]\nveto = true\n");
    bump("fixture-panic", "");
    s.host.rescan();
    assert_eq!(state("fixture-echo"), "needs-approval");
    assert_eq!(state("fixture-panic"), "enabled");
    let report = s.host.run_hooks(HookPoint::PostBackup, &job(1));
    assert!(
        report.annotations.is_empty(),
        "the unapproved version does not run: {:?}",
        report.annotations
    );
    enable(
        &s.host,
        "fixture-echo",
        &[("data", &data)],
        true,
        no_settings(),
    );
    assert_eq!(state("fixture-echo"), "enabled");
}

#[test]
fn a_broken_plugin_is_listed_with_its_reason_and_never_runs() {
    let s = setup_with(&["fixture-echo", "fixture-veto"], 2, |id, m| {
        if id == "fixture-echo" {
            m.replace("failure_policy", "failure-policy")
        } else {
            m.replace("id = \"fixture-veto\"", "id = \"other-id\"")
        }
    });
    let views = s.host.describe();
    let echo = views
        .iter()
        .find(|v| v.id == "fixture-echo")
        .expect("listed");
    assert_eq!(echo.state, "broken");
    assert!(
        echo.last_error.as_deref().is_some_and(|e| e.starts_with(
            "plugin.toml is not valid: line 7, at failure-policy: unknown field `failure-policy`"
        )),
        "{:?}",
        echo.last_error
    );
    let veto = views
        .iter()
        .find(|v| v.id == "fixture-veto")
        .expect("listed");
    assert_eq!(
        veto.last_error.as_deref(),
        Some("plugin.toml says id \"other-id\" but the folder is named \"fixture-veto\"")
    );
    let err = s
        .host
        .plan_update(
            "fixture-veto",
            &PluginUpdate {
                enabled: Some(true),
                ..Default::default()
            },
        )
        .expect_err("broken");
    assert_eq!(err.kind(), engine::ErrorKind::Conflict);
}

#[test]
fn install_checks_the_plugin_before_writing_and_it_starts_disabled() {
    let s = setup(&[]);
    let manifest =
        std::fs::read_to_string(built().join("fixture-veto/plugin.toml")).expect("manifest");
    let wasm = std::fs::read(built().join("fixture-veto/plugin.wasm")).expect("wasm");
    let err = s
        .host
        .install(&manifest.replace("api = \"0.1.0\"", "api = \"9.0\""), &wasm)
        .expect_err("bad api");
    assert_eq!(
        err.message(),
        "plugin.toml: api \"9.0\" is not supported by this Backstop (it implements 0.1.0)"
    );
    let err = s
        .host
        .install(&manifest, b"not wasm")
        .expect_err("bad component");
    assert!(
        err.message()
            .starts_with("plugin fixture-veto was not installed: "),
        "{}",
        err.message()
    );
    assert!(
        !s.data().join("plugins/fixture-veto").exists(),
        "nothing written for a refused plugin"
    );
    let view = s.host.install_plugin(&manifest, &wasm).expect("installed");
    assert_eq!(
        (view.id.as_str(), view.state.as_str()),
        ("fixture-veto", "disabled")
    );
    assert!(s.data().join("plugins/fixture-veto/plugin.wasm").is_file());
    assert!(
        s.host
            .run_hooks(HookPoint::PreBackup, &job(1))
            .veto
            .is_none(),
        "disabled plugins do not run"
    );
}

#[test]
fn space_guard_vetoes_a_backup_that_would_not_fit_and_lets_one_that_fits_go() {
    let s = setup(&["space-guard"]);
    enable(
        &s.host,
        "space-guard",
        &[],
        true,
        serde_json::json!({ "margin_percent": 10 }),
    );
    let with = |free: u64, estimated: u64| JobContext {
        facts: vec![
            ("archive_dir".into(), "/srv/backups".into()),
            ("free_bytes".into(), free.to_string()),
            ("estimated_bytes".into(), estimated.to_string()),
        ],
        progress: Default::default(),
        ..job(1)
    };
    let mib = 1u64 << 20;
    let report = s
        .host
        .run_hooks(HookPoint::PreBackup, &with(100 * mib, 95 * mib));
    assert_eq!(
        report.veto,
        Some((
            "space-guard".to_owned(),
            "not enough free space in /srv/backups: the backup needs about 104.5 MiB (estimate 95.0 MiB + 10% margin + 0.0 MiB reserve) but only 100.0 MiB is free".to_owned()
        ))
    );
    let report = s
        .host
        .run_hooks(HookPoint::PreBackup, &with(100 * mib, 50 * mib));
    assert!(
        report.veto.is_none() && report.warnings.is_empty(),
        "{report:?}"
    );
    // Without the facts it cannot judge and lets the job go.
    assert!(
        s.host
            .run_hooks(HookPoint::PreBackup, &job(2))
            .veto
            .is_none()
    );
}

#[test]
fn a_plugin_waiting_on_the_host_is_stopped_at_its_deadline_and_by_cancel() {
    let s = setup(&["fixture-spin"]);
    enable(
        &s.host,
        "fixture-spin",
        &[],
        false,
        serde_json::json!({ "how": "sleep" }),
    );
    let t = Instant::now();
    let report = s.host.run_hooks(HookPoint::PreBackup, &job(1));
    assert_eq!(
        report.warnings,
        ["plugin fixture-spin at pre-backup: stopped after its 300 ms deadline"]
    );
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );

    let s = setup_with(&["fixture-spin"], 2, |_, m| {
        m.replace("timeout_ms = 300", "timeout_ms = 60000")
    });
    enable(
        &s.host,
        "fixture-spin",
        &[],
        false,
        serde_json::json!({ "how": "sleep" }),
    );
    std::thread::scope(|scope| {
        let run = scope.spawn(|| s.host.run_hooks(HookPoint::PreBackup, &job(3)));
        std::thread::sleep(Duration::from_millis(300));
        s.host.cancel_job(3);
        let report = run.join().expect("join");
        assert_eq!(
            report.warnings,
            ["plugin fixture-spin at pre-backup: stopped: the job was canceled"]
        );
    });
}

// ---------------------------------------------------------------- wasmtime 48.0.8 advisories

/// Runs one test of this binary alone in a child process (with `BACKSTOP_ISOLATED` set) and
/// returns how it ended: for what may abort the process, or measures its peak memory.
fn run_isolated(test: &str) -> std::process::Output {
    std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BACKSTOP_ISOLATED", "1")
        .output()
        .expect("run the test binary")
}

fn isolated() -> bool {
    std::env::var_os("BACKSTOP_ISOLATED").is_some()
}

/// The peak resident memory of this process (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb << 10
}

/// The GHSA-rc4p-x33f-vpr2 attack, hand-assembled (no Rust toolchain emits it): a component
/// whose core module declares a non-final function type and, from its start function (run
/// at instantiation, before any export is called), makes a `call_indirect` of that type to
/// a function of another type. Wasmtime checks that with its `is_subtype` builtin, which in
/// a build without the `gc` cargo feature is a panicking stub that aborts the process.
///
/// ```wat
/// (component
///   (core module $m
///     (type $super (sub (func)))              ;; non-final: only the GC proposal has these
///     (type $other (func (param i32)))
///     (table 1 funcref)
///     (elem (i32.const 0) func $f)
///     (func $f (type $other) (param i32))
///     (func $start (type $super)
///       (call_indirect (type $super) (i32.const 0)))
///     (start $start))
///   (core instance (instantiate $m)))
/// ```
fn gc_subtype_component() -> Vec<u8> {
    fn section(id: u8, body: &[u8]) -> Vec<u8> {
        assert!(body.len() < 128, "one-byte LEB128 sizes only");
        [&[id, body.len() as u8][..], body].concat()
    }
    let module = [
        &b"\0asm\x01\0\0\0"[..],
        // Types: 0 = sub (no supertypes) (func), 1 = (func (param i32)).
        &section(1, &[2, 0x50, 0, 0x60, 0, 0, 0x60, 1, 0x7f, 0]),
        // Functions: $f has type 1, $start type 0.
        &section(3, &[2, 1, 0]),
        // One funcref table of at least 1 element.
        &section(4, &[1, 0x70, 0, 1]),
        // Start: function 1.
        &section(8, &[1]),
        // Active element segment at table 0, offset (i32.const 0): function 0.
        &section(9, &[1, 0, 0x41, 0, 0x0b, 1, 0]),
        // Code: $f is empty; $start is `i32.const 0; call_indirect type 0 table 0; end`.
        &section(10, &[2, 2, 0, 0x0b, 7, 0, 0x41, 0, 0x11, 0, 0, 0x0b]),
    ]
    .concat();
    [
        // Component preamble: version 0x0d, layer 1.
        &b"\0asm\x0d\0\x01\0"[..],
        &section(1, &module),
        // One core instance: instantiate module 0 with no arguments.
        &section(2, &[1, 0, 0, 0]),
    ]
    .concat()
}

/// Child half of the test below: an engine left at wasmtime's defaults (same build, same
/// cargo features as the host) instantiates the attack. Here that aborts the process. With
/// wasmtime 48.0.9 or later it traps instead; then this half has served its purpose.
#[test]
#[ignore = "run by gc_subtype_attack_aborts_an_engine_at_the_defaults_and_is_refused_by_ours"]
fn gc_subtype_attack_on_a_default_engine() {
    if !isolated() {
        return;
    }
    let engine = wasmtime::Engine::new(&wasmtime::Config::new()).expect("engine");
    let component = wasmtime::component::Component::new(&engine, gc_subtype_component())
        .expect("a default engine accepts it");
    let linker = wasmtime::component::Linker::<()>::new(&engine);
    let mut store = wasmtime::Store::new(&engine, ());
    let result = linker.instantiate(&mut store, &component).map(|_| ());
    println!("survived: {result:?}");
}

#[test]
fn gc_subtype_attack_aborts_an_engine_at_the_defaults_and_is_refused_by_ours() {
    use std::os::unix::process::ExitStatusExt;
    // The advisory is real in this build: a default engine dies of SIGABRT, not a trap.
    let out = run_isolated("gc_subtype_attack_on_a_default_engine");
    assert_eq!(
        out.status.signal(),
        Some(6),
        "expected an abort: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("panic in a function that cannot unwind"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Ours refuses the component when it loads: an upload is refused with the reason and
    // nothing is written; one already in the plugins folder is listed as broken, never run.
    let manifest = "id = \"gc-subtype\"\nname = \"GC subtype\"\nversion = \"0.1.0\"\napi = \"0.1.0\"\nexports = [\"hooks\"]\n";
    let s = setup(&[]);
    let err = s
        .host
        .install_plugin(manifest, &gc_subtype_component())
        .expect_err("refused");
    assert_eq!(err.kind(), engine::ErrorKind::Invalid);
    println!("upload refused: {}", err.message());
    assert!(err.message().contains("gc proposal"), "{}", err.message());
    assert!(!s.data().join("plugins/gc-subtype").exists());
    let dir = s.data().join("plugins/gc-subtype");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("plugin.toml"), manifest).expect("manifest");
    std::fs::write(dir.join("plugin.wasm"), gc_subtype_component()).expect("wasm");
    s.host.rescan();
    let view = s
        .host
        .describe()
        .into_iter()
        .find(|v| v.id == "gc-subtype")
        .expect("listed");
    assert_eq!(view.state, "broken");
    let reason = view.last_error.expect("a reason");
    assert!(
        reason.contains("is not a valid WebAssembly component for this host")
            && reason.contains("gc proposal"),
        "{reason}"
    );
}

/// Child half of the test below: wasmtime-wasi 48.0.8's `AsyncWriteStream`, the stream a
/// guest's stdout would get by default, behind a writer that takes nothing (a stalled
/// pipe). With no write permit left it still accepts every empty write, queueing each.
#[test]
#[ignore = "run by the_default_wasi_output_stream_queues_empty_writes_without_bound"]
fn async_write_stream_in_isolation() {
    use wasmtime_wasi::p2::OutputStream;
    if !isolated() {
        return;
    }
    struct Stalled;
    impl tokio::io::AsyncWrite for Stalled {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Pending
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Pending
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Pending
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let _context = rt.enter();
    let mut stream = wasmtime_wasi::p2::pipe::AsyncWriteStream::new(8192, Stalled);
    stream
        .write(bytes::Bytes::from(vec![b'x'; 8192]))
        .expect("within the permit");
    assert_eq!(stream.check_write().expect("open"), 0, "no permit left");
    let before = peak_rss();
    for _ in 0..4_000_000 {
        stream.write(bytes::Bytes::new()).expect("accepted anyway");
    }
    let grew = peak_rss().saturating_sub(before);
    println!(
        "4,000,000 empty writes queued: peak memory grew by {} MiB",
        grew >> 20
    );
    assert!(grew > 64 << 20, "peak memory grew by {grew} bytes");
}

#[test]
fn the_default_wasi_output_stream_queues_empty_writes_without_bound() {
    // Why the guest's stdout/stderr are our own stream (GHSA-5m8g-xhq4-4h93); with
    // wasmtime-wasi 48.0.9 or later this stops holding and can go.
    let out = run_isolated("async_write_stream_in_isolation");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Child half of the test below, measured in a process of its own.
#[test]
#[ignore = "run by empty_writes_to_stdout_are_stopped_and_cost_the_host_no_memory"]
fn empty_writes_flood_in_isolation() {
    if !isolated() {
        return;
    }
    let s = setup(&["fixture-empty-writes"]);
    enable(&s.host, "fixture-empty-writes", &[], false, no_settings());
    // Warm up (instantiation, pool slot, runtime threads) with a small run first.
    let _ = s.host.run_hooks(HookPoint::PostBackup, &job(1));
    let before = peak_rss();
    let report = s.host.run_hooks(HookPoint::PreBackup, &job(2));
    let grew = peak_rss().saturating_sub(before);
    assert_eq!(
        report.warnings,
        [
            "plugin fixture-empty-writes at pre-backup: stopped: more than 1000000 empty writes to stdout/stderr"
        ]
    );
    assert!(s.host.job_log(2).is_empty(), "{:?}", s.host.job_log(2));
    println!("peak memory grew by {} KiB", grew >> 10);
    assert!(grew < 32 << 20, "peak memory grew by {grew} bytes");
}

#[test]
fn empty_writes_to_stdout_are_stopped_and_cost_the_host_no_memory() {
    let out = run_isolated("empty_writes_flood_in_isolation");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A few empty writes are harmless and the call completes.
    let s = setup(&["fixture-empty-writes"]);
    enable(
        &s.host,
        "fixture-empty-writes",
        &[],
        false,
        serde_json::json!({ "count": 1000 }),
    );
    let report = s.host.run_hooks(HookPoint::PostBackup, &job(1));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(
        report
            .annotations
            .iter()
            .map(|a| a.text.as_str())
            .collect::<Vec<_>>(),
        ["1000 empty writes"]
    );
}

#[test]
fn a_flood_of_empty_log_lines_is_capped_in_lines_too() {
    let s = setup(&["fixture-log-flood"]);
    enable(
        &s.host,
        "fixture-log-flood",
        &[],
        false,
        serde_json::json!({ "empty": true }),
    );
    let report = s.host.run_hooks(HookPoint::PostBackup, &job(5));
    assert_eq!(
        report
            .annotations
            .iter()
            .map(|a| a.text.as_str())
            .collect::<Vec<_>>(),
        ["flooded with empty lines"]
    );
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].starts_with(
            "plugin fixture-log-flood: log output over its 64 KiB / 5000-line cap was dropped ("
        ),
        "{}",
        report.warnings[0]
    );
    // 5,000 kept lines, plus the host's line saying output was dropped.
    assert!(
        s.host.job_log(5).len() <= 5_001,
        "{}",
        s.host.job_log(5).len()
    );
}

// ---------------------------------------------------------------- /scratch

/// Runs fixture-scratch-fill's collect with `settings` (its manifest caps /scratch at 8 MiB).
fn fill_scratch(settings: serde_json::Value) -> (Setup, engine::plugins::Contributions) {
    let s = setup(&["fixture-scratch-fill"]);
    enable(&s.host, "fixture-scratch-fill", &[], false, settings);
    let scratch = mkdirs(s.data(), "scratch");
    let c = s.host.collect(&job(1), &scratch);
    (s, c)
}

const SCRATCH_STOPPED: &str =
    "plugin fixture-scratch-fill at collect: stopped: its /scratch grew past 8 MiB";

#[test]
fn a_plugin_filling_its_scratch_is_stopped_near_its_cap_and_its_files_removed() {
    let (s, c) = fill_scratch(serde_json::json!({ "mib": 0 }));
    assert_eq!(c.warnings, [SCRATCH_STOPPED]);
    assert!(c.files.is_empty() && c.plugins.is_empty());
    assert!(
        !s.data().join("scratch/fixture-scratch-fill").exists(),
        "its scratch folder was removed"
    );
    // The overshoot is what it wrote between two measurements: a few MiB here, never the
    // 64 GiB it would write unstopped.
    let written = s
        .host
        .job_log(1)
        .iter()
        .filter_map(|l| {
            l.message
                .strip_prefix("wrote ")?
                .strip_suffix(" MiB")?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    println!("wrote {written} MiB before it was stopped");
    assert!((8..64).contains(&written), "wrote {written} MiB");
}

#[test]
fn scratch_under_its_cap_is_archived_and_a_last_burst_over_it_is_caught_at_return() {
    let (_s, c) = fill_scratch(serde_json::json!({ "mib": 4 }));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        std::fs::metadata(&c.files[0].path).expect("stat").len(),
        4 << 20
    );
    // 12 MiB written faster than a measurement interval is still refused when it returns.
    let (_s, c) = fill_scratch(serde_json::json!({ "mib": 12 }));
    assert_eq!(c.warnings, [SCRATCH_STOPPED]);
}

#[test]
fn sparse_files_and_many_small_files_count_against_the_scratch_cap() {
    let (_s, c) = fill_scratch(serde_json::json!({ "sparse": true }));
    assert_eq!(c.warnings, [SCRATCH_STOPPED]);
    // Each entry counts at least 4 KiB: 3,000 empty files are 11.7 MiB.
    let (_s, c) = fill_scratch(serde_json::json!({ "files": 3000 }));
    assert_eq!(c.warnings, [SCRATCH_STOPPED]);
    let (_s, c) = fill_scratch(serde_json::json!({ "files": 100 }));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn the_scratch_cap_is_granted_up_to_the_ceiling() {
    let s = setup(&["fixture-scratch-fill"]);
    let grant = |mb: u64| PluginUpdate {
        enabled: Some(true),
        grants: Some(GrantsUpdate {
            limits: Some(engine::plugins::PluginLimits {
                scratch_mb: Some(mb),
                ..Default::default()
            }),
            ..Default::default()
        }),
        settings: serde_json::json!({ "mib": 12 }).as_object().cloned(),
    };
    let err = s
        .host
        .plan_update("fixture-scratch-fill", &grant(1 << 20))
        .expect_err("over the ceiling");
    assert_eq!(
        err.field_errors()
            .get("grants.limits.scratch_mb")
            .map(String::as_str),
        Some("must be between 1 and 16384")
    );
    let record = s
        .host
        .plan_update("fixture-scratch-fill", &grant(16))
        .expect("within the ceiling");
    s.host.apply_record(record);
    let c = s.host.collect(&job(1), &mkdirs(s.data(), "scratch"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        std::fs::metadata(&c.files[0].path).expect("stat").len(),
        12 << 20
    );
}
