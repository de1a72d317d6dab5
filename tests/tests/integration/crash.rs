//! kill -9 at every fault point of the engine (`server/engine/src/fault.rs`): start the
//! server with `BACKSTOP_FAULT_CRASH_AT=<point>`, drive it to that point through the API,
//! let it abort (as abrupt as kill -9), start it again without the fault, and check that
//! every data-safety invariant holds (DESIGN section 4) and that the interrupted job ended
//! the way the contract says: a restore interrupted before its journal's apply phase
//! changed nothing, one interrupted after it is completed at the next start, a backup is
//! never listed half-written, no archive is left that no record owns.
//!
//! Each test prints one row of the README table; collect them with
//!
//! ```text
//! cargo test -p tests --test integration kill9_at_ -- --nocapture 2>/dev/null | grep '^| '
//! ```

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tests::TestApp;
use tests::invariants::{self, Content, Sentinels};

/// Restore points from which the restore is completed at the next start (fault.rs: from
/// `restore.journaled` on, the journal is in its `apply` phase and the restore is finished
/// from its staged copy; before it, nothing live has changed).
const RESTORE_COMMITTED: &[&str] = &[
    "restore.journaled",
    "restore.load-uncommitted",
    "restore.swap-1",
    "restore.swapped",
    "restore.loaded",
    "restore.finished",
];

/// Restore points by which the safety backup has succeeded.
const SAFETY_DONE: &[&str] = &[
    "restore.safety-backup",
    "restore.extract-half",
    "restore.extracted",
    "restore.journaled",
    "restore.load-uncommitted",
    "restore.swap-1",
    "restore.swapped",
    "restore.loaded",
    "restore.finished",
];

/// Backup points at which the archive is complete and the record names it: rolling the job
/// forward to succeeded (with a warning) is as safe as failing it.
const BACKUP_COMPLETE: &[&str] = &["backup.recorded", "backup.retention"];

/// What a point interrupts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Backup,
    Upload,
    Restore,
    Delete,
}

fn kind_of(point: &str) -> Kind {
    match point.split('.').next() {
        Some("backup") => Kind::Backup,
        Some("upload") => Kind::Upload,
        Some("restore") => Kind::Restore,
        Some("delete") => Kind::Delete,
        _ => panic!("unknown fault point {point}"),
    }
}

/// The application changes its data after the backup: rows, logos and a recording.
async fn change_content(app: &TestApp) -> anyhow::Result<()> {
    let pool = app.content_pool().await?;
    sqlx::query("INSERT INTO channel_groups (name) VALUES ('Added after the backup')")
        .execute(&pool)
        .await?;
    sqlx::query("UPDATE channels SET name = 'Renamed after the backup' WHERE id = 1")
        .execute(&pool)
        .await?;
    pool.close().await;
    let data = app.data.path();
    std::fs::write(data.join("logos/new-logo.svg"), b"<svg/>")?;
    std::fs::write(data.join("logos/logo-00002.svg"), b"<svg>edited</svg>")?;
    std::fs::write(data.join("recordings/recording-002.ts"), b"overwritten")?;
    std::fs::write(data.join("recordings/after-the-backup.ts"), b"new")?;
    Ok(())
}

