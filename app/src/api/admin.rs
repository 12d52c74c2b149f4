//! Admin → Model hosts (the hosts `http:` runtimes may call) and Admin →
//! Audit log. Admins only.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;

use crate::domain::{AppError, AuditPage, AuditQuery, ModelHost};

#[server(endpoint = "list_model_hosts", input = Json)]
pub async fn list_model_hosts() -> Result<Vec<ModelHost>, AppError> {
    super::for_caller(super::Role::Admin, |_, backend| async move {
        backend.model_hosts().await
    })
    .await
}

/// **Allow**: a host, `host:port`, `*.domain` or a URL prefix.
#[server(endpoint = "allow_model_host", input = Json)]
pub async fn allow_model_host(entry: String) -> Result<ModelHost, AppError> {
    super::for_caller(super::Role::Admin, |admin, backend| async move {
        backend.allow_model_host(&admin.username, &entry).await
    })
    .await
}

#[server(endpoint = "remove_model_host", input = Json)]
pub async fn remove_model_host(entry: String) -> Result<(), AppError> {
    super::for_caller(super::Role::Admin, |admin, backend| async move {
        backend.remove_model_host(&admin.username, &entry).await
    })
    .await
}

/// A page of the audit log, newest first.
#[server(endpoint = "list_audit_events", input = Json)]
pub async fn list_audit_events(query: AuditQuery) -> Result<AuditPage, AppError> {
    super::for_caller(super::Role::Admin, |_, backend| async move {
        backend.audit_log(query).await
    })
    .await
}
