//! A modal confirmation: a question, what it will do, and two buttons. Escape cancels; the
//! confirm button takes focus so the keyboard flow is Enter to confirm, Escape to back out.

use leptos::prelude::*;

/// What is being confirmed; `None` hides the dialog.
#[derive(Clone, Debug, PartialEq)]
pub struct Confirm {
    pub title: String,
    pub body: String,
    pub confirm_label: String,
    pub danger: bool,
    pub action: ConfirmAction,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ConfirmAction {
    Delete(i64),
    Cancel(i64),
    Restore(i64),
}

#[component]
pub fn ConfirmDialog(state: RwSignal<Option<Confirm>>, on_confirm: Callback<ConfirmAction>) -> impl IntoView {
    let confirm_ref = NodeRef::<leptos::html::Button>::new();
    Effect::new(move |_| {
        if state.get().is_some() {
            if let Some(b) = confirm_ref.get() {
                let _ = b.focus();
            }
        }
    });
    move || {
        state.get().map(|c| {
            let action = c.action.clone();
            view! {
                <div class="modal-backdrop" on:click=move |_| state.set(None)></div>
                <div class="modal" role="dialog" aria-modal="true" aria-labelledby="confirm-title"
                     on:keydown=move |ev| if ev.key() == "Escape" { state.set(None) }>
                    <h2 id="confirm-title">{c.title.clone()}</h2>
                    <p class="modal-body">{c.body.clone()}</p>
                    <div class="modal-actions">
                        <button class="btn" on:click=move |_| state.set(None)>"Back"</button>
                        <button class=if c.danger { "btn btn-danger" } else { "btn btn-primary" } node_ref=confirm_ref
                            on:click=move |_| { state.set(None); on_confirm.run(action.clone()); }>
                            {c.confirm_label.clone()}
                        </button>
                    </div>
                </div>
            }
        })
    }
}
