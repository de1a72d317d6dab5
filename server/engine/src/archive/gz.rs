//! The parallel gzip stage: tar bytes in, a multi-member gzip file out, hashed on the way.
//!
//! ```text
//! producer ──chunks (1 MiB)──> N compressor threads ──members──> writer thread ──> file
//!    ^                                                             │   (reorders by seq,
//!    └──────────────── emptied chunk buffers (the pool) ───────────┘    SHA-256, write)
//! ```
//!
//! - The tar stream is cut into [`CHUNK`]-sized pieces compressed in parallel, pigz-style:
//!   each piece is raw deflate primed with the previous 32 KiB as a dictionary and ended with a
//!   sync flush (byte-aligned, not final), so the pieces concatenate into one ordinary gzip
//!   member with the same ratio as `gzip -6`. The writer adds the gzip header, an empty final
//!   block, and the CRC-32 combined from each piece's CRC.
//! - Incompressible data (media, already-compressed files) is not compressed again: each
//!   64 KiB block is classified by the order-0 entropy of a 4 KiB sample, and runs of such
//!   blocks are written as stored deflate blocks (a copy plus a CRC).
//! - Memory is bounded by the buffer pool: the producer can only fill a buffer the writer has
//!   returned, so at most [`POOL`] chunks (and as many compressed outputs) exist at once.
//! - The writer asks a flusher thread to `fdatasync` every [`SYNC_EVERY`] bytes, so the disk
//!   writes while we compute instead of all at the final fsync.
//! - The file gets the gzip stream as it is, or encrypted with age (`encrypt_local`). A second
//!   output may take the same stream encrypted into another file, on its own thread (the
//!   form the copies send when the local archive is plain): one pass makes both.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};

use flate2::{Compress, Compression, Crc, FlushCompress};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::canceled;
use crate::{Error, Result};

/// Size of one chunk of tar stream, the unit of parallel work.
pub(crate) const CHUNK: usize = 1 << 20;
/// Chunk buffers in circulation: enough to keep every worker and the writer busy.
const POOL: usize = 8;
/// Granularity of the compressible/incompressible decision.
const BLOCK: usize = 64 << 10;
/// Distance between background `fdatasync` calls.
const SYNC_EVERY: u64 = 64 << 20;
/// Compression level: gzip's default, so sizes match `gzip -6`.
const LEVEL: u32 = 6;

/// Deflate's window: how much history primes the next piece.
const WINDOW: usize = 32 << 10;

struct Job {
    seq: u64,
    buf: Vec<u8>,
    len: usize,
    /// The last [`WINDOW`] bytes of the stream before this chunk (shorter at the start).
    dict: Vec<u8>,
}

struct Done {
    seq: u64,
    input: Vec<u8>,
    output: Result<Piece>,
}

/// One compressed chunk: deflate blocks ending byte-aligned, and the CRC of its input.
struct Piece {
    bytes: Vec<u8>,
    crc: Crc,
}

/// What the finished gzip file is.
pub(crate) struct Written {
    pub size: u64,
    pub sha256: String,
    /// The second, encrypted output, when one was asked for.
    pub side: Option<SideOutcome>,
}

/// How the second output ended: its size and sha256, or why it was given up. Its failure
/// never fails the archive (a copy made from it is a copy, and copies never fail a backup).
pub type SideOutcome = std::result::Result<(u64, String), String>;

/// Buffers in flight to the second output's thread.
const SIDE_QUEUE: usize = 4;

enum SideMsg {
    Data(Vec<u8>),
    /// The stream is complete: finish and sync. A channel closed without it is abandoned.
    End,
}

