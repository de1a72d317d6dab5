//! `backstop`: parse the command line, start logging, hand over to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = server::config::Cli::parse();
    server::init_tracing(cli.log_format);
    match server::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::debug!(error = %e.detailed(), "command failed");
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
