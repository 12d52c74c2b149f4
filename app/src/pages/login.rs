use leptos::prelude::*;

use crate::components::{Submit, style};
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
    let next = move || {
        query
            .get_untracked()
            .get("next")
            .filter(|n| n.starts_with('/') && !n.starts_with("//"))
            .unwrap_or_else(|| "/catalog".to_owned())
    };

    let log_in = Submit::new(
        |(username, password): (String, String)| login(username, password),
        move |user: CurrentUser| {
            session.set_user(Some(user));
            navigate(&next(), NavigateOptions::default());
        },
    );
    let (error, pending) = (log_in.error, log_in.pending());
    // Which half of the login was wrong is not said.
    let message = move || {
        error.get().map(|e| match e {
            AppError::Unauthorized => "Wrong username or password.".to_owned(),
            other => other.to_string(),
        })
    };

    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (u, p) = (username.get_untracked(), password.get_untracked());
        if u.trim().is_empty() || p.is_empty() {
            error.set(Some(AppError::validation(
                "username",
                "Enter your username and password.",
            )));
            return;
        }
        log_in.run((u, p));
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
                        {message}
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
