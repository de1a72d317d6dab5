//! The signed-in user and a sign-out button, in the top bar.

use leptos::prelude::*;

use crate::MeResource;

#[component]
pub fn UserMenu() -> impl IntoView {
    let me = expect_context::<MeResource>();
    let logout = ServerAction::<crate::api::auth::Logout>::new();
    Effect::new(move |_| {
        if let Some(Ok(())) = logout.value().get() {
            #[cfg(feature = "hydrate")]
            let _ = window().location().set_href("/login");
        }
    });
    view! {
        <div class="user-menu">
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match me.await {
                        Ok(Some(user)) => view! {
                            <span class="who" title=format!("Signed in as {} ({})", user.username, user.role)>
                                {user.username.clone()}
                                <span class="role">{user.role.as_str()}</span>
                            </span>
                            <button class="btn btn-quiet" on:click=move |_| { logout.dispatch(crate::api::auth::Logout {}); }>
                                "Sign out"
                            </button>
                        }.into_any(),
                        _ => view! { <a href="/login" class="btn btn-quiet">"Sign in"</a> }.into_any(),
                    }
                })}
            </Suspense>
        </div>
    }
}
