//! The wasmtime layer: one shared [`wasmtime::Engine`], compiled components cached by the
//! hash of their bytes (in memory, and on disk keyed by the engine's compatibility hash),
//! and [`Sandbox::call`], which runs one export in a fresh `Store` under the call's limits.
//!
//! Why each limit is enforced where it is:
//! - time: epoch interruption. A ticker thread bumps the epoch every [`TICK`]; at each tick
//!   the store's callback yields to the plugin runtime (so a spinning guest never holds a
//!   worker) and interrupts once the deadline passed or the job was canceled.
//! - memory: a [`wasmtime::ResourceLimiter`] that refuses growth past the cap (and records
//!   that it did, so the error says "memory" rather than a bare trap).
//! - handles: the resource table's capacity; host calls: a per-call counter.
//! - output: stdout/stderr and `host.log` share one capped log buffer (bytes and lines);
//!   excess is counted, not stored. stdout/stderr are our own synchronous WASI stream
//!   ([`LogPipe`]), never wasmtime-wasi's queueing `AsyncWriteStream` (GHSA-5m8g-xhq4-4h93).
//! - disk: a collect call's `/scratch` is measured while it runs and when it returns
//!   ([`ScratchCap`]); past the cap the call is stopped.
//! - code: the engine refuses the Wasm GC proposal (GHSA-rc4p-x33f-vpr2), see
//!   [`engine_config`].
//!
//! Calls run in the context of the sandbox's own multi-threaded tokio runtime (the WASI p2
//! async bindings need one; the sync ones panic inside tokio), polled on the engine's
//! calling thread, which is a blocking thread: the engine calls the plugin runtime
//! synchronously from `spawn_blocking`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use engine::plugins::{PluginLogLine, PluginProgress};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

mod bindings {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../../plugins/wit",
        imports: { default: trappable },
        exports: { default: async },
    });
}

pub(crate) use bindings::backstop::plugin::types::{
    Contribution, HookContext, HookOutcome, HookPoint as WitHookPoint, JobContext as WitJobContext,
    LogLevel, Placement, RestoreRequest,
};
use bindings::exports::backstop::plugin::{contributor, hooks, restorer};

/// Epoch tick: the granularity of deadlines and of yielding.
pub const TICK: Duration = Duration::from_millis(5);
/// Handles (streams, descriptors) one call may hold at once.
const MAX_HANDLES: usize = 1_000;
/// Host calls (`host.log`, `config-get`, ...) one call may make.
const MAX_HOSTCALLS: u64 = 1_000_000;
/// One log line is cut at this length.
const MAX_LINE: usize = 4 * 1024;
/// The watchdog fires this long after a call's deadline: a running guest is interrupted at
/// the next tick before that; the watchdog only ends a call stuck waiting on the host.
const WATCHDOG_SLACK: Duration = Duration::from_millis(50);
/// How often the watchdog looks at the job's cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(20);
/// Log lines one call may keep (the job keeps 5,000 across all its calls anyway). Empty
/// lines are bytes-cheap, so the byte cap alone would let a guest pile up line records.
pub(crate) const MAX_LINES: usize = 5_000;
/// What one stdout/stderr `write` may carry (the permit `check-write` grants).
const WRITE_PERMIT: usize = 64 * 1024;
/// Empty writes to stdout/stderr one call may make. They cost the host nothing here (see
/// [`LogPipe`]), but a guest issuing a million of them is spinning, not logging.
const MAX_EMPTY_WRITES: u64 = 1_000_000;
/// How often a collect call's `/scratch` is measured (at least; a walk that takes long
/// waits four times its own duration, so measuring costs at most a fifth of a thread).
const SCRATCH_POLL: Duration = Duration::from_millis(20);
/// Every file, folder or link in `/scratch` counts at least one block, so the cap also
/// bounds how many entries a plugin can create (256 MiB: 65,536).
const SCRATCH_BLOCK: u64 = 4096;

