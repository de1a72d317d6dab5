//! The subcommands. Each returns an [`engine::Error`] whose message `main` prints before
//! exiting non-zero.

use std::io::{BufRead, IsTerminal};

use engine::{Engine, Error, Result};

use crate::config::{Cli, Command, DemoCommand, UserCommand};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let engine_config = cli.engine_config()?;
    match cli.command {
        Command::Serve(args) => {
            crate::http::serve(engine_config, args, crate::shutdown_signal()).await
        }
        Command::User(cmd) => {
            let engine = Engine::open(engine_config).await?;
            let result = match cmd {
                UserCommand::Create { name, role } => {
                    let password = read_password("password for the new account")?;
                    let account = engine::auth::create_user(
                        engine.state(),
                        &name,
                        &password,
                        engine::auth::parse_role(&role)?,
                    )
                    .await?;
                    println!("created {} {:?}", account.role.as_str(), account.username);
                    Ok(())
                }
                UserCommand::ResetPassword { name } => {
                    let password = read_password("new password")?;
                    engine::auth::reset_password(engine.state(), &name, &password).await?;
                    println!("password of {name:?} changed");
                    Ok(())
                }
            };
            engine.close().await;
            result
        }
        Command::Demo(DemoCommand::Seed { channels }) => {
            let mut cfg = engine_config;
            cfg.demo = false;
            let engine = Engine::open(cfg).await?;
            let stats = engine
                .content()
                .seed_demo(engine.data_dir(), channels)
                .await;
            engine.close().await;
            let stats = stats?;
            println!(
                "seeded {} channels, {} streams, {} logos, {} recordings",
                stats.channels, stats.streams, stats.logos, stats.recordings
            );
            Ok(())
        }
        Command::List => {
            let engine = Engine::open(engine_config).await?;
            let list = engine
                .list_jobs(&engine::jobs::JobFilter {
                    limit: 1000,
                    ..Default::default()
                })
                .await;
            engine.close().await;
            let (jobs, _total) = list?;
            println!(
                "{:>5}  {:<8} {:<10} {:<12} {:>12}  {:<24} ARCHIVE",
                "ID", "KIND", "STATUS", "TRIGGER", "SIZE", "CREATED"
            );
            for j in jobs {
                println!(
                    "{:>5}  {:<8} {:<10} {:<12} {:>12}  {:<24} {}",
                    j.id,
                    j.kind,
                    j.status,
                    j.trigger,
                    j.size_bytes.map(|s| s.to_string()).unwrap_or_default(),
                    j.created_at,
                    j.archive_name.unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::Backup { include_recordings } => {
            let _lock = crate::lock::exclusive_lock(&engine_config.data_dir)?;
            let engine = crate::http::open_with_plugins(engine_config, false).await?;
            let result = engine
                .run_backup_cli(include_recordings, progress_printer())
                .await;
            engine.close().await;
            let job = result?;
            println!("{}", job.archive_name.unwrap_or_default());
            Ok(())
        }
        Command::Restore { file, identity } => {
            let key = read_key_file(identity.as_deref())?;
            let _lock = crate::lock::exclusive_lock(&engine_config.data_dir)?;
            let engine = crate::http::open_with_plugins(engine_config, false).await?;
            let result = engine
                .restore_file_cli(&file, key.as_deref(), progress_printer())
                .await;
            engine.close().await;
            let job = result?;
            println!("restored {} (job {})", file.display(), job.id);
            Ok(())
        }
        Command::Verify { file, identity } => {
            let key = read_key_file(identity.as_deref())?;
            let engine = Engine::open(engine_config).await?;
            let result = engine
                .verify_file(&file, key.as_deref(), progress_printer())
                .await;
            engine.close().await;
            let report = result?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            Ok(())
        }
    }
}

/// The text of `--identity FILE`, when given.
fn read_key_file(path: Option<&std::path::Path>) -> engine::Result<Option<String>> {
    path.map(|p| {
        std::fs::read_to_string(p).map_err(|e| {
            engine::Error::invalid(format!("cannot read the key file {}", p.display()))
                .with_source(e)
        })
    })
    .transpose()
}

/// Progress on stderr: a bar that redraws itself on a terminal, plain lines otherwise.
fn progress_printer() -> engine::archive::ProgressFn {
    let tty = std::io::stderr().is_terminal();
    let last = std::sync::Mutex::new((String::new(), 0u64));
    std::sync::Arc::new(move |p: engine::archive::Progress| {
        let pct = p
            .done_bytes
            .saturating_mul(100)
            .checked_div(p.total_bytes)
            .unwrap_or(0);
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if tty {
            let filled = (pct as usize).min(100) / 4;
            eprint!(
                "\r{:<14} [{}{}] {:>3}% {} / {} MiB   ",
                p.step,
                "#".repeat(filled),
                " ".repeat(25 - filled),
                pct,
                p.done_bytes >> 20,
                p.total_bytes >> 20
            );
        } else if last.0 != p.step || pct >= last.1 + 10 {
            eprintln!(
                "{}: {}% ({} of {} bytes)",
                p.step, pct, p.done_bytes, p.total_bytes
            );
            *last = (p.step.to_owned(), pct);
        }
    })
}

fn read_password(what: &str) -> Result<String> {
    if std::io::stdin().is_terminal() {
        eprint!("{what} (input is shown; pipe it in to hide it): ");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::invalid("could not read the password from stdin").with_source(e))?;
    let pw = line.trim_end_matches(['\r', '\n']).to_owned();
    if pw.is_empty() {
        return Err(Error::invalid("no password given on stdin"));
    }
    Ok(pw)
}
