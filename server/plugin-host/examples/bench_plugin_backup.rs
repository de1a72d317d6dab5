//! Backup with and without the first-party `recordings` plugin: the same engine, data dir and
//! process run full backups (dump + collect + archive + fsync + job records) alternately
//! through the built-in recordings source and through the enabled plugin, and the medians are
//! compared (issue target: plugin / built-in <= 1.05). Driven by `bench/run.sh`.
//!
//! ```text
//! bench_plugin_backup init <data-dir>          # create and migrate app.db and state.db
//! bench_plugin_backup run <data-dir> [ROUNDS]  # ROUNDS (default 5) timed runs of each source
//! ```
//!
//! `run` expects `<data-dir>/recordings/` to hold files (it refuses an empty folder: it would
//! measure nothing). It installs the `recordings` plugin from `plugins/target/backstop-plugins`
//! (or `BACKSTOP_PLUGINS_BUILD`) into `<data-dir>/plugins/`, runs one untimed warm-up backup
//! of each source, then ROUNDS rounds in ABBA order (built-in, plugin / plugin, built-in / ...)
//! so drift on a shared machine hits both paths alike. Before every timed backup it runs
//! `sync` and waits a second, so writeback of the previous one does not bleed into it. After
//! every backup it checks that the archive's `data/recordings/` file list equals the folder's
//! (listed with `tar tzf`) and that the manifest names the expected contributor, then deletes
//! the job and its archive. Any mismatch stops the benchmark with an error.
//!
//! Prints one line per backup, medians, and a last line of `key=value` pairs for scripts.
//! Three figures per path: the job's wall time (what a user waits for); "archive written",
//! from the start to the job's last progress call (archive written and fsynced), which
//! leaves out the job's tail, where the engine waits up to 200 ms for its progress writer
//! (it sleeps 200 ms between writes), so wall times come in steps of about 200 ms while
//! this one does not; and the process's CPU time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use engine::archive::{Progress, ProgressFn};
use engine::plugins::{BUILTIN_CONTRIBUTOR, GrantsUpdate, PluginUpdate};
use engine::{Engine, EngineConfig};
use plugin_host::{HostConfig, PluginHost};

const PLUGIN: &str = "recordings";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Builtin,
    Plugin,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Builtin => "built-in",
            Source::Plugin => "plugin",
        }
    }
    fn contributor(self) -> &'static str {
        match self {
            Source::Builtin => BUILTIN_CONTRIBUTOR,
            Source::Plugin => PLUGIN,
        }
    }
}

/// One timed backup.
struct Run {
    wall: Duration,
    /// From the start to the last progress call: the archive written and fsynced. Excludes
    /// the job's tail (rename, post-archive hooks, job records, and the wait for the job's
    /// progress writer, which sleeps 200 ms between writes and so rounds the wall time).
    written: Duration,
    /// User + system CPU of the whole process (all threads) during the backup.
    cpu: Duration,
    /// Wall time of each phase, named by the job's progress step it starts with ("start":
    /// before the first step), in order.
    phases: Vec<(&'static str, Duration)>,
    archive_bytes: i64,
}

fn config(data: &Path) -> EngineConfig {
    let mut c = EngineConfig::for_data_dir(data);
    c.demo = false;
    c
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["init", data] => {
            let engine = Engine::open(config(Path::new(data))).await?;
            engine.close().await;
            println!("initialized {data}");
            Ok(())
        }
        ["run", data, rest @ ..] => {
            let rounds = match rest {
                [] => 5,
                [n] => n.parse().context("ROUNDS must be a number")?,
                _ => bail!("usage: bench_plugin_backup run <data-dir> [ROUNDS]"),
            };
            run(Path::new(data), rounds).await
        }
        _ => bail!("usage: bench_plugin_backup init <data-dir> | run <data-dir> [ROUNDS]"),
    }
}

