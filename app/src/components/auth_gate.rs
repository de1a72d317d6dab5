//! Renders its children only for a signed-in admin (or any signed-in user with
//! `admin_only = false`); otherwise a clear message instead of a broken page.

use leptos::prelude::*;

use crate::MeResource;

#[component]
pub fn AuthGate(#[prop(optional)] admin_only: bool, children: ChildrenFn) -> impl IntoView {
    let me = expect_context::<MeResource>();
    let children = StoredValue::new(children);
    view! {
        <Suspense fallback=|| view! { <p class="empty">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match me.await {
                    Ok(Some(user)) if !admin_only || user.is_admin() => children.read_value()().into_any(),
                    Ok(Some(_)) => view! {
                        <section class="card notice" role="alert">
                            <h2>"Admins only"</h2>
                            <p>"Backups are managed by admins. Your account is a viewer: ask an admin if you need a backup or a restore."</p>
                        </section>
                    }.into_any(),
                    Ok(None) => view! {
                        <section class="card notice">
                            <h2>"Please sign in"</h2>
                            <p><a href="/login">"Sign in"</a>" to manage backups."</p>
                        </section>
                    }.into_any(),
                    Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}
