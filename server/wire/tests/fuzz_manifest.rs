//! Fuzz target for the `manifest.json` reader ([`wire::Manifest`]).
//!
//! - arbitrary JSON values and arbitrary bytes: reading never panics;
//! - valid manifests (every field generated, unknown fields too) round-trip through text and
//!   through `serde_json::Value` unchanged;
//! - near-valid manifests (a valid one with a field removed, retyped or replaced by
//!   arbitrary JSON, or its text cut or byte-flipped): reading never panics, and whatever
//!   reads round-trips (a manifest read and written again loses nothing);
//! - a refusal names the field it is about (serde's message names it).
//!
//! CI runs a bounded number of cases; `PROPTEST_CASES=N` runs more (see `fuzz.sh`).

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::Value;
use wire::{
    Annotation, Manifest, ManifestDatabase, ManifestDirectory, ManifestPlugin, ManifestTotals,
};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Any JSON value, nested a few levels.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const KNOWN: &[&str] = &[
    "format",
    "format_version",
    "created_at",
    "app_version",
    "trigger",
    "include_recordings",
    "database",
    "directories",
    "missing_directories",
    "plugins",
    "annotations",
    "totals",
];

fn manifest() -> impl Strategy<Value = Manifest> {
    let database = (
        ".{0,12}",
        ".{0,8}",
        any::<i64>(),
        any::<u64>(),
        any::<u64>(),
        "[0-9a-f]{64}|.{0,10}",
    )
        .prop_map(
            |(file, engine, schema_version, tables, rows, sha256)| ManifestDatabase {
                file,
                engine,
                schema_version,
                tables,
                rows,
                sha256,
            },
        );
    let directory = (".{0,12}", ".{0,12}", any::<u64>(), any::<u64>(), ".{0,10}").prop_map(
        |(name, archive_path, files, bytes, contributed_by)| ManifestDirectory {
            name,
            archive_path,
            files,
            bytes,
            contributed_by,
        },
    );
    let plugin = (".{0,12}", ".{0,8}", any::<u64>(), any::<u64>()).prop_map(
        |(id, version, files, bytes)| ManifestPlugin {
            id,
            version,
            files,
            bytes,
        },
    );
    let annotation = (".{0,8}", ".{0,8}", ".{0,20}").prop_map(|(plugin, step, text)| Annotation {
        plugin,
        step,
        text,
    });
    let extra = proptest::collection::btree_map(
        "[a-z_]{1,12}".prop_filter("not a known field", |k| !KNOWN.contains(&k.as_str())),
        json(),
        0..3,
    );
    (
        (
            ".{0,16}",
            any::<i64>(),
            ".{0,25}",
            ".{0,10}",
            ".{0,12}",
            any::<bool>(),
        ),
        database,
        proptest::collection::vec(directory, 0..3),
        proptest::collection::vec(".{0,10}", 0..3),
        proptest::collection::vec(plugin, 0..3),
        proptest::collection::vec(annotation, 0..3),
        (any::<u64>(), any::<u64>()),
        extra,
    )
        .prop_map(
            |(
                (format, format_version, created_at, app_version, trigger, include_recordings),
                database,
                directories,
                missing_directories,
                plugins,
                annotations,
                (files, bytes),
                extra,
            )| Manifest {
                format,
                format_version,
                created_at,
                app_version,
                trigger,
                include_recordings,
                database,
                directories,
                missing_directories,
                plugins,
                annotations,
                totals: ManifestTotals { files, bytes },
                extra: extra.into_iter().collect::<BTreeMap<_, _>>(),
            },
        )
}

/// Whatever reads must write and read back to the same manifest.
fn round_trips(m: &Manifest) -> Result<(), TestCaseError> {
    let text = serde_json::to_string(m).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: Manifest =
        serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e} in {text}")))?;
    prop_assert_eq!(&back, m);
    let value = serde_json::to_value(m).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: Manifest =
        serde_json::from_value(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, m);
    Ok(())
}

#[derive(Debug, Clone)]
enum Edit {
    Remove(usize),
    Replace(usize, Value),
    RemoveNested(usize, usize),
    ReplaceNested(usize, usize, Value),
    Add(String, Value),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Remove),
        (any::<usize>(), json()).prop_map(|(i, v)| Edit::Replace(i, v)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Edit::RemoveNested(i, j)),
        (any::<usize>(), any::<usize>(), json()).prop_map(|(i, j, v)| Edit::ReplaceNested(i, j, v)),
        (".{0,12}", json()).prop_map(|(k, v)| Edit::Add(k, v)),
    ]
}

