//! Tries one plugin outside the server: installs it into a temp data dir, enables it (each
//! requested mount bound to an empty temp folder, veto granted if requested), then runs
//! every hook point and `collect`, printing what the engine would see.
//!
//!   cargo run -p plugin-host --example run_plugin -- plugins/target/backstop-plugins/space-guard
//!
//! Settings can be passed as `key=json` arguments after the folder.

use std::path::PathBuf;

use engine::plugins::{GrantsUpdate, HookPoint, JobContext, PluginRuntime, PluginUpdate};
use plugin_host::{HostConfig, Manifest, PluginHost};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let src = PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: run_plugin PLUGIN_DIR [key=json]..."))?,
    );
    let mut settings = serde_json::Map::new();
    for kv in args {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("settings are key=json"))?;
        settings.insert(
            k.to_owned(),
            serde_json::from_str(v).unwrap_or(serde_json::Value::String(v.to_owned())),
        );
    }
    let manifest = Manifest::parse(&std::fs::read_to_string(src.join("plugin.toml"))?)?;
    let data = tempfile::tempdir()?;
    let t = std::time::Instant::now();
    let host = PluginHost::new(HostConfig::for_data_dir(data.path()))?;
    let view = host.install_plugin(
        &std::fs::read_to_string(src.join("plugin.toml"))?,
        &std::fs::read(src.join("plugin.wasm"))?,
    )?;
    println!(
        "installed {} {} in {:?}: state {}",
        view.id,
        view.version,
        t.elapsed(),
        view.state
    );
    let mut mounts = std::collections::BTreeMap::new();
    for name in manifest.mounts.keys() {
        let dir = data.path().join("mounts").join(name);
        std::fs::create_dir_all(&dir)?;
        mounts.insert(name.clone(), dir);
    }
    let update = PluginUpdate {
        enabled: Some(true),
        grants: Some(GrantsUpdate {
            mounts: Some(mounts),
            veto: Some(manifest.permissions.veto),
            limits: None,
        }),
        settings: Some(settings),
    };
    host.apply_record(
        host.plan_update(&manifest.id, &update)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?,
    );
    let ctx = JobContext {
        job_id: 1,
        kind: "backup".into(),
        trigger: "manual".into(),
        include_recordings: true,
        facts: vec![("archive_dir".into(), data.path().display().to_string())],
        progress: Default::default(),
    };
    for point in [
        HookPoint::PreBackup,
        HookPoint::PostCollect,
        HookPoint::PreArchive,
        HookPoint::PostArchive,
        HookPoint::PostBackup,
    ] {
        let t = std::time::Instant::now();
        let r = host.run_hooks(point, &ctx);
        println!(
            "{:>12} {:>8.1?}  veto={:?} abort={:?} warnings={:?} annotations={:?}",
            point.as_str(),
            t.elapsed(),
            r.veto,
            r.abort,
            r.warnings,
            r.annotations.iter().map(|a| &a.text).collect::<Vec<_>>()
        );
    }
    let scratch = data.path().join("scratch");
    std::fs::create_dir_all(&scratch)?;
    let c = host.collect(&ctx, &scratch);
    println!(
        "collect: directories={:?} files={:?} warnings={:?} abort={:?}",
        c.directories, c.files, c.warnings, c.abort
    );
    for l in host.job_log(1) {
        println!("log [{}] {}", l.level, l.message);
    }
    Ok(())
}
