//! The Destinations card (DESIGN section 10): where a copy of every backup goes, off this
//! machine. Each destination with its bucket, its switches and how its last copy or test
//! went (a failure stays on screen, naming the destination, until one succeeds); Add and
//! Edit in a dialog with field errors next to their fields; Test; Delete with a confirm;
//! and "Browse copies", the disaster-recovery road: the archives a bucket holds, each with
//! an Import button that lists it as a backup, restorable from the history.
//!
//! The list is read again whenever a copy in the history ends (the events stream carries
//! the jobs, not the destinations), so a destination's last status follows its copies live.

use std::collections::BTreeMap;

use leptos::prelude::*;

use crate::components::confirm_dialog::{Confirm, ConfirmDialog};
use crate::components::job_table::upsert;
use crate::components::local_time::LocalTime;
use crate::components::modal::{Modal, focus_fallback};
use crate::components::upload_dialog::{SecretKeyField, secret_key_in};
use crate::model::{
    CopyStatus, Destination, DestinationId, DestinationInput, DestinationKind, DestinationSave,
    JobView, RemoteArchive, S3Input, format_bytes,
};

/// The fields the form shows a message next to; a message for any other key (`form`, or
/// the JSON path the engine could not read) shows at the foot of the form.
const FIELDS: [&str; 7] = [
    "name",
    "endpoint",
    "bucket",
    "prefix",
    "access_key_id",
    "secret_access_key",
    "retention_count",
];

/// What the form dialog edits.
#[derive(Clone, Debug, PartialEq)]
enum Editing {
    New,
    Existing(Box<Destination>),
}

type Message = RwSignal<Option<(bool, String)>>;

