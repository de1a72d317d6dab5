//! The Encryption card (DESIGN section 11): whether copies that leave the machine are
//! encrypted, the instance key's public half, "Keep local archives encrypted too" (once
//! encryption is on), the extra recipients (an admin's own age public keys: add by pasting
//! one, remove), "Enable encryption", and "Check a key".
//!
//! Every change sends the whole of the settings as they would be after it (the engine takes
//! each field as optional): turning encryption off turns `encrypt_local` off with it, which
//! the engine requires, and which is what the archives get anyway while encryption is off.
//!
//! The change that first enables encryption answers with the emergency kit, once: it is
//! shown in a prominent panel with a Download button (a file made in the browser, nothing
//! is fetched again) until the page is left. After a reload only the public key is shown.

use std::collections::BTreeMap;

use leptos::prelude::*;

use crate::components::destinations::{run_check, unplaced_errors};
use crate::model::{EncryptionSave, EncryptionView};

/// The name the emergency kit is saved under.
pub const KIT_FILE: &str = "backstop-key.txt";

/// The fields that show their message next to themselves; the others go to the card's foot.
const FIELDS: [&str; 2] = ["recipients", "encrypt_local"];

/// What a change sends: the settings as they would be after it.
#[derive(Clone, Debug)]
struct Change {
    enabled: bool,
    encrypt_local: bool,
    recipients: Vec<String>,
}

