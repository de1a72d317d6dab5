//! Backstop's side of `bench/run.sh`: one backup (database dump + archive) of a data set, timed.
//!
//! Usage: `bench_backup <content.db> <out-dir> [<name>=<dir>]...` (each `name=dir` becomes
//! `data/<name>/`). Also `bench_backup --dump-only <content.db> <out.json>`.
//! Prints one line of `key=value` pairs: dump and archive seconds, archive size, rows, peak RSS.

use std::path::PathBuf;
use std::time::Instant;

use engine::archive::{self, ArchiveRequest};
use engine::plugins::DirectoryContribution;

fn peak_rss_kib() -> i64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cancel = tokio_util::sync::CancellationToken::new();
    if args.first().map(String::as_str) == Some("--dump-only") {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", args[1])).await?;
        let t = Instant::now();
        let stats = archive::dump_database(&pool, 1, &PathBuf::from(&args[2]), &cancel).await?;
        println!(
            "dump_secs={:.3} rows={} bytes={}",
            t.elapsed().as_secs_f64(),
            stats.rows,
            stats.bytes
        );
        return Ok(());
    }
    let [db, out, dirs @ ..] = args.as_slice() else {
        return Err("usage: bench_backup <content.db> <out-dir> [<name>=<dir>]...".into());
    };
    let out = PathBuf::from(out);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{db}?mode=ro")).await?;
    let start = Instant::now();
    let db_json = out.join("database.json");
    let stats = archive::dump_database(&pool, 1, &db_json, &cancel).await?;
    let dump_secs = start.elapsed().as_secs_f64();
    let directories = dirs
        .iter()
        .map(|d| {
            let (name, path) = d.split_once('=').unwrap_or((d, d));
            DirectoryContribution {
                name: name.into(),
                path: path.into(),
                contributed_by: "core".into(),
            }
        })
        .collect();
    let now = chrono::Utc::now();
    let req = ArchiveRequest {
        dest_dir: out.clone(),
        file_name: archive::archive_name(now, &out),
        created_at: now,
        app_version: env!("CARGO_PKG_VERSION").into(),
        trigger: "manual".into(),
        include_recordings: true,
        annotations: vec![],
        schema_version: 1,
        database_json: db_json.clone(),
        database: stats.clone(),
        directories,
        missing_directories: vec![],
        plugin_files: vec![],
        plugins: vec![],
    };
    let outcome = tokio::task::spawn_blocking(move || {
        archive::write_archive(req, &cancel, archive::no_progress())
    })
    .await??;
    let total_secs = start.elapsed().as_secs_f64();
    std::fs::remove_file(&db_json)?;
    println!(
        "dump_secs={dump_secs:.3} archive_secs={:.3} total_secs={total_secs:.3} rows={} archive_bytes={} peak_rss_kib={} warnings={} path={}",
        total_secs - dump_secs,
        stats.rows,
        outcome.size_bytes,
        peak_rss_kib(),
        outcome.warnings.len(),
        outcome.path.display()
    );
    Ok(())
}
