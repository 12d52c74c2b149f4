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
        ))
        .execute(conn)
        .map(|_| ())
}

/// The user of a session that has not expired.
pub fn session_user(conn: &mut AnyConnection, token_hash: &str) -> QueryResult<Option<UserRow>> {
    sessions::table
        .inner_join(users::table)
        .filter(sessions::token_hash.eq(token_hash))
        .filter(sessions::expires_at.gt(now_ms()))
        .select(UserRow::as_select())
        .first(conn)
        .optional()
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
