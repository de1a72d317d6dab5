//! `pg-archive dump URL FILE` / `pg-archive load URL FILE`: the crate's dump and load as a
//! command, for the benchmark (`bench/run.sh`) and for trying an archive by hand.

use std::fs::File;
use std::io::BufWriter;

use anyhow::{Context, bail};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, cmd, url, file] = args.as_slice() else {
        bail!("usage: pg-archive dump|load URL FILE");
    };
    let mut conn = content_pg::connect(url).await?;
    match cmd.as_str() {
        "dump" => {
            let out = BufWriter::with_capacity(1 << 20, File::create(file).context("create")?);
            let (_, stats) = content_pg::dump(&mut conn, 0, out).await?;
            eprintln!(
                "dumped {} tables, {} rows, {} bytes, sha256 {}",
                stats.tables, stats.rows, stats.bytes, stats.sha256
            );
        }
        "load" => {
            let path = file.clone();
            let stats = content_pg::load(
                &mut conn,
                move || File::open(&path),
                || Ok::<(), std::convert::Infallible>(()),
            )
            .await?;
            eprintln!("loaded {} tables, {} rows", stats.tables, stats.rows);
        }
        // Diagnostics for the benchmark: the bare COPY stream of table FILE, no conversion.
        "copy" => {
            use futures::StreamExt;
            let mut s = conn.copy_out_raw(&format!("COPY {file} TO STDOUT")).await?;
            let (mut n, mut bytes) = (0u64, 0u64);
            while let Some(c) = s.next().await {
                n += 1;
                bytes += c?.len() as u64;
            }
            eprintln!("{n} messages, {bytes} bytes");
        }
        _ => bail!("usage: pg-archive dump|load URL FILE"),
    }
    Ok(())
}
