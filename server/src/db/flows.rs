//! Flows, the topics an algorithm may use, and who may see an algorithm.

use diesel::prelude::*;

use app::domain::{
    Batching, Direction, FlowOrdering, MAX_BATCH_SIZE, MAX_BATCH_WAIT_MS, MAX_CONCURRENCY,
};

use super::schema::{
    algorithm_versions, algorithms, broker_connections, flow_give_back, flows, memberships,
    organizations, paused_flows, publish_follows, topic_grants, users,
};
use super::{AnyConnection, new_id, now_ms};

/// A topic an algorithm may use, on a broker connection.
#[derive(Debug, Clone, Queryable)]
pub struct GrantRow {
    pub connection_id: String,
    pub connection_name: String,
    pub topic: String,
    pub subscribe: bool,
    pub publish: bool,
    /// The connection's [`app::domain::BrokerKind`] name.
    pub connection_kind: String,
}

pub fn is_member(conn: &mut AnyConnection, username: &str, org: &str) -> QueryResult<bool> {
    let n: i64 = memberships::table
        .inner_join(users::table)
        .inner_join(organizations::table)
        .filter(users::username.eq(username))
        .filter(organizations::name.eq(org))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// The topics an algorithm may use, by connection name and topic.
pub fn grants_of(conn: &mut AnyConnection, algorithm_id: &str) -> QueryResult<Vec<GrantRow>> {
    topic_grants::table
        .inner_join(broker_connections::table)
        .filter(topic_grants::algorithm_id.eq(algorithm_id))
        .select((
            broker_connections::id,
            broker_connections::name,
            topic_grants::topic,
            topic_grants::can_subscribe,
            topic_grants::can_publish,
            broker_connections::kind,
        ))
        .order((broker_connections::name, topic_grants::topic))
        .load(conn)
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = flows)]
pub struct FlowRow {
    pub id: String,
    pub algorithm_id: String,
    pub connection_id: String,
    pub topic: String,
    #[diesel(deserialize_as = String)]
    pub direction: Direction,
    pub version: String,
    pub dlq_topic: Option<String>,
    pub enabled: bool,
    pub consumer_group: Option<String>,
    pub ordering: String,
    pub concurrency: i32,
    pub batch_size: i32,
    pub batch_wait_ms: i32,
}

impl FlowRow {
    pub fn batching(&self) -> Batching {
        batching(self.batch_size, self.batch_wait_ms)
    }
}

/// Stored batch bounds, kept within the bounds a flow may have.
fn batching(size: i32, wait_ms: i32) -> Batching {
    Batching {
        size: size.clamp(1, MAX_BATCH_SIZE as i32) as u32,
        wait_ms: wait_ms.clamp(0, MAX_BATCH_WAIT_MS as i32) as u32,
    }
}

pub fn flows_of(conn: &mut AnyConnection, algorithm_id: &str) -> QueryResult<Vec<FlowRow>> {
    flows::table
        .filter(flows::algorithm_id.eq(algorithm_id))
        .select(FlowRow::as_select())
        .load(conn)
}

pub fn find_flow(conn: &mut AnyConnection, id: &str) -> QueryResult<Option<FlowRow>> {
    flows::table
        .find(id)
        .select(FlowRow::as_select())
        .first(conn)
        .optional()
}

/// How a flow runs its messages, as saved with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSettings {
    pub ordering: FlowOrdering,
    /// Runs in flight per partition.
    pub concurrency: u32,
    pub batching: Batching,
    /// Of a flow on a queue: a transient failure gives the message back.
    pub give_back: bool,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            ordering: FlowOrdering::Partition,
            concurrency: 1,
            batching: Batching::default(),
            give_back: false,
        }
    }
}