async fn run(data: &Path, rounds: usize) -> anyhow::Result<()> {
    ensure!(rounds > 0, "ROUNDS must be at least 1");
    let data = std::fs::canonicalize(data).with_context(|| format!("{}", data.display()))?;
    let recordings = data.join("recordings");
    let expected = list_tree(&recordings)?;
    ensure!(
        !expected.is_empty(),
        "{} holds no files: the benchmark would measure an empty backup",
        recordings.display()
    );
    let media_bytes: u64 = expected
        .iter()
        .map(|f| std::fs::metadata(recordings.join(f)).map_or(0, |m| m.len()))
        .sum();
    install_plugin(&data)?;

    let t = Instant::now();
    let host_config = HostConfig::for_data_dir(&data);
    let host = tokio::task::spawn_blocking(move || PluginHost::new(host_config)).await??;
    let host_start = t.elapsed();
    let engine = Engine::open_with_plugins(config(&data), Arc::new(host)).await?;
    println!(
        "data dir {}: {} recordings files, {:.1} MiB; plugin host start {:.0} ms; {} cores",
        data.display(),
        expected.len(),
        media_bytes as f64 / (1 << 20) as f64,
        host_start.as_secs_f64() * 1e3,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );

    let mut lists: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for source in [Source::Builtin, Source::Plugin] {
        let r = backup(&engine, source, &recordings, &expected, &mut lists).await?;
        println!(
            "warm-up  {:<8} {:7.3} s  (not counted)",
            source.label(),
            r.wall.as_secs_f64()
        );
    }
    let mut runs: BTreeMap<&'static str, Vec<Run>> = BTreeMap::new();
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [Source::Builtin, Source::Plugin]
        } else {
            [Source::Plugin, Source::Builtin]
        };
        for source in order {
            let r = backup(&engine, source, &recordings, &expected, &mut lists).await?;
            println!(
                "round {}  {:<8} {:7.3} s  written {:6.3} s  cpu {:6.3} s  {}  archive {} bytes",
                round + 1,
                source.label(),
                r.wall.as_secs_f64(),
                r.written.as_secs_f64(),
                r.cpu.as_secs_f64(),
                phases_text(&r.phases),
                r.archive_bytes
            );
            runs.entry(source.label()).or_default().push(r);
        }
    }
    ensure!(
        lists.get("built-in") == lists.get("plugin"),
        "the two paths archived different data/recordings/ file lists"
    );
    engine.close().await;

    let median = |label: &str, f: &dyn Fn(&Run) -> f64| -> f64 {
        let mut v: Vec<f64> = runs[label].iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let wall = |r: &Run| r.wall.as_secs_f64();
    let cpu = |r: &Run| r.cpu.as_secs_f64();
    let written = |r: &Run| r.written.as_secs_f64();
    let (bw, pw) = (median("built-in", &wall), median("plugin", &wall));
    let (bt, pt) = (median("built-in", &written), median("plugin", &written));
    let (bc, pc) = (median("built-in", &cpu), median("plugin", &cpu));
    println!();
    for label in ["built-in", "plugin"] {
        let walls: Vec<String> = runs[label]
            .iter()
            .map(|r| format!("{:.3}", wall(r)))
            .collect();
        let mut phase_names: Vec<&'static str> = Vec::new();
        for (name, _) in runs[label].iter().flat_map(|r| r.phases.iter()) {
            if !phase_names.contains(name) {
                phase_names.push(name);
            }
        }
        let phases: Vec<String> = phase_names
            .iter()
            .map(|name| {
                let m = median(label, &|r: &Run| {
                    r.phases
                        .iter()
                        .filter(|(n, _)| n == name)
                        .map(|(_, d)| d.as_secs_f64())
                        .sum()
                });
                format!("{name} {m:.3}")
            })
            .collect();
        println!(
            "{label:<8} median wall {:.3} s  archive written {:.3} s  cpu {:.3} s  (walls: {})  median phases: {}",
            median(label, &wall),
            median(label, &written),
            median(label, &cpu),
            walls.join(" "),
            phases.join(", ")
        );
    }
    println!(
        "ratio plugin / built-in (median wall)             {:.3}   target <= 1.05",
        pw / bw
    );
    println!(
        "ratio plugin / built-in (median archive written)  {:.3}",
        pt / bt
    );
    println!(
        "ratio plugin / built-in (median cpu)              {:.3}",
        pc / bc
    );
    println!(
        "result builtin_median_secs={bw:.3} plugin_median_secs={pw:.3} ratio={:.3} builtin_written_secs={bt:.3} plugin_written_secs={pt:.3} written_ratio={:.3} builtin_cpu_secs={bc:.3} plugin_cpu_secs={pc:.3} cpu_ratio={:.3} rounds={rounds} files={} media_bytes={media_bytes} host_start_ms={:.0}",
        pw / bw,
        pt / bt,
        pc / bc,
        expected.len(),
        host_start.as_secs_f64() * 1e3
    );
    Ok(())
}

