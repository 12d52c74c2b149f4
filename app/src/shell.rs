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
                    view=|| view! { <Protected admin_only=false><Suspense fallback=|| ()>{Suspend::new(async { lazy_catalog_page().await })}</Suspense></Protected> }
                />
                <Route
                    path=path!("/algorithms/:org/:name")
                    view=|| view! { <Protected admin_only=false><Suspense fallback=|| ()>{Suspend::new(async { lazy_algorithm_overview().await })}</Suspense></Protected> }
                />
                <Route
                    path=path!("/algorithms/:org/:name/events")
                    view=|| view! { <Protected admin_only=false><Suspense fallback=|| ()>{Suspend::new(async { lazy_algorithm_events().await })}</Suspense></Protected> }
                />
                <Route
                    path=path!("/admin/queues")
                    view=|| view! { <Protected admin_only=true><Suspense fallback=|| ()>{Suspend::new(async { lazy_broker_connections_page().await })}</Suspense></Protected> }
                />
                <Route
                    path=path!("/admin/queues/new")
                    view=|| view! { <Protected admin_only=true><Suspense fallback=|| ()>{Suspend::new(async { lazy_connect_broker_page().await })}</Suspense></Protected> }
                />
                <Route
                    path=path!("/admin/queues/:id")
                    view=|| view! { <Protected admin_only=true><Suspense fallback=|| ()>{Suspend::new(async { lazy_connection_details_page().await })}</Suspense></Protected> }
                />
                <Route
                    path=path!("/settings/api-keys")
                    view=|| view! { <Protected admin_only=false><Suspense fallback=|| ()>{Suspend::new(async { lazy_api_keys_page().await })}</Suspense></Protected> }
                />
                <Route
                    path=path!("/admin/audit")
                    view=|| view! { <Protected admin_only=true><Suspense fallback=|| ()>{Suspend::new(async { lazy_audit_log_page().await })}</Suspense></Protected> }
                />
                <Route
                    path=path!("/admin/model-hosts")
                    view=|| view! { <Protected admin_only=true><Suspense fallback=|| ()>{Suspend::new(async { lazy_model_hosts_page().await })}</Suspense></Protected> }
                />
                <Route
                    path=path!("/admin/queues/:id/topics/:topic/edit")
                    view=|| view! { <Protected admin_only=true><Suspense fallback=|| ()>{Suspend::new(async { lazy_topic_edit_page().await })}</Suspense></Protected> }
                />
            </Routes>
        </Router>
    }
}

#[lazy]
fn lazy_catalog_page() -> AnyView {
    view! { <CatalogPage /> }.into_any()
}

#[lazy]
fn lazy_algorithm_overview() -> AnyView {
    view! { <AlgorithmPage tab=Tab::Overview /> }.into_any()
}

#[lazy]
fn lazy_algorithm_events() -> AnyView {
    view! { <AlgorithmPage tab=Tab::Events /> }.into_any()
}

#[lazy]
fn lazy_broker_connections_page() -> AnyView {
    view! { <BrokerConnectionsPage /> }.into_any()
}

#[lazy]
fn lazy_connect_broker_page() -> AnyView {
    view! { <ConnectBrokerPage /> }.into_any()
}

#[lazy]
fn lazy_connection_details_page() -> AnyView {
    view! { <ConnectionDetailsPage /> }.into_any()
}

#[lazy]
fn lazy_api_keys_page() -> AnyView {
    view! { <ApiKeysPage /> }.into_any()
}

#[lazy]
fn lazy_audit_log_page() -> AnyView {
    view! { <AuditLogPage /> }.into_any()
}

#[lazy]
fn lazy_model_hosts_page() -> AnyView {
    view! { <ModelHostsPage /> }.into_any()
}

#[lazy]
fn lazy_topic_edit_page() -> AnyView {
    view! { <TopicEditPage /> }.into_any()
}