/// Why a call failed. The text is what the job's warning or error says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("stopped after its {ms} ms deadline")]
    Timeout { ms: u64 },
    #[error("stopped: it tried to use more than {mb} MiB of memory")]
    Memory { mb: u64 },
    #[error("stopped: the job was canceled")]
    Cancelled,
    #[error("stopped: more than {0} host calls")]
    Hostcalls(u64),
    #[error("stopped: its /scratch grew past {mb} MiB")]
    Scratch { mb: u64 },
    #[error("stopped: more than {0} empty writes to stdout/stderr")]
    EmptyWrites(u64),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("could not be started: {0}")]
    Start(String),
    #[error("failed: {0}")]
    Plugin(String),
    #[error("returned output that was refused: {0}")]
    Output(String),
    #[error("does not export the {0} interface")]
    MissingExport(&'static str),
}

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid WebAssembly component for this host: {reason}")]
    Compile { path: PathBuf, reason: String },
}

/// One export call.
pub(crate) enum Request {
    Hook(HookContext),
    Collect(WitJobContext),
    Plan(RestoreRequest),
    Restore(RestoreRequest),
}

/// Its answer.
pub(crate) enum Response {
    Hook(HookOutcome),
    Collect(Result<Vec<Contribution>, String>),
    Plan(Result<Vec<Placement>, String>),
    Restore(Result<Vec<String>, String>),
}

/// A compiled component, ready to instantiate; which of the interfaces it exports.
pub(crate) struct Compiled {
    pub sha256: String,
    pre: InstancePre<CallState>,
    hooks: Option<hooks::GuestIndices>,
    contributor: Option<contributor::GuestIndices>,
    restorer: Option<restorer::GuestIndices>,
}

impl Compiled {
    pub fn exports_hooks(&self) -> bool {
        self.hooks.is_some()
    }
    pub fn exports_contributor(&self) -> bool {
        self.contributor.is_some()
    }
    pub fn exports_restorer(&self) -> bool {
        self.restorer.is_some()
    }
}

/// Everything one call runs with.
pub(crate) struct CallSetup {
    pub plugin: String,
    pub memory_bytes: u64,
    pub timeout: Duration,
    pub log_bytes: usize,
    /// (host folder, guest path, permissions).
    pub preopens: Vec<(PathBuf, String, FsPerms)>,
    /// The plugin's own `/scratch` and its cap (collect calls only).
    pub scratch: Option<ScratchCap>,
    pub settings: Arc<serde_json::Map<String, serde_json::Value>>,
    pub cancel: Arc<AtomicBool>,
    /// Where `host.progress` goes: the job's progress.
    pub progress: PluginProgress,
}

/// A call's writable `/scratch` folder and how large it may grow.
///
/// WASI file writes go through wasmtime-wasi's filesystem, which has no quota hook, so the
/// folder is measured instead: every [`SCRATCH_POLL`] while the call runs (the call is
/// stopped once it is over), and once more when it returns. A plugin can therefore
/// overshoot by what it writes between two measurements (at disk speed, tens of MiB),
/// never by more; the host removes the folder of a failed call at once.
#[derive(Debug, Clone)]
pub(crate) struct ScratchCap {
    pub dir: PathBuf,
    pub mb: u64,
}

impl ScratchCap {
    fn over(&self) -> bool {
        scratch_usage(&self.dir, self.mb << 20) > self.mb << 20
    }
}

/// What `dir` takes on disk, counted so that neither sparse files nor many small files slip
/// under a cap: each entry counts its apparent size or its allocated blocks, whichever is
/// larger, and at least [`SCRATCH_BLOCK`]. Symlinks are not followed. Stops once past
/// `cap`, so one walk looks at no more than `cap / SCRATCH_BLOCK` entries.
fn scratch_usage(dir: &Path, cap: u64) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        // Entries the guest removes meanwhile are skipped, not errors.
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            #[cfg(unix)]
            let allocated = std::os::unix::fs::MetadataExt::blocks(&meta).saturating_mul(512);
            #[cfg(not(unix))]
            let allocated = 0;
            total = total.saturating_add(meta.len().max(allocated).max(SCRATCH_BLOCK));
            if total > cap {
                return total;
            }
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

/// Resolves once `/scratch` is over its cap (never without one). The walk runs on the
/// calling thread, the one the guest runs on, so a spinning guest pauses while it is
/// measured; a guest blocked in a file write has at most that one write in flight.
async fn scratch_watch(cap: Option<ScratchCap>) {
    let Some(cap) = cap else {
        return std::future::pending().await;
    };
    let mut wait = SCRATCH_POLL;
    loop {
        tokio::time::sleep(wait).await;
        let started = Instant::now();
        if cap.over() {
            return;
        }
        wait = SCRATCH_POLL.max(started.elapsed() * 4);
    }
}

