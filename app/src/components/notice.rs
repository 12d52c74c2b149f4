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

/// The message under a form field, when the server refused that field; its
/// id is `{input}-error`, which the input names in `aria-describedby`.
#[component]
pub fn FieldError(
    error: RwSignal<Option<AppError>>,
    field: &'static str,
    /// The id of the input the message is about.
    input: &'static str,
) -> impl IntoView {
    move || {
        error.get().filter(|e| e.field() == Some(field)).map(|e| {
            view! { <p id=format!("{input}-error") class="mt-1 text-sm text-red-700">{e.to_string()}</p> }
        })
    }
}

/// `aria-invalid` of an input: `"true"` while the server refuses `field`.
pub fn invalid(
    error: RwSignal<Option<AppError>>,
    field: &'static str,
) -> impl Fn() -> &'static str + Send + Sync + 'static {
    move || {
        if error.with(|e| e.as_ref().and_then(AppError::field) == Some(field)) {
            "true"
        } else {
            "false"
        }
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