#[component]
pub fn DestinationsCard(jobs: RwSignal<Vec<JobView>>) -> impl IntoView {
    let list = RwSignal::new(Vec::<Destination>::new());
    let loaded = RwSignal::new(None::<Result<(), String>>);
    let reload = RwSignal::new(0u32);
    let message: Message = RwSignal::new(None);
    let editing = RwSignal::new(None::<Editing>);
    let browsing = RwSignal::new(None::<Destination>);
    let confirm = RwSignal::new(None::<Confirm<DestinationId>>);

    // Every copy that ends changes its destination's last status: the copies that have
    // ended are part of the list's source, so the list is read again when one more ends.
    // (Read with `get`: a memo only tracked, never read, is never computed.)
    let ended = Memo::new(move |_| {
        jobs.with(|l| {
            l.iter()
                .flat_map(|j| {
                    j.copies
                        .iter()
                        .filter(|c| matches!(c.status, CopyStatus::Succeeded | CopyStatus::Failed))
                        .map(move |c| (j.id, c.destination_id, c.status))
                })
                .collect::<Vec<_>>()
        })
    });
    let fetched = Resource::new(
        move || (reload.get(), ended.get()),
        |_| crate::api::destinations::list_destinations(),
    );
    Effect::new(move |_| match fetched.get() {
        Some(Ok(l)) => {
            list.set(l);
            loaded.set(Some(Ok(())));
        }
        Some(Err(e)) => loaded.set(Some(Err(e.to_string()))),
        None => {}
    });

    let ids = Memo::new(move |_| list.with(|l| l.iter().map(|d| d.id).collect::<Vec<_>>()));

    let on_saved = Callback::new(move |d: Destination| {
        let name = d.name.clone();
        let added = list.with_untracked(|l| !l.iter().any(|x| x.id == d.id));
        list.update(|l| match l.iter_mut().find(|x| x.id == d.id) {
            Some(slot) => *slot = d,
            None => l.push(d),
        });
        editing.set(None);
        message.set(Some((
            true,
            if added {
                format!("Destination {name} added. Test it to check the settings.")
            } else {
                format!("Destination {name} saved.")
            },
        )));
    });
    let on_delete = Callback::new(move |id: DestinationId| {
        let name = list
            .with_untracked(|l| l.iter().find(|d| d.id == id).map(|d| d.name.clone()))
            .unwrap_or_default();
        leptos::task::spawn_local(async move {
            match crate::api::destinations::delete_destination(id).await {
                Ok(()) => {
                    list.update(|l| l.retain(|d| d.id != id));
                    // The focused Delete button went with its destination.
                    focus_fallback("#destinations-title");
                    message.set(Some((
                        true,
                        format!("Destination {name} deleted; the copies it holds stay there."),
                    )));
                }
                Err(e) => message.set(Some((false, e.to_string()))),
            }
        });
    });
    let close_form = Callback::new(move |()| editing.set(None));
    let close_browser = Callback::new(move |()| browsing.set(None));

    view! {
        <section class="card destinations" aria-labelledby="destinations-title">
            <div class="card-head">
                <h2 id="destinations-title" tabindex="-1">"Destinations"</h2>
                <button class="btn" id="add-destination" on:click=move |_| editing.set(Some(Editing::New))>
                    "Add destination"
                </button>
            </div>
            <p class="hint">
                "Every backup is also copied to each enabled destination: any S3-compatible store "
                "(Garage, MinIO, Ceph, AWS S3, Cloudflare R2, Backblaze B2)."
            </p>
            <p class="dr-hint" id="dr-hint">
                <strong>"Server died? "</strong>
                "Install Backstop afresh, add the same bucket here, then use Browse copies: Import a copy "
                "and restore it from the history."
            </p>
            {move || match loaded.get() {
                None => Some(view! { <p class="empty">"Loading destinations…"</p> }.into_any()),
                Some(Err(e)) => Some(view! { <p class="error" role="alert">{e}</p> }.into_any()),
                Some(Ok(())) => ids.with(|i| i.is_empty()).then(|| view! {
                    <p class="empty">"No destinations yet: backups stay on this machine only."</p>
                }.into_any()),
            }}
            <ul class="destination-list">
                <For each=move || ids.get() key=|id| *id let:id>
                    <DestinationItem id=id list=list editing=editing browsing=browsing
                        confirm=confirm message=message reload=reload/>
                </For>
            </ul>
            <p class="status-line" role="status" aria-live="polite">
                {move || message.get().map(|(ok, m)| view! { <span class=if ok { "ok" } else { "error" }>{m}</span> })}
            </p>
        </section>
        {move || editing.get().map(|e| view! { <DestinationForm editing=e on_close=close_form on_saved=on_saved/> })}
        {move || browsing.get().map(|d| view! { <RemoteArchives destination=d on_close=close_browser jobs=jobs/> })}
        <ConfirmDialog state=confirm on_confirm=on_delete/>
    }
}

/// `bucket@endpoint/prefix`, how a destination is told apart at a glance.
fn location(d: &Destination) -> String {
    let mut s = format!("{}@{}", d.s3.bucket, d.s3.endpoint);
    if !d.s3.prefix.is_empty() {
        s.push('/');
        s.push_str(&d.s3.prefix);
    }
    s
}

/// The destination's settings as a client sends them, with no secret (keep the stored one).
fn input_of(d: &Destination) -> DestinationInput {
    DestinationInput {
        name: d.name.clone(),
        kind: d.kind,
        enabled: d.enabled,
        retention_count: d.retention_count,
        encrypt: d.encrypt,
        s3: S3Input {
            endpoint: d.s3.endpoint.clone(),
            region: d.s3.region.clone(),
            bucket: d.s3.bucket.clone(),
            prefix: d.s3.prefix.clone(),
            path_style: d.s3.path_style,
            access_key_id: d.s3.access_key_id.clone(),
            secret_access_key: None,
        },
    }
}