/// Creates or updates the flow of (algorithm, connection, topic, direction)
/// and enables it; returns its id.
pub fn upsert_flow(
    conn: &mut AnyConnection,
    algorithm_id: &str,
    connection_id: &str,
    topic: &str,
    direction: Direction,
    version: &str,
    dlq_topic: Option<&str>,
    settings: RunSettings,
) -> QueryResult<String> {
    let (ordering, concurrency, batch) = (
        settings.ordering.as_str(),
        settings.concurrency.min(i32::MAX as u32) as i32,
        settings.batching,
    );
    conn.transaction(|c| {
        let existing: Option<String> = flows::table
            .filter(flows::algorithm_id.eq(algorithm_id))
            .filter(flows::connection_id.eq(connection_id))
            .filter(flows::topic.eq(topic))
            .filter(flows::direction.eq(direction.as_str()))
            .select(flows::id)
            .first(c)
            .optional()?;
        let now = now_ms();
        match existing {
            Some(id) => {
                diesel::update(flows::table.find(&id))
                    .set((
                        flows::version.eq(version),
                        flows::dlq_topic.eq(dlq_topic),
                        flows::ordering.eq(ordering),
                        flows::concurrency.eq(concurrency),
                        flows::batch_size.eq(batch.size as i32),
                        flows::batch_wait_ms.eq(batch.wait_ms as i32),
                        flows::enabled.eq(true),
                        flows::updated_at.eq(now),
                    ))
                    .execute(c)?;
                set_give_back(c, &id, settings.give_back)?;
                Ok(id)
            }
            None => {
                let id = new_id();
                diesel::insert_into(flows::table)
                    .values((
                        flows::id.eq(&id),
                        flows::algorithm_id.eq(algorithm_id),
                        flows::connection_id.eq(connection_id),
                        flows::topic.eq(topic),
                        flows::direction.eq(direction.as_str()),
                        flows::version.eq(version),
                        flows::dlq_topic.eq(dlq_topic),
                        flows::ordering.eq(ordering),
                        flows::concurrency.eq(concurrency),
                        flows::batch_size.eq(batch.size as i32),
                        flows::batch_wait_ms.eq(batch.wait_ms as i32),
                        flows::enabled.eq(true),
                        flows::created_at.eq(now),
                        flows::updated_at.eq(now),
                        flows::consumer_group.eq(consumer_group(
                            algorithm_id,
                            connection_id,
                            topic,
                        )),
                    ))
                    .execute(c)?;
                set_give_back(c, &id, settings.give_back)?;
                Ok(id)
            }
        }
    })
}

/// Makes a flow give messages back on a transient failure, or not.
fn set_give_back(conn: &mut AnyConnection, id: &str, give_back: bool) -> QueryResult<()> {
    diesel::delete(flow_give_back::table.find(id)).execute(conn)?;
    if give_back {
        diesel::insert_into(flow_give_back::table)
            .values(flow_give_back::flow_id.eq(id))
            .execute(conn)?;
    }
    Ok(())
}

/// The flows of an algorithm that give messages back on a transient
/// failure.
pub fn giving_back(conn: &mut AnyConnection, algorithm_id: &str) -> QueryResult<Vec<String>> {
    flow_give_back::table
        .inner_join(flows::table.on(flows::id.eq(flow_give_back::flow_id)))
        .filter(flows::algorithm_id.eq(algorithm_id))
        .select(flow_give_back::flow_id)
        .load(conn)
}

/// The consumer group of a new flow: built from ids, so that no two
/// algorithms share one whatever their names, and the same across version
/// changes and re-enabling, so that committed offsets carry over.
/// The version of a flow and whether it is enabled, if the flow exists.
pub fn current(
    conn: &mut AnyConnection,
    algorithm_id: &str,
    connection_id: &str,
    topic: &str,
    direction: Direction,
) -> QueryResult<Option<(String, bool)>> {
    flows::table
        .filter(flows::algorithm_id.eq(algorithm_id))
        .filter(flows::connection_id.eq(connection_id))
        .filter(flows::topic.eq(topic))
        .filter(flows::direction.eq(direction.as_str()))
        .select((flows::version, flows::enabled))
        .first(conn)
        .optional()
}

/// Whether the algorithm may subscribe to (or, with `publish`, publish to)
/// the topic of the connection.
pub fn is_granted(
    conn: &mut AnyConnection,
    algorithm_id: &str,
    connection_id: &str,
    topic: &str,
    publish: bool,
) -> QueryResult<bool> {
    let grant: Option<(bool, bool)> = topic_grants::table
        .filter(topic_grants::connection_id.eq(connection_id))
        .filter(topic_grants::topic.eq(topic))
        .filter(topic_grants::algorithm_id.eq(algorithm_id))
        .select((topic_grants::can_subscribe, topic_grants::can_publish))
        .first(conn)
        .optional()?;
    Ok(grant.is_some_and(|(subscribe, can_publish)| if publish { can_publish } else { subscribe }))
}

pub fn consumer_group(algorithm_id: &str, connection_id: &str, topic: &str) -> String {
    format!("eventflows.{algorithm_id}.{connection_id}.{topic}")
}

