//! The audit log: each change records who made it; admins read it.

use app::api::AuditLog;
use app::domain::{AUDIT_KINDS, AppError, AuditEvent, AuditPage, AuditQuery};
use async_trait::async_trait;

use super::Services;
use crate::db::audit::{self, Filter};
use crate::runner::clock;

/// Events on one page of the audit log.
pub const AUDIT_PAGE: i64 = 50;

impl Services {
    /// Records an event. A failure to record is logged, and does not undo
    /// the change it describes.
    pub async fn audit(&self, actor: &str, kind: &'static str, target: &str, detail: &str) {
        let (actor, target, detail) = (actor.to_owned(), target.to_owned(), detail.to_owned());
        let recorded = self
            .db
            .interact(move |c| audit::record(c, &actor, kind, &target, &detail))
            .await;
        if let Err(error) = recorded {
            tracing::warn!(%error, kind, "could not record an audit event");
        }
    }
}

#[async_trait]
impl AuditLog for Services {
    async fn audit_log(&self, query: AuditQuery) -> Result<AuditPage, AppError> {
        let text =
            |value: Option<String>| value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let kind = text(query.kind);
        if let Some(kind) = &kind
            && !AUDIT_KINDS.contains(&kind.as_str())
        {
            return Err(AppError::validation(
                "kind",
                format!("'{kind}' is not a kind of event the audit log records."),
            ));
        }
        if let (Some(from), Some(to)) = (query.from_ms, query.to_ms)
            && from >= to
        {
            return Err(AppError::validation("to", "The end is before the start."));
        }
        let before = match text(query.before) {
            None => None,
            Some(cursor) => Some(
                cursor
                    .split_once(':')
                    .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_owned())))
                    .ok_or_else(|| AppError::validation("before", "That page does not exist."))?,
            ),
        };
        let filter = Filter {
            actor: text(query.actor),
            kind,
            from_ms: query.from_ms,
            to_ms: query.to_ms,
            before,
        };
        let mut rows = self
            .db
            .interact(move |c| audit::page(c, &filter, AUDIT_PAGE + 1))
            .await?;
        let more = rows.len() as i64 > AUDIT_PAGE;
        rows.truncate(AUDIT_PAGE as usize);
        let older = more
            .then(|| rows.last().map(|r| format!("{}:{}", r.at_ms, r.id)))
            .flatten();
        Ok(AuditPage {
            events: rows
                .into_iter()
                .map(|r| AuditEvent {
                    at: clock(r.at_ms),
                    actor: r.actor,
                    kind: r.kind,
                    target: r.target,
                    detail: r.detail,
                })
                .collect(),
            older,
        })
    }
}
