//! Broker connections, topic grants, and the flows that use them.

use diesel::prelude::*;

use super::schema::{algorithms, broker_connections, flows, organizations, topic_grants};
use super::{AnyConnection, now_ms};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = broker_connections)]
pub struct ConnectionRow {
    pub id: String,
    pub name: String,
    pub bootstrap_servers: String,
    pub security_protocol: String,
    pub sasl_mechanism: Option<String>,
    pub username: Option<String>,
    pub password_encrypted: Option<String>,
    pub ca_pem_encrypted: Option<String>,
    pub created_at: i64,
    /// A [`app::domain::BrokerKind`] name.
    pub kind: String,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

impl ConnectionRow {
    pub fn kind(&self) -> app::domain::BrokerKind {
        // The column's CHECK constraint allows only the kinds there are.
        app::domain::BrokerKind::parse(&self.kind).unwrap_or(app::domain::BrokerKind::Kafka)
    }
}

pub fn insert_connection(conn: &mut AnyConnection, row: &ConnectionRow) -> QueryResult<()> {
    diesel::insert_into(broker_connections::table)
        .values(row.clone())
        .execute(conn)
        .map(|_| ())
}

pub fn list_connections(conn: &mut AnyConnection) -> QueryResult<Vec<ConnectionRow>> {
    broker_connections::table
        .select(ConnectionRow::as_select())
        .order(broker_connections::name.asc())
        .load(conn)
}

pub fn find_connection(conn: &mut AnyConnection, id: &str) -> QueryResult<Option<ConnectionRow>> {
    broker_connections::table
        .find(id)
        .select(ConnectionRow::as_select())
        .first(conn)
        .optional()
}

pub fn connection_name_taken(conn: &mut AnyConnection, name: &str) -> QueryResult<bool> {
    let n: i64 = broker_connections::table
        .filter(broker_connections::name.eq(name))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Deletes the connection with its grants and flows; returns whether it existed.
pub fn delete_connection(conn: &mut AnyConnection, id: &str) -> QueryResult<bool> {
    conn.transaction(|c| {
        let gone: Vec<String> = flows::table
            .filter(flows::connection_id.eq(id))
            .select(flows::id)
            .load(c)?;
        super::failures::forget(c, &gone)?;
        super::replays::forget(c, &gone)?;
        super::flows::forget_marks(c, &gone)?;
        diesel::delete(flows::table.filter(flows::connection_id.eq(id))).execute(c)?;
        diesel::delete(topic_grants::table.filter(topic_grants::connection_id.eq(id)))
            .execute(c)?;
        let n = diesel::delete(broker_connections::table.find(id)).execute(c)?;
        Ok(n > 0)
    })
}

/// Flows per connection (enabled or not), for the Queue manager list.
pub fn flow_counts(conn: &mut AnyConnection) -> QueryResult<Vec<(String, i64)>> {
    flows::table
        .group_by(flows::connection_id)
        .select((flows::connection_id, diesel::dsl::count_star()))
        .load(conn)
}

/// Enabled flows of a connection, as (org/name, topic, direction).
pub fn enabled_flows(
    conn: &mut AnyConnection,
    connection_id: &str,
) -> QueryResult<Vec<(String, String, String, String)>> {
    flows::table
        .inner_join(algorithms::table.inner_join(organizations::table))
        .filter(flows::connection_id.eq(connection_id))
        .filter(flows::enabled.eq(true))
        .select((
            organizations::name,
            algorithms::name,
            flows::topic,
            flows::direction,
        ))
        .order((organizations::name, algorithms::name, flows::topic))
        .load(conn)
}

/// Grants on a topic, as (org, name, subscribe, publish), sorted by algorithm.
pub fn topic_grants(
    conn: &mut AnyConnection,
    connection_id: &str,
    topic: &str,
) -> QueryResult<Vec<(String, String, bool, bool)>> {
    topic_grants::table
        .inner_join(algorithms::table.inner_join(organizations::table))
        .filter(topic_grants::connection_id.eq(connection_id))
        .filter(topic_grants::topic.eq(topic))
        .select((
            organizations::name,
            algorithms::name,
            topic_grants::can_subscribe,
            topic_grants::can_publish,
        ))
        .order((organizations::name, algorithms::name))
        .load(conn)
}

/// Replaces every grant on a topic with `grants` (algorithm id, subscribe, publish).
pub fn replace_topic_grants(
    conn: &mut AnyConnection,
    connection_id: &str,
    topic: &str,
    grants: &[(String, bool, bool)],
) -> QueryResult<()> {
    diesel::delete(
        topic_grants::table
            .filter(topic_grants::connection_id.eq(connection_id))
            .filter(topic_grants::topic.eq(topic)),
    )
    .execute(conn)?;
    let now = now_ms();
    for (algorithm_id, subscribe, publish) in grants {
        diesel::insert_into(topic_grants::table)
            .values((
                topic_grants::connection_id.eq(connection_id),
                topic_grants::topic.eq(topic),
                topic_grants::algorithm_id.eq(algorithm_id),
                topic_grants::can_subscribe.eq(subscribe),
                topic_grants::can_publish.eq(publish),
                topic_grants::created_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}
