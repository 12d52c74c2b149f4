//! Replays of dead letters: each one's letters and how far it got, so that
//! a replay interrupted by a restart goes on where it was, on whichever
//! instance holds it.

use std::collections::HashMap;

use diesel::prelude::*;

use super::schema::{replay_letters, replays};
use super::{AnyConnection, new_id};

/// Where a letter of a replay stands, as its `outcome` column holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LetterOutcome {
    /// Not run yet.
    Pending,
    Succeeded,
    /// Failed again (it is a dead letter again).
    Failed,
}

impl LetterOutcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            LetterOutcome::Pending => "pending",
            LetterOutcome::Succeeded => "succeeded",
            LetterOutcome::Failed => "failed",
        }
    }

    /// The outcome a stored value names; any other value counts as failed.
    pub fn stored(value: &str) -> Self {
        match value {
            "pending" => LetterOutcome::Pending,
            "succeeded" => LetterOutcome::Succeeded,
            _ => LetterOutcome::Failed,
        }
    }
}

/// A replay whose holder sent no heartbeat for this long may be taken over.
pub const STALE_MS: i64 = 60_000;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = replays)]
pub struct ReplayRow {
    pub id: String,
    pub flow_id: String,
    pub version: String,
    pub created_by: String,
    pub created_at_ms: i64,
    pub state: String,
    pub message: Option<String>,
    pub finished_at_ms: Option<i64>,
}

/// How a replay stands: its row, then letters succeeded, failed and left.
pub type Progress = (ReplayRow, i64, i64, i64);

/// Why a replay could not be created.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// This many of the letters are in a replay that has not finished.
    Busy(usize),
}

/// Creates a running replay of `letters` (in this order) through
/// `version`, unless one of them is in a replay of the flow that is still
/// running; its id.
pub fn create(
    conn: &mut AnyConnection,
    flow_id: &str,
    version: &str,
    by: &str,
    letters: &[String],
    now_ms: i64,
) -> QueryResult<Result<String, Refused>> {
    conn.transaction(|c| {
        let running: Vec<String> = replays::table
            .filter(replays::flow_id.eq(flow_id))
            .filter(replays::state.eq("running"))
            .select(replays::id)
            .load(c)?;
        if !running.is_empty() {
            let mut busy = 0;
            for chunk in letters.chunks(500) {
                busy += replay_letters::table
                    .filter(replay_letters::replay_id.eq_any(&running))
                    .filter(replay_letters::outcome.eq(LetterOutcome::Pending.as_str()))
                    .filter(replay_letters::letter.eq_any(chunk))
                    .count()
                    .get_result::<i64>(c)? as usize;
            }
            if busy > 0 {
                return Ok(Err(Refused::Busy(busy)));
            }
        }
        let id = new_id();
        diesel::insert_into(replays::table)
            .values((
                replays::id.eq(&id),
                replays::flow_id.eq(flow_id),
                replays::version.eq(version),
                replays::created_by.eq(by),
                replays::created_at_ms.eq(now_ms),
                replays::state.eq("running"),
                replays::heartbeat_ms.eq(0i64),
            ))
            .execute(c)?;
        // One row at a time: batch inserts are not available on every backend.
        for (seq, letter) in letters.iter().enumerate() {
            diesel::insert_into(replay_letters::table)
                .values((
                    replay_letters::replay_id.eq(&id),
                    replay_letters::seq.eq(seq as i32),
                    replay_letters::flow_id.eq(flow_id),
                    replay_letters::letter.eq(letter),
                    replay_letters::outcome.eq(LetterOutcome::Pending.as_str()),
                ))
                .execute(c)?;
        }
        Ok(Ok(id))
    })
}

/// Takes the running replays that no live instance holds (or that
/// `owner` held before a restart) and returns every running replay
/// `owner` now holds.
pub fn claim(conn: &mut AnyConnection, owner: &str, now_ms: i64) -> QueryResult<Vec<ReplayRow>> {
    conn.transaction(|c| {
        diesel::update(
            replays::table.filter(replays::state.eq("running")).filter(
                replays::owner
                    .is_null()
                    .or(replays::owner.eq(owner))
                    .or(replays::heartbeat_ms.lt(now_ms - STALE_MS)),
            ),
        )
        .set((replays::owner.eq(owner), replays::heartbeat_ms.eq(now_ms)))
        .execute(c)?;
        replays::table
            .filter(replays::state.eq("running"))
            .filter(replays::owner.eq(owner))
            .order(replays::created_at_ms.asc())
            .select(ReplayRow::as_select())
            .load(c)
    })
}

