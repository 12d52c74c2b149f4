//! Failed messages kept per flow: those a flow could not process and could
//! not dead-letter (it has no Dead Letter Queue, or writing there failed).
//! They survive restarts and every instance sharing the database sees them.

use diesel::prelude::*;

use super::schema::{flow_failures, flows};
use super::{AnyConnection, new_id};

/// Failed messages kept per flow at most; past this the oldest go first
/// (and are counted in `flows.failures_dropped`).
pub const KEEP_PER_FLOW: i64 = 1000;
/// Bytes of a failed message's value kept at most.
pub const KEEP_VALUE_BYTES: usize = 64 * 1024;

/// A failed message, as kept and as read back.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = flow_failures)]
pub struct Failure {
    pub at_ms: i64,
    #[diesel(column_name = source_partition)]
    pub partition: i32,
    #[diesel(column_name = source_offset)]
    pub offset: i64,
    pub version: String,
    pub kind: String,
    pub message: String,
    pub attempts: i32,
    #[diesel(column_name = record_key)]
    pub key: Option<Vec<u8>>,
    /// The value, at most [`KEEP_VALUE_BYTES`] of it.
    #[diesel(column_name = record_value)]
    pub value: Option<Vec<u8>>,
    /// The value's whole length.
    pub value_bytes: i64,
    /// The input's headers as a JSON array of `[name, value]` pairs.
    pub headers: String,
}

impl Failure {
    /// Cuts `value` to what is kept; `value_bytes` keeps its length.
    pub fn value_kept(value: Option<&[u8]>) -> (Option<Vec<u8>>, i64) {
        match value {
            None => (None, 0),
            Some(v) => (
                Some(v[..v.len().min(KEEP_VALUE_BYTES)].to_vec()),
                v.len() as i64,
            ),
        }
    }
}

/// Keeps `failures` of a flow, then drops its oldest past [`KEEP_PER_FLOW`].
pub fn keep(conn: &mut AnyConnection, flow_id: &str, failures: &[Failure]) -> QueryResult<()> {
    conn.transaction(|c| {
        for f in failures {
            diesel::insert_into(flow_failures::table)
                .values((
                    flow_failures::id.eq(new_id()),
                    flow_failures::flow_id.eq(flow_id),
                    flow_failures::at_ms.eq(f.at_ms),
                    flow_failures::source_partition.eq(f.partition),
                    flow_failures::source_offset.eq(f.offset),
                    flow_failures::version.eq(&f.version),
                    flow_failures::kind.eq(&f.kind),
                    flow_failures::message.eq(&f.message),
                    flow_failures::attempts.eq(f.attempts),
                    flow_failures::record_key.eq(f.key.as_deref()),
                    flow_failures::record_value.eq(f.value.as_deref()),
                    flow_failures::value_bytes.eq(f.value_bytes),
                    flow_failures::headers.eq(&f.headers),
                ))
                .execute(c)?;
        }
        let count = count(c, flow_id)?;
        let excess = count - KEEP_PER_FLOW;
        if excess > 0 {
            let oldest: Vec<String> = flow_failures::table
                .filter(flow_failures::flow_id.eq(flow_id))
                .order((
                    flow_failures::at_ms.asc(),
                    flow_failures::source_partition.asc(),
                    flow_failures::source_offset.asc(),
                ))
                .select(flow_failures::id)
                .limit(excess)
                .load(c)?;
            diesel::delete(flow_failures::table.filter(flow_failures::id.eq_any(&oldest)))
                .execute(c)?;
            diesel::update(flows::table.find(flow_id))
                .set(flows::failures_dropped.eq(flows::failures_dropped + oldest.len() as i64))
                .execute(c)?;
        }
        Ok(())
    })
}

/// Kept failures with their ids.
pub type WithIds = Vec<(String, Failure)>;

/// A flow's newest kept failures (at most `limit`) with their ids, how
/// many it keeps and how many were dropped.
pub fn latest(
    conn: &mut AnyConnection,
    flow_id: &str,
    limit: i64,
) -> QueryResult<(WithIds, i64, i64)> {
    let rows = flow_failures::table
        .filter(flow_failures::flow_id.eq(flow_id))
        .order((
            flow_failures::at_ms.desc(),
            flow_failures::source_partition.desc(),
            flow_failures::source_offset.desc(),
        ))
        .select((flow_failures::id, Failure::as_select()))
        .limit(limit)
        .load(conn)?;
    let kept = count(conn, flow_id)?;
    let dropped: i64 = flows::table
        .find(flow_id)
        .select(flows::failures_dropped)
        .first(conn)
        .optional()?
        .unwrap_or(0);
    Ok((rows, kept, dropped))
}

/// What a filter looks at in a kept failure: (id, kind, version, message),
/// newest first. At most [`KEEP_PER_FLOW`] of them.
/// How many failures the flow keeps.
pub fn count(conn: &mut AnyConnection, flow_id: &str) -> QueryResult<i64> {
    flow_failures::table
        .filter(flow_failures::flow_id.eq(flow_id))
        .count()
        .get_result(conn)
}

pub fn summaries(
    conn: &mut AnyConnection,
    flow_id: &str,
) -> QueryResult<Vec<(String, String, String, String)>> {
    flow_failures::table
        .filter(flow_failures::flow_id.eq(flow_id))
        .order((
            flow_failures::at_ms.desc(),
            flow_failures::source_partition.desc(),
            flow_failures::source_offset.desc(),
            flow_failures::id.desc(),
        ))
        .select((
            flow_failures::id,
            flow_failures::kind,
            flow_failures::version,
            flow_failures::message,
        ))
        .load(conn)
}

/// The kept failures of a flow with these ids (those that still exist).
pub fn find(
    conn: &mut AnyConnection,
    flow_id: &str,
    ids: &[String],
) -> QueryResult<Vec<(String, Failure)>> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        found.extend(
            flow_failures::table
                .filter(flow_failures::flow_id.eq(flow_id))
                .filter(flow_failures::id.eq_any(chunk))
                .select((flow_failures::id, Failure::as_select()))
                .load::<(String, Failure)>(conn)?,
        );
    }
    Ok(found)
}

/// Forgets the failures of flows that are deleted.
pub fn forget(conn: &mut AnyConnection, flow_ids: &[String]) -> QueryResult<usize> {
    diesel::delete(flow_failures::table.filter(flow_failures::flow_id.eq_any(flow_ids)))
        .execute(conn)
}
