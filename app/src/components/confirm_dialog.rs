//! A modal confirmation: a question, what it will do, and two buttons. Escape cancels; the
//! confirm button takes focus so the keyboard flow is Enter to confirm, Escape to back out,
//! and focus returns to the button that asked.

use leptos::prelude::*;

use crate::components::modal::Modal;

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
    Delete(crate::model::JobId),
    Cancel(crate::model::JobId),
    Restore(crate::model::JobId),
}

#[component]
pub fn ConfirmDialog(
    state: RwSignal<Option<Confirm>>,
    on_confirm: Callback<ConfirmAction>,
) -> impl IntoView {
    let close = Callback::new(move |()| state.set(None));
    move || {
        state.get().map(|c| {
            let action = c.action.clone();
            view! {
                <Modal labelledby="confirm-title" on_close=close>
                    <h2 id="confirm-title">{c.title.clone()}</h2>
                    <p class="modal-body">{c.body.clone()}</p>
                    <div class="modal-actions">
                        <button class="btn" on:click=move |_| state.set(None)>"Back"</button>
                        <button class=if c.danger { "btn btn-danger" } else { "btn btn-primary" } data-autofocus=""
                            on:click=move |_| { state.set(None); on_confirm.run(action.clone()); }>
                            {c.confirm_label.clone()}
                        </button>
                    </div>
                </Modal>
            }
        })
    }
}
