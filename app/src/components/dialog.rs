use std::cell::RefCell;

use leptos::prelude::*;
use leptos::wasm_bindgen::JsCast;
use leptos::web_sys::HtmlElement;

use super::style;
use crate::components::{ErrorNotice, Submit};

thread_local! {
    /// The controls that had the focus when the dialogs now open were
    /// opened, the newest last: each gets it back when its dialog goes.
    static OPENERS: RefCell<Vec<Option<HtmlElement>>> = const { RefCell::new(Vec::new()) };
}

/// A modal dialog with a title, on the native `<dialog>` element opened
/// with `showModal()`: the page behind it is inert, so focus stays inside.
/// Esc or a click on the backdrop calls `on_close`. The first control inside
/// gets the focus when it opens, and the control that had the focus before
/// gets it back when it goes.
#[component]
pub fn Dialog(
    /// Shown as the dialog's title and used as its accessible name.
    title: String,
    on_close: Callback<()>,
    children: Children,
) -> impl IntoView {
    let id = format!(
        "dialog-{}",
        title
            .to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    );
    let title_id = format!("{id}-title");
    let title_id_for_dialog = title_id.clone();
    let dialog = NodeRef::<leptos::html::Dialog>::new();
    let opener = document()
        .active_element()
        .and_then(|e| e.dyn_into::<HtmlElement>().ok());
    OPENERS.with(|openers| openers.borrow_mut().push(opener));
    on_cleanup(move || {
        // Closed first: while a modal dialog is open the page behind it is
        // inert and cannot take the focus.
        if let Some(dialog) = dialog.get_untracked()
            && dialog.open()
        {
            dialog.close();
        }
        if let Some(Some(opener)) = OPENERS.with(|openers| openers.borrow_mut().pop()) {
            // After the dialog has left the page.
            request_animation_frame(move || {
                let _ = opener.focus();
            });
        }
    });
    Effect::new(move |_| {
        let Some(dialog) = dialog.get() else {
            return;
        };
        if !dialog.open() {
            let _ = dialog.show_modal();
        }
        if let Ok(Some(first)) = dialog.query_selector("button, input, select, textarea")
            && let Ok(first) = first.dyn_into::<HtmlElement>()
        {
            let _ = first.focus();
        }
    });
    view! {
        <dialog
            node_ref=dialog
            aria-labelledby=title_id_for_dialog
            class="m-auto w-full max-w-lg rounded-lg bg-white p-0 text-slate-900 shadow-xl backdrop:bg-slate-900/40"
            on:cancel=move |ev: leptos::ev::Event| {
                // Esc: the page decides when the dialog goes.
                ev.prevent_default();
                on_close.run(());
            }
            on:click=move |ev| {
                // A click on the dialog element itself is on its backdrop.
                if ev.target() == ev.current_target() {
                    on_close.run(());
                }
            }
        >
            <div class="p-6">
                <h2 id=title_id class="text-lg font-semibold">{title}</h2>
                <div class="mt-3">{children()}</div>
            </div>
        </dialog>
    }
}

/// The error line and the **Cancel** / confirm buttons of a confirmation
/// dialog; the confirm button shows `busy` while the action runs.
#[component]
pub fn ConfirmActions<O: Clone + 'static>(
    /// The confirmed call.
    submit: Submit<(), O>,
    label: &'static str,
    busy: &'static str,
    on_cancel: Callback<()>,
) -> impl IntoView {
    let (error, pending) = (submit.error, submit.pending());
    view! {
        {move || error.get().map(|e| view! { <div class="mt-3"><ErrorNotice message=e.to_string() /></div> })}
        <div class="mt-6 flex justify-end gap-3">
            <button
                type="button"
                class=style::BUTTON_SECONDARY
                on:click=move |_| on_cancel.run(())
            >
                "Cancel"
            </button>
            <button
                type="button"
                class=style::BUTTON_DANGER
                disabled=move || pending.get()
                on:click=move |_| submit.run(())
            >
                {move || if pending.get() { busy } else { label }}
            </button>
        </div>
    }
}
