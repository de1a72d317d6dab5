//! Hook round-trip benchmark: the time the engine waits for `run_hooks` with one enabled
//! plugin whose hook does nothing (fresh store, instantiation, call, result checks), and for
//! the recordings plugin's `collect`.
//!
//!   plugins/build.sh && cargo run --release -p plugin-host --example bench_hooks [ITERATIONS]
//!
//! Reads the built plugins from `plugins/target/backstop-plugins` (or `BACKSTOP_PLUGINS_BUILD`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use engine::plugins::{GrantsUpdate, HookPoint, JobContext, PluginRuntime, PluginUpdate};
use plugin_host::{HostConfig, PluginHost};

fn main() -> anyhow::Result<()> {
    let iterations: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2_000);
    let built = std::env::var_os("BACKSTOP_PLUGINS_BUILD")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/target/backstop-plugins")
        });
    let data = tempfile::tempdir()?;
    for id in ["fixture-echo", "recordings"] {
        let to = data.path().join("plugins").join(id);
        std::fs::create_dir_all(&to)?;
        for f in ["plugin.toml", "plugin.wasm"] {
            std::fs::copy(built.join(id).join(f), to.join(f)).map_err(|e| {
                anyhow::anyhow!(
                    "{}: {e} (run plugins/build.sh first)",
                    built.join(id).join(f).display()
                )
            })?;
        }
    }
    let mount = data.path().join("mount");
    std::fs::create_dir_all(mount.join("sub"))?;
    let recordings = data.path().join("recordings");
    std::fs::create_dir_all(&recordings)?;

    let t = Instant::now();
    let host = PluginHost::new(HostConfig::for_data_dir(data.path()))?;
    println!("host start (compile 2 components): {:?}", t.elapsed());
    let enable = |id: &str, mounts: Vec<(String, PathBuf)>| -> anyhow::Result<()> {
        let update = PluginUpdate {
            enabled: Some(true),
            grants: Some(GrantsUpdate {
                mounts: Some(mounts.into_iter().collect()),
                veto: None,
                limits: None,
            }),
            settings: None,
        };
        host.apply_record(
            host.plan_update(id, &update)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        Ok(())
    };
    enable("fixture-echo", vec![("data".into(), mount.clone())])?;
    let ctx = JobContext {
        job_id: 1,
        kind: "backup".into(),
        trigger: "manual".into(),
        include_recordings: true,
        facts: vec![],
        progress: Default::default(),
    };

    let hook = measure(iterations, || {
        let r = host.run_hooks(HookPoint::PreBackup, &ctx);
        assert!(r.warnings.is_empty() && r.veto.is_none());
    });
    report("hook round trip (run_hooks, 1 plugin, no-op hook)", &hook);

    enable(
        "recordings",
        vec![("recordings".into(), recordings.clone())],
    )?;
    let scratch = data.path().join("scratch");
    std::fs::create_dir_all(&scratch)?;
    // fixture-echo also contributes (and writes a scratch file); measure recordings alone.
    host.apply_record(
        host.plan_update(
            "fixture-echo",
            &PluginUpdate {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let collect = measure(iterations.min(1_000), || {
        let c = host.collect(&ctx, &scratch);
        assert_eq!(c.directories.len(), 1);
    });
    report("recordings collect round trip", &collect);
    Ok(())
}

/// CPU time this thread has used (Linux `schedstat`, nanoseconds): unlike wall time it
/// hardly moves when other processes load the machine.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(
        s.split_whitespace().next()?.parse().ok()?,
    ))
}

fn measure(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..n.min(50) {
        f();
    }
    let cpu = thread_cpu();
    let mut v: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    if let (Some(a), Some(b)) = (cpu, thread_cpu()) {
        println!(
            "  cpu per call (calling thread): {:.1} us",
            (b - a).as_secs_f64() * 1e6 / n as f64
        );
    }
    v.sort();
    v
}

fn report(what: &str, v: &[Duration]) {
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    let pct = |p: f64| v[((v.len() as f64 - 1.0) * p) as usize];
    println!(
        "{what}: n={} mean={:.1} us p50={:.1} us p90={:.1} us p99={:.1} us",
        v.len(),
        mean.as_secs_f64() * 1e6,
        pct(0.5).as_secs_f64() * 1e6,
        pct(0.9).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6
    );
}
