//! COPY's text format, both ways: a row of `COPY ... TO STDOUT` turned into a JSON array
//! (dump), and JSON values turned into a row for `COPY ... FROM STDIN` (load).
//!
//! The text format: one row per line, fields separated by a tab, `\N` for NULL, and a
//! backslash escaping the rest (`\\`, `\t`, `\n`, `\r`, `\b`, `\f`, `\v`, `\` + 1-3 octal
//! digits, `\x` + 1-2 hex digits; any other escaped character stands for itself). A raw
//! newline therefore always ends a row.

use base64::Engine as _;

use crate::catalog::Kind;

/// Why a COPY field could not be written as JSON.
#[derive(Debug)]
pub(crate) enum FieldError {
    /// The row has more or fewer fields than the table has columns.
    FieldCount { expected: usize, found: usize },
    /// Not UTF-8 text (a database in SQL_ASCII, for instance).
    NotUtf8 { column: usize },
    /// A value of a bool, integer or bytea column that is not what PostgreSQL prints.
    Unexpected { column: usize },
}

/// Appends one COPY text row (without its newline) to `out` as a JSON array.
/// `scratch` is reused between calls to unescape text fields.
///
/// The line is checked for UTF-8 once and split as a `str` (the tab is ASCII, so every field
/// is valid UTF-8 too): one validation pass per row instead of one per field.
pub(crate) fn row_to_json(
    line: &[u8],
    kinds: &[Kind],
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Result<(), FieldError> {
    let line = std::str::from_utf8(line).map_err(|e| FieldError::NotUtf8 {
        column: line[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\t')
            .count(),
    })?;
    out.push(b'[');
    let mut found = 0;
    for (i, field) in line.split('\t').enumerate() {
        found += 1;
        let Some(&kind) = kinds.get(i) else {
            continue;
        };
        if i > 0 {
            out.push(b',');
        }
        if field == "\\N" {
            out.extend_from_slice(b"null");
            continue;
        }
        match kind {
            Kind::Bool => match field {
                "t" => out.extend_from_slice(b"true"),
                "f" => out.extend_from_slice(b"false"),
                _ => return Err(FieldError::Unexpected { column: i }),
            },
            // int2/4/8 print as an optional minus and digits, already valid JSON.
            Kind::Int => {
                let digits = field.strip_prefix('-').unwrap_or(field);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(FieldError::Unexpected { column: i });
                }
                out.extend_from_slice(field.as_bytes());
            }
            // bytea_output = hex prints `\x` + hex digits; COPY doubles the backslash.
            Kind::Bytea => {
                let hex_digits = field
                    .strip_prefix("\\\\x")
                    .ok_or(FieldError::Unexpected { column: i })?;
                scratch.clear();
                scratch.resize(hex_digits.len() / 2, 0);
                hex::decode_to_slice(hex_digits, scratch)
                    .map_err(|_| FieldError::Unexpected { column: i })?;
                write_base64(out, scratch);
            }
            Kind::Text => {
                // serde_json's escaper: no allocation, writing into a Vec cannot fail.
                if field.contains('\\') {
                    unescape(field.as_bytes(), scratch);
                    // An octal or hex escape can spell any byte, so check again.
                    let s = std::str::from_utf8(scratch)
                        .map_err(|_| FieldError::NotUtf8 { column: i })?;
                    let _ = serde_json::to_writer(&mut *out, s);
                } else {
                    let _ = serde_json::to_writer(&mut *out, field);
                }
            }
        }
    }
    if found != kinds.len() {
        return Err(FieldError::FieldCount {
            expected: kinds.len(),
            found,
        });
    }
    out.push(b']');
    Ok(())
}

/// COPY text unescaping of one field into `out` (cleared first).
fn unescape(field: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        i += 1;
        if b != b'\\' || i == field.len() {
            out.push(b);
            continue;
        }
        let c = field[i];
        i += 1;
        match c {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match field.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' if field.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut v = 0u32;
                for _ in 0..2 {
                    match field.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
}

/// `{"$base64":"..."}` for `bytes`, encoded in place.
pub(crate) fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(b"{\"$base64\":\"");
    let start = out.len();
    out.resize(start + bytes.len().div_ceil(3) * 4, 0);
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, &mut out[start..])
        .expect("the buffer was sized for the padded encoding");
    out.truncate(start + n);
    out.extend_from_slice(b"\"}");
}

/// Appends `s` as a COPY text field: backslash, tab, newline and carriage return escaped,
/// everything else as it is.
pub(crate) fn escape_into(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends bytes as a bytea COPY field: `\\x` and hex (the backslash escaped for COPY).
pub(crate) fn bytea_into(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(b"\\\\x");
    let start = out.len();
    out.resize(start + bytes.len() * 2, 0);
    hex::encode_to_slice(bytes, &mut out[start..]).expect("the buffer was sized for the hex");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(line: &[u8], kinds: &[Kind]) -> String {
        let mut out = Vec::new();
        row_to_json(line, kinds, &mut out, &mut Vec::new()).expect("valid row");
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn every_kind_and_escape() {
        let kinds = [Kind::Bool, Kind::Int, Kind::Bytea, Kind::Text, Kind::Text];
        assert_eq!(
            json(
                b"t\t-12\t\\\\x00ff\ta\\tb\\\\c\\nd\\101\\x41\xc3\xa9\t\\N",
                &kinds
            ),
            r#"[true,-12,{"$base64":"AP8="},"a\tb\\c\ndAAé",null]"#
        );
        assert_eq!(json(b"", &[Kind::Text]), r#"[""]"#);
    }

    #[test]
    fn malformed_fields_are_refused() {
        let mut out = Vec::new();
        let r = row_to_json(b"1\t2", &[Kind::Int], &mut out, &mut Vec::new());
        assert!(matches!(r, Err(FieldError::FieldCount { .. })));
        let r = row_to_json(b"x", &[Kind::Int], &mut out, &mut Vec::new());
        assert!(matches!(r, Err(FieldError::Unexpected { column: 0 })));
        let r = row_to_json(b"\xff", &[Kind::Text], &mut out, &mut Vec::new());
        assert!(matches!(r, Err(FieldError::NotUtf8 { column: 0 })));
    }

    #[test]
    fn escape_round_trips_through_unescape() {
        let s = "tab\there\\ new\nline\r \u{1F600} \\N";
        let mut field = Vec::new();
        escape_into(&mut field, s);
        assert!(!field.contains(&b'\n') && !field.contains(&b'\t'));
        let mut back = Vec::new();
        unescape(&field, &mut back);
        assert_eq!(back, s.as_bytes());
        let mut b = Vec::new();
        bytea_into(&mut b, &[0, 255]);
        assert_eq!(b, b"\\\\x00ff");
    }
}
