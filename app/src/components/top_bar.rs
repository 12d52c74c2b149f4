use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::{NavigateOptions, components::A, hooks::use_navigate};

use crate::api::logout;
use crate::components::AdminMenu;
use crate::domain::CurrentUser;
use crate::shell::Session;

/// The bar at the top of every page: the product name, the menus, the user's
/// name and Log out.
#[component]
pub fn TopBar(user: CurrentUser) -> impl IntoView {
    let session = Session::current();
    let navigate = use_navigate();
    let pending = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let log_out = move |_| {
        let navigate = navigate.clone();
        pending.set(true);
        spawn_local(async move {
            match logout().await {
                Ok(()) => {
                    session.set_user(None);
                    navigate("/login", NavigateOptions::default());
                }
                Err(e) => error.set(Some(e.to_string())),
            }
            pending.set(false);
        });
    };
    let is_admin = user.is_admin();

    view! {
        <header class="bg-slate-900 text-white">
            <nav aria-label="Main" class="mx-auto flex max-w-6xl items-center gap-6 px-6 py-3">
                <A href="/catalog" attr:class="font-semibold tracking-tight">"Event Flows"</A>
                <A href="/catalog" attr:class="text-slate-200 hover:text-white">"ML service catalog"</A>
                <Show when=move || is_admin>
                    <AdminMenu />
                </Show>
                <A href="/settings/api-keys" attr:class="ml-auto text-slate-200 hover:text-white">"API keys"</A>
                <span class="text-sm text-slate-300" data-testid="current-user">
                    {user.username.clone()}
                </span>
                <button
                    type="button"
                    class="rounded border border-slate-600 px-3 py-1 text-sm hover:bg-slate-800 disabled:opacity-50"
                    on:click=log_out
                    disabled=move || pending.get()
                >
                    {move || if pending.get() { "Logging out…" } else { "Log out" }}
                </button>
            </nav>
            <Show when=move || error.get().is_some()>
                <p role="alert" class="bg-red-700 px-6 py-2 text-sm">{move || error.get()}</p>
            </Show>
        </header>
    }
}
