//! The class lists that recur across pages, named once (Tailwind finds the
//! classes here as it finds them in the pages).

/// The main action of a form or a dialog.
pub const BUTTON_PRIMARY: &str = "rounded bg-blue-700 px-4 py-2 text-sm font-medium text-white hover:bg-blue-800 disabled:opacity-60";
/// An action that deletes or stops something, after a confirmation.
pub const BUTTON_DANGER: &str = "rounded bg-red-700 px-4 py-2 text-sm font-medium text-white hover:bg-red-800 disabled:opacity-60";
/// Cancel, and the other actions beside a primary one.
pub const BUTTON_SECONDARY: &str =
    "rounded border border-slate-300 px-4 py-2 text-sm hover:bg-slate-50 disabled:opacity-50";
/// An action in a table row or a toolbar.
pub const BUTTON_SMALL: &str = "rounded border border-slate-300 px-3 py-1 disabled:opacity-50";
/// A row's button that removes or revokes what the row shows.
pub const BUTTON_ROW_REMOVE: &str =
    "rounded border border-red-300 px-3 py-1 text-red-800 hover:bg-red-50 disabled:opacity-60";
/// A table of rows on a white card.
pub const TABLE: &str = "w-full overflow-hidden rounded-lg bg-white text-left text-sm shadow";
/// A text input or select that fills its form's width.
pub const INPUT: &str = "mt-1 w-full rounded border border-slate-300 px-3 py-2";