/// A new destination's form: the contract's defaults (enabled, encrypted, path-style, keep all).
fn new_input() -> DestinationInput {
    DestinationInput {
        name: String::new(),
        kind: DestinationKind::S3,
        enabled: true,
        retention_count: 0,
        encrypt: true,
        s3: S3Input {
            path_style: true,
            ..S3Input::default()
        },
    }
}

fn retention_text(n: u32) -> String {
    match n {
        0 => "Keeps every copy".to_owned(),
        1 => "Keeps the newest copy".to_owned(),
        n => format!("Keeps the newest {n} copies"),
    }
}

#[component]
fn DestinationItem(
    id: DestinationId,
    list: RwSignal<Vec<Destination>>,
    editing: RwSignal<Option<Editing>>,
    browsing: RwSignal<Option<Destination>>,
    confirm: RwSignal<Option<Confirm<DestinationId>>>,
    message: Message,
    reload: RwSignal<u32>,
) -> impl IntoView {
    let dest = Memo::new(move |_| list.with(|l| l.iter().find(|d| d.id == id).cloned()));
    let name =
        Memo::new(move |_| dest.with(|d| d.as_ref().map(|d| d.name.clone()).unwrap_or_default()));
    let initially_enabled = dest.with_untracked(|d| d.as_ref().is_some_and(|d| d.enabled));
    // The switch's own state: set back explicitly when a change is refused (the list did not
    // change then, so nothing else would put the box back).
    let enabled = RwSignal::new(initially_enabled);
    Effect::new(move |_| {
        if let Some(on) = dest.with(|d| d.as_ref().map(|d| d.enabled)) {
            enabled.set(on);
        }
    });
    let toggling = RwSignal::new(false);
    let testing = RwSignal::new(false);
    let test_result = RwSignal::new(None::<(bool, String)>);
    let warning = Memo::new(move |_| {
        dest.with(|d| {
            d.as_ref()
                .filter(|d| d.last_status.as_deref() == Some("failed"))
                .map(|d| {
                    (
                        d.name.clone(),
                        d.last_error
                            .clone()
                            .unwrap_or_else(|| "no reason was recorded".into()),
                    )
                })
        })
    });
    let last_status =
        Memo::new(move |_| dest.with(|d| d.as_ref().and_then(|d| d.last_status.clone())));
    let last_success =
        Memo::new(move |_| dest.with(|d| d.as_ref().and_then(|d| d.last_success_at.clone())));

    let run_test = move |_| {
        leptos::task::spawn_local(async move {
            run_check(testing, test_result, async move {
                crate::api::destinations::test_destination(id)
                    .await
                    .map(|t| (t.ok, t.message))
            })
            .await;
            // The test is also the destination's last status.
            reload.update(|r| *r += 1);
        });
    };
    let toggle = move |ev: leptos::ev::Event| {
        let on = event_target_checked(&ev);
        let Some(d) = dest.get_untracked() else {
            return;
        };
        let mut input = input_of(&d);
        input.enabled = on;
        toggling.set(true);
        leptos::task::spawn_local(async move {
            match crate::api::destinations::update_destination(id, input).await {
                Ok(DestinationSave::Saved(d)) => {
                    let name = d.name.clone();
                    list.update(|l| {
                        if let Some(slot) = l.iter_mut().find(|x| x.id == d.id) {
                            *slot = *d;
                        }
                    });
                    message.set(Some((
                        true,
                        if on {
                            format!("{name} is enabled: every backup is copied there.")
                        } else {
                            format!("{name} is disabled: backups are not copied there.")
                        },
                    )));
                }
                // Settings saved before are valid unless the rules changed: say what to fix.
                Ok(DestinationSave::Invalid(fields)) => {
                    enabled.set(!on);
                    let what = fields.into_values().collect::<Vec<_>>().join("; ");
                    message.set(Some((
                        false,
                        format!("Not changed: {what} (use Edit to fix it)"),
                    )));
                }
                Err(e) => {
                    enabled.set(!on);
                    message.set(Some((false, e.to_string())));
                }
            }
            toggling.set(false);
        });
    };
    let ask_delete = move |_| {
        let Some(d) = dest.get_untracked() else {
            return;
        };
        confirm.set(Some(Confirm {
            title: format!("Delete the destination {}?", d.name),
            body: format!(
                "Backstop stops copying backups to {} and forgets its settings and secret. The copies already in {} stay there: add the destination again to list and import them.",
                d.name, d.s3.bucket
            ),
            confirm_label: "Delete".into(),
            danger: true,
            action: id,
        }));
    };

    view! {
        <li class="destination" data-destination-id=id.to_string() aria-labelledby=format!("dest-{id}-name")>
            <div class="dest-head">
                <h3 class="dest-name" id=format!("dest-{id}-name")>{move || name.get()}</h3>
                <span class="dest-where">{move || dest.with(|d| d.as_ref().map(location).unwrap_or_default())}</span>
            </div>
            <div class="dest-facts">
                <label class="switch">
                    <input type="checkbox" class="dest-enabled" checked=initially_enabled
                        prop:checked=move || enabled.get() disabled=move || toggling.get()
                        on:change=toggle/>
                    <span>"Enabled"</span>
                </label>
                <span class="dest-fact dest-encrypt">
                    {move || if dest.with(|d| d.as_ref().is_some_and(|d| d.encrypt)) { "Encrypted copies" } else { "Not encrypted" }}
                </span>
                <span class="dest-fact dest-retention">
                    {move || retention_text(dest.with(|d| d.as_ref().map(|d| d.retention_count).unwrap_or_default()))}
                </span>
                <span class="dest-fact dest-last">
                    {move || match last_status.get().as_deref() {
                        Some("succeeded") => view! {
                            <span class="ok">"Last copy or test worked"</span>
                            {last_success.get().map(|at| view! { ", " <LocalTime iso=Some(at)/> })}
                        }.into_any(),
                        Some("failed") => view! { <span class="error">"Last attempt failed"</span> }.into_any(),
                        _ => view! { <span>"Not used yet"</span> }.into_any(),
                    }}
                </span>
            </div>
            {move || warning.get().map(|(n, e)| view! {
                <p class="dest-warning">
                    <svg viewBox="0 0 24 24" aria-hidden="true"><path d="M12 3l10 18H2L12 3zm0 6v5m0 3v.5"/></svg>
                    <span><strong>{format!("The last copy or test to {n} failed: ")}</strong>{e}</span>
                </p>
            })}
            <div class="dest-actions">
                <button class="btn dest-test-btn" disabled=move || testing.get()
                    aria-label=move || format!("Test {}", name.get()) on:click=run_test>
                    {move || if testing.get() { "Testing…" } else { "Test" }}
                </button>
                <button class="btn dest-edit" aria-label=move || format!("Edit {}", name.get())
                    on:click=move |_| editing.set(dest.get_untracked().map(|d| Editing::Existing(Box::new(d))))>"Edit"</button>
                <button class="btn dest-browse" aria-label=move || format!("Browse the copies in {}", name.get())
                    on:click=move |_| browsing.set(dest.get_untracked())>"Browse copies"</button>
                <button class="btn btn-quiet dest-delete" aria-label=move || format!("Delete {}", name.get())
                    on:click=ask_delete>"Delete"</button>
                <span class="dest-test" role="status" aria-live="polite">
                    {move || test_result.get().map(|(ok, m)| if ok {
                        view! { <span class="ok"><strong>"Test passed: "</strong>{m}</span> }.into_any()
                    } else {
                        view! { <span class="error"><strong>"Test failed: "</strong>{m}</span> }.into_any()
                    })}
                </span>
            </div>
        </li>
    }
    // Type-erased: the page's view type is otherwise deeper than the compiler allows.
    .into_any()
}

