//! Building blocks shared by the pages.

mod admin_menu;
mod dialog;
mod notice;
mod protected;
mod status;
pub mod style;
mod submit;
mod table;
mod top_bar;

pub use admin_menu::AdminMenu;
pub use dialog::{ConfirmActions, Dialog};
pub use notice::{
    EmptyState, ErrorNotice, FieldError, FormError, Listing, Loaded, Loading, SuccessNotice,
    TextField, invalid,
};
pub use protected::Protected;
pub use status::StatusBadge;
pub use submit::Submit;
pub use table::{Pager, Pages, RowRemoveButton, Table, current_page, first_page};
pub use top_bar::TopBar;
