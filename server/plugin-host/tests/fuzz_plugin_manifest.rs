//! Fuzz target for the `plugin.toml` parser ([`plugin_host::Manifest::parse`]).
//!
//! - arbitrary text, arbitrary TOML-ish text, and valid manifests cut or byte-flipped: the
//!   parser never panics and answers Ok or an error with a message;
//! - valid manifests (generated field by field, written as TOML) parse to what was
//!   generated;
//! - near-valid manifests, one key broken (misspelled, mistyped, removed, given a refused
//!   value, repeated): refused, and the error names the key (so an author can fix it).
//!
//! CI runs a bounded number of cases; `PROPTEST_CASES=N` runs more (see `fuzz.sh`).

use plugin_host::Manifest;
use plugin_host::manifest::{Access, Export, FailurePolicy, SettingType};
use proptest::prelude::*;

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

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What a value is, to know what a wrong one looks like.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Str,
    Int,
    Bool,
    Array,
}

/// One `key = value` line and the table it is in (`None`: the top level).
#[derive(Debug, Clone)]
struct Line {
    table: Option<String>,
    key: String,
    value: String,
    kind: Kind,
    required: bool,
}

fn line(table: Option<&str>, key: &str, value: String, kind: Kind, required: bool) -> Line {
    Line {
        table: table.map(str::to_owned),
        key: key.to_owned(),
        value,
        kind,
        required,
    }
}

fn render(lines: &[Line]) -> String {
    let mut out = String::new();
    let mut tables: Vec<Option<String>> = Vec::new();
    for l in lines {
        if !tables.contains(&l.table) {
            tables.push(l.table.clone());
        }
    }
    for t in tables {
        if let Some(t) = &t {
            out.push_str(&format!("\n[{t}]\n"));
        }
        for l in lines.iter().filter(|l| l.table == t) {
            out.push_str(&format!("{} = {}\n", l.key, l.value));
        }
    }
    out
}

/// A valid manifest as its expected parse and its lines.
#[derive(Debug, Clone)]
struct Spec {
    id: String,
    name: String,
    version: String,
    api: String,
    exports: Vec<Export>,
    policy: Option<FailurePolicy>,
    provides: Vec<String>,
    mounts: Vec<(String, String, Vec<Access>)>,
    veto: Option<bool>,
    memory_mb: Option<u64>,
    timeout_ms: Option<u64>,
    settings: Vec<(String, SettingType, bool)>,
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._-]{0,20}"
}

fn spec() -> impl Strategy<Value = Spec> {
    let exports = proptest::sample::subsequence(
        vec![Export::Contributor, Export::Restorer, Export::Hooks],
        1..=3,
    );
    let policy = proptest::option::of(prop_oneof![
        Just(FailurePolicy::Ignore),
        Just(FailurePolicy::Warn),
        Just(FailurePolicy::Abort)
    ]);
    let access = proptest::sample::subsequence(vec![Access::Backup, Access::Restore], 1..=2);
    let setting_type = prop_oneof![
        Just(SettingType::String),
        Just(SettingType::Integer),
        Just(SettingType::Boolean),
        Just(SettingType::Json)
    ];
    (
        (
            "[a-z0-9][a-z0-9-]{0,30}",
            "[A-Za-z][A-Za-z0-9 äø\"\\\\]{0,30}",
            "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(-[a-z0-9.]{1,8})?",
            prop_oneof![Just("0.1.0"), Just("0.1"), Just("0.1.7")],
        ),
        exports,
        policy,
        proptest::collection::vec(
            name().prop_filter("logos is built in", |n| n != "logos"),
            0..3,
        ),
        proptest::collection::btree_map(name(), (".{0,20}", access), 0..3),
        proptest::option::of(any::<bool>()),
        (
            proptest::option::of(1u64..10_000),
            proptest::option::of(1u64..1_000_000),
        ),
        proptest::collection::btree_map(name(), (setting_type, any::<bool>()), 0..3),
    )
        .prop_map(
            |(
                (id, name, version, api),
                exports,
                policy,
                provides,
                mounts,
                veto,
                (memory_mb, timeout_ms),
                settings,
            )| Spec {
                id,
                name,
                version,
                api: api.to_owned(),
                exports,
                policy,
                provides,
                mounts: mounts.into_iter().map(|(n, (d, a))| (n, d, a)).collect(),
                veto,
                memory_mb,
                timeout_ms,
                settings: settings.into_iter().map(|(n, (t, d))| (n, t, d)).collect(),
            },
        )
}