#[component]
pub fn EncryptionCard() -> impl IntoView {
    let state = RwSignal::new(None::<EncryptionView>);
    let loaded = RwSignal::new(None::<Result<(), String>>);
    let kit = RwSignal::new(None::<String>);
    let errors = RwSignal::new(BTreeMap::<String, String>::new());
    let message = RwSignal::new(None::<(bool, String)>);
    let saving = RwSignal::new(false);
    let new_recipient = RwSignal::new(String::new());

    let fetched = Resource::new(|| (), |_| crate::api::encryption::get_encryption());
    Effect::new(move |_| match fetched.get() {
        Some(Ok(v)) => {
            state.set(Some(v));
            loaded.set(Some(Ok(())));
        }
        Some(Err(e)) => loaded.set(Some(Err(e.to_string()))),
        None => {}
    });

    let enabled = Memo::new(move |_| state.with(|s| s.as_ref().is_some_and(|s| s.enabled)));
    let public_key =
        Memo::new(move |_| state.with(|s| s.as_ref().and_then(|s| s.public_key.clone())));
    let recipients = Memo::new(move |_| {
        state.with(|s| s.as_ref().map(|s| s.recipients.clone()).unwrap_or_default())
    });
    let encrypt_local =
        Memo::new(move |_| state.with(|s| s.as_ref().is_some_and(|s| s.encrypt_local)));
    // The switch's own state: put back explicitly when a change is refused (the settings did
    // not change then, so nothing else would put the box back).
    let local_on = RwSignal::new(false);
    Effect::new(move |_| local_on.set(encrypt_local.get()));
    let current = move || Change {
        enabled: enabled.get_untracked(),
        encrypt_local: encrypt_local.get_untracked(),
        recipients: recipients.get_untracked(),
    };

    // Sends the settings; `done` says what changed once they were saved.
    let save = move |change: Change, done: fn(&EncryptionView) -> String, clear_input: bool| {
        saving.set(true);
        errors.set(BTreeMap::new());
        message.set(None);
        leptos::task::spawn_local(async move {
            let answer = crate::api::encryption::update_encryption(
                change.enabled,
                change.encrypt_local,
                change.recipients,
            )
            .await;
            if !matches!(answer, Ok(EncryptionSave::Saved(_))) {
                local_on.set(encrypt_local.get_untracked());
            }
            match answer {
                Ok(EncryptionSave::Saved(mut v)) => {
                    if let Some(k) = v.kit.take() {
                        kit.set(Some(k));
                    }
                    v.identity = None;
                    message.set(Some((true, done(&v))));
                    state.set(Some(*v));
                    if clear_input {
                        new_recipient.set(String::new());
                    }
                }
                Ok(EncryptionSave::Invalid(fields)) => errors.set(fields),
                Err(e) => message.set(Some((false, e.to_string()))),
            }
            saving.set(false);
        });
    };

    let enable = move |_| {
        save(
            Change {
                enabled: true,
                ..current()
            },
            |_| {
                "Encryption is on: copies with Encrypt on are encrypted before they leave."
                    .to_owned()
            },
            false,
        )
    };
    let disable = move |_| {
        save(
            Change {
                enabled: false,
                encrypt_local: false,
                ..current()
            },
            |_| {
                "Encryption is off: copies with Encrypt on fail instead of leaving unencrypted."
                    .to_owned()
            },
            false,
        )
    };
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let key = new_recipient.get_untracked().trim().to_owned();
        if key.is_empty() {
            errors.set(
                [(
                    "recipients".to_owned(),
                    "paste an age1... public key".to_owned(),
                )]
                .into(),
            );
            return;
        }
        let mut change = current();
        change.recipients.push(key);
        save(
            change,
            |_| "Recipient added: it can open every encrypted copy made from now on.".to_owned(),
            true,
        );
    };
    let remove = move |key: String| {
        let mut change = current();
        change.recipients.retain(|r| *r != key);
        save(change, |_| "Recipient removed.".to_owned(), false);
    };
    let toggle_local = move |ev: leptos::ev::Event| {
        let on = event_target_checked(&ev);
        local_on.set(on);
        save(
            Change {
                encrypt_local: on,
                ..current()
            },
            |v| {
                if v.encrypt_local {
                    "Local archives are kept encrypted too: new backups are stored as .tar.gz.age in the backup folder.".to_owned()
                } else {
                    "Local archives are kept plain: new backups are stored as .tar.gz in the backup folder.".to_owned()
                }
            },
            false,
        );
    };

    let recipient_error = move || errors.with(|e| e.get("recipients").cloned());
    let local_error = move || errors.with(|e| e.get("encrypt_local").cloned());
    let other_errors = move || errors.with(|e| unplaced_errors(e, &FIELDS));

    view! {
        <section class="card encryption" aria-labelledby="encryption-title">
            <div class="card-head">
                <h2 id="encryption-title" tabindex="-1">"Encryption"</h2>
                {move || if enabled.get() {
                    view! {
                        <button class="btn" id="disable-encryption" disabled=move || saving.get() on:click=disable>
                            "Turn encryption off"
                        </button>
                    }.into_any()
                } else {
                    view! {
                        <button class="btn btn-primary" id="enable-encryption"
                            disabled=move || saving.get() || loaded.get().is_none() on:click=enable>
                            "Enable encryption"
                        </button>
                    }.into_any()
                }}
            </div>
            <p class="hint">
                "Copies to destinations with Encrypt on are encrypted with age before they leave this machine: "
                "this instance's key opens them, and so does every extra recipient below."
            </p>
            {move || match loaded.get() {
                None => view! { <p class="empty">"Loading encryption settings…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
                Some(Ok(())) => view! {
                    <p class="enc-status" id="encryption-status">
                        {move || if enabled.get() {
                            view! { <span class="ok">"Encryption is on"</span> }.into_any()
                        } else {
                            view! { <span>"Encryption is off"</span> }.into_any()
                        }}
                    </p>
                }.into_any(),
            }}
            {move || kit.get().map(|k| {
                let text = k.clone();
                view! {
                    <div class="kit-panel" id="kit-panel" role="alert">
                        <p class="kit-title"><strong>"Save your emergency kit now — it is shown only once"</strong></p>
                        <p>
                            "Without this key nobody can open the encrypted copies, not even Backstop on a new machine. "
                            "Keep the file somewhere else than this server (a password manager, a USB stick, paper)."
                        </p>
                        <div class="kit-actions">
                            <button class="btn btn-primary" id="download-kit" on:click=move |_| download(KIT_FILE, &text)>
                                "Download kit"
                            </button>
                        </div>
                        <label for="kit-text" class="visually-hidden">"Emergency kit"</label>
                        <textarea id="kit-text" class="kit-text" readonly rows="10" spellcheck="false">{k}</textarea>
                    </div>
                }
            })}
            <div class="field">
                <span class="label">"Public key of this instance"</span>
                {move || match public_key.get() {
                    Some(p) => view! { <code class="public-key" id="encryption-public-key">{p}</code> }.into_any(),
                    None => view! { <span class="hint" id="encryption-public-key-none">"None yet: it is made when encryption is first enabled."</span> }.into_any(),
                }}
            </div>
            <Show when=move || enabled.get()>
                <div class="field enc-local">
                    <label class="switch">
                        <input type="checkbox" id="encrypt-local" prop:checked=move || local_on.get()
                            disabled=move || saving.get() on:change=toggle_local
                            aria-invalid=move || local_error().is_some().to_string()
                            aria-describedby="hint-encrypt-local err-encrypt-local"/>
                        <span>"Keep local archives encrypted too"</span>
                    </label>
                    <span class="hint" id="hint-encrypt-local">
                        "New backups in this machine's backup folder are stored as .tar.gz.age. "
                        "A restore here opens them with this instance's key; anywhere else they need the emergency kit."
                    </span>
                    {move || local_error().map(|m| view! {
                        <span class="field-error" id="err-encrypt-local" role="alert">{m}</span>
                    })}
                </div>
            </Show>
            <h3 class="enc-subtitle">"Extra recipients"</h3>
            <p class="hint">"Your own age public keys (age1…): each one can open every encrypted copy too."</p>
            <ul class="recipient-list" id="recipients">
                {move || {
                    let list = recipients.get();
                    if list.is_empty() {
                        view! { <li class="empty">"None: only this instance's key opens the copies."</li> }.into_any()
                    } else {
                        list.into_iter().map(|r| {
                            let key = r.clone();
                            let data = r.clone();
                            let label = format!("Remove recipient {}", r);
                            view! {
                                <li class="recipient" data-recipient=data>
                                    <code>{r}</code>
                                    <button class="btn btn-small recipient-remove" aria-label=label
                                        disabled=move || saving.get() on:click=move |_| remove(key.clone())>"Remove"</button>
                                </li>
                            }
                        }).collect_view().into_any()
                    }
                }}
            </ul>
            <form class="recipient-add" novalidate on:submit=add>
                <div class="field">
                    <label for="recipient-input">"Add a recipient"</label>
                    <input id="recipient-input" type="text" placeholder="age1…" autocomplete="off" spellcheck="false"
                        prop:value=move || new_recipient.get() on:input=move |ev| new_recipient.set(event_target_value(&ev))
                        aria-invalid=move || recipient_error().is_some().to_string() aria-describedby="err-recipients"/>
                    {move || recipient_error().map(|m| view! {
                        <span class="field-error" id="err-recipients" role="alert">{m}</span>
                    })}
                </div>
                <button type="submit" class="btn" id="add-recipient" disabled=move || saving.get()>"Add"</button>
            </form>
            {move || {
                let other = other_errors();
                (!other.is_empty()).then(|| view! {
                    <ul class="error form-errors" role="alert">
                        {other.into_iter().map(|m| view! { <li>{m}</li> }).collect_view()}
                    </ul>
                })
            }}
            <p class="status-line" role="status" aria-live="polite">
                {move || message.get().map(|(ok, m)| view! { <span class=if ok { "ok" } else { "error" }>{m}</span> })}
            </p>
            <CheckKey/>
        </section>
    }
}