/// What came back, including the log even when the call failed.
pub(crate) struct CallOutcome {
    pub result: Result<Response, CallError>,
    pub log: Vec<PluginLogLine>,
    /// Log bytes dropped over the cap.
    pub log_dropped: u64,
    pub elapsed: Duration,
}

/// The per-call log: `host.log`, stdout and stderr, capped.
struct LogSink {
    plugin: String,
    lines: Vec<PluginLogLine>,
    bytes: usize,
    cap: usize,
    dropped: u64,
    /// Unterminated output per stream (`stdout`, `stderr`).
    partial: [Vec<u8>; 2],
    /// Empty writes to stdout/stderr so far.
    empty_writes: u64,
}

impl LogSink {
    fn push(&mut self, level: &str, message: &str) {
        let message = if message.len() > MAX_LINE {
            let mut end = MAX_LINE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            &message[..end]
        } else {
            message
        };
        // A line costs its newline too, so empty lines count against the cap.
        let cost = message.len() + 1;
        if self.bytes + cost > self.cap || self.lines.len() >= MAX_LINES {
            self.dropped += cost as u64;
            return;
        }
        self.bytes += cost;
        self.lines.push(PluginLogLine {
            plugin: self.plugin.clone(),
            level: level.to_owned(),
            message: message.to_owned(),
            at: engine::state::now_rfc3339(),
        });
    }

    fn write(&mut self, stream: usize, mut data: &[u8]) {
        let name = if stream == 0 { "stdout" } else { "stderr" };
        // Fast path once the cap is reached: count, do not buffer.
        if self.bytes >= self.cap {
            self.dropped += data.len() as u64;
            return;
        }
        while let Some(pos) = data.iter().position(|b| *b == b'\n') {
            let mut line = std::mem::take(&mut self.partial[stream]);
            line.extend_from_slice(&data[..pos]);
            self.push(name, &String::from_utf8_lossy(&line));
            data = &data[pos + 1..];
        }
        let room = MAX_LINE.saturating_sub(self.partial[stream].len());
        self.partial[stream].extend_from_slice(&data[..data.len().min(room)]);
    }

    fn finish(&mut self) {
        for stream in 0..2 {
            if !self.partial[stream].is_empty() {
                let line = std::mem::take(&mut self.partial[stream]);
                let name = if stream == 0 { "stdout" } else { "stderr" };
                self.push(name, &String::from_utf8_lossy(&line));
            }
        }
    }
}

/// stdout or stderr of a guest, written into its [`LogSink`].
#[derive(Clone)]
struct LogPipe {
    sink: Arc<Mutex<LogSink>>,
    stream: usize,
}

impl wasmtime_wasi::cli::IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for LogPipe {
    /// The guest's `wasi:cli/stdout` and `stderr`: this pipe itself, written synchronously.
    ///
    /// The default would wrap [`Self::async_stream`] in wasmtime-wasi's `AsyncWriteStream`,
    /// which in 48.0.8 queues every write for a background task, and an empty write even
    /// when no write permit is left: a guest looping on empty writes grows that queue
    /// without bound (GHSA-5m8g-xhq4-4h93, fixed in 48.0.9, which needs a newer rustc).
    /// Here nothing is queued: a write lands in the capped [`LogSink`] before it returns,
    /// and an empty one only bumps a counter.
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl wasmtime_wasi::p2::OutputStream for LogPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        use wasmtime_wasi::p2::StreamError;
        if bytes.len() > WRITE_PERMIT {
            // What `check-write` allows; the same refusal as wasmtime-wasi's own streams.
            return Err(StreamError::trap("write exceeded budget"));
        }
        let Ok(mut sink) = self.sink.lock() else {
            return Ok(());
        };
        if bytes.is_empty() {
            sink.empty_writes += 1;
            if sink.empty_writes > MAX_EMPTY_WRITES {
                return Err(StreamError::trap("too many empty writes"));
            }
            return Ok(());
        }
        sink.write(self.stream, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for LogPipe {
    /// Always ready: writes never wait.
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Ok(mut sink) = self.sink.lock() {
            sink.write(self.stream, buf);
        }
        // Always "written": a guest printing past the cap keeps running, its output is
        // counted as dropped.
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Refuses memory growth past the cap and remembers that it did.
struct Limiter {
    memory_bytes: u64,
    hit: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_bytes {
            self.hit = true;
            return Err(wasmtime::Error::msg("memory limit reached"));
        }
        Ok(true)
    }
    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
    fn instances(&self) -> usize {
        32
    }
    fn tables(&self) -> usize {
        64
    }
    fn memories(&self) -> usize {
        8
    }
}

/// Why the epoch callback or a host call stopped the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Deadline,
    Cancelled,
    Hostcalls,
}

/// The data of one call's `Store`.
pub(crate) struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    log: Arc<Mutex<LogSink>>,
    settings: Arc<serde_json::Map<String, serde_json::Value>>,
    cancel: Arc<AtomicBool>,
    progress: PluginProgress,
    hostcalls: u64,
    deadline: Instant,
    stopped: Option<Stop>,
}

