//! Building blocks shared by the pages.

mod admin_menu;
mod protected;
mod top_bar;

pub use admin_menu::AdminMenu;
pub use protected::Protected;
pub use top_bar::TopBar;
