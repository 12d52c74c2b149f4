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

/// A labelled text input of a form, with `help` under it when given, and
/// the server's refusal of `field` under that (both named by the input's
/// `aria-describedby`). A `secret` one is a password input.
#[component]
pub fn TextField(
    id: &'static str,
    label: &'static str,
    field: &'static str,
    value: RwSignal<String>,
    error: RwSignal<Option<AppError>>,
    #[prop(optional)] placeholder: &'static str,
    #[prop(optional)] help: Option<&'static str>,
    #[prop(optional)] secret: bool,
) -> impl IntoView {
    let described = match help {
        Some(_) => format!("{id}-help {id}-error"),
        None => format!("{id}-error"),
    };
    view! {
        <div>
            <label for=id class="block text-sm font-medium">{label}</label>
            <input
                id=id
                type=if secret { "password" } else { "text" }
                aria-describedby=described
                aria-invalid=invalid(error, field)
                class=super::style::INPUT
                placeholder=placeholder
                bind:value=value
                autocomplete=if secret { "new-password" } else { "off" }
            />
            {help.map(|text| view! { <p id=format!("{id}-help") class="mt-1 text-xs text-slate-500">{text}</p> })}
            <FieldError error=error field=field input=id />
        </div>
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

/// The box a page shows where a list has nothing yet: what is missing, and
/// (as children) how to add it.
#[component]
pub fn EmptyState(
    title: &'static str,
    #[prop(optional)] children: Option<Children>,
) -> impl IntoView {
    view! {
        <div class="rounded-lg border border-dashed border-slate-300 p-8 text-center">
            <p class="font-medium">{title}</p>
            {children.map(|c| view! { <p class="mt-1 text-slate-600">{c()}</p> })}
        </div>
    }
}

/// One answer of the server, as a page shows it: "Loading …" until it
/// comes, `not_found` (when given) for a thing that does not exist, any
/// other error, or `view` of the answer.
#[component]
pub fn Loaded<T, F, V>(
    value: LocalResource<Result<T, AppError>>,
    /// What loads, for "Loading …".
    what: &'static str,
    /// Shown instead of the error when the server answers "not found".
    #[prop(optional, into)]
    not_found: Option<ViewFn>,
    /// The page shows a refusal of one of its form's fields at that field,
    /// so it is not shown here again.
    #[prop(optional)]
    field_errors_in_form: bool,
    view: F,
) -> impl IntoView
where
    T: Clone + Send + Sync + 'static,
    F: Fn(T) -> V + Send + Sync + 'static,
    V: IntoView + 'static,
{
    move || match value.get() {
        None => view! { <Loading what=what /> }.into_any(),
        Some(Err(AppError::NotFound { .. })) if not_found.is_some() => {
            not_found.as_ref().map(ViewFn::run).into_any()
        }
        Some(Err(e)) if field_errors_in_form && e.field().is_some() => ().into_any(),
        Some(Err(e)) => view! { <ErrorNotice message=e.to_string() /> }.into_any(),
        Some(Ok(answer)) => view(answer).into_any(),
    }
}

/// A list the server sends, as a page shows it: [`Loaded`], with an
/// [`EmptyState`] of `empty` and `hint` when the list holds nothing.
#[component]
pub fn Listing<T, F, V>(
    list: LocalResource<Result<Vec<T>, AppError>>,
    /// What loads, for "Loading …".
    what: &'static str,
    /// What is missing, when the list is empty.
    empty: &'static str,
    /// How to add the first one.
    hint: &'static str,
    view: F,
) -> impl IntoView
where
    T: Clone + Send + Sync + 'static,
    F: Fn(Vec<T>) -> V + Send + Sync + 'static,
    V: IntoView + 'static,
{
    let view = move |items: Vec<T>| {
        if items.is_empty() {
            view! { <EmptyState title=empty>{hint}</EmptyState> }.into_any()
        } else {
            view(items).into_any()
        }
    };
    view! { <Loaded value=list what=what view=view /> }
}