/// Starts the workers and the writer on `scope`; they end when the returned [`Gz`] is
/// finished, aborted or dropped.
pub(crate) fn start<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    file: File,
    encrypt_to: Option<Vec<age::x25519::Recipient>>,
    side: Option<(File, Vec<age::x25519::Recipient>)>,
    workers: usize,
    cancel: &'env CancellationToken,
) -> Gz<'scope> {
    let (job_tx, job_rx) = channel::<Job>();
    let (done_tx, done_rx) = channel::<Done>();
    let (pool_tx, pool_rx) = channel::<Vec<u8>>();
    for _ in 0..POOL {
        // Buffers are allocated (and zeroed) lazily on first use, then recycled.
        let _ = pool_tx.send(Vec::new());
    }
    let job_rx = Arc::new(Mutex::new(job_rx));
    let outputs: Arc<Mutex<Vec<Vec<u8>>>> = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..workers.max(1) {
        let job_rx = Arc::clone(&job_rx);
        let done_tx = done_tx.clone();
        let outputs = Arc::clone(&outputs);
        scope.spawn(move || compressor(&job_rx, &done_tx, &outputs));
    }
    drop(done_tx);
    let stop = Arc::new(AtomicBool::new(false));
    let writer_stop = Arc::clone(&stop);
    // The second output (the encrypted form for the copies) on its own thread, so the
    // encryption runs beside the compression instead of after it.
    let (side_tx, side) = match side {
        None => (None, None),
        Some((side_file, recipients)) => match Sink::new(side_file, Some(&recipients)) {
            Ok(sink) => {
                let (tx, rx) = sync_channel::<SideMsg>(SIDE_QUEUE);
                (
                    Some(tx),
                    Some(Ok(scope.spawn(move || side_writer(rx, sink)))),
                )
            }
            Err(e) => (None, Some(Err(e.message().to_owned()))),
        },
    };
    let writer = scope.spawn(move || {
        let sink = Sink::new(file, encrypt_to.as_deref())?;
        write_members(
            sink,
            side_tx,
            done_rx,
            pool_tx,
            &outputs,
            cancel,
            &writer_stop,
        )
    });
    Gz {
        stop,
        tail: Vec::new(),
        current: Vec::new(),
        len: 0,
        seq: 0,
        jobs: Some(job_tx),
        pool: pool_rx,
        writer: Some(writer),
        side,
    }
}

/// The producer's handle on the pipeline. Fill [`Gz::space`], then [`Gz::advance`]; full
/// chunks are dispatched automatically.
pub(crate) struct Gz<'scope> {
    /// Set by [`Gz::abort`]: the writer stops without syncing a file that will be deleted.
    stop: Arc<AtomicBool>,
    /// The last [`WINDOW`] bytes dispatched: the next chunk's dictionary.
    tail: Vec<u8>,
    current: Vec<u8>,
    len: usize,
    seq: u64,
    jobs: Option<Sender<Job>>,
    pool: Receiver<Vec<u8>>,
    writer: Option<std::thread::ScopedJoinHandle<'scope, Result<Written>>>,
    side: Option<std::result::Result<std::thread::ScopedJoinHandle<'scope, SideOutcome>, String>>,
}

