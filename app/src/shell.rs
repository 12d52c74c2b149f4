//! The app root: routes, and the session every page reads.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::{
    components::{Redirect, Route, Router, Routes},
    path,
};

use crate::api::fetch_current_user;
use crate::components::Protected;
use crate::domain::CurrentUser;
use crate::pages::{
    AlgorithmPage, ApiKeysPage, AuditLogPage, BrokerConnectionsPage, CatalogPage,
    ConnectBrokerPage, ConnectionDetailsPage, LoginPage, ModelHostsPage, NotFoundPage, Tab,
    TopicEditPage,
};

/// Who is logged in, shared through context.
#[derive(Clone, Copy)]
pub struct Session {
    /// `None` until the server has answered who is logged in.
    pub user: RwSignal<Option<Option<CurrentUser>>>,
    /// Set when the server could not be asked.
    pub error: RwSignal<Option<String>>,
}

impl Session {
    pub fn current() -> Self {
        expect_context::<Session>()
    }

    pub fn set_user(&self, user: Option<CurrentUser>) {
        self.user.set(Some(user));
    }
}

#[component]
pub fn App() -> impl IntoView {
    let session = Session {
        user: RwSignal::new(None),
        error: RwSignal::new(None),
    };
    provide_context(session);
    spawn_local(async move {
        match fetch_current_user().await {
            Ok(user) => session.set_user(user),
            Err(error) => session.error.set(Some(error.to_string())),
        }
    });

    view! {
        <Router>
            <Routes fallback=|| view! { <NotFoundPage /> }>
                <Route path=path!("/") view=|| view! { <Redirect path="/catalog" /> } />
                <Route path=path!("/login") view=LoginPage />
                <Route
                    path=path!("/catalog")
                    view=|| view! { <LazyPage admin_only=false load=lazy_catalog_page /> }
                />
                <Route
                    path=path!("/algorithms/:org/:name")
                    view=|| view! { <LazyPage admin_only=false load=lazy_algorithm_overview /> }
                />
                <Route
                    path=path!("/algorithms/:org/:name/events")
                    view=|| view! { <LazyPage admin_only=false load=lazy_algorithm_events /> }
                />
                <Route
                    path=path!("/admin/queues")
                    view=|| view! { <LazyPage admin_only=true load=lazy_broker_connections_page /> }
                />
                <Route
                    path=path!("/admin/queues/new")
                    view=|| view! { <LazyPage admin_only=true load=lazy_connect_broker_page /> }
                />
                <Route
                    path=path!("/admin/queues/:id")
                    view=|| view! { <LazyPage admin_only=true load=lazy_connection_details_page /> }
                />
                <Route
                    path=path!("/settings/api-keys")
                    view=|| view! { <LazyPage admin_only=false load=lazy_api_keys_page /> }
                />
                <Route
                    path=path!("/admin/audit")
                    view=|| view! { <LazyPage admin_only=true load=lazy_audit_log_page /> }
                />
                <Route
                    path=path!("/admin/model-hosts")
                    view=|| view! { <LazyPage admin_only=true load=lazy_model_hosts_page /> }
                />
                <Route
                    path=path!("/admin/queues/:id/topics/:topic/edit")
                    view=|| view! { <LazyPage admin_only=true load=lazy_topic_edit_page /> }
                />
            </Routes>
        </Router>
    }
}

/// A page that must be logged in to see, whose code is loaded when it is
/// opened: `load` is one of the `#[lazy]` functions below.
#[component]
fn LazyPage<F, Fut>(admin_only: bool, load: F) -> impl IntoView
where
    F: Fn() -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = AnyView> + Send + 'static,
{
    view! {
        <Protected admin_only=admin_only>
            <Suspense fallback=|| ()>{Suspend::new(load())}</Suspense>
        </Protected>
    }
}

/// Each page's view as a function of its own that Leptos splits into a
/// wasm module loaded on first use (`#[lazy]`; see scripts/build-wasm.sh).
macro_rules! lazy_pages {
    ($($name:ident => $page:expr;)*) => {
        $(
            #[lazy]
            fn $name() -> AnyView {
                $page.into_any()
            }
        )*
    };
}

lazy_pages! {
    lazy_catalog_page => view! { <CatalogPage /> };
    lazy_algorithm_overview => view! { <AlgorithmPage tab=Tab::Overview /> };
    lazy_algorithm_events => view! { <AlgorithmPage tab=Tab::Events /> };
    lazy_broker_connections_page => view! { <BrokerConnectionsPage /> };
    lazy_connect_broker_page => view! { <ConnectBrokerPage /> };
    lazy_connection_details_page => view! { <ConnectionDetailsPage /> };
    lazy_api_keys_page => view! { <ApiKeysPage /> };
    lazy_audit_log_page => view! { <AuditLogPage /> };
    lazy_model_hosts_page => view! { <ModelHostsPage /> };
    lazy_topic_edit_page => view! { <TopicEditPage /> };
}