/// Runs a check whose answer is a verdict and a sentence (a destination's Test, the
/// Encryption card's Check a key): `busy` while it runs, then the verdict in `result`; a
/// call that fails is a failed verdict with its message.
pub async fn run_check(
    busy: RwSignal<bool>,
    result: RwSignal<Option<(bool, String)>>,
    check: impl std::future::Future<Output = Result<(bool, String), crate::error::AppError>>,
) {
    busy.set(true);
    result.set(None);
    let verdict = check.await.unwrap_or_else(|e| (false, e.to_string()));
    busy.set(false);
    result.set(Some(verdict));
}

/// The messages of `errors` that no field in `placed` shows next to itself, for the foot
/// of a form: `form`'s as it is, any other key's prefixed with the key.
pub fn unplaced_errors(errors: &BTreeMap<String, String>, placed: &[&str]) -> Vec<String> {
    errors
        .iter()
        .filter(|(k, _)| !placed.contains(&k.as_str()))
        .map(|(k, v)| {
            if k == "form" {
                v.clone()
            } else {
                format!("{k}: {v}")
            }
        })
        .collect()
}

/// The Add / Edit dialog. On edit the secret field starts empty: empty keeps the stored one.
#[component]
fn DestinationForm(
    editing: Editing,
    on_close: Callback<()>,
    on_saved: Callback<Destination>,
) -> impl IntoView {
    let (id, secret_set, init) = match &editing {
        Editing::Existing(d) => (Some(d.id), d.s3.secret_set, input_of(d)),
        Editing::New => (None, false, new_input()),
    };
    let title = match &editing {
        Editing::Existing(d) => format!("Edit {}", d.name),
        Editing::New => "Add a destination".to_owned(),
    };
    let name = RwSignal::new(init.name.clone());
    let endpoint = RwSignal::new(init.s3.endpoint.clone());
    let region = RwSignal::new(init.s3.region.clone());
    let bucket = RwSignal::new(init.s3.bucket.clone());
    let prefix = RwSignal::new(init.s3.prefix.clone());
    let path_style = RwSignal::new(init.s3.path_style);
    let access_key_id = RwSignal::new(init.s3.access_key_id.clone());
    let secret = RwSignal::new(String::new());
    let retention = RwSignal::new(init.retention_count.to_string());
    let encrypt = RwSignal::new(init.encrypt);
    let enabled = RwSignal::new(init.enabled);
    let errors = RwSignal::new(BTreeMap::<String, String>::new());
    let notice = RwSignal::new(None::<String>);

    let save = Action::new(move |input: &DestinationInput| {
        let input = input.clone();
        async move {
            match id {
                Some(id) => crate::api::destinations::update_destination(id, input).await,
                None => crate::api::destinations::create_destination(input).await,
            }
        }
    });
    Effect::new(move |_| match save.value().get() {
        Some(Ok(DestinationSave::Saved(d))) => on_saved.run(*d),
        Some(Ok(DestinationSave::Invalid(f))) => {
            errors.set(f);
            notice.set(Some("Nothing was saved: fix the marked fields.".into()));
        }
        Some(Err(e)) => {
            errors.set(BTreeMap::new());
            notice.set(Some(e.to_string()));
        }
        None => {}
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        notice.set(None);
        // The count is a number before it can be sent at all; the engine checks its range.
        let Ok(retention_count) = retention.get_untracked().trim().parse::<u32>() else {
            errors.set(BTreeMap::from([(
                "retention_count".to_owned(),
                "a whole number: 0 keeps every copy, up to 1000".to_owned(),
            )]));
            notice.set(Some("Nothing was saved: fix the marked fields.".into()));
            return;
        };
        let secret = secret.get_untracked();
        save.dispatch(DestinationInput {
            name: name.get_untracked(),
            kind: DestinationKind::S3,
            enabled: enabled.get_untracked(),
            retention_count,
            encrypt: encrypt.get_untracked(),
            s3: S3Input {
                endpoint: endpoint.get_untracked(),
                region: region.get_untracked(),
                bucket: bucket.get_untracked(),
                prefix: prefix.get_untracked(),
                path_style: path_style.get_untracked(),
                access_key_id: access_key_id.get_untracked(),
                // Empty means "keep the stored one" on edit, and "missing" on add.
                secret_access_key: (!secret.is_empty()).then_some(secret),
            },
        });
    };

    let err = move |field: &'static str| move || errors.with(|e| e.get(field).cloned());
    let invalid = move |field: &'static str| move || err(field)().is_some().to_string();
    let field_error = move |field: &'static str| {
        view! {
            {move || err(field)().map(|m| view! {
                <span class="field-error" id=format!("err-dest-{field}") role="alert">{m}</span>
            })}
        }
    };
    let other_errors = move || errors.with(|e| unplaced_errors(e, &FIELDS));
    let text_field = move |label: &'static str,
                           field: &'static str,
                           input_id: &'static str,
                           value: RwSignal<String>,
                           placeholder: &'static str| {
        view! {
            <div class="field">
                <label for=input_id>{label}</label>
                <input id=input_id type="text" placeholder=placeholder autocomplete="off" spellcheck="false"
                    prop:value=move || value.get() on:input=move |ev| value.set(event_target_value(&ev))
                    aria-invalid=invalid(field) aria-describedby=format!("err-dest-{field}")/>
                {field_error(field)}
            </div>
        }
    };

    view! {
        <Modal labelledby="destination-form-title" on_close=on_close id="destination-dialog">
            <h2 id="destination-form-title">{title}</h2>
            <form class="destination-form" novalidate on:submit=submit>
                {text_field("Name", "name", "dest-name", name, "nas")}
                {text_field("Endpoint", "endpoint", "dest-endpoint", endpoint, "https://s3.eu-west-1.amazonaws.com")}
                <div class="field">
                    <label for="dest-region">"Region"</label>
                    <input id="dest-region" type="text" placeholder="us-east-1" autocomplete="off" spellcheck="false"
                        prop:value=move || region.get() on:input=move |ev| region.set(event_target_value(&ev))
                        aria-describedby="hint-dest-region"/>
                    <span class="hint" id="hint-dest-region">"Empty means us-east-1; Garage uses its s3_region (often garage)."</span>
                </div>
                {text_field("Bucket", "bucket", "dest-bucket", bucket, "backstop")}
                {text_field("Prefix (folder in the bucket)", "prefix", "dest-prefix", prefix, "backstop/")}
                <div class="field field-switch">
                    <label class="switch">
                        <input type="checkbox" id="dest-path-style" prop:checked=move || path_style.get()
                            on:change=move |ev| path_style.set(event_target_checked(&ev))/>
                        <span>"Path-style requests (Garage, MinIO, Ceph)"</span>
                    </label>
                </div>
                {text_field("Access key id", "access_key_id", "dest-access-key-id", access_key_id, "")}
                <div class="field">
                    <label for="dest-secret">"Secret access key"</label>
                    <input id="dest-secret" type="password" autocomplete="new-password"
                        prop:value=move || secret.get() on:input=move |ev| secret.set(event_target_value(&ev))
                        aria-invalid=invalid("secret_access_key")
                        aria-describedby="err-dest-secret_access_key hint-dest-secret"/>
                    {secret_set.then(|| view! { <span class="hint" id="hint-dest-secret">"stored — leave empty to keep"</span> })}
                    {field_error("secret_access_key")}
                </div>
                <div class="field">
                    <label for="dest-retention">"Copies to keep there"</label>
                    <input id="dest-retention" type="text" inputmode="numeric"
                        prop:value=move || retention.get() on:input=move |ev| retention.set(event_target_value(&ev))
                        aria-invalid=invalid("retention_count") aria-describedby="err-dest-retention_count hint-dest-retention"/>
                    <span class="hint" id="hint-dest-retention">"0 keeps every copy; the newest is never pruned."</span>
                    {field_error("retention_count")}
                </div>
                <div class="field field-switch wide">
                    <label class="switch">
                        <input type="checkbox" id="dest-encrypt" prop:checked=move || encrypt.get()
                            on:change=move |ev| encrypt.set(event_target_checked(&ev))/>
                        <span>"Encrypt copies before they leave"</span>
                    </label>
                    <span class="hint">"Needs encryption set up: until then such a copy fails, it is never sent unencrypted."</span>
                </div>
                <div class="field field-switch wide">
                    <label class="switch">
                        <input type="checkbox" id="dest-enabled" prop:checked=move || enabled.get()
                            on:change=move |ev| enabled.set(event_target_checked(&ev))/>
                        <span>"Enabled: copy every backup here"</span>
                    </label>
                </div>
                {move || {
                    let other = other_errors();
                    (!other.is_empty()).then(|| view! {
                        <ul class="error form-errors wide" role="alert">
                            {other.into_iter().map(|m| view! { <li>{m}</li> }).collect_view()}
                        </ul>
                    })
                }}
                <div class="modal-actions wide">
                    <span class="notice" role="status">{move || notice.get()}</span>
                    <button type="button" class="btn" on:click=move |_| on_close.run(())>"Cancel"</button>
                    <button type="submit" class="btn btn-primary" id="save-destination"
                        disabled=move || save.pending().get()>
                        {move || if save.pending().get() { "Saving…" } else { "Save" }}
                    </button>
                </div>
            </form>
        </Modal>
    }
}