impl CallState {
    fn hostcall(&mut self) -> wasmtime::Result<()> {
        self.hostcalls += 1;
        if self.hostcalls > MAX_HOSTCALLS {
            self.stopped = Some(Stop::Hostcalls);
            return Err(wasmtime::Error::msg("too many host calls"));
        }
        Ok(())
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::backstop::plugin::types::Host for CallState {}

impl bindings::backstop::plugin::host::Host for CallState {
    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        self.hostcall()?;
        let level = match level {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        };
        if let Ok(mut sink) = self.log.lock() {
            sink.push(level, &message);
        }
        Ok(())
    }
    fn config_get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        self.hostcall()?;
        Ok(self.settings.get(&key).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }))
    }
    fn progress(&mut self, done: u64, total: u64) -> wasmtime::Result<()> {
        // Bounded by the host-call cap; the job's progress channel coalesces bursts.
        self.hostcall()?;
        self.progress.report(done, total);
        Ok(())
    }
    fn cancelled(&mut self) -> wasmtime::Result<bool> {
        self.hostcall()?;
        Ok(self.cancel.load(Ordering::Relaxed))
    }
}

/// Instances in the pool: far above the calls that run at once (one per job step, plus
/// stragglers past their deadline being interrupted).
const POOL_INSTANCES: u32 = 64;

fn engine_config(pool_memory_bytes: Option<u64>) -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // GHSA-rc4p-x33f-vpr2 (fixed in 48.0.9, which needs a newer rustc): in a build without
    // the `gc` cargo feature (ours) the GC proposal is still on by default, without its
    // types but with non-final (subtypable) function types. A `call_indirect`, `ref.test`,
    // `ref.cast` or `br_on_cast` against such a type calls the `is_subtype` builtin, which
    // is a panicking stub in this build; the panic cannot unwind out of compiled code and
    // aborts the whole server. With the proposal off, validation refuses a component that
    // declares such a type (its load fails with a reason); every type is final, so the
    // check stays an inline equality test. No plugin toolchain we support emits Wasm GC.
    config.wasm_gc(false);
    // Plugins are small; a modest stack bounds deep recursion cheaply.
    config.max_wasm_stack(1 << 20);
    if let Some(max_memory) = pool_memory_bytes {
        let mut pool = wasmtime::PoolingAllocationConfig::new();
        // Slots are address space reservations, committed only as guests touch them.
        // Generous per-component counts so interpreters (componentize-py/-js) fit too.
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 16)
            .total_memories(POOL_INSTANCES * 4)
            .total_tables(POOL_INSTANCES * 16)
            .max_core_instances_per_component(64)
            .max_memories_per_component(8)
            .max_tables_per_component(64)
            .max_core_instance_size(8 << 20)
            .max_component_instance_size(8 << 20)
            .table_elements(100_000)
            .max_memory_size(max_memory as usize)
            // Reset the first pages of a used slot with memset rather than madvise: the
            // next call then does not page-fault its stack and data back in.
            .linear_memory_keep_resident(256 << 10)
            .table_keep_resident(64 << 10);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// The shared engine, linker, compiled-component cache, epoch ticker and plugin runtime.
