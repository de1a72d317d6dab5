//! Backstop's side of `bench/run.sh`: one backup (database dump + archive) of a data set, timed.
//!
//! Usage: `bench_backup [--cancel-at <points>] <content.db> <out-dir> [<name>=<dir>]...` (each
//! `name=dir` becomes `data/<name>/`). Also `bench_backup --dump-only <content.db> <out.json>`.
//! Prints one line of `key=value` pairs: dump and archive seconds, archive size, rows, peak RSS.
//!
//! `--cancel-at dump,10,50,90` then cancels more backups of the same data set through their
//! `CancellationToken`: `dump` halfway through the dump (by the full backup's dump time), a
//! number once the archive's progress callback reports that percentage of its bytes. The
//! cancel comes from another thread, as a job's does, and each latency runs from `cancel()` to
//! the call returning; the call must fail with "canceled" and leave no `.partial`, archive or
//! dump behind. The line then also has `cancel_at=`, `cancel_secs=` (same order) and
//! `cancel_max_s=`; the trials run after the full backup and after peak RSS is taken.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use engine::archive::{self, ArchiveRequest, DumpStats};
use engine::plugins::DirectoryContribution;
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[allow(unsafe_code)] // getrusage, see SAFETY below
fn peak_rss_kib() -> i64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss
}

/// The archive request the benchmark writes, under a fresh name in `out`.
fn request(
    out: &Path,
    db_json: &Path,
    stats: &DumpStats,
    directories: &[DirectoryContribution],
) -> ArchiveRequest {
    let now = chrono::Utc::now();
    ArchiveRequest {
        dest_dir: out.to_path_buf(),
        file_name: archive::archive_name(now, out),
        created_at: now,
        app_version: env!("CARGO_PKG_VERSION").into(),
        trigger: "manual".into(),
        include_recordings: true,
        annotations: vec![],
        schema_version: 1,
        database_json: db_json.to_path_buf(),
        database: stats.clone(),
        directories: directories.to_vec(),
        missing_directories: vec![],
        plugin_files: vec![],
        plugins: vec![],
        encrypt_to: None,
        also_encrypted: None,
    }
}

fn dir_entries(dir: &Path) -> Result<BTreeSet<String>, BoxError> {
    let mut names = BTreeSet::new();
    for e in std::fs::read_dir(dir)? {
        names.insert(e?.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

/// Checks that a canceled call said so and left `out` as it found it.
fn check_canceled<T>(
    what: &str,
    result: engine::Result<T>,
    out: &Path,
    before: &BTreeSet<String>,
) -> Result<(), BoxError> {
    match result {
        Err(e) if e.kind() == engine::ErrorKind::Canceled => {}
        Err(e) => {
            return Err(
                format!("{what}: failed with {:?} instead of canceled", e.detailed()).into(),
            );
        }
        Ok(_) => return Err(format!("{what}: completed although canceled").into()),
    }
    let left: Vec<String> = dir_entries(out)?.difference(before).cloned().collect();
    if !left.is_empty() {
        return Err(format!("{what}: canceled but left {left:?} in {}", out.display()).into());
    }
    Ok(())
}

/// Cancels a dump `after` its start; returns the seconds from `cancel()` to its return.
async fn cancel_dump(
    pool: &sqlx::SqlitePool,
    out: &Path,
    after: Duration,
) -> Result<f64, BoxError> {
    let dest = out.join("database-cancel.json");
    let before = dir_entries(out)?;
    let cancel = CancellationToken::new();
    let canceller = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let t0 = Instant::now();
            cancel.cancel();
            t0
        })
    };
    let result = archive::dump_database(pool, 1, &dest, &cancel).await;
    let returned = Instant::now();
    if result.is_ok() {
        canceller.abort();
        let _ = std::fs::remove_file(&dest);
        return Err(format!("cancel during dump: the dump finished within {after:?}").into());
    }
    let t0 = canceller.await?;
    check_canceled("cancel during dump", result, out, &before)?;
    Ok(returned.duration_since(t0).as_secs_f64())
}