impl Gz<'_> {
    /// Free space in the current chunk (never empty).
    pub(crate) fn space(&mut self) -> Result<&mut [u8]> {
        if self.current.is_empty() {
            self.current = self.pool.recv().map_err(|_| self.broken())?;
            if self.current.len() != CHUNK {
                self.current = vec![0; CHUNK];
            }
            self.len = 0;
        }
        Ok(&mut self.current[self.len..])
    }

    /// Marks `n` bytes of [`Gz::space`] as filled; dispatches the chunk when full.
    pub(crate) fn advance(&mut self, n: usize) -> Result<()> {
        self.len += n;
        debug_assert!(self.len <= CHUNK);
        if self.len == CHUNK {
            self.dispatch()?;
        }
        Ok(())
    }

    /// Appends `data` (headers, small files).
    pub(crate) fn write(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let space = self.space()?;
            let n = space.len().min(data.len());
            space[..n].copy_from_slice(&data[..n]);
            self.advance(n)?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Appends `n` zero bytes (tar padding, end-of-archive blocks).
    pub(crate) fn zeros(&mut self, mut n: usize) -> Result<()> {
        while n > 0 {
            let space = self.space()?;
            let k = space.len().min(n);
            space[..k].fill(0);
            self.advance(k)?;
            n -= k;
        }
        Ok(())
    }

    fn dispatch(&mut self) -> Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        let data = &self.current[..self.len];
        let dict = if data.len() >= WINDOW {
            data[data.len() - WINDOW..].to_vec()
        } else {
            let mut d = std::mem::take(&mut self.tail);
            d.extend_from_slice(data);
            d.drain(..d.len().saturating_sub(WINDOW));
            d
        };
        let prev = std::mem::replace(&mut self.tail, dict);
        let job = Job {
            seq: self.seq,
            buf: std::mem::take(&mut self.current),
            len: self.len,
            dict: prev,
        };
        self.seq += 1;
        self.len = 0;
        let jobs = self.jobs.as_ref().ok_or_else(|| self.broken())?;
        jobs.send(job).map_err(|_| self.broken())
    }

    fn broken(&self) -> Error {
        Error::internal("the archive compressor stopped", PipelineBroken)
    }

    /// Flushes the last chunk, waits for everything to be written and returns the file's size
    /// and hash. A writer error (disk full, cancel) wins over the producer's view.
    pub(crate) fn finish(mut self) -> Result<Written> {
        let flushed = self.dispatch();
        self.jobs = None;
        let written = self.join_writer();
        let side = self.join_side();
        let mut written = written?;
        flushed?;
        written.side = side;
        Ok(written)
    }

    /// Stops the pipeline after a producer error, returning the writer's error if it had one
    /// (it is usually the cause).
    pub(crate) fn abort(mut self) -> Option<Error> {
        self.stop.store(true, Ordering::Relaxed);
        self.jobs = None;
        let err = self.join_writer().err();
        let _ = self.join_side();
        err.filter(|e| e.message() != ABANDONED)
    }

    fn join_side(&mut self) -> Option<SideOutcome> {
        Some(match self.side.take()? {
            Ok(h) => h
                .join()
                .unwrap_or_else(|_| Err("its writer crashed".into())),
            Err(why) => Err(why),
        })
    }

    fn join_writer(&mut self) -> Result<Written> {
        match self.writer.take() {
            Some(w) => w
                .join()
                .map_err(|_| Error::internal("the archive writer crashed", PipelineBroken))?,
            None => Err(self.broken()),
        }
    }
}

