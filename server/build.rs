//! Embeds the first-party plugins (`recordings`, `custom-dirs`, `space-guard`) into the
//! `backstop` binary, so `backstop serve` offers them on a fresh data dir without copying
//! files (see `src/bundled.rs`). They come from `plugins/build.sh`'s output folder, or from
//! `BACKSTOP_BUNDLE_PLUGINS_DIR`; `./build.sh` builds them before the server. When they are
//! not built, the binary ships without them and says so at build time.

use std::fmt::Write as _;
use std::path::PathBuf;

const BUNDLED: [&str; 3] = ["recordings", "custom-dirs", "space-guard"];

fn main() {
    println!("cargo:rerun-if-env-changed=BACKSTOP_BUNDLE_PLUGINS_DIR");
    let dir = std::env::var_os("BACKSTOP_BUNDLE_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"))
                .join("../plugins/target/backstop-plugins")
        });
    let mut code = String::from("pub static BUNDLED: &[(&str, &str, &[u8])] = &[\n");
    for id in BUNDLED {
        let (toml, wasm) = (
            dir.join(id).join("plugin.toml"),
            dir.join(id).join("plugin.wasm"),
        );
        println!("cargo:rerun-if-changed={}", toml.display());
        println!("cargo:rerun-if-changed={}", wasm.display());
        if toml.is_file() && wasm.is_file() {
            writeln!(
                code,
                "    ({id:?}, include_str!({:?}), include_bytes!({:?})),",
                toml.display().to_string(),
                wasm.display().to_string()
            )
            .expect("write to a String");
        } else {
            println!(
                "cargo:warning=the first-party plugin {id} is not built ({} is missing): run plugins/build.sh (./build.sh does) to bundle it",
                wasm.display()
            );
        }
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("bundled.rs");
    std::fs::write(out, code).expect("write bundled.rs");
}