/// Cancels an archive once its progress reaches `percent` of its bytes; returns the seconds
/// from `cancel()` to its return and the fraction of the bytes done when canceled.
async fn cancel_archive(req: ArchiveRequest, percent: u64) -> Result<(f64, f64), BoxError> {
    let what = format!("cancel at {percent}%");
    let out = req.dest_dir.clone();
    let before = dir_entries(&out)?;
    let cancel = CancellationToken::new();
    // The callback only forwards; a separate thread cancels, so the writer is caught wherever
    // it is, not at the progress report.
    let (tx, rx) = mpsc::channel::<archive::Progress>();
    let progress: archive::ProgressFn = Arc::new(move |p| {
        let _ = tx.send(p);
    });
    let canceller = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            // Ends when write_archive drops the callback.
            for p in rx {
                if p.total_bytes > 0 && p.done_bytes * 100 >= p.total_bytes * percent {
                    let t0 = Instant::now();
                    cancel.cancel();
                    return Some((t0, p.done_bytes as f64 / p.total_bytes as f64));
                }
            }
            None
        })
    };
    let result = {
        let cancel = cancel.clone();
        tokio::task::spawn_blocking(move || archive::write_archive(req, &cancel, progress)).await?
    };
    let returned = Instant::now();
    let Some((t0, done)) = canceller
        .join()
        .map_err(|_| "the canceller thread panicked")?
    else {
        if let Ok(o) = &result {
            let _ = std::fs::remove_file(&o.path);
        }
        return Err(format!("{what}: the archive finished before its progress got there").into());
    };
    if let Ok(o) = &result {
        let _ = std::fs::remove_file(&o.path);
    }
    check_canceled(&what, result, &out, &before)?;
    Ok((returned.duration_since(t0).as_secs_f64(), done))
}

