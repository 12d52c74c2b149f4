//! Organizations and memberships.

use diesel::prelude::*;

use super::schema::{memberships, organizations};
use super::{AnyConnection, new_id, now_ms};

pub fn find_organization(conn: &mut AnyConnection, name: &str) -> QueryResult<Option<String>> {
    organizations::table
        .filter(organizations::name.eq(name))
        .select(organizations::id)
        .first(conn)
        .optional()
}

pub fn insert_organization(conn: &mut AnyConnection, name: &str) -> QueryResult<String> {
    let id = new_id();
    diesel::insert_into(organizations::table)
        .values((
            organizations::id.eq(&id),
            organizations::name.eq(name),
            organizations::created_at.eq(now_ms()),
        ))
        .execute(conn)?;
    Ok(id)
}

/// Adds a membership; returns false when it already existed.
pub fn insert_membership(
    conn: &mut AnyConnection,
    organization_id: &str,
    user_id: &str,
) -> QueryResult<bool> {
    let exists: i64 = memberships::table
        .filter(memberships::organization_id.eq(organization_id))
        .filter(memberships::user_id.eq(user_id))
        .count()
        .get_result(conn)?;
    if exists > 0 {
        return Ok(false);
    }
    diesel::insert_into(memberships::table)
        .values((
            memberships::organization_id.eq(organization_id),
            memberships::user_id.eq(user_id),
            memberships::created_at.eq(now_ms()),
        ))
        .execute(conn)?;
    Ok(true)
}
