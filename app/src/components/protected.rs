use leptos::prelude::*;
use leptos_router::{components::Redirect, hooks::use_location};

use crate::components::TopBar;
use crate::pages::ForbiddenPage;
use crate::shell::Session;

/// Renders its children inside the app shell for a logged-in user; sends an
/// anonymous visitor to the login page (and back here afterwards), and shows
/// a "not allowed" page to a member on an admin page. The server checks every
/// call again: this only decides what to show.
#[component]
pub fn Protected(admin_only: bool, children: ChildrenFn) -> impl IntoView {
    let session = Session::current();
    let location = use_location();
    let children = StoredValue::new(children);
    move || match session.user.get() {
        None => match session.error.get() {
            Some(error) => view! {
                <main class="p-8"><p role="alert" class="text-red-700">{error}</p></main>
            }
            .into_any(),
            None => {
                view! { <main class="p-8"><p aria-busy="true">"Loading…"</p></main> }.into_any()
            }
        },
        Some(None) => {
            let next = location.pathname.get_untracked();
            let path = format!("/login?next={}", urlencode(&next));
            view! { <Redirect path=path /> }.into_any()
        }
        Some(Some(user)) => {
            let allowed = !admin_only || user.is_admin();
            view! {
                <TopBar user=user />
                <main class="mx-auto max-w-6xl px-6 py-8">
                    {if allowed {
                        children.with_value(|children| children()).into_any()
                    } else {
                        view! { <ForbiddenPage /> }.into_any()
                    }}
                </main>
            }
            .into_any()
        }
    }
}

fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
