//! Tar headers as the writer emits them: ustar, with a PAX extended header only when a path
//! does not fit ustar's name/prefix fields or a file is 8 GiB or larger. uid/gid 0, no user or
//! group names, permission bits and mtime kept.

use tar::{EntryType, Header};

/// One tar block.
pub(crate) const BLOCK: usize = 512;
/// Largest value of ustar's 11-digit octal fields (size, mtime).
const USTAR_MAX: u64 = 0o77777777777;

/// The kind of entry: the writer only ever emits these two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
}

/// Bytes of zero padding after `size` bytes of data.
pub(crate) fn padding(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

/// Appends the header block(s) for one entry to `out`. `path` is relative, `/`-separated,
/// without a trailing slash (added here for directories).
pub(crate) fn append_header(
    out: &mut Vec<u8>,
    path: &str,
    kind: Kind,
    size: u64,
    mode: u32,
    mtime: u64,
) {
    let mut name = path.to_owned();
    if kind == Kind::Dir {
        name.push('/');
    }
    let size = if kind == Kind::Dir { 0 } else { size };
    let mtime = mtime.min(USTAR_MAX);
    let split = split_ustar(&name);

    let mut pax = Vec::new();
    if split.is_none() {
        pax_record(&mut pax, "path", &name);
    }
    if size > USTAR_MAX {
        pax_record(&mut pax, "size", &size.to_string());
    }
    if !pax.is_empty() {
        let mut h = Header::new_ustar();
        set_name(&mut h, "", "././@PaxHeader");
        h.set_entry_type(EntryType::XHeader);
        h.set_size(pax.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&pax);
        out.resize(out.len() + padding(pax.len() as u64), 0);
    }

    let mut h = Header::new_ustar();
    match split {
        Some((prefix, base)) => set_name(&mut h, prefix, base),
        // The PAX `path` above is authoritative; ustar gets a truncated stand-in.
        None => set_name(&mut h, "", truncate_utf8(&name, 100)),
    }
    h.set_entry_type(match kind {
        Kind::File => EntryType::Regular,
        Kind::Dir => EntryType::Directory,
    });
    // Above 8 GiB the tar crate writes GNU base-256, which GNU tar and Python read too; the
    // PAX `size` record says the same for strict PAX readers.
    h.set_size(size);
    h.set_mode(mode & 0o777);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
}

/// Whether [`header`] can write `path` without a PAX `path` record. A PAX record holding a
/// line break is not read back by the tar crate (it splits records at line breaks), so the
/// writer skips such names rather than write an archive its own verifier refuses.
pub(crate) fn fits_ustar(path: &str, is_dir: bool) -> bool {
    if is_dir && !path.ends_with('/') {
        return split_ustar(&format!("{path}/")).is_some();
    }
    split_ustar(path).is_some()
}

/// Splits `name` into ustar (prefix, name) fields (155 and 100 bytes), at a `/`.
fn split_ustar(name: &str) -> Option<(&str, &str)> {
    if name.len() <= 100 {
        return Some(("", name));
    }
    // The split point must leave the name part (after the slash) within 100 bytes and the
    // prefix within 155; a trailing directory slash stays with the name part.
    let bytes = name.as_bytes();
    let search_end = name.len().saturating_sub(1);
    let mut best = None;
    for (i, &b) in bytes[..search_end].iter().enumerate() {
        if b == b'/' && i <= 155 && name.len() - i - 1 <= 100 && i > 0 {
            best = Some(i);
            break;
        }
    }
    best.map(|i| (&name[..i], &name[i + 1..]))
}

fn set_name(h: &mut Header, prefix: &str, name: &str) {
    let ustar = h.as_ustar_mut().expect("created with new_ustar");
    ustar.name = [0; 100];
    ustar.name[..name.len()].copy_from_slice(name.as_bytes());
    ustar.prefix = [0; 155];
    ustar.prefix[..prefix.len()].copy_from_slice(prefix.as_bytes());
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends one `"<len> <key>=<value>\n"` record, where `<len>` counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &str) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}={value}\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(bytes: &[u8]) -> Vec<(String, u64)> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                (
                    String::from_utf8(e.path_bytes().to_vec()).expect("utf8"),
                    e.size(),
                )
            })
            .collect()
    }

    #[test]
    fn long_paths_use_prefix_or_pax_and_read_back_exactly() {
        let short = "data/logos/a.svg".to_string();
        let splittable = format!("data/{}/{}", "d".repeat(120), "f".repeat(90));
        let unsplittable = format!("data/{}", "x".repeat(300));
        let mut out = Vec::new();
        for p in [&short, &splittable, &unsplittable] {
            append_header(&mut out, p, Kind::File, 3, 0o644, 1);
            out.extend_from_slice(b"abc");
            out.resize(out.len() + padding(3), 0);
        }
        out.resize(out.len() + 2 * BLOCK, 0);
        let got = read_back(&out);
        assert_eq!(got, vec![(short, 3), (splittable, 3), (unsplittable, 3)]);
    }

    #[test]
    fn pax_record_length_counts_itself() {
        let mut out = Vec::new();
        pax_record(&mut out, "path", &"y".repeat(93));
        assert_eq!(out.len(), 103);
        assert!(out.starts_with(b"103 path="));
    }
}