/// Waits until the server exits by itself. `job`: the job driven to the point (when it ends
/// without the process dying, the point was never reached); `ended_ok`: the operation was a
/// request that already answered successfully.
async fn wait_exit(
    app: &mut TestApp,
    point: &str,
    job: Option<i64>,
    ended_ok: Option<String>,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ended = ended_ok.map(|how| (Instant::now(), how));
    loop {
        if let Some(child) = app.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            app.child = None;
            if status.success() {
                return Err(format!(
                    "the server exited cleanly at {point}, not by abort"
                ));
            }
            return Ok(());
        }
        if ended.is_none()
            && let Some(id) = job
            && let Ok((200, j)) = app.get_json(&format!("/api/backups/jobs/{id}/")).await
            && j["status"] != "pending"
            && j["status"] != "running"
        {
            ended = Some((Instant::now(), format!("job {id} ended {}", j["status"])));
        }
        if let Some((at, how)) = &ended
            && at.elapsed() > Duration::from_secs(2)
        {
            return Err(format!(
                "server did not crash: {how} (is fault::point(\"{point}\") wired into the engine?)"
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("the server did not exit within 60 s at {point}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn status_text(j: &Value) -> String {
    let mut s = j["status"].as_str().unwrap_or("?").to_owned();
    if let Some(e) = j["error"].as_str() {
        s.push_str(&format!(" ({e})"));
    }
    if let Some(w) = j["warnings"].as_array().filter(|w| !w.is_empty()) {
        // The first words say what happened; the table stays readable.
        let text: Vec<String> = w
            .iter()
            .filter_map(|x| x.as_str())
            .map(|x| match x.char_indices().nth(130) {
                Some((i, _)) => format!("{}...", &x[..i]),
                None => x.to_owned(),
            })
            .collect();
        s.push_str(&format!(" [warning: {}]", text.join("; ")));
    }
    s
}

/// One case: drive the server to `point`, let it abort, restart, check.
async fn crash_case(point: &'static str) {
    let started = Instant::now();
    match run_case(point).await {
        Ok(row) => {
            println!("{row}");
            if row.ends_with("| ok |") {
                eprintln!("{point}: {:.1} s", started.elapsed().as_secs_f64());
                return;
            }
            panic!("kill -9 at {point}: {row}");
        }
        Err(e) => {
            println!("| {point} | {e} | - | - |");
            panic!("kill -9 at {point}: {e}");
        }
    }
}

async fn run_case(point: &'static str) -> Result<String, String> {
    let e = |e: anyhow::Error| format!("{e:#}");
    let kind = kind_of(point);
    let mut app = TestApp::spawn_with(&[("BACKSTOP_FAULT_CRASH_AT", point)])
        .await
        .map_err(e)?;
    app.login_admin().await.map_err(e)?;
    let data = app.data.path().to_path_buf();
    let backups = data.join("backups");
    let sentinels = Sentinels::plant(&data).map_err(e)?;
    let big = point.ends_with("-half");
    if big {
        // Long enough that "half the bytes" is a moment of its own.
        tests::write_noise(&data.join("recordings/noise.ts"), 6 << 20);
    }

    // What the point needs to exist first.
    let mut archived = None;
    let mut source = None;
    let mut victim = None;
    let mut upload = None;
    let setup_backup = |inc: bool| {
        let app = &app;
        async move {
            let j = app
                .backup(json!({ "include_recordings": inc }))
                .await
                .map_err(|x| format!("setup backup: {x:#}"))?;
            if j["status"] != "succeeded" {
                return Err(format!("setup backup did not succeed: {j}"));
            }
            Ok::<Value, String>(j)
        }
    };
    match kind {
        Kind::Backup if point == "backup.retention" => {
            let (s, v) = invariants::put_json(
                &app,
                "/api/backups/settings/",
                json!({"retention_count": 1}),
            )
            .await
            .map_err(e)?;
            if s != 200 {
                return Err(format!("setting retention 1 answered {s}: {v}"));
            }
            victim = Some(setup_backup(false).await?["id"].as_i64().unwrap_or(-1));
        }
        Kind::Backup => {}
        Kind::Restore => {
            // Logos and recordings: two directories to swap.
            let b = setup_backup(true).await?;
            archived = Some(Content::read(&app).map_err(e)?);
            change_content(&app).await.map_err(e)?;
            source = b["id"].as_i64();
        }
        Kind::Upload => {
            let b = setup_backup(false).await?;
            let name = b["archive_name"].as_str().unwrap_or("");
            upload = Some(std::fs::read(backups.join(name)).map_err(|x| x.to_string())?);
        }
        Kind::Delete => {
            victim = Some(setup_backup(false).await?["id"].as_i64().unwrap_or(-1));
        }
    }

    // Before the operation.
    let before = Content::read(&app).map_err(e)?;
    let files_before = invariants::files_in(&backups);
    let plugins_before = invariants::tree(&data.join("plugins"));
    let jobs_before = invariants::all_jobs(&app).await.map_err(e)?;

    // The operation, driven to the point.
    let mut job = None;
    let mut ended_ok = None;
    match kind {
        Kind::Backup | Kind::Restore => {
            let (path, body) = match source {
                Some(src) => (format!("/api/backups/jobs/{src}/restore/"), json!({})),
                None => (
                    "/api/backups/jobs/".to_owned(),
                    json!({ "include_recordings": big }),
                ),
            };
            // The job may be claimed (and the point reached) before the 202 is on the wire:
            // a request that breaks off is the crash itself, and the job is found after
            // the restart.
            if let Ok((s, j)) = app.post_json(&path, body).await {
                if s != 202 {
                    return Err(format!("POST {path} answered {s}: {j}"));
                }
                job = j["id"].as_i64();
            }
        }
        Kind::Upload => {
            let bytes = upload.take().expect("set up");
            if let Ok(Ok((s, j))) =
                tokio::time::timeout(Duration::from_secs(60), invariants::upload_raw(&app, bytes))
                    .await
            {
                ended_ok = Some(format!("the upload answered {s}: {j}"));
            }
        }
        Kind::Delete => {
            let id = victim.expect("set up");
            let r = tokio::time::timeout(
                Duration::from_secs(60),
                app.req(Method::DELETE, &format!("/api/backups/jobs/{id}/"))
                    .send(),
            )
            .await;
            if let Ok(Ok(r)) = r {
                ended_ok = Some(format!("the delete answered {}", r.status()));
            }
        }
    }
    wait_exit(&mut app, point, job, ended_ok).await?;

    // Start again without the fault.
    app.extra_env
        .retain(|(k, _)| k != "BACKSTOP_FAULT_CRASH_AT");
    app.start()
        .await
        .map_err(|x| format!("I5: the server does not start after the crash: {x:#}"))?;
    let mut problems: Vec<String> = Vec::new();
    if let Err(x) = invariants::server_up(&app).await {
        problems.push(format!("{x:#}"));
    }
    let jobs = invariants::all_jobs(&app).await.map_err(e)?;
    let by_id = |id: i64| jobs.iter().find(|j| j["id"].as_i64() == Some(id));

    // I1, I2, leftovers, I4, plugins (I3).
    let folder_of = |_: &Value| backups.clone();
    problems.extend(invariants::check_archives(
        &jobs,
        &folder_of,
        &BTreeSet::new(),
        std::slice::from_ref(&backups),
    ));
    problems.extend(invariants::leftovers(&data, std::slice::from_ref(&backups)));
    problems.extend(sentinels.check());
    if invariants::tree(&data.join("plugins")) != plugins_before {
        problems.push("I3: the plugins folder changed".into());
    }
    for j in &jobs {
        if j["status"] == "pending" || j["status"] == "running" {
            problems.push(format!(
                "job {} is still {} after the restart",
                j["id"], j["status"]
            ));
        }
    }
    // I3: archives that existed before are untouched; only the pruned or deleted one may go.
    let files_after = invariants::files_in(&backups);
    let may_go: Option<String> = victim
        .and_then(|v| jobs_before.iter().find(|j| j["id"].as_i64() == Some(v)))
        .and_then(|j| j["archive_name"].as_str().map(str::to_owned));
    for (name, (_, sha)) in &files_before {
        match files_after.get(name) {
            Some((_, now)) if now != sha => {
                problems.push(format!("I3: the existing archive {name} was rewritten"))
            }
            Some(_) => {}
            None if Some(name) == may_go.as_ref() => {}
            None => problems.push(format!("I3: the existing archive {name} was removed")),
        }
    }
    // Jobs that existed before keep their status (or are gone with their file, for the
    // pruned or deleted one).
    for old in &jobs_before {
        let id = old["id"].as_i64().unwrap_or(-1);
        match by_id(id) {
            Some(now) if now["status"] != old["status"] => problems.push(format!(
                "job {id} was {}, is {} after the restart",
                old["status"], now["status"]
            )),
            Some(_) => {}
            None if Some(id) == victim => {}
            None => problems.push(format!("job {id} vanished")),
        }
    }

    // The interrupted job, and the content.
    let new_jobs: Vec<&Value> = jobs
        .iter()
        .filter(|j| {
            !jobs_before
                .iter()
                .any(|o| o["id"].as_i64() == j["id"].as_i64())
        })
        .collect();
    let job = job.or_else(|| {
        let kind = if kind == Kind::Restore {
            "restore"
        } else {
            "backup"
        };
        new_jobs
            .iter()
            .find(|j| j["kind"] == kind && j["trigger"] == "manual")
            .and_then(|j| j["id"].as_i64())
    });
    let now = Content::read(&app).map_err(e)?;
    let content_col = if now == before {
        "unchanged".to_owned()
    } else if archived.as_ref() == Some(&now) {
        "= archive".to_owned()
    } else {
        format!("CHANGED: {}", before.diff(&now))
    };
    let interrupted = |j: &Value| {
        j["status"] == "failed"
            && j["error"]
                .as_str()
                .unwrap_or("")
                .contains("interrupted by restart")
    };
    let warned_succeeded = |j: &Value| {
        j["status"] == "succeeded"
            && j["warnings"]
                .as_array()
                .is_some_and(|w| w.iter().any(|x| x.as_str().unwrap_or("").contains("start")))
    };
    let job_col;
    match kind {
        Kind::Backup => {
            let j = job.and_then(by_id);
            job_col = j.map(status_text).unwrap_or_else(|| "gone".into());
            match j {
                None => problems.push("the interrupted backup's record is gone".into()),
                Some(j) if point == "backup.succeeded" => {
                    if j["status"] != "succeeded" {
                        problems.push(format!(
                            "a backup marked succeeded before the crash is {}",
                            status_text(j)
                        ));
                    }
                }
                Some(j) if interrupted(j) => {}
                Some(j) if BACKUP_COMPLETE.contains(&point) && warned_succeeded(j) => {
                    // Its retention ran, at the latest at the start: with "keep 1" the older
                    // backup is gone.
                    if let Some(v) = victim
                        && by_id(v).is_some()
                    {
                        problems.push(format!(
                            "retention 1 did not run for the backup kept at the start: job {v} is still listed"
                        ));
                    }
                }
                Some(j) => problems.push(format!(
                    "the interrupted backup should be failed (interrupted by restart): {}",
                    status_text(j)
                )),
            }
            if now != before {
                problems.push(format!(
                    "a backup changed the content: {}",
                    before.diff(&now)
                ));
            }
        }
        Kind::Upload => {
            job_col = match new_jobs.as_slice() {
                [] => "no record (upload lost, as it was never listed)".into(),
                [j] => format!("upload record {}", status_text(j)),
                _ => format!("{} new records", new_jobs.len()),
            };
            if new_jobs.len() > 1 {
                problems.push(format!("the upload left {} records", new_jobs.len()));
            }
            if now != before {
                problems.push(format!(
                    "an upload changed the content: {}",
                    before.diff(&now)
                ));
            }
        }
        Kind::Delete => {
            let v = victim.expect("set up");
            job_col = match by_id(v) {
                None => "record deleted".into(),
                Some(j) => format!("record kept: {}", status_text(j)),
            };
            if now != before {
                problems.push(format!(
                    "a delete changed the content: {}",
                    before.diff(&now)
                ));
            }
        }
        Kind::Restore => {
            let r = job.and_then(by_id);
            job_col = r.map(status_text).unwrap_or_else(|| "gone".into());
            let committed = RESTORE_COMMITTED.contains(&point);
            match r {
                None => problems.push("the interrupted restore's record is gone".into()),
                Some(r) if committed => {
                    if !warned_succeeded(r) {
                        problems.push(format!(
                            "once the journal is in its apply phase the restore must be \
                             completed at the next start and say so: {}",
                            status_text(r)
                        ));
                    }
                    if archived.as_ref() != Some(&now) {
                        problems.push(format!(
                            "the completed restore does not match the archive: {}",
                            archived.as_ref().expect("set up").diff(&now)
                        ));
                    }
                }
                Some(r) => {
                    if !interrupted(r) {
                        problems.push(format!(
                            "the interrupted restore should be failed (interrupted by \
                             restart): {}",
                            status_text(r)
                        ));
                    }
                    if now != before {
                        problems.push(format!(
                            "a restore interrupted before its journal's apply phase changed \
                             the content: {}",
                            before.diff(&now)
                        ));
                    }
                }
            }
            // The safety backup: succeeded once the point is past it; else absent or
            // interrupted.
            let safety: Vec<&&Value> = new_jobs
                .iter()
                .filter(|j| j["kind"] == "backup" && j["trigger"] == "pre-restore")
                .collect();
            match safety.as_slice() {
                [] if SAFETY_DONE.contains(&point) => {
                    problems.push("the safety backup taken before the crash is gone".into())
                }
                [] => {}
                [p] if SAFETY_DONE.contains(&point) && p["status"] != "succeeded" => {
                    problems.push(format!(
                        "the safety backup succeeded before the crash, now {}",
                        status_text(p)
                    ))
                }
                [p] if p["status"] != "succeeded" && !interrupted(p) => problems.push(format!(
                    "the interrupted safety backup is {}",
                    status_text(p)
                )),
                [_] => {}
                _ => problems.push(format!("{} safety backups", safety.len())),
            }
            // I3: the restore added nothing to the archive folder but the safety backup.
            let safety_names: Vec<&str> = safety
                .iter()
                .filter_map(|p| p["archive_name"].as_str())
                .collect();
            for name in files_after.keys() {
                if !files_before.contains_key(name) && !safety_names.contains(&name.as_str()) {
                    problems.push(format!(
                        "I3: the restore added {name} to the archive folder"
                    ));
                }
            }
        }
    }
    let inv_col = if problems.is_empty() {
        "ok".to_owned()
    } else {
        problems.join("; ")
    };
    Ok(format!(
        "| {point} | {job_col} | {content_col} | {inv_col} |"
    ))
}

macro_rules! crash_tests {
    ($($name:ident => $point:literal,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                crash_case($point).await
            }
        )*
        /// Every point with a test above.
        const TESTED: &[&str] = &[$($point),*];
    };
}

crash_tests! {
    kill9_at_backup_claimed => "backup.claimed",
    kill9_at_backup_dumped => "backup.dumped",
    kill9_at_backup_collected => "backup.collected",
    kill9_at_backup_archive_half => "backup.archive-half",
    kill9_at_backup_renamed => "backup.renamed",
    kill9_at_backup_recorded => "backup.recorded",
    kill9_at_backup_retention => "backup.retention",
    kill9_at_backup_succeeded => "backup.succeeded",
    kill9_at_upload_stored => "upload.stored",
    kill9_at_restore_claimed => "restore.claimed",
    kill9_at_restore_verified => "restore.verified",
    kill9_at_restore_safety_backup => "restore.safety-backup",
    kill9_at_restore_extract_half => "restore.extract-half",
    kill9_at_restore_extracted => "restore.extracted",
    kill9_at_restore_journaled => "restore.journaled",
    kill9_at_restore_load_uncommitted => "restore.load-uncommitted",
    kill9_at_restore_swap_1 => "restore.swap-1",
    kill9_at_restore_swapped => "restore.swapped",
    kill9_at_restore_loaded => "restore.loaded",
    kill9_at_restore_finished => "restore.finished",
    kill9_at_delete_record_removed => "delete.record-removed",
}

/// The engine's list of points, read from its source (the tests crate does not link the
/// engine): every point has a test here, and every test names a real point.
#[test]
fn every_fault_point_has_a_kill9_test() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/engine/src/fault.rs");
    let text = std::fs::read_to_string(&src).expect("read fault.rs");
    let list = text
        .split("pub const POINTS: &[&str] = &[")
        .nth(1)
        .and_then(|rest| rest.split("];").next())
        .expect("POINTS in fault.rs");
    let points: Vec<&str> = list.split('"').skip(1).step_by(2).collect();
    let tested: Vec<&str> = TESTED.to_vec();
    assert_eq!(
        tested, points,
        "the kill -9 tests and engine::fault::POINTS differ"
    );
}