/// Writes `req` after a `sync` (so the previous run's writeback does not bleed into it);
/// the seconds it took and the outcome.
async fn timed_archive(req: ArchiveRequest) -> Result<(f64, archive::ArchiveOutcome), BoxError> {
    let _ = std::process::Command::new("sync").status();
    let t = Instant::now();
    let outcome = tokio::task::spawn_blocking(move || {
        archive::write_archive(req, &CancellationToken::new(), archive::no_progress())
    })
    .await??;
    Ok((t.elapsed().as_secs_f64(), outcome))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let cancel = CancellationToken::new();
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
    let mut cancel_at: Vec<String> = vec![];
    if args.first().map(String::as_str) == Some("--cancel-at") && args.len() > 1 {
        cancel_at = args[1].split(',').map(|s| s.trim().to_string()).collect();
        args.drain(..2);
        for p in &cancel_at {
            if p != "dump" && !p.parse::<u64>().is_ok_and(|n| (1..100).contains(&n)) {
                return Err(format!("--cancel-at: {p:?} is neither `dump` nor 1..99").into());
            }
        }
    }
    let [db, out, dirs @ ..] = args.as_slice() else {
        return Err("usage: bench_backup [--cancel-at dump,10,50,90] <content.db> <out-dir> [<name>=<dir>]...".into());
    };
    let out = PathBuf::from(out);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{db}?mode=ro")).await?;
    let start = Instant::now();
    let db_json = out.join("database.json");
    let stats = archive::dump_database(&pool, 1, &db_json, &cancel).await?;
    let dump_secs = start.elapsed().as_secs_f64();
    let directories: Vec<DirectoryContribution> = dirs
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
    let req = request(&out, &db_json, &stats, &directories);
    let outcome = tokio::task::spawn_blocking(move || {
        archive::write_archive(req, &cancel, archive::no_progress())
    })
    .await??;
    let total_secs = start.elapsed().as_secs_f64();
    let peak_rss = peak_rss_kib();

    // Encryption (DESIGN section 11), same data, same process:
    // - `encrypt_local`: the archive written encrypted in the same pass (tar -> gzip -> age
    //   -> file), as a backup with local encryption is, against the plain archive, in
    //   alternating rounds, best of each.
    // - copies: a plain archive plus its encrypted form in the same pass (what a backup with a
    //   plain local folder and destinations that encrypt writes), and, for reference, the
    //   plain archive encrypted afterwards (what a retry of such a copy does).
    // The peak RSS after these covers all.
    let mut enc_keys = String::new();
    if std::env::var("BENCH_ENCRYPT").is_ok_and(|v| v == "1") {
        let key = age::x25519::Identity::generate();
        // Rounds alternate plain / encrypt_local / plain + copy form, best of each, so a
        // noisy neighbour or the page cache favours none of them.
        let rounds: usize = std::env::var("BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3);
        let (mut plain_best, mut local_secs, mut both_secs) =
            (total_secs - dump_secs, f64::MAX, f64::MAX);
        let (mut local_bytes, mut side_size) = (0, 0);
        for round in 0..rounds {
            let req = request(&out, &db_json, &stats, &directories);
            let (secs, plain) = timed_archive(req).await?;
            plain_best = plain_best.min(secs);
            std::fs::remove_file(&plain.path)?;

            let mut req = request(&out, &db_json, &stats, &directories);
            req.file_name.push_str(".age");
            req.encrypt_to = Some(vec![key.to_public()]);
            let (secs, enc) = timed_archive(req).await?;
            local_secs = local_secs.min(secs);
            local_bytes = enc.size_bytes;
            if round == 0 {
                // It opens with the key into a valid archive.
                let opened = out.join("check.tar.gz");
                let (src, dst, k) = (enc.path.clone(), opened.clone(), key.clone());
                tokio::task::spawn_blocking(move || {
                    engine::encryption::decrypt_file(&src, &dst, &[k], &CancellationToken::new())
                })
                .await??;
                std::fs::remove_file(&opened)?;
            }
            std::fs::remove_file(&enc.path)?;

            // A plain archive and, in the same pass, its encrypted form for the copies.
            let mut req = request(&out, &db_json, &stats, &directories);
            let side = out.join("copy.tar.gz.age");
            req.also_encrypted = Some((side.clone(), vec![key.to_public()]));
            let (secs, both) = timed_archive(req).await?;
            both_secs = both_secs.min(secs);
            side_size = match &both.encrypted_copy {
                Some(Ok((size, _))) => *size,
                other => return Err(format!("the encrypted copy was not made: {other:?}").into()),
            };
            std::fs::remove_file(&both.path)?;
            std::fs::remove_file(&side)?;
        }

        let dst = outcome.path.with_extension("gz.age");
        let src = outcome.path.clone();
        let t = Instant::now();
        let (size, _) = tokio::task::spawn_blocking(move || {
            engine::encryption::encrypt_file(
                &src,
                &dst,
                &[key.to_public()],
                &CancellationToken::new(),
                &|_| {},
            )
        })
        .await??;
        let enc_secs = t.elapsed().as_secs_f64();
        enc_keys = format!(
            " local_enc_archive_secs={local_secs:.3} local_enc_bytes={local_bytes} plain_archive_best_secs={plain_best:.3} with_copy_archive_secs={both_secs:.3} copy_bytes={side_size} encrypt_secs={enc_secs:.3} encrypted_bytes={size} peak_rss_after_encrypt_kib={}",
            peak_rss_kib()
        );
        std::fs::remove_file(outcome.path.with_extension("gz.age"))?;
    }

    // Cancel trials, reusing the full backup's database.json for the archive ones.
    let mut cancel_keys = String::new();
    if !cancel_at.is_empty() {
        let mut secs = vec![];
        for p in &cancel_at {
            let (s, label) = if p == "dump" {
                let s = cancel_dump(&pool, &out, Duration::from_secs_f64(dump_secs / 2.0)).await?;
                (s, "during the dump (at half its time)".to_string())
            } else {
                let req = request(&out, &db_json, &stats, &directories);
                let (s, done) = cancel_archive(req, p.parse()?).await?;
                (
                    s,
                    format!(
                        "at {p}% of the archive bytes (reported {:.1}%)",
                        done * 100.0
                    ),
                )
            };
            eprintln!("cancel {label}: returned in {s:.3} s, canceled, nothing left behind");
            secs.push(s);
        }
        let max = secs.iter().copied().fold(0.0, f64::max);
        eprintln!(
            "cancel max {max:.3} s = {:.1}% of a full backup ({total_secs:.3} s)",
            max / total_secs * 100.0
        );
        let list: Vec<String> = secs.iter().map(|s| format!("{s:.3}")).collect();
        cancel_keys = format!(
            " cancel_at={} cancel_secs={} cancel_max_s={max:.3}",
            cancel_at.join(","),
            list.join(",")
        );
    }
    std::fs::remove_file(&db_json)?;
    println!(
        "dump_secs={dump_secs:.3} archive_secs={:.3} total_secs={total_secs:.3} rows={} archive_bytes={} peak_rss_kib={} warnings={}{cancel_keys}{enc_keys} path={}",
        total_secs - dump_secs,
        stats.rows,
        outcome.size_bytes,
        peak_rss,
        outcome.warnings.len(),
        outcome.path.display()
    );
    Ok(())
}