pub(crate) struct Sandbox {
    engine: wasmtime::Engine,
    linker: Linker<CallState>,
    /// Always `Some` until drop, where it is shut down without blocking (dropping a
    /// runtime normally blocks, which panics when the last owner is an async task).
    runtime: Option<tokio::runtime::Runtime>,
    /// sha256 of the component bytes -> compiled component.
    memo: Mutex<HashMap<String, Arc<Compiled>>>,
    cache_dir: Option<PathBuf>,
    engine_hash: String,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Sandbox {
    /// Builds the engine and starts the ticker and `threads` plugin worker threads.
    /// `cache_dir` holds precompiled components (`None`: compile in memory only).
    pub fn new(
        cache_dir: Option<PathBuf>,
        threads: usize,
        max_memory_bytes: u64,
    ) -> wasmtime::Result<Sandbox> {
        let engine = match wasmtime::Engine::new(&engine_config(Some(max_memory_bytes))) {
            Ok(e) => e,
            Err(e) => {
                // E.g. address space limits: the on-demand allocator is slower, not wrong.
                tracing::warn!(error = %e, "pooling allocator unavailable; plugins use on-demand instantiation");
                wasmtime::Engine::new(&engine_config(None))?
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::Plugin::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |s| s)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("backstop-plugin")
            .enable_all()
            .build()
            .map_err(|e| wasmtime::Error::msg(format!("cannot start the plugin runtime: {e}")))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = format!("{:016x}", hasher.finish());
        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("backstop-plugin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| wasmtime::Error::msg(format!("cannot start the epoch ticker: {e}")))?;
        }
        Ok(Sandbox {
            engine,
            linker,
            runtime: Some(runtime),
            memo: Mutex::new(HashMap::new()),
            cache_dir,
            engine_hash,
            ticker_stop,
        })
    }

    /// Loads a component file: from the in-memory memo when these exact bytes were loaded
    /// before, else from the on-disk cache, else by compiling it (and caching the result).
    pub fn load(&self, wasm_path: &Path) -> Result<Arc<Compiled>, LoadError> {
        let bytes = std::fs::read(wasm_path).map_err(|source| LoadError::Read {
            path: wasm_path.to_owned(),
            source,
        })?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if let Some(c) = self.memo.lock().expect("memo lock").get(&sha256) {
            return Ok(c.clone());
        }
        let compile_error = |e: wasmtime::Error| LoadError::Compile {
            path: wasm_path.to_owned(),
            reason: format!("{e:#}"),
        };
        let component = self.component(&bytes, &sha256).map_err(compile_error)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(compile_error)?;
        let compiled = Arc::new(Compiled {
            sha256: sha256.clone(),
            hooks: hooks::GuestIndices::new(&pre).ok(),
            contributor: contributor::GuestIndices::new(&pre).ok(),
            restorer: restorer::GuestIndices::new(&pre).ok(),
            pre,
        });
        self.memo
            .lock()
            .expect("memo lock")
            .insert(sha256, compiled.clone());
        Ok(compiled)
    }

    #[allow(unsafe_code)] // loading our own precompiled cache, see SAFETY below
    fn component(&self, bytes: &[u8], sha256: &str) -> wasmtime::Result<Component> {
        let Some(dir) = &self.cache_dir else {
            return Component::from_binary(&self.engine, bytes);
        };
        let cached = dir.join(format!("{sha256}-{}.cwasm", self.engine_hash));
        if cached.is_file() {
            // SAFETY: the file was written by `Component::serialize` of this host into its
            // own cache folder (not reachable by plugins), is named by the hash of the
            // source bytes and of this engine's configuration, and wasmtime checks its
            // header for version and configuration compatibility before use.
            match unsafe { Component::deserialize_file(&self.engine, &cached) } {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(file = %cached.display(), error = %e, "ignoring an unusable precompiled plugin")
                }
            }
        }
        let component = Component::from_binary(&self.engine, bytes)?;
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let serialized = component.serialize().map_err(std::io::Error::other)?;
            // A name of its own per write: two loads of the same component at once (threads
            // of one process share the pid) must never write one temporary file, or the
            // rename would publish a file still being written (and mapped by a reader).
            static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let tmp = dir.join(format!(
                ".{sha256}-{}.tmp-{}-{}",
                self.engine_hash,
                std::process::id(),
                WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            std::fs::write(&tmp, serialized)?;
            std::fs::rename(&tmp, &cached)
        };
        if let Err(e) = write() {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot cache a precompiled plugin; it will be compiled again next start");
        }
        Ok(component)
    }

    /// Runs one call on the calling thread (a blocking thread of the engine, never an async
    /// worker) inside the plugin runtime's context: WASI I/O and timers are driven by the
    /// runtime's own workers, and no thread hop is paid per call (a hook round trip is
    /// dominated by two cross-thread wake-ups otherwise). A spinning guest therefore holds
    /// only its caller's thread, and only until its deadline.
    pub fn call(&self, compiled: Arc<Compiled>, setup: CallSetup, request: Request) -> CallOutcome {
        let _context = self
            .runtime
            .as_ref()
            .expect("runtime lives until drop")
            .enter();
        block_on(self.call_async(compiled, setup, request))
    }

    /// The call itself, with a watchdog for a guest waiting on the host (a sleep, a slow
    /// file) past its deadline or its job's cancel, where no epoch tick can interrupt it.
    fn call_async(
        &self,
        compiled: Arc<Compiled>,
        setup: CallSetup,
        request: Request,
    ) -> impl std::future::Future<Output = CallOutcome> + Send + 'static {
        let engine = self.engine.clone();
        async move {
            let started = Instant::now();
            let sink = Arc::new(Mutex::new(LogSink {
                plugin: setup.plugin.clone(),
                lines: Vec::new(),
                bytes: 0,
                cap: setup.log_bytes,
                dropped: 0,
                partial: [Vec::new(), Vec::new()],
                empty_writes: 0,
            }));
            let cancel = setup.cancel.clone();
            let scratch_over = || CallError::Scratch {
                mb: setup.scratch.as_ref().map_or(0, |s| s.mb),
            };
            // `biased`: the call is polled first, so one that finishes in its first poll
            // (most hooks) never registers the watchdog's timers (a timer registration can
            // wake the runtime's timer thread: a cross-thread wake-up per call).
            let result = tokio::select! {
                biased;
                r = run(&engine, &compiled, &setup, sink.clone(), request) => r,
                _ = scratch_watch(setup.scratch.clone()) => Err(scratch_over()),
                _ = tokio::time::sleep(setup.timeout + WATCHDOG_SLACK) => {
                    Err(CallError::Timeout { ms: setup.timeout.as_millis() as u64 })
                }
                _ = async {
                    while !cancel.load(Ordering::Relaxed) {
                        tokio::time::sleep(CANCEL_POLL).await;
                    }
                } => Err(CallError::Cancelled),
            };
            // What it wrote just before returning was not measured yet.
            let result = match result {
                Ok(_) if setup.scratch.as_ref().is_some_and(ScratchCap::over) => {
                    Err(scratch_over())
                }
                r => r,
            };
            let (log, log_dropped) = {
                let mut s = sink.lock().expect("log lock");
                s.finish();
                (std::mem::take(&mut s.lines), s.dropped)
            };
            CallOutcome {
                result,
                log,
                log_dropped,
                elapsed: started.elapsed(),
            }
        }
    }
}

/// Drives a future to completion on the current thread, parking between polls. Unlike
/// `Runtime::block_on` it never panics inside another runtime's context; the epoch yield
/// wakes it at once, so a running guest keeps running.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

async fn run(
    engine: &wasmtime::Engine,
    compiled: &Compiled,
    setup: &CallSetup,
    sink: Arc<Mutex<LogSink>>,
    request: Request,
) -> Result<Response, CallError> {
    let mut wasi = WasiCtxBuilder::new();
    // Deny by default: no environment, no arguments, no inherited stdio, no network.
    wasi.stdout(LogPipe {
        sink: sink.clone(),
        stream: 0,
    })
    .stderr(LogPipe {
        sink: sink.clone(),
        stream: 1,
    })
    .allow_tcp(false)
    .allow_udp(false)
    .allow_ip_name_lookup(false)
    .socket_addr_check(|_, _| Box::pin(async { false }));
    for (host, guest, perms) in &setup.preopens {
        wasi.preopened_dir(host, guest, *perms).map_err(|e| {
            CallError::Start(format!(
                "{guest} ({}) cannot be opened: {e}",
                host.display()
            ))
        })?;
    }
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_HANDLES);
    let state = CallState {
        wasi: wasi.build(),
        table,
        limiter: Limiter {
            memory_bytes: setup.memory_bytes,
            hit: false,
        },
        log: sink.clone(),
        settings: setup.settings.clone(),
        cancel: setup.cancel.clone(),
        progress: setup.progress.clone(),
        hostcalls: 0,
        deadline: Instant::now() + setup.timeout,
        stopped: None,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        let s = ctx.data_mut();
        if s.cancel.load(Ordering::Relaxed) {
            s.stopped = Some(Stop::Cancelled);
            return Ok(UpdateDeadline::Interrupt);
        }
        if Instant::now() >= s.deadline {
            s.stopped = Some(Stop::Deadline);
            return Ok(UpdateDeadline::Interrupt);
        }
        Ok(UpdateDeadline::Yield(1))
    });
    let result = invoke(&mut store, compiled, request).await;
    result.map_err(|e| classify(&store, setup, &sink, e))
}

