//! Throughput of the `database.json` reader with its row caps (a measurement, not a test):
//!
//! `cargo build --release -p server -p engine -p content-pg -p plugin-host -p wire -p tests --examples`
//! (the package set of `./test.sh`, so features unify the same way), then
//! `$CARGO_TARGET_DIR/release/examples/bench_dbjson_reader`.

use engine::archive::dbjson_fuzzing::{self as dbjson, Doc, MAX_ROW_BYTES, Value};

/// Throughput of the capped reader against serde_json skipping the same text (the floor for
/// any reader on top of it), on ~50 MiB of typical rows (the collecting sink keeps them, so
/// this overstates the reader).
fn main() {
    let row = vec![
        Value::Int(123456),
        Value::Text("BBC One HD (backup stream) http://example.com/live/123.m3u8".into()),
        Value::Real(1.5),
        Value::Null,
        Value::Blob(vec![7; 60]),
    ];
    let doc = Doc {
        schema_version: 1,
        tables: vec![(
            "t".into(),
            (0..5).map(|i| (format!("c{i}"), String::new())).collect(),
            vec![row; 300_000],
        )],
    };
    let text = dbjson::write(&doc);
    drop(doc);
    let time = |f: &dyn Fn()| {
        let t = std::time::Instant::now();
        f();
        t.elapsed().as_secs_f64()
    };
    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        best.0 = best.0.min(time(&|| {
            let r = std::io::BufReader::new(&text[..]);
            let _: serde::de::IgnoredAny = serde_json::from_reader(r).expect("json");
        }));
        best.1 = best.1.min(time(&|| {
            dbjson::read_capped(std::io::BufReader::new(&text[..]), MAX_ROW_BYTES, 4 << 20)
                .expect("read");
        }));
    }
    let mib = text.len() as f64 / (1 << 20) as f64;
    println!(
        "{mib:.0} MiB: serde_json skip {:.0} MiB/s, dbjson::read {:.0} MiB/s ({:.2}x the skip's time)",
        mib / best.0,
        mib / best.1,
        best.1 / best.0
    );
}
