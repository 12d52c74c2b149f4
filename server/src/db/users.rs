//! Users and their sessions.

use diesel::prelude::*;

use super::schema::{memberships, organizations, sessions, users};
use super::{AnyConnection, new_id, now_ms};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub role: String,
}

pub fn insert_user(
    conn: &mut AnyConnection,
    username: &str,
    password_hash: &str,
    role: &str,
) -> QueryResult<String> {
    let id = new_id();
    diesel::insert_into(users::table)
        .values((
            users::id.eq(&id),
            users::username.eq(username),
            users::password_hash.eq(password_hash),
            users::role.eq(role),
            users::created_at.eq(now_ms()),
        ))
        .execute(conn)?;
    Ok(id)
}

pub fn find_user(conn: &mut AnyConnection, username: &str) -> QueryResult<Option<UserRow>> {
    users::table
        .filter(users::username.eq(username))
        .select(UserRow::as_select())
        .first(conn)
        .optional()
}

/// Names of the organizations a user belongs to, sorted.
pub fn organizations_of(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Vec<String>> {
    memberships::table
        .inner_join(organizations::table)
        .filter(memberships::user_id.eq(user_id))
        .select(organizations::name)
        .order(organizations::name.asc())
        .load(conn)
}

pub fn insert_session(
    conn: &mut AnyConnection,
    token_hash: &str,
    user_id: &str,
    expires_at: i64,
) -> QueryResult<()> {
    diesel::insert_into(sessions::table)
        .values((
            sessions::token_hash.eq(token_hash),
            sessions::user_id.eq(user_id),
            sessions::created_at.eq(now_ms()),
            sessions::expires_at.eq(expires_at),
            sessions::last_seen_at.eq(now_ms()),
        ))
        .execute(conn)
        .map(|_| ())
}

/// The user of a session that has not expired and was used less than
/// `idle_ms` ago; the use is recorded (at most once a minute).
pub fn session_user(
    conn: &mut AnyConnection,
    token_hash: &str,
    idle_ms: i64,
) -> QueryResult<Option<UserRow>> {
    let now = now_ms();
    let found: Option<(UserRow, i64)> = sessions::table
        .inner_join(users::table)
        .filter(sessions::token_hash.eq(token_hash))
        .filter(sessions::expires_at.gt(now))
        .filter(sessions::last_seen_at.gt(now - idle_ms))
        .select((UserRow::as_select(), sessions::last_seen_at))
        .first(conn)
        .optional()?;
    let Some((user, last_seen)) = found else {
        return Ok(None);
    };
    if last_seen < now - 60_000 {
        diesel::update(sessions::table.filter(sessions::token_hash.eq(token_hash)))
            .set(sessions::last_seen_at.eq(now))
            .execute(conn)?;
    }
    Ok(Some(user))
}

pub fn delete_session(conn: &mut AnyConnection, token_hash: &str) -> QueryResult<usize> {
    diesel::delete(sessions::table.filter(sessions::token_hash.eq(token_hash))).execute(conn)
}

pub fn delete_expired_sessions(conn: &mut AnyConnection) -> QueryResult<usize> {
    diesel::delete(sessions::table.filter(sessions::expires_at.le(now_ms()))).execute(conn)
}

pub fn count_sessions(conn: &mut AnyConnection, user_id: &str) -> QueryResult<i64> {
    sessions::table
        .filter(sessions::user_id.eq(user_id))
        .count()
        .get_result(conn)
}