async fn invoke(
    store: &mut Store<CallState>,
    compiled: &Compiled,
    request: Request,
) -> Result<Response, wasmtime::Error> {
    let missing = |what: &'static str| wasmtime::Error::new(Missing(what));
    let instance = compiled.pre.instantiate_async(&mut *store).await?;
    Ok(match request {
        Request::Hook(ctx) => {
            let g = compiled
                .hooks
                .as_ref()
                .ok_or_else(|| missing("hooks"))?
                .load(&mut *store, &instance)?;
            Response::Hook(g.call_on_hook(&mut *store, &ctx).await?)
        }
        Request::Collect(ctx) => {
            let g = compiled
                .contributor
                .as_ref()
                .ok_or_else(|| missing("contributor"))?
                .load(&mut *store, &instance)?;
            Response::Collect(g.call_collect(&mut *store, &ctx).await?)
        }
        Request::Plan(req) => {
            let g = compiled
                .restorer
                .as_ref()
                .ok_or_else(|| missing("restorer"))?
                .load(&mut *store, &instance)?;
            Response::Plan(g.call_plan(&mut *store, &req).await?)
        }
        Request::Restore(req) => {
            let g = compiled
                .restorer
                .as_ref()
                .ok_or_else(|| missing("restorer"))?
                .load(&mut *store, &instance)?;
            Response::Restore(g.call_restore(&mut *store, &req).await?)
        }
    })
}

