use leptos::prelude::*;

use super::style;

/// A table on a white card: a header row of `columns`, and `children` as
/// its body's rows. The last `right` columns are aligned right (numbers,
/// and the buttons that end a row); a column named `""` holds a row's
/// buttons and is named "Actions" for screen readers only.
#[component]
pub fn Table(
    columns: &'static [&'static str],
    #[prop(optional)] right: usize,
    children: Children,
) -> impl IntoView {
    let first_right = columns.len().saturating_sub(right);
    view! {
        <table class=style::TABLE>
            <thead class="bg-slate-100 text-slate-600">
                <tr>
                    {columns
                        .iter()
                        .enumerate()
                        .map(|(i, name)| {
                            let class = if i >= first_right { "px-4 py-2 text-right" } else { "px-4 py-2" };
                            if name.is_empty() {
                                view! { <th scope="col" class=class><span class="sr-only">"Actions"</span></th> }.into_any()
                            } else {
                                view! { <th scope="col" class=class>{*name}</th> }.into_any()
                            }
                        })
                        .collect_view()}
                </tr>
            </thead>
            <tbody>{children()}</tbody>
        </table>
    }
}

/// The pages of a list read newest first, as a stack of cursors: the last
/// one is the page shown (`None` for the first page).
pub type Pages = RwSignal<Vec<Option<String>>>;

/// A new stack of pages, at the first page.
pub fn first_page() -> Pages {
    RwSignal::new(vec![None])
}

/// The cursor of the page shown.
pub fn current_page(pages: Pages) -> Option<String> {
    pages.with(|p| p.last().cloned().flatten())
}

/// **Newer** and **Older** under a paged list; `older` is the cursor of
/// the next page, when there is one.
#[component]
pub fn Pager(pages: Pages, older: Option<String>) -> impl IntoView {
    let has_older = older.is_some();
    view! {
        <div class="mt-3 flex gap-2 text-sm">
            <button
                type="button"
                class=style::BUTTON_SMALL
                disabled=move || pages.with(|p| p.len() <= 1)
                on:click=move |_| pages.update(|p| { p.pop(); })
            >
                "Newer"
            </button>
            <button
                type="button"
                class=style::BUTTON_SMALL
                disabled=!has_older
                on:click=move |_| {
                    if let Some(cursor) = older.clone() {
                        pages.update(|p| p.push(Some(cursor)));
                    }
                }
            >
                "Older"
            </button>
        </div>
    }
}

/// The button at the end of a row that removes or revokes what the row
/// shows: `label` names it for screen readers; it waits while `pending`.
#[component]
pub fn RowRemoveButton(
    label: String,
    #[prop(into)] pending: Signal<bool>,
    on_click: Callback<()>,
    children: Children,
) -> impl IntoView {
    view! {
        <button
            type="button"
            class=style::BUTTON_ROW_REMOVE
            aria-label=label
            disabled=move || pending.get()
            on:click=move |_| on_click.run(())
        >
            {children()}
        </button>
    }
}
