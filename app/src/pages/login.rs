use leptos::prelude::*;

use crate::components::style;
use leptos_router::{
    NavigateOptions,
    hooks::{use_navigate, use_query_map},
};

use crate::api::login;
use crate::domain::{AppError, CurrentUser};
use crate::shell::Session;

/// The login form. A failed login says only that the pair was wrong, never
/// which half of it.
#[component]
pub fn LoginPage() -> impl IntoView {
    let session = Session::current();
    let navigate = use_navigate();
    let query = use_query_map();
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);

    let action = Action::new_local(|(username, password): &(String, String)| {
        login(username.clone(), password.clone())
    });
    let pending = action.pending();

    let next = move || {
        query
            .get_untracked()
            .get("next")
            .filter(|n| n.starts_with('/') && !n.starts_with("//"))
            .unwrap_or_else(|| "/catalog".to_owned())
    };

    Effect::new(move |_| {
        if let Some(result) = action.value().get() {
            match result {
                Ok(user) => {
                    let user: CurrentUser = user;
                    session.set_user(Some(user));
                    navigate(&next(), NavigateOptions::default());
                }
                Err(AppError::Unauthorized) => {
                    error.set(Some("Wrong username or password.".to_owned()));
                }
                Err(other) => error.set(Some(other.to_string())),
            }
        }
    });

    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (u, p) = (username.get_untracked(), password.get_untracked());
        if u.trim().is_empty() || p.is_empty() {
            error.set(Some("Enter your username and password.".to_owned()));
            return;
        }
        error.set(None);
        action.dispatch_local((u, p));
    };

    view! {
        <main class="flex min-h-screen items-center justify-center p-6">
            <form
                on:submit=on_submit
                aria-labelledby="login-title"
                class="w-full max-w-sm space-y-4 rounded-lg bg-white p-8 shadow"
                novalidate
            >
                <h1 id="login-title" class="text-2xl font-semibold">"Log in to Event Flows"</h1>
                <div>
                    <label for="login-username" class="block text-sm font-medium">"Username"</label>
                    <input
                        id="login-username"
                        name="username"
                        autocomplete="username"
                        class=style::INPUT
                        bind:value=username
                    />
                </div>
                <div>
                    <label for="login-password" class="block text-sm font-medium">"Password"</label>
                    <input
                        id="login-password"
                        name="password"
                        type="password"
                        autocomplete="current-password"
                        class=style::INPUT
                        bind:value=password
                    />
                </div>
                <Show when=move || error.get().is_some()>
                    <p role="alert" class="rounded bg-red-50 px-3 py-2 text-sm text-red-800">
                        {move || error.get()}
                    </p>
                </Show>
                <button
                    type="submit"
                    class="w-full rounded bg-blue-700 px-4 py-2 font-medium text-white hover:bg-blue-800 disabled:opacity-60"
                    disabled=move || pending.get()
                >
                    {move || if pending.get() { "Logging in…" } else { "Log in" }}
                </button>
            </form>
        </main>
    }
}