/// Marker error: the component lacks an interface its manifest promised.
#[derive(Debug)]
struct Missing(&'static str);

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "missing export {}", self.0)
    }
}

impl std::error::Error for Missing {}

/// Turns a wasmtime error into the reason a person reads: the limit that stopped the guest
/// when one did, else the trap (with the guest's last stderr line, e.g. a panic message).
fn classify(
    store: &Store<CallState>,
    setup: &CallSetup,
    sink: &Mutex<LogSink>,
    e: wasmtime::Error,
) -> CallError {
    let s = store.data();
    match s.stopped {
        Some(Stop::Deadline) => {
            return CallError::Timeout {
                ms: setup.timeout.as_millis() as u64,
            };
        }
        Some(Stop::Cancelled) => return CallError::Cancelled,
        Some(Stop::Hostcalls) => return CallError::Hostcalls(MAX_HOSTCALLS),
        None => {}
    }
    if s.limiter.hit {
        return CallError::Memory {
            mb: setup.memory_bytes >> 20,
        };
    }
    if sink.lock().expect("log lock").empty_writes > MAX_EMPTY_WRITES {
        return CallError::EmptyWrites(MAX_EMPTY_WRITES);
    }
    if let Some(m) = e.downcast_ref::<Missing>() {
        return CallError::MissingExport(m.0);
    }
    let what = match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{e:#}")
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
    };
    let mut sink = sink.lock().expect("log lock");
    sink.finish();
    let stderr: Vec<&str> = sink
        .lines
        .iter()
        .filter(|l| l.level == "stderr")
        .map(|l| l.message.as_str())
        .collect();
    // A Rust panic prints "... panicked at file:line:col:" and the message on the next line.
    let panic = match stderr.iter().rposition(|l| l.contains("panicked at")) {
        Some(i) => Some(
            stderr[i..]
                .iter()
                .take(2)
                .copied()
                .collect::<Vec<_>>()
                .join(" "),
        ),
        None => stderr
            .iter()
            .rev()
            .find(|l| !l.starts_with("note:"))
            .map(|l| (*l).to_owned()),
    };
    match panic {
        Some(p) => CallError::Trap(format!("{what} (stderr: {p})")),
        None => CallError::Trap(what),
    }
}