/// The next letters of a replay still to do, in order: (seq, letter).
pub fn pending(
    conn: &mut AnyConnection,
    replay_id: &str,
    limit: i64,
) -> QueryResult<Vec<(i32, String)>> {
    replay_letters::table
        .filter(replay_letters::replay_id.eq(replay_id))
        .filter(replay_letters::outcome.eq(LetterOutcome::Pending.as_str()))
        .order(replay_letters::seq.asc())
        .select((replay_letters::seq, replay_letters::letter))
        .limit(limit)
        .load(conn)
}

/// Records how letters of a replay ended, and
/// that `owner` still holds it. False if another instance took it over
/// (nothing is recorded then).
pub fn record(
    conn: &mut AnyConnection,
    replay_id: &str,
    owner: &str,
    outcomes: &[(i32, LetterOutcome)],
    now_ms: i64,
) -> QueryResult<bool> {
    conn.transaction(|c| {
        let held = diesel::update(
            replays::table
                .find(replay_id)
                .filter(replays::owner.eq(owner))
                .filter(replays::state.eq("running")),
        )
        .set(replays::heartbeat_ms.eq(now_ms))
        .execute(c)?;
        if held == 0 {
            return Ok(false);
        }
        for outcome in [LetterOutcome::Succeeded, LetterOutcome::Failed] {
            let seqs: Vec<i32> = outcomes
                .iter()
                .filter(|(_, o)| *o == outcome)
                .map(|(seq, _)| *seq)
                .collect();
            for chunk in seqs.chunks(500) {
                diesel::update(
                    replay_letters::table
                        .filter(replay_letters::replay_id.eq(replay_id))
                        .filter(replay_letters::seq.eq_any(chunk)),
                )
                .set((
                    replay_letters::outcome.eq(outcome.as_str()),
                    replay_letters::at_ms.eq(now_ms),
                ))
                .execute(c)?;
            }
        }
        Ok(true)
    })
}

/// Ends a replay: `done`, or `stopped` with why.
pub fn finish(
    conn: &mut AnyConnection,
    replay_id: &str,
    state: &str,
    message: Option<&str>,
    now_ms: i64,
) -> QueryResult<()> {
    diesel::update(replays::table.find(replay_id))
        .set((
            replays::state.eq(state),
            replays::message.eq(message),
            replays::finished_at_ms.eq(now_ms),
        ))
        .execute(conn)?;
    Ok(())
}

/// A flow's newest replays (at most `limit`) with their counts.
pub fn progress(conn: &mut AnyConnection, flow_id: &str, limit: i64) -> QueryResult<Vec<Progress>> {
    let rows: Vec<ReplayRow> = replays::table
        .filter(replays::flow_id.eq(flow_id))
        .order(replays::created_at_ms.desc())
        .select(ReplayRow::as_select())
        .limit(limit)
        .load(conn)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let counts: Vec<(String, i64)> = replay_letters::table
            .filter(replay_letters::replay_id.eq(&row.id))
            .group_by(replay_letters::outcome)
            .select((replay_letters::outcome, diesel::dsl::count_star()))
            .load(conn)?;
        let count = |outcome: LetterOutcome| {
            counts
                .iter()
                .find(|(o, _)| o == outcome.as_str())
                .map_or(0, |(_, n)| *n)
        };
        let (succeeded, failed, left) = (
            count(LetterOutcome::Succeeded),
            count(LetterOutcome::Failed),
            count(LetterOutcome::Pending),
        );
        out.push((row, succeeded, failed, left));
    }
    Ok(out)
}

/// How the newest replay of each of these letters of a flow went.
pub fn marks(
    conn: &mut AnyConnection,
    flow_id: &str,
    letters: &[String],
) -> QueryResult<HashMap<String, LetterOutcome>> {
    let mut marks: HashMap<String, (i64, String)> = HashMap::new();
    for chunk in letters.chunks(500) {
        let rows: Vec<(String, String, i64)> = replay_letters::table
            .inner_join(replays::table.on(replays::id.eq(replay_letters::replay_id)))
            .filter(replay_letters::flow_id.eq(flow_id))
            .filter(replay_letters::letter.eq_any(chunk))
            .select((
                replay_letters::letter,
                replay_letters::outcome,
                replays::created_at_ms,
            ))
            .load(conn)?;
        for (letter, outcome, at) in rows {
            let newer = marks.get(&letter).is_none_or(|(seen, _)| at >= *seen);
            if newer {
                marks.insert(letter, (at, outcome));
            }
        }
    }
    Ok(marks
        .into_iter()
        .map(|(l, (_, o))| (l, LetterOutcome::stored(&o)))
        .collect())
}

/// Forgets the replays of flows that are deleted.
pub fn forget(conn: &mut AnyConnection, flow_ids: &[String]) -> QueryResult<()> {
    diesel::delete(replay_letters::table.filter(replay_letters::flow_id.eq_any(flow_ids)))
        .execute(conn)?;
    diesel::delete(replays::table.filter(replays::flow_id.eq_any(flow_ids))).execute(conn)?;
    Ok(())
}
