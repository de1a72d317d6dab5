//! The Plugins page: installed plugins, their state and grants.

use leptos::prelude::*;

use crate::components::auth_gate::AuthGate;

#[server]
pub async fn list_plugins() -> Result<String, ServerFnError> {
    let (engine, _) = crate::api::ssr::require_admin().await?;
    let v = engine
        .plugins_view()
        .await
        .map_err(crate::api::ssr::to_sfe)?;
    Ok(v.to_string())
}

#[component]
pub fn PluginsPage() -> impl IntoView {
    view! {
        <h1>"Plugins"</h1>
        <p class="lead">"WebAssembly plugins add content to backups and hook into each step."</p>
        <AuthGate admin_only=true>
            <PluginList/>
        </AuthGate>
    }
}

#[component]
fn PluginList() -> impl IntoView {
    let plugins = Resource::new(|| (), |_| list_plugins());
    view! {
        <Suspense fallback=|| view! { <p class="empty">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match plugins.await {
                    Ok(raw) => {
                        let v: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
                        let list = v.get("plugins").and_then(|p| p.as_array()).cloned().unwrap_or_default();
                        if list.is_empty() {
                            view! { <p class="empty">"No plugins are installed."</p> }.into_any()
                        } else {
                            view! {
                                <ul class="plugin-list">
                                    {list.into_iter().map(|p| {
                                        let id = p.get("id").and_then(|x| x.as_str()).unwrap_or("?").to_owned();
                                        let version = p.get("version").and_then(|x| x.as_str()).unwrap_or("").to_owned();
                                        let state = p.get("state").and_then(|x| x.as_str()).unwrap_or("").to_owned();
                                        view! { <li class="card"><strong>{id}</strong>" "{version}" "<span class="badge">{state}</span></li> }
                                    }).collect_view()}
                                </ul>
                            }.into_any()
                        }
                    }
                    Err(e) => view! { <p class="error" role="alert">{crate::pages::login::clean_error(&e.to_string())}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}
