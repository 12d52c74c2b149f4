use leptos::prelude::*;

use super::style;

/// A column of a [`Table`]: its name, and how it is shown.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    name: &'static str,
    right: bool,
    hidden: bool,
}

impl Column {
    /// A column of text.
    pub const fn text(name: &'static str) -> Self {
        Column {
            name,
            right: false,
            hidden: false,
        }
    }

    /// A column aligned right: numbers, or the buttons that end a row.
    pub const fn right(name: &'static str) -> Self {
        Column {
            name,
            right: true,
            hidden: false,
        }
    }

    /// A column of buttons, named for screen readers only.
    pub const fn actions() -> Self {
        Column {
            name: "Actions",
            right: false,
            hidden: true,
        }
    }
}

/// A table on a white card: a header row of `columns`, and `children` as
/// its body's rows.
#[component]
pub fn Table(columns: &'static [Column], children: Children) -> impl IntoView {
    view! {
        <table class=style::TABLE>
            <thead class="bg-slate-100 text-slate-600">
                <tr>
                    {columns
                        .iter()
                        .map(|c| {
                            let class = if c.right { "px-4 py-2 text-right" } else { "px-4 py-2" };
                            if c.hidden {
                                view! { <th scope="col" class=class><span class="sr-only">{c.name}</span></th> }.into_any()
                            } else {
                                view! { <th scope="col" class=class>{c.name}</th> }.into_any()
                            }
                        })
                        .collect_view()}
                </tr>
            </thead>
            <tbody>{children()}</tbody>
        </table>
    }
}
