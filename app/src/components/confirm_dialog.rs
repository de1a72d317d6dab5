//! A modal confirmation: a question, what it will do, and two buttons. Escape cancels; the
//! confirm button takes focus so the keyboard flow is Enter to confirm, Escape to back out,
//! and focus returns to the button that asked.

use leptos::prelude::*;

use crate::components::modal::Modal;

/// What is being confirmed; `None` hides the dialog. `A` is what the owner does on
/// confirm: a job action for the history, a destination id for the Destinations card.
#[derive(Clone, Debug, PartialEq)]
pub struct Confirm<A = ConfirmAction> {
    pub title: String,
    /// What it will do; a blank line (`\n\n`) starts another paragraph.
    pub body: String,
    pub confirm_label: String,
    pub danger: bool,
    pub action: A,
}

/// The history's confirmed actions.
#[derive(Clone, Debug, PartialEq)]
pub enum ConfirmAction {
    Delete(crate::model::JobId),
    Cancel(crate::model::JobId),
    Restore(crate::model::JobId),
}

#[component]
pub fn ConfirmDialog<A>(
    state: RwSignal<Option<Confirm<A>>>,
    on_confirm: Callback<A>,
) -> impl IntoView
where
    A: Clone + Send + Sync + 'static,
{
    let close = Callback::new(move |()| state.set(None));
    move || {
        state.get().map(|c| {
            let action = c.action.clone();
            view! {
                <Modal labelledby="confirm-title" on_close=close>
                    <h2 id="confirm-title">{c.title.clone()}</h2>
                    {c.body.split("\n\n").map(|p| view! { <p class="modal-body">{p.to_owned()}</p> }).collect_view()}
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
