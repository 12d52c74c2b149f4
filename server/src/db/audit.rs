//! The audit log: who did what and when (Admin → Audit log).

use diesel::prelude::*;

use super::schema::audit_events;
use super::{AnyConnection, new_id, now_ms};

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_events)]
pub struct AuditRow {
    pub id: String,
    pub at_ms: i64,
    pub actor: String,
    pub kind: String,
    pub target: String,
    pub detail: String,
}

/// Records one event, now.
pub fn record(
    conn: &mut AnyConnection,
    actor: &str,
    kind: &str,
    target: &str,
    detail: &str,
) -> QueryResult<()> {
    diesel::insert_into(audit_events::table)
        .values(AuditRow {
            id: new_id(),
            at_ms: now_ms(),
            actor: actor.to_owned(),
            kind: kind.to_owned(),
            target: target.to_owned(),
            detail: detail.to_owned(),
        })
        .execute(conn)
        .map(|_| ())
}

/// Which events a page shows.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub actor: Option<String>,
    pub kind: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Only events older than this one (time, id): the next page.
    pub before: Option<(i64, String)>,
}

/// Up to `limit` events, newest first.
pub fn page(conn: &mut AnyConnection, filter: &Filter, limit: i64) -> QueryResult<Vec<AuditRow>> {
    let mut query = audit_events::table
        .select(AuditRow::as_select())
        .into_boxed();
    if let Some(actor) = &filter.actor {
        query = query.filter(audit_events::actor.eq(actor.clone()));
    }
    if let Some(kind) = &filter.kind {
        query = query.filter(audit_events::kind.eq(kind.clone()));
    }
    if let Some(from) = filter.from_ms {
        query = query.filter(audit_events::at_ms.ge(from));
    }
    if let Some(to) = filter.to_ms {
        query = query.filter(audit_events::at_ms.lt(to));
    }
    if let Some((at, id)) = &filter.before {
        query = query.filter(
            audit_events::at_ms.lt(*at).or(audit_events::at_ms
                .eq(*at)
                .and(audit_events::id.lt(id.clone()))),
        );
    }
    query
        .order((audit_events::at_ms.desc(), audit_events::id.desc()))
        .limit(limit)
        .load(conn)
}
