use leptos::prelude::*;

/// An error message that screen readers announce.
#[component]
pub fn ErrorNotice(message: String) -> impl IntoView {
    view! {
        <p role="alert" class="rounded border border-red-200 bg-red-50 px-3 py-2 text-sm text-red-800">
            {message}
        </p>
    }
}

/// A success message that screen readers announce politely.
#[component]
pub fn SuccessNotice(message: String) -> impl IntoView {
    view! {
        <p role="status" class="rounded border border-green-200 bg-green-50 px-3 py-2 text-sm text-green-800">
            {message}
        </p>
    }
}

/// The text shown while something loads.
#[component]
pub fn Loading(what: &'static str) -> impl IntoView {
    view! { <p aria-busy="true" class="text-slate-500">{format!("Loading {what}…")}</p> }
}