impl Drop for Gz<'_> {
    fn drop(&mut self) {
        // Closing the job channel ends the workers; the scope joins every thread.
        self.jobs = None;
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a pipeline thread ended early")]
struct PipelineBroken;

/// The writer's answer to [`Gz::abort`]: not a cause, so never reported over the producer's.
const ABANDONED: &str = "the archive was abandoned";

/// One compressor thread: takes chunks, produces pieces.
fn compressor(jobs: &Mutex<Receiver<Job>>, done: &Sender<Done>, outputs: &Mutex<Vec<Vec<u8>>>) {
    let mut deflate = Compress::new(Compression::new(LEVEL), false);
    let mut dict = Vec::with_capacity(WINDOW);
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let mut out = outputs
            .lock()
            .ok()
            .and_then(|mut o| o.pop())
            .unwrap_or_default();
        out.clear();
        let input = &job.buf[..job.len];
        let output =
            compress_chunk(input, &job.dict, &mut out, &mut deflate, &mut dict).map(|()| {
                let mut crc = Crc::new();
                crc.update(input);
                Piece { bytes: out, crc }
            });
        if done
            .send(Done {
                seq: job.seq,
                input: job.buf,
                output,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Encodes `input` as deflate blocks appended to `out`, none final, ending byte-aligned.
/// `history` is the stream's preceding bytes (up to [`WINDOW`]); `scratch` is reused memory.
fn compress_chunk(
    input: &[u8],
    history: &[u8],
    out: &mut Vec<u8>,
    deflate: &mut Compress,
    scratch: &mut Vec<u8>,
) -> Result<()> {
    let mut start = 0;
    while start < input.len() {
        // Extend a run of blocks of the same class.
        let stored = looks_incompressible(&input[start..(start + BLOCK).min(input.len())]);
        let mut end = (start + BLOCK).min(input.len());
        while end < input.len() {
            let next = (end + BLOCK).min(input.len());
            if looks_incompressible(&input[end..next]) != stored {
                break;
            }
            end = next;
        }
        let run = &input[start..end];
        if stored {
            stored_blocks(run, out);
        } else {
            let dict: &[u8] = if start >= WINDOW {
                &input[start - WINDOW..start]
            } else {
                scratch.clear();
                scratch.extend_from_slice(&history[history.len().saturating_sub(WINDOW - start)..]);
                scratch.extend_from_slice(&input[..start]);
                scratch
            };
            deflate_blocks(run, dict, out, deflate)?;
        }
        start = end;
    }
    Ok(())
}

/// Stored (uncompressed) deflate blocks, not final. Only called at a byte boundary.
fn stored_blocks(data: &[u8], out: &mut Vec<u8>) {
    for block in data.chunks(0xffff) {
        let len = block.len() as u16;
        out.push(0); // BFINAL=0, BTYPE=00 (stored), padded to the byte
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
}

/// Compressed deflate blocks primed with `dict`, ended by a sync flush (byte-aligned, not
/// final).
fn deflate_blocks(
    data: &[u8],
    dict: &[u8],
    out: &mut Vec<u8>,
    deflate: &mut Compress,
) -> Result<()> {
    let failed = |e| Error::internal("compression failed", e);
    deflate.reset();
    if !dict.is_empty() {
        deflate.set_dictionary(dict).map_err(failed)?;
    }
    let before_in = deflate.total_in();
    loop {
        out.reserve(data.len() / 2 + 1024);
        let consumed = (deflate.total_in() - before_in) as usize;
        deflate
            .compress_vec(&data[consumed..], out, FlushCompress::Sync)
            .map_err(failed)?;
        // Done when all input is in and the flush did not run out of output space.
        if (deflate.total_in() - before_in) as usize == data.len() && out.len() < out.capacity() {
            return Ok(());
        }
    }
}

/// The gzip member header: ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=unix.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
/// An empty final stored block: ends the deflate stream after the last sync-flushed piece.
const FINAL_BLOCK: [u8; 5] = [1, 0, 0, 0xff, 0xff];

/// True when `block` would not shrink meaningfully under deflate. Order-0 entropy of a 4 KiB
/// sample (four 1 KiB windows) separates media and compressed files (about 7.95 bits/byte on
/// such a sample) from text, JSON, SVG and tar headers (well under 7): one cheap pass over 6%
/// of the data instead of a trial compression.
fn looks_incompressible(block: &[u8]) -> bool {
    const WINDOW: usize = 1024;
    if block.len() < 4 * WINDOW {
        return false;
    }
    let mut counts = [0u32; 256];
    let stride = (block.len() - WINDOW) / 3;
    for w in 0..4 {
        for &b in &block[w * stride..w * stride + WINDOW] {
            counts[b as usize] += 1;
        }
    }
    let n = (4 * WINDOW) as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    entropy > 7.8
}

/// Where the gzip stream goes: the file itself, or an age encryptor writing into the file
/// (`encrypt_local`: the archive is stored as `NAME.tar.gz.age`). Either way what is hashed
/// and counted is what the file holds.
enum Sink {
    Plain {
        file: File,
        hasher: Sha256,
        size: u64,
    },
    Encrypted {
        writer: crate::encryption::EncryptingWriter,
        /// The same file, for the background syncs.
        file: File,
    },
}

impl Sink {
    fn new(file: File, encrypt_to: Option<&[age::x25519::Recipient]>) -> Result<Sink> {
        Ok(match encrypt_to {
            None => Sink::Plain {
                file,
                hasher: Sha256::new(),
                size: 0,
            },
            Some(recipients) => {
                let clone = file
                    .try_clone()
                    .map_err(|e| Error::internal("cannot write the archive file", e))?;
                Sink::Encrypted {
                    writer: crate::encryption::EncryptingWriter::new(
                        clone,
                        recipients,
                        crate::encryption::Hashing::Inline,
                    )?,
                    file,
                }
            }
        })
    }

    fn file(&self) -> &File {
        match self {
            Sink::Plain { file, .. } | Sink::Encrypted { file, .. } => file,
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Plain { file, hasher, size } => {
                hasher.update(bytes);
                *size += bytes.len() as u64;
                file.write_all(bytes)
            }
            Sink::Encrypted { writer, .. } => writer.write_all(bytes),
        }
    }

    /// Ends the stream (age's last chunk), syncs the file; its size and sha256.
    fn finish(self) -> std::io::Result<(u64, String)> {
        let (file, size, sha256) = match self {
            Sink::Plain { file, hasher, size } => (file, size, hex::encode(hasher.finalize())),
            Sink::Encrypted { writer, .. } => writer.finish()?,
        };
        file.sync_all()?;
        Ok((size, sha256))
    }
}

/// The second output's thread: writes what the writer hands it; finishes (and syncs) only
/// when told the stream is complete.
fn side_writer(rx: Receiver<SideMsg>, mut sink: Sink) -> SideOutcome {
    let failed = |e: std::io::Error| format!("cannot write the encrypted copy: {e}");
    while let Ok(m) = rx.recv() {
        match m {
            SideMsg::Data(bytes) => sink.write_all(&bytes).map_err(failed)?,
            SideMsg::End => return sink.finish().map_err(failed),
        }
    }
    Err("the archive was not completed".into())
}

/// Hands `bytes` to the second output; gives it up (`None`) once its thread has stopped.
fn to_side(side: &mut Option<SyncSender<SideMsg>>, bytes: &[u8]) {
    if let Some(tx) = side
        && tx.send(SideMsg::Data(bytes.to_vec())).is_err()
    {
        *side = None;
    }
}

/// The writer thread: puts members in order, writes them to the sink (which hashes them),
/// recycles buffers.
fn write_members(
    mut sink: Sink,
    mut side: Option<SyncSender<SideMsg>>,
    done: Receiver<Done>,
    pool: Sender<Vec<u8>>,
    outputs: &Mutex<Vec<Vec<u8>>>,
    cancel: &CancellationToken,
    stop: &AtomicBool,
) -> Result<Written> {
    let failed = |e| Error::internal("cannot write the archive file", e);
    // Bytes of gzip stream written (before any encryption): when to kick the flusher.
    let mut size = 0u64;
    let mut next = 0u64;
    let mut pending: BTreeMap<u64, (Vec<u8>, Piece)> = BTreeMap::new();
    let flusher = Flusher::start(sink.file());
    let mut synced_at = 0u64;
    let mut crc = Crc::new();
    sink.write_all(&GZIP_HEADER).map_err(failed)?;
    to_side(&mut side, &GZIP_HEADER);
    size += GZIP_HEADER.len() as u64;
    while let Ok(d) = done.recv() {
        if cancel.is_cancelled() {
            return Err(canceled());
        }
        if stop.load(Ordering::Relaxed) {
            return Err(Error::internal(ABANDONED, PipelineBroken));
        }
        pending.insert(d.seq, (d.input, d.output?));
        while let Some((input, piece)) = pending.remove(&next) {
            sink.write_all(&piece.bytes).map_err(failed)?;
            to_side(&mut side, &piece.bytes);
            size += piece.bytes.len() as u64;
            crc.combine(&piece.crc);
            next += 1;
            let _ = pool.send(input);
            if let Ok(mut o) = outputs.lock() {
                o.push(piece.bytes);
            }
            if size - synced_at >= SYNC_EVERY {
                synced_at = size;
                flusher.kick();
            }
        }
    }
    if !pending.is_empty() {
        // A worker died without reporting: the stream has a hole.
        return Err(Error::internal(
            "the archive compressor stopped",
            PipelineBroken,
        ));
    }
    let mut trailer = Vec::with_capacity(13);
    trailer.extend_from_slice(&FINAL_BLOCK);
    trailer.extend_from_slice(&crc.sum().to_le_bytes());
    trailer.extend_from_slice(&crc.amount().to_le_bytes());
    sink.write_all(&trailer).map_err(failed)?;
    to_side(&mut side, &trailer);
    drop(flusher);
    if cancel.is_cancelled() {
        return Err(canceled());
    }
    if stop.load(Ordering::Relaxed) {
        return Err(Error::internal(ABANDONED, PipelineBroken));
    }
    // Both files sync at once: the second output finishes on its own thread meanwhile.
    if let Some(tx) = side.take() {
        let _ = tx.send(SideMsg::End);
    }
    let (size, sha256) = sink.finish().map_err(failed)?;
    Ok(Written {
        size,
        sha256,
        side: None,
    })
}

/// Starts writeback early: a thread that `fdatasync`s a clone of the file descriptor when
/// kicked, coalescing kicks that arrive while it is busy. Errors are ignored here because the
/// final `sync_all` reports them.
struct Flusher {
    /// None when the helper could not be started: the final `sync_all` still runs.
    kick: Option<SyncSender<()>>,
}

impl Flusher {
    fn start(file: &File) -> Flusher {
        let Ok(clone) = file.try_clone() else {
            return Flusher { kick: None };
        };
        let (tx, rx) = sync_channel::<()>(1);
        // Detached on purpose: after a cancel, waiting for a running sync of a file about to
        // be deleted would make the cancel slow. The thread ends after its current sync, once
        // the sender is dropped.
        let started = std::thread::Builder::new()
            .name("archive-flush".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    let _ = clone.sync_data();
                }
            });
        Flusher {
            kick: started.is_ok().then_some(tx),
        }
    }

    fn kick(&self) {
        if let Some(k) = &self.kick {
            let _ = k.try_send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    fn pseudo_random(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// Compresses `input` in `chunk`-sized pieces the way the pipeline does and wraps them
    /// as the writer does.
    fn gzip_like_pipeline(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = GZIP_HEADER.to_vec();
        let mut deflate = Compress::new(Compression::new(LEVEL), false);
        let mut scratch = Vec::new();
        let mut crc = Crc::new();
        for (i, c) in input.chunks(chunk).enumerate() {
            let history = &input[(i * chunk).saturating_sub(WINDOW)..i * chunk];
            compress_chunk(c, history, &mut out, &mut deflate, &mut scratch).expect("compress");
            let mut piece = Crc::new();
            piece.update(c);
            crc.combine(&piece);
        }
        out.extend_from_slice(&FINAL_BLOCK);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&crc.amount().to_le_bytes());
        out
    }

    #[test]
    fn pieces_with_mixed_text_and_noise_form_one_valid_gzip_member() {
        let text: Vec<u8> = (0..40_000)
            .flat_map(|i| format!("<svg id=\"{i}\"/>\n").into_bytes())
            .collect();
        let noise = pseudo_random(300_000);
        let mut input = text[..400_000].to_vec();
        input.extend_from_slice(&noise);
        input.extend_from_slice(&text[..100_000]);
        let out = gzip_like_pipeline(&input, 150_000);
        assert_eq!(gunzip(&out), input);
        // Python's gzip and GNU gzip see a single member.
        let mut single = Vec::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_end(&mut single)
            .expect("one member");
        assert_eq!(single, input);
        // The noise is stored (a little overhead), the text shrinks a lot.
        assert!(out.len() < noise.len() + 100_000, "size {}", out.len());
        assert!(out.len() > noise.len());
    }

    #[test]
    fn priming_with_the_previous_window_keeps_the_ratio_of_one_stream() {
        let text: Vec<u8> = (0..200_000)
            .flat_map(|i| {
                format!(
                    "[{i},\"Channel {}\",\"http://cdn.example/{}\"],\n",
                    i % 977,
                    i % 313
                )
                .into_bytes()
            })
            .collect();
        let pieces = gzip_like_pipeline(&text, 256 << 10).len();
        let mut whole = flate2::write::GzEncoder::new(Vec::new(), Compression::new(LEVEL));
        std::io::Write::write_all(&mut whole, &text).expect("compress");
        let whole = whole.finish().expect("finish").len();
        assert!(
            (pieces as f64) < whole as f64 * 1.01,
            "pieces {pieces} vs one stream {whole}"
        );
    }

    #[test]
    fn entropy_classifier_separates_noise_from_text() {
        assert!(looks_incompressible(&pseudo_random(BLOCK)));
        let text: Vec<u8> = (0..10_000)
            .flat_map(|i| format!("[{i},\"name {i}\",null],").into_bytes())
            .collect();
        assert!(!looks_incompressible(&text[..BLOCK]));
        assert!(!looks_incompressible(&vec![0u8; BLOCK]));
    }
}
