//! API keys: each acts as its user on the REST API. Only a key's SHA-256
//! is stored; its first characters are kept to tell keys apart.

use diesel::prelude::*;

use super::schema::{api_keys, users};
use super::users::UserRow;
use super::{AnyConnection, now_ms};

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub last_used_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

pub fn insert(conn: &mut AnyConnection, row: &ApiKeyRow) -> QueryResult<()> {
    diesel::insert_into(api_keys::table)
        .values(row)
        .execute(conn)
        .map(|_| ())
}

/// A user's keys, newest first.
pub fn of_user(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Vec<ApiKeyRow>> {
    api_keys::table
        .filter(api_keys::user_id.eq(user_id))
        .select(ApiKeyRow::as_select())
        .order((api_keys::created_at_ms.desc(), api_keys::id))
        .load(conn)
}

/// Revokes a key of the user; false if the user has no such key that is
/// not revoked yet.
pub fn revoke(conn: &mut AnyConnection, user_id: &str, id: &str) -> QueryResult<bool> {
    diesel::update(
        api_keys::table
            .filter(api_keys::id.eq(id))
            .filter(api_keys::user_id.eq(user_id))
            .filter(api_keys::revoked_at_ms.is_null()),
    )
    .set(api_keys::revoked_at_ms.eq(now_ms()))
    .execute(conn)
    .map(|n| n > 0)
}

/// The user of a key that is neither revoked nor expired; the use is
/// recorded (at most once a minute).
pub fn user_of(conn: &mut AnyConnection, key_hash: &str) -> QueryResult<Option<UserRow>> {
    let now = now_ms();
    let found: Option<(UserRow, String, Option<i64>)> = api_keys::table
        .inner_join(users::table)
        .filter(api_keys::key_hash.eq(key_hash))
        .filter(api_keys::revoked_at_ms.is_null())
        .filter(
            api_keys::expires_at_ms
                .is_null()
                .or(api_keys::expires_at_ms.gt(now)),
        )
        .select((
            UserRow::as_select(),
            api_keys::id,
            api_keys::last_used_at_ms,
        ))
        .first(conn)
        .optional()?;
    let Some((user, id, last_used)) = found else {
        return Ok(None);
    };
    if last_used.is_none_or(|at| at < now - 60_000) {
        diesel::update(api_keys::table.find(&id))
            .set(api_keys::last_used_at_ms.eq(now))
            .execute(conn)?;
    }
    Ok(Some(user))
}
