use leptos::prelude::*;

use crate::domain::AppError;

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

/// The message under a form field, when the server refused that field.
#[component]
pub fn FieldError(error: RwSignal<Option<AppError>>, field: &'static str) -> impl IntoView {
    move || {
        error
            .get()
            .filter(|e| e.field() == Some(field))
            .map(|e| view! { <p class="mt-1 text-sm text-red-700">{e.to_string()}</p> })
    }
}

/// A form's error that belongs to no single field.
#[component]
pub fn FormError(error: RwSignal<Option<AppError>>) -> impl IntoView {
    move || {
        error
            .get()
            .filter(|e| e.field().is_none())
            .map(|e| view! { <ErrorNotice message=e.to_string() /> })
    }
}