/// "Check a key": paste a kit or its `AGE-SECRET-KEY-1...` line, learn whether it is this
/// instance's key.
#[component]
fn CheckKey() -> impl IntoView {
    let text = RwSignal::new(String::new());
    let checking = RwSignal::new(false);
    let result = RwSignal::new(None::<(bool, String)>);
    let check = move |_| {
        let identity = text.get_untracked();
        leptos::task::spawn_local(run_check(checking, result, async move {
            crate::api::encryption::check_encryption_key(identity)
                .await
                .map(|c| (c.ok, c.message))
        }));
    };
    view! {
        <div class="check-key">
            <h3 class="enc-subtitle">"Check a key"</h3>
            <div class="field">
                <label for="check-key-text">"Paste the emergency kit or its AGE-SECRET-KEY-1… line"</label>
                <textarea id="check-key-text" rows="4" spellcheck="false" autocomplete="off"
                    prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))></textarea>
            </div>
            <button class="btn" id="check-key" disabled=move || checking.get() on:click=check>
                {move || if checking.get() { "Checking…" } else { "Check key" }}
            </button>
            <p class="status-line" id="check-result" role="status" aria-live="polite">
                {move || result.get().map(|(ok, m)| view! { <span class=if ok { "ok" } else { "error" }>{m}</span> })}
            </p>
        </div>
    }
}

/// Saves `text` as a file named `name`, made in the browser (a Blob), nothing fetched.
fn download(name: &str, text: &str) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let parts = js_sys::Array::of1(&wasm_bindgen::JsValue::from_str(text));
        let opts = web_sys::BlobPropertyBag::new();
        opts.set_type("text/plain;charset=utf-8");
        let Ok(blob) = web_sys::Blob::new_with_str_sequence_and_options(&parts, &opts) else {
            return;
        };
        let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob) else {
            return;
        };
        let Some(doc) = web_sys::window().and_then(|w| w.document()) else {
            return;
        };
        if let Some(a) = doc
            .create_element("a")
            .ok()
            .and_then(|e| e.dyn_into::<web_sys::HtmlAnchorElement>().ok())
        {
            a.set_href(&url);
            a.set_download(name);
            a.click();
        }
        // Let the download start before the URL goes.
        let revoke = wasm_bindgen::closure::Closure::once_into_js(move || {
            let _ = web_sys::Url::revoke_object_url(&url);
        });
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(
                revoke.unchecked_ref(),
                10_000,
            );
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (name, text);
}