/// Disables a flow; returns whether an enabled one was found.
pub fn disable_flow(
    conn: &mut AnyConnection,
    algorithm_id: &str,
    connection_id: &str,
    topic: &str,
    direction: Direction,
) -> QueryResult<bool> {
    let n = diesel::update(
        flows::table
            .filter(flows::algorithm_id.eq(algorithm_id))
            .filter(flows::connection_id.eq(connection_id))
            .filter(flows::topic.eq(topic))
            .filter(flows::direction.eq(direction.as_str()))
            .filter(flows::enabled.eq(true)),
    )
    .set((flows::enabled.eq(false), flows::updated_at.eq(now_ms())))
    .execute(conn)?;
    // A disabled flow is not paused: enabled again, it runs.
    let ids = flows::table
        .filter(flows::algorithm_id.eq(algorithm_id))
        .filter(flows::connection_id.eq(connection_id))
        .filter(flows::topic.eq(topic))
        .filter(flows::direction.eq(direction.as_str()))
        .select(flows::id);
    diesel::delete(paused_flows::table.filter(paused_flows::flow_id.eq_any(ids))).execute(conn)?;
    Ok(n > 0)
}

/// Forgets what is kept of these (deleted) flows beside their rows:
/// whether they were paused, followed the listener, or gave messages back.
pub fn forget_marks(conn: &mut AnyConnection, flow_ids: &[String]) -> QueryResult<()> {
    diesel::delete(paused_flows::table.filter(paused_flows::flow_id.eq_any(flow_ids)))
        .execute(conn)?;
    diesel::delete(publish_follows::table.filter(publish_follows::flow_id.eq_any(flow_ids)))
        .execute(conn)?;
    diesel::delete(flow_give_back::table.filter(flow_give_back::flow_id.eq_any(flow_ids)))
        .execute(conn)?;
    Ok(())
}

/// Flows that dead-letter into `topic` while their algorithm may no longer
/// publish there lose their Dead Letter Queue (their failed messages are
/// then kept in the database). Returns how many.
pub fn drop_ungranted_dead_letter_queues(
    conn: &mut AnyConnection,
    connection_id: &str,
    topic: &str,
) -> QueryResult<usize> {
    let publishers = topic_grants::table
        .filter(topic_grants::connection_id.eq(connection_id))
        .filter(topic_grants::topic.eq(topic))
        .filter(topic_grants::can_publish.eq(true))
        .select(topic_grants::algorithm_id);
    diesel::update(
        flows::table
            .filter(flows::connection_id.eq(connection_id))
            .filter(flows::dlq_topic.eq(topic))
            .filter(flows::algorithm_id.ne_all(publishers)),
    )
    .set((
        flows::dlq_topic.eq(None::<String>),
        flows::updated_at.eq(now_ms()),
    ))
    .execute(conn)
}

/// Deletes the flows on a topic whose direction is no longer granted.
pub fn delete_ungranted_flows(
    conn: &mut AnyConnection,
    connection_id: &str,
    topic: &str,
) -> QueryResult<usize> {
    let on_topic: Vec<FlowRow> = flows::table
        .filter(flows::connection_id.eq(connection_id))
        .filter(flows::topic.eq(topic))
        .select(FlowRow::as_select())
        .load(conn)?;
    let mut removed = 0;
    for flow in on_topic {
        let grant: Option<(bool, bool)> = topic_grants::table
            .filter(topic_grants::connection_id.eq(connection_id))
            .filter(topic_grants::topic.eq(topic))
            .filter(topic_grants::algorithm_id.eq(&flow.algorithm_id))
            .select((topic_grants::can_subscribe, topic_grants::can_publish))
            .first(conn)
            .optional()?;
        let allowed = match (grant, flow.direction) {
            (Some((subscribe, _)), Direction::Subscribe) => subscribe,
            (Some((_, publish)), Direction::Publish) => publish,
            (None, _) => false,
        };
        if !allowed {
            super::failures::forget(conn, std::slice::from_ref(&flow.id))?;
            super::replays::forget(conn, std::slice::from_ref(&flow.id))?;
            forget_marks(conn, std::slice::from_ref(&flow.id))?;
            removed += diesel::delete(flows::table.find(&flow.id)).execute(conn)?;
        }
    }
    Ok(removed)
}

/// An enabled flow with what the runner needs to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveFlow {
    pub id: String,
    pub algorithm_id: String,
    pub algorithm: String,
    pub connection_id: String,
    pub topic: String,
    pub direction: Direction,
    pub version: String,
    pub runtime: String,
    pub dlq_topic: Option<String>,
    /// The Kafka consumer group of a subscribe flow.
    pub consumer_group: String,
    pub ordering: FlowOrdering,
    /// Runs in flight per partition.
    pub concurrency: u32,
    pub batching: Batching,
    /// A subscribe flow on a queue that gives a message back to the queue
    /// when its model fails transiently.
    pub give_back: bool,
    /// A publish flow that takes the outputs of whichever version the
    /// algorithm's subscribe flows run.
    pub follows_subscribe_flow: bool,
}

