use leptos::prelude::*;

use crate::components::ErrorNotice;

/// A modal dialog with a title. Esc or the backdrop calls `on_close`.
/// The first button inside gets the focus when it opens.
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
    let title_id_for_panel = title_id.clone();
    let panel = NodeRef::<leptos::html::Div>::new();
    Effect::new(move |_| {
        if let Some(panel) = panel.get()
            && let Ok(Some(button)) = panel.query_selector("button, input, select, textarea")
        {
            use leptos::wasm_bindgen::JsCast;
            if let Ok(button) = button.dyn_into::<leptos::web_sys::HtmlElement>() {
                let _ = button.focus();
            }
        }
    });
    view! {
        <div
            class="fixed inset-0 z-40 flex items-center justify-center bg-slate-900/40 p-4"
            on:click=move |_| on_close.run(())
        >
            <div
                node_ref=panel
                role="dialog"
                aria-modal="true"
                aria-labelledby=title_id_for_panel
                class="w-full max-w-lg rounded-lg bg-white p-6 shadow-xl"
                on:click=|ev| ev.stop_propagation()
                on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                    if ev.key() == "Escape" {
                        on_close.run(());
                    }
                }
            >
                <h2 id=title_id class="text-lg font-semibold">{title}</h2>
                <div class="mt-3">{children()}</div>
            </div>
        </div>
    }
}

/// The error line and the **Cancel** / confirm buttons of a confirmation
/// dialog; the confirm button shows `busy` while the action runs.
#[component]
pub fn ConfirmActions(
    error: RwSignal<Option<String>>,
    pending: Memo<bool>,
    label: &'static str,
    busy: &'static str,
    on_cancel: Callback<()>,
    on_confirm: Callback<()>,
) -> impl IntoView {
    view! {
        {move || error.get().map(|e| view! { <div class="mt-3"><ErrorNotice message=e /></div> })}
        <div class="mt-6 flex justify-end gap-3">
            <button
                type="button"
                class="rounded border border-slate-300 px-4 py-2 text-sm"
                on:click=move |_| on_cancel.run(())
            >
                "Cancel"
            </button>
            <button
                type="button"
                class="rounded bg-red-700 px-4 py-2 text-sm font-medium text-white hover:bg-red-800 disabled:opacity-60"
                disabled=move || pending.get()
                on:click=move |_| on_confirm.run(())
            >
                {move || if pending.get() { busy } else { label }}
            </button>
        </div>
    }
}