/// The copies a destination holds, from their sidecars, each with Import (disaster recovery).
#[component]
fn RemoteArchives(
    destination: Destination,
    on_close: Callback<()>,
    jobs: RwSignal<Vec<JobView>>,
) -> impl IntoView {
    let id = destination.id;
    let archives = Resource::new(
        || (),
        move |_| crate::api::destinations::remote_archives(id),
    );
    let importing = RwSignal::new(None::<String>);
    let outcome = RwSignal::new(None::<(bool, String)>);
    // The key for encrypted copies, from the emergency kit; empty: this instance's own key.
    let identity = RwSignal::new(String::new());
    let import = move |name: String| {
        importing.set(Some(name.clone()));
        outcome.set(None);
        let key = secret_key_in(&identity.get_untracked());
        leptos::task::spawn_local(async move {
            let r = crate::api::destinations::import_archive(id, name.clone(), key).await;
            importing.set(None);
            match r {
                Ok(job) => {
                    let job_id = job.id;
                    jobs.update(|l| upsert(l, job));
                    outcome.set(Some((
                        true,
                        format!("Imported {name} as backup job {job_id}. It is in the history now: restore it there with its Restore button."),
                    )));
                }
                Err(e) => outcome.set(Some((false, e.to_string()))),
            }
        });
    };
    let row = move |a: RemoteArchive| {
        let name = a.name.clone();
        let label_name = a.name.clone();
        let busy_name = a.name.clone();
        let created = a.created_at.clone();
        view! {
            <tr data-archive=a.name.clone()>
                <td class="archive-file">{a.name.clone()}</td>
                <td class="num">{format_bytes(i64::try_from(a.size_bytes).unwrap_or(i64::MAX))}</td>
                <td><LocalTime iso=Signal::derive(move || Some(created.clone()))/></td>
                <td class="archive-lock">
                    {if a.encrypted {
                        view! {
                            <span class="lock" data-tooltip="Encrypted (age)">
                                <svg viewBox="0 0 24 24" aria-hidden="true"><rect x="5" y="11" width="14" height="10" rx="2"/><path d="M8 11V8a4 4 0 0 1 8 0v3"/></svg>
                                <span class="visually-hidden">"encrypted"</span>
                            </span>
                        }.into_any()
                    } else {
                        view! { <span class="hint">"no"</span> }.into_any()
                    }}
                </td>
                <td class="actions">
                    <button class="btn btn-small archive-import" aria-label=format!("Import {label_name}")
                        disabled=move || importing.get().is_some()
                        on:click=move |_| import(name.clone())>
                        {move || if importing.get().as_deref() == Some(busy_name.as_str()) { "Importing…" } else { "Import" }}
                    </button>
                </td>
            </tr>
        }
    };

    view! {
        <Modal labelledby="archives-title" on_close=on_close id="archives-dialog">
            <h2 id="archives-title">{format!("Copies in {}", destination.name)}</h2>
            <p class="hint">
                {location(&destination)}
                ": complete copies only (each has its sidecar), newest first. Import one to list it as a backup here, then restore it from the history."
            </p>
            <Suspense fallback=|| view! { <p class="hint">"Reading the bucket…"</p> }>
                {move || Suspend::new(async move {
                    match archives.await {
                        Ok(list) if list.is_empty() => view! {
                            <p class="empty">"No copies there yet."</p>
                        }.into_any(),
                        Ok(list) => view! {
                            {list.iter().any(|a| a.encrypted).then(|| view! {
                                <div class="field archive-key">
                                    <SecretKeyField id="import-identity" label="Key for encrypted copies" value=identity
                                        hint="The AGE-SECRET-KEY-1… line of the emergency kit. Leave it empty on the install that made the copies: it has its own key."/>
                                </div>
                            })}
                            <div class="table-wrap">
                                <table class="archives">
                                    <thead>
                                        <tr>
                                            <th scope="col">"Archive"</th>
                                            <th scope="col" class="num">"Size"</th>
                                            <th scope="col">"Created"</th>
                                            <th scope="col">"Encrypted"</th>
                                            <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                                        </tr>
                                    </thead>
                                    <tbody>{list.into_iter().map(row).collect_view()}</tbody>
                                </table>
                            </div>
                        }.into_any(),
                        Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
            <p class="status-line" role="status" aria-live="polite">
                {move || outcome.get().map(|(ok, m)| view! { <span class=if ok { "ok" } else { "error" }>{m}</span> })}
            </p>
            <div class="modal-actions">
                <button class="btn" on:click=move |_| on_close.run(())>"Close"</button>
            </div>
        </Modal>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destination(prefix: &str) -> Destination {
        serde_json::from_value(serde_json::json!({
            "id": 3, "name": "nas", "kind": "s3", "enabled": true, "retention_count": 5, "encrypt": false,
            "s3": {"endpoint": "http://nas:3900", "region": "garage", "bucket": "backups", "prefix": prefix,
                   "path_style": true, "access_key_id": "GK1", "secret_access_key": null, "secret_set": true},
            "last_status": null, "last_error": null, "last_success_at": null,
        }))
        .expect("a valid destination")
    }

    #[test]
    fn an_edit_sends_every_setting_back_and_keeps_the_stored_secret() {
        let d = destination("homelab");
        let input = input_of(&d);
        assert_eq!(
            input.s3.secret_access_key, None,
            "no secret: keep the stored one"
        );
        let json = serde_json::to_value(&input).expect("serializable");
        assert_eq!(json["s3"]["secret_access_key"], serde_json::Value::Null);
        assert_eq!(json["retention_count"], 5);
        assert_eq!(json["s3"]["region"], "garage");
        assert_eq!(location(&d), "backups@http://nas:3900/homelab");
        assert_eq!(location(&destination("")), "backups@http://nas:3900");
    }

    #[test]
    fn a_new_destination_starts_with_the_contract_defaults() {
        let i = new_input();
        assert!(i.enabled && i.encrypt && i.s3.path_style);
        assert_eq!(i.retention_count, 0);
        assert_eq!(retention_text(0), "Keeps every copy");
        assert_eq!(retention_text(3), "Keeps the newest 3 copies");
    }
}