/// Makes a publish flow follow the listener's version, or keep its own.
pub fn set_follows(conn: &mut AnyConnection, id: &str, follows: bool) -> QueryResult<()> {
    diesel::delete(publish_follows::table.find(id)).execute(conn)?;
    if follows {
        diesel::insert_into(publish_follows::table)
            .values(publish_follows::flow_id.eq(id))
            .execute(conn)?;
    }
    Ok(())
}

/// The publish flows of an algorithm that follow the listener's version.
pub fn following(conn: &mut AnyConnection, algorithm_id: &str) -> QueryResult<Vec<String>> {
    publish_follows::table
        .inner_join(flows::table.on(flows::id.eq(publish_follows::flow_id)))
        .filter(flows::algorithm_id.eq(algorithm_id))
        .select(publish_follows::flow_id)
        .load(conn)
}

/// Pauses or resumes an enabled flow; returns whether one was found.
pub fn set_paused(conn: &mut AnyConnection, id: &str, paused: bool) -> QueryResult<bool> {
    conn.transaction(|c| {
        let enabled = flows::table
            .find(id)
            .filter(flows::enabled.eq(true))
            .count()
            .get_result::<i64>(c)?
            > 0;
        if !enabled {
            return Ok(false);
        }
        diesel::delete(paused_flows::table.find(id)).execute(c)?;
        if paused {
            diesel::insert_into(paused_flows::table)
                .values((
                    paused_flows::flow_id.eq(id),
                    paused_flows::at_ms.eq(now_ms()),
                ))
                .execute(c)?;
        }
        Ok(true)
    })
}

/// Which of these flows are paused.
pub fn paused_among(conn: &mut AnyConnection, ids: &[String]) -> QueryResult<Vec<String>> {
    paused_flows::table
        .filter(paused_flows::flow_id.eq_any(ids))
        .select(paused_flows::flow_id)
        .load(conn)
}

/// Whether a flow is paused.
pub fn is_paused(conn: &mut AnyConnection, id: &str) -> QueryResult<bool> {
    Ok(paused_flows::table
        .find(id)
        .count()
        .get_result::<i64>(conn)?
        > 0)
}

/// Every enabled flow that is not paused and whose version exists.
pub fn active_flows(conn: &mut AnyConnection) -> QueryResult<Vec<ActiveFlow>> {
    let rows: Vec<(FlowRow, String, String, String)> = flows::table
        .inner_join(algorithms::table.inner_join(organizations::table))
        .inner_join(
            algorithm_versions::table.on(algorithm_versions::algorithm_id
                .eq(flows::algorithm_id)
                .and(algorithm_versions::version.eq(flows::version))),
        )
        .filter(flows::enabled.eq(true))
        .filter(flows::id.ne_all(paused_flows::table.select(paused_flows::flow_id)))
        .select((
            FlowRow::as_select(),
            organizations::name,
            algorithms::name,
            algorithm_versions::runtime,
        ))
        .load(conn)?;
    let follows: std::collections::HashSet<String> = publish_follows::table
        .select(publish_follows::flow_id)
        .load::<String>(conn)?
        .into_iter()
        .collect();
    let giving_back: std::collections::HashSet<String> = flow_give_back::table
        .select(flow_give_back::flow_id)
        .load::<String>(conn)?
        .into_iter()
        .collect();
    Ok(rows
        .into_iter()
        .map(|(f, org, name, runtime)| ActiveFlow {
            follows_subscribe_flow: follows.contains(&f.id),
            give_back: giving_back.contains(&f.id),
            consumer_group: f
                .consumer_group
                .unwrap_or_else(|| consumer_group(&f.algorithm_id, &f.connection_id, &f.topic)),
            id: f.id,
            algorithm_id: f.algorithm_id,
            algorithm: format!("{org}/{name}"),
            connection_id: f.connection_id,
            topic: f.topic,
            direction: f.direction,
            version: f.version,
            runtime,
            dlq_topic: f.dlq_topic,
            ordering: FlowOrdering::parse(&f.ordering).unwrap_or_default(),
            concurrency: f.concurrency.clamp(1, MAX_CONCURRENCY as i32) as u32,
            batching: batching(f.batch_size, f.batch_wait_ms),
        })
        .collect())
}