/// Applies an edit to a manifest's JSON object; returns the field path it touched.
fn apply(v: &mut Value, e: &Edit) -> String {
    let obj = v.as_object_mut().expect("object");
    let keys: Vec<String> = obj.keys().cloned().collect();
    let key = |i: usize| keys[i % keys.len()].clone();
    match e {
        Edit::Remove(i) => {
            let k = key(*i);
            obj.remove(&k);
            k
        }
        Edit::Replace(i, new) => {
            let k = key(*i);
            obj.insert(k.clone(), new.clone());
            k
        }
        Edit::RemoveNested(i, j) | Edit::ReplaceNested(i, j, _) => {
            let k = key(*i);
            let inner = match obj.get_mut(&k) {
                Some(Value::Object(o)) => Some(o),
                Some(Value::Array(a)) if !a.is_empty() => {
                    let n = a.len();
                    a[j % n].as_object_mut()
                }
                _ => None,
            };
            if let Some(o) = inner
                && !o.is_empty()
            {
                let ik: Vec<String> = o.keys().cloned().collect();
                let ik = ik[j % ik.len()].clone();
                match e {
                    Edit::ReplaceNested(_, _, new) => {
                        o.insert(ik.clone(), new.clone());
                    }
                    _ => {
                        o.remove(&ik);
                    }
                }
                return ik;
            }
            k
        }
        Edit::Add(k, new) => {
            obj.insert(k.clone(), new.clone());
            k.clone()
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_json_never_panics(v in json()) {
        if let Ok(m) = serde_json::from_value::<Manifest>(v.clone()) {
            round_trips(&m)?;
        }
        let _ = serde_json::from_str::<Manifest>(&v.to_string());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) {
            round_trips(&m)?;
        }
    }

    #[test]
    fn valid_manifests_round_trip(m in manifest()) {
        round_trips(&m)?;
    }

    #[test]
    fn near_valid_manifests_read_or_name_the_field(m in manifest(), edits in proptest::collection::vec(edit(), 1..3)) {
        let mut v = serde_json::to_value(&m).expect("value");
        let mut touched = Vec::new();
        for e in &edits {
            touched.push(apply(&mut v, e));
        }
        match serde_json::from_value::<Manifest>(v.clone()) {
            Ok(read) => round_trips(&read)?,
            Err(e) => {
                // serde names a missing field, or the type or length it wanted (for a nested
                // value it does not name the key; the verifier's own checks do).
                let msg = e.to_string();
                prop_assert!(!msg.is_empty());
                prop_assert!(
                    msg.contains("missing field") || msg.contains("invalid type") || msg.contains("invalid value")
                        || msg.contains("invalid length") || msg.contains("duplicate field") || touched.iter().any(|t| msg.contains(t.as_str())),
                    "{msg} for edits {edits:?}"
                );
            }
        }
        // The same document as text, cut or with a byte flipped, never panics.
        let text = v.to_string().into_bytes();
        for cut in [text.len() / 2, text.len().saturating_sub(1)] {
            let _ = serde_json::from_slice::<Manifest>(&text[..cut]);
        }
        let mut flipped = text.clone();
        let at = edits.len() * 7919 % flipped.len().max(1);
        if let Some(b) = flipped.get_mut(at) {
            *b ^= 0x20;
        }
        if let Ok(read) = serde_json::from_slice::<Manifest>(&flipped) {
            round_trips(&read)?;
        }
    }
}

#[test]
fn a_manifest_with_a_mistyped_field_is_refused_naming_it() {
    let err = serde_json::from_str::<Manifest>(
        r#"{"format":"backstop-backup","format_version":1,"database":{"schema_version":"3","sha256":"ab"}}"#,
    )
    .expect_err("schema_version is text");
    assert!(
        err.to_string()
            .contains("invalid type: string \"3\", expected i64"),
        "{err}"
    );
    let err =
        serde_json::from_str::<Manifest>(r#"{"format":"backstop-backup","format_version":1}"#)
            .expect_err("no database");
    assert!(
        err.to_string().contains("missing field `database`"),
        "{err}"
    );
}