fn list<T>(items: &[T], f: impl Fn(&T) -> &'static str) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|i| quote(f(i)))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

impl Spec {
    fn lines(&self) -> Vec<Line> {
        let mut out = vec![
            line(None, "id", quote(&self.id), Kind::Str, true),
            line(None, "name", quote(&self.name), Kind::Str, true),
            line(None, "version", quote(&self.version), Kind::Str, true),
            line(None, "api", quote(&self.api), Kind::Str, true),
            line(
                None,
                "exports",
                list(&self.exports, |e| e.as_str()),
                Kind::Array,
                true,
            ),
        ];
        if let Some(p) = self.policy {
            out.push(line(
                None,
                "failure_policy",
                quote(p.as_str()),
                Kind::Str,
                false,
            ));
        }
        if !self.provides.is_empty() {
            let p = format!(
                "[{}]",
                self.provides
                    .iter()
                    .map(|p| quote(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            out.push(line(None, "provides", p, Kind::Array, false));
        }
        if let Some(v) = self.veto {
            out.push(line(
                Some("permissions"),
                "veto",
                v.to_string(),
                Kind::Bool,
                false,
            ));
        }
        if let Some(m) = self.memory_mb {
            out.push(line(
                Some("limits"),
                "memory_mb",
                m.to_string(),
                Kind::Int,
                false,
            ));
        }
        if let Some(t) = self.timeout_ms {
            out.push(line(
                Some("limits"),
                "timeout_ms",
                t.to_string(),
                Kind::Int,
                false,
            ));
        }
        for (name, description, access) in &self.mounts {
            let t = format!("mounts.{}", quote(name));
            out.push(line(
                Some(&t),
                "description",
                quote(description),
                Kind::Str,
                false,
            ));
            out.push(line(
                Some(&t),
                "access",
                list(access, |a| a.as_str()),
                Kind::Array,
                true,
            ));
        }
        for (name, kind, default) in &self.settings {
            let t = format!("settings.{}", quote(name));
            let k = match kind {
                SettingType::String => "string",
                SettingType::Integer => "integer",
                SettingType::Boolean => "boolean",
                SettingType::Json => "json",
            };
            out.push(line(Some(&t), "type", quote(k), Kind::Str, true));
            if *default {
                let (v, kind) = match kind {
                    SettingType::String => (quote("text"), Kind::Str),
                    SettingType::Integer => ("42".to_owned(), Kind::Int),
                    SettingType::Boolean => ("true".to_owned(), Kind::Bool),
                    SettingType::Json => (quote("[1, {\"a\": null}]"), Kind::Str),
                };
                out.push(line(Some(&t), "default", v, kind, false));
            }
        }
        out
    }

    fn check(&self, m: &Manifest) -> Result<(), TestCaseError> {
        prop_assert_eq!(&m.id, &self.id);
        prop_assert_eq!(&m.name, &self.name);
        prop_assert_eq!(&m.version, &self.version);
        prop_assert_eq!(&m.api, &self.api);
        prop_assert_eq!(&m.exports, &self.exports);
        prop_assert_eq!(m.failure_policy, self.policy.unwrap_or_default());
        prop_assert_eq!(&m.provides, &self.provides);
        prop_assert_eq!(m.permissions.veto, self.veto.unwrap_or(false));
        prop_assert_eq!(m.limits.memory_mb, self.memory_mb);
        prop_assert_eq!(m.limits.timeout_ms, self.timeout_ms);
        prop_assert_eq!(m.mounts.len(), self.mounts.len());
        for (name, description, access) in &self.mounts {
            let got = &m.mounts[name];
            prop_assert_eq!(&got.description, description);
            prop_assert_eq!(&got.access, access);
        }
        prop_assert_eq!(m.settings.len(), self.settings.len());
        for (name, kind, default) in &self.settings {
            prop_assert_eq!(m.settings[name].kind, *kind);
            prop_assert_eq!(m.settings[name].default.is_some(), *default);
        }
        Ok(())
    }
}

/// One broken key.
#[derive(Debug, Clone)]
enum Break {
    /// `failure_policy` -> `failure-policy`, `memory_mb` -> `memory_mbx`, ...
    Misspell(usize),
    Mistype(usize, usize),
    Remove(usize),
    Repeat(usize),
    /// A value the parser reads but validation refuses.
    Refused(usize),
}

/// Values of the wrong kind for a key of each kind.
fn wrong(kind: Kind, pick: usize) -> String {
    let all: &[(&str, Kind)] = &[
        ("\"text\"", Kind::Str),
        ("42", Kind::Int),
        ("-1", Kind::Int),
        ("true", Kind::Bool),
        ("[\"a\"]", Kind::Array),
        ("{ a = 1 }", Kind::Array),
        ("1.5", Kind::Int),
        ("1979-05-27T07:32:00Z", Kind::Int),
    ];
    let others: Vec<&str> = all
        .iter()
        .filter(|(_, k)| *k != kind)
        .map(|(v, _)| *v)
        .collect();
    others[pick % others.len()].to_owned()
}

/// For keys with a refused value: (key, value, what the error must contain).
fn refused_value(key: &str, pick: usize) -> Option<String> {
    let v: &[&str] = match key {
        "id" => &["\"../evil\"", "\"\"", "\"-x\"", "\"UPPER\""],
        "name" => &["\"   \"", "\"\""],
        "version" => &["\"\""],
        "api" => &["\"0.2.0\"", "\"1\"", "\"0.1.0.0\""],
        "exports" => &["[]", "[\"everything\"]"],
        "failure_policy" => &["\"explode\""],
        "provides" => &["[\"logos\"]", "[\"../x\"]"],
        "access" => &["[]", "[\"write\"]"],
        "type" => &["\"float\""],
        "memory_mb" => &["-5"],
        _ => return None,
    };
    Some(v[pick % v.len()].to_owned())
}

fn brk() -> impl Strategy<Value = Break> {
    prop_oneof![
        any::<usize>().prop_map(Break::Misspell),
        (any::<usize>(), any::<usize>()).prop_map(|(i, p)| Break::Mistype(i, p)),
        any::<usize>().prop_map(Break::Remove),
        any::<usize>().prop_map(Break::Repeat),
        any::<usize>().prop_map(Break::Refused),
    ]
}

/// Applies the break; returns the text and the key the error must name, or None when the
/// break turned out to be harmless (removing an optional key).
fn broken(spec: &Spec, b: &Break) -> Option<(String, String)> {
    let mut lines = spec.lines();
    let n = lines.len();
    match *b {
        Break::Misspell(i) => {
            let l = &mut lines[i % n];
            l.key = if l.key.contains('_') {
                l.key.replace('_', "-")
            } else {
                format!("{}s", l.key)
            };
            Some((render(&lines), lines[i % n].key.clone()))
        }
        Break::Mistype(i, p) => {
            let l = &mut lines[i % n];
            // A JSON setting's default is text; a string default of a string setting too.
            l.value = wrong(l.kind, p);
            Some((render(&lines), lines[i % n].key.clone()))
        }
        Break::Remove(i) => {
            let l = lines.remove(i % n);
            // Removing the last line of a table removes the table (a mount or setting
            // less), which is valid.
            let table_left = l.table.is_none() || lines.iter().any(|o| o.table == l.table);
            (l.required && table_left).then(|| (render(&lines), l.key))
        }
        Break::Repeat(i) => {
            let l = lines[i % n].clone();
            let key = l.key.clone();
            lines.insert(i % n, l);
            Some((render(&lines), key))
        }
        Break::Refused(i) => {
            let candidates: Vec<usize> = (0..n)
                .filter(|&j| refused_value(&lines[j].key, 0).is_some())
                .collect();
            let j = candidates[i % candidates.len()];
            lines[j].value = refused_value(&lines[j].key, i).expect("candidate");
            let key = lines[j].key.clone();
            Some((render(&lines), key))
        }
    }
}

fn parse_checked(text: &str) -> Result<Manifest, String> {
    match Manifest::parse(text) {
        Ok(m) => Ok(m),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.len() > "plugin.toml: ".len(),
                "an error without a message: {msg:?}"
            );
            Err(msg)
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let _ = parse_checked(&text);
    }

    #[test]
    fn arbitrary_toml_ish_text_never_panics(text in "([a-z_\\.\"]{1,12} ?= ?(\"[a-z]{0,5}\"|[0-9]{1,20}|true|\\[|\\]|\\{|\\}|,)\n|\\[[a-z\\.\"]{0,12}\\]\n|\\[\\[[a-z]{0,5}\\]\\]\n){0,20}") {
        let _ = parse_checked(&text);
    }

    #[test]
    fn valid_manifests_parse_to_what_was_written(s in spec()) {
        let text = render(&s.lines());
        let m = Manifest::parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        s.check(&m)?;
    }

    #[test]
    fn cut_or_flipped_manifests_never_panic(s in spec(), at in any::<usize>(), xor in 1u8..) {
        let text = render(&s.lines()).into_bytes();
        let at = at % text.len();
        let _ = parse_checked(&String::from_utf8_lossy(&text[..at]));
        let mut flipped = text.clone();
        flipped[at] ^= xor;
        let _ = parse_checked(&String::from_utf8_lossy(&flipped));
    }

    #[test]
    fn a_broken_key_is_refused_and_named(s in spec(), b in brk()) {
        if let Some((text, key)) = broken(&s, &b) {
            let err = parse_checked(&text).err().ok_or_else(|| TestCaseError::fail(format!("{b:?} was accepted:\n{text}")))?;
            prop_assert!(err.contains(&key), "{b:?}: the error does not name {key:?}: {err}\n{text}");
        }
    }
}