/// Switches the engine to `source`, runs one backup, checks its archive, deletes it.
async fn backup(
    engine: &Engine,
    source: Source,
    recordings: &Path,
    expected: &[String],
    lists: &mut BTreeMap<&'static str, Vec<String>>,
) -> anyhow::Result<Run> {
    let mut update = PluginUpdate {
        enabled: Some(source == Source::Plugin),
        ..Default::default()
    };
    if source == Source::Plugin {
        update.grants = Some(GrantsUpdate {
            mounts: Some([(PLUGIN.to_owned(), recordings.to_path_buf())].into()),
            veto: None,
            limits: None,
        });
    }
    engine.update_plugin(PLUGIN, &update).await?;
    ensure!(
        engine.plugins().provides_directory(PLUGIN) == (source == Source::Plugin),
        "the {PLUGIN} plugin is {} but should be {}",
        if source == Source::Plugin {
            "not providing recordings/"
        } else {
            "still providing recordings/"
        },
        source.label()
    );

    std::process::Command::new("sync")
        .status()
        .context("sync")?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Each progress step's first call, and the last call of all (the archive step's end:
    // the archive is written and fsynced; only the rename and the job's records follow).
    type Seen = (Vec<(&'static str, Instant)>, Option<Instant>);
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let progress: ProgressFn = {
        let seen = seen.clone();
        Arc::new(move |p: Progress| {
            let now = Instant::now();
            let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
            if s.0.last().is_none_or(|(step, _)| *step != p.step) {
                s.0.push((p.step, now));
            }
            s.1 = Some(now);
        })
    };
    let cpu0 = process_cpu();
    let t0 = Instant::now();
    let job = engine.run_backup_cli(true, progress).await?;
    let wall = t0.elapsed();
    let end = Instant::now();
    let cpu = process_cpu().saturating_sub(cpu0);

    // Phases: from the start to the first step, then from each step to the next, and the
    // tail from the last progress call to the job's end.
    let (steps, last) = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let last = last.context("the backup reported no progress")?;
    let mut phases: Vec<(&'static str, Duration)> = Vec::new();
    let mut prev = ("start", t0);
    for &(step, at) in steps.iter().chain([("tail", last), ("end", end)].iter()) {
        let d = at.duration_since(prev.1);
        match phases.iter_mut().find(|(n, _)| *n == prev.0) {
            Some((_, total)) => *total += d,
            None => phases.push((prev.0, d)),
        }
        prev = (step, at);
    }

    let archive = engine.archive_path(job.id).await?;
    let manifest = engine.job_manifest(job.id).await?;
    let dir = manifest
        .directories
        .iter()
        .find(|d| d.name == "recordings")
        .with_context(|| {
            format!(
                "{} backup: the manifest lists no recordings directory",
                source.label()
            )
        })?;
    ensure!(
        dir.contributed_by == source.contributor(),
        "{} backup: data/recordings/ was contributed by {}, expected {}",
        source.label(),
        dir.contributed_by,
        source.contributor()
    );
    let listed = list_archive(&archive)?;
    if listed != expected {
        let missing = expected.iter().filter(|f| !listed.contains(f)).count();
        let extra = listed.iter().filter(|f| !expected.contains(f)).count();
        bail!(
            "{} backup {}: data/recordings/ holds {} files, the folder {} ({missing} missing, {extra} extra)",
            source.label(),
            archive.display(),
            listed.len(),
            expected.len()
        );
    }
    if let Some(other) = lists.get(source.label()) {
        ensure!(
            *other == listed,
            "{} backups differ between runs",
            source.label()
        );
    }
    lists.insert(source.label(), listed);
    if !job.warnings.is_empty() {
        println!("  warnings of job {}: {:?}", job.id, job.warnings);
    }
    let archive_bytes = job.size_bytes.unwrap_or(0);
    engine.delete_job(job.id).await?;
    ensure!(!archive.exists(), "{} was not deleted", archive.display());
    Ok(Run {
        wall,
        written: last.duration_since(t0),
        cpu,
        phases,
        archive_bytes,
    })
}

fn phases_text(phases: &[(&'static str, Duration)]) -> String {
    phases
        .iter()
        .map(|(k, v)| format!("{k} {:.3}", v.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Regular files under `root`, relative, sorted (symlinks are listed, not followed).
fn list_tree(root: &Path) -> anyhow::Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> anyhow::Result<()> {
        for e in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                walk(root, &e.path(), out)?;
            } else {
                let rel = e.path().strip_prefix(root)?.to_string_lossy().into_owned();
                out.push(rel);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

/// Non-directory entries under `data/recordings/` in an archive, relative, sorted.
fn list_archive(archive: &Path) -> anyhow::Result<Vec<String>> {
    let out = std::process::Command::new("tar")
        .arg("tzf")
        .arg(archive)
        .output()
        .context("running tar tzf")?;
    ensure!(
        out.status.success(),
        "tar tzf {} failed: {}",
        archive.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("data/recordings/"))
        .filter(|l| !l.is_empty() && !l.ends_with('/'))
        .map(str::to_owned)
        .collect();
    files.sort();
    Ok(files)
}

/// Copies the built `recordings` plugin into `<data>/plugins/recordings/` when it differs.
fn install_plugin(data: &Path) -> anyhow::Result<()> {
    let built = std::env::var_os("BACKSTOP_PLUGINS_BUILD")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/target/backstop-plugins")
        });
    let to = data.join("plugins").join(PLUGIN);
    std::fs::create_dir_all(&to)?;
    for f in ["plugin.toml", "plugin.wasm"] {
        let src = built.join(PLUGIN).join(f);
        let bytes = std::fs::read(&src)
            .with_context(|| format!("{} (run plugins/build.sh first)", src.display()))?;
        if std::fs::read(to.join(f)).ok().as_deref() != Some(&bytes[..]) {
            std::fs::write(to.join(f), &bytes)?;
        }
    }
    Ok(())
}

/// User + system CPU time of this process, all threads (`/proc/self/stat`, clock ticks).
fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|s| s.parse().ok())
        .collect();
    let ticks = f.iter().sum::<u64>();
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}
