//! The Data page: every content table with its row count, so a user can see what a restore
//! changed. An admin can also open a table's first rows; the server has already masked every
//! secret-looking value in them (shown as •••), and a viewer is sent no rows at all.

use leptos::prelude::*;

use crate::components::auth_gate::AuthGate;
use crate::model::TableView;

#[component]
pub fn DataPage() -> impl IntoView {
    view! {
        <h1>"Data"</h1>
        <p class="lead">"The application's configuration as it is now: what a backup captures and a restore replaces."</p>
        <AuthGate>
            <DataTables/>
        </AuthGate>
    }
}

#[component]
fn DataTables() -> impl IntoView {
    let tables = Resource::new(|| (), |_| crate::api::data::content_tables());
    view! {
        <Suspense fallback=|| view! { <p class="empty">"Loading tables…"</p> }>
            {move || Suspend::new(async move {
                match tables.await {
                    Ok(list) => {
                        // The server sends columns only to admins (see Engine::content_summary).
                        let counts_only = list.iter().all(|t| t.columns.is_empty());
                        let note = if counts_only {
                            "Row contents are shown to admins only."
                        } else {
                            "Values that look like secrets (passwords, keys, tokens) are shown as •••."
                        };
                        view! {
                        <p class="hint" id="data-note">{note}</p>
                        <div class="table-wrap">
                            <table class="data-summary">
                                <thead><tr><th scope="col">"Table"</th><th scope="col" class="num">"Rows"</th><th scope="col">""</th></tr></thead>
                                <tbody>
                                    {list.into_iter().map(|t| view! { <TableRow table=t/> }).collect_view()}
                                </tbody>
                            </table>
                        </div>
                    }.into_any()
                    }
                    Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn TableRow(table: TableView) -> impl IntoView {
    let open = RwSignal::new(false);
    let name = table.name.clone();
    let columns = table.columns.clone();
    let sample = table.sample.clone();
    let has_rows = !columns.is_empty();
    view! {
        <tr data-table=name.clone()>
            <th scope="row">{name.clone()}</th>
            <td class="num" data-rows=table.rows.to_string()>{table.rows}</td>
            <td>
                <Show when=move || has_rows>
                    <button class="btn btn-quiet" aria-expanded=move || open.get().to_string()
                        on:click=move |_| open.update(|o| *o = !*o)>
                        {move || if open.get() { "Hide rows" } else { "Show rows" }}
                    </button>
                </Show>
            </td>
        </tr>
        <Show when=move || open.get()>
            <tr class="details-row">
                <td colspan="3">
                    <div class="table-wrap">
                        <table class="sample">
                            <thead><tr>{columns.iter().map(|c| view! { <th scope="col">{c.clone()}</th> }).collect_view()}</tr></thead>
                            <tbody>
                                {sample.iter().map(|r| view! { <tr>{r.iter().map(|v| view! { <td>{v.clone()}</td> }).collect_view()}</tr> }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                </td>
            </tr>
        </Show>
    }
}
