//! Organizations, memberships, algorithms and their versions.

use diesel::prelude::*;

use super::schema::{algorithm_versions, algorithms, memberships, organizations};
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

pub fn find_algorithm(
    conn: &mut AnyConnection,
    organization_id: &str,
    name: &str,
) -> QueryResult<Option<String>> {
    algorithms::table
        .filter(algorithms::organization_id.eq(organization_id))
        .filter(algorithms::name.eq(name))
        .select(algorithms::id)
        .first(conn)
        .optional()
}

pub fn insert_algorithm(
    conn: &mut AnyConnection,
    organization_id: &str,
    name: &str,
    description: &str,
) -> QueryResult<String> {
    let id = new_id();
    diesel::insert_into(algorithms::table)
        .values((
            algorithms::id.eq(&id),
            algorithms::organization_id.eq(organization_id),
            algorithms::name.eq(name),
            algorithms::description.eq(description),
            algorithms::created_at.eq(now_ms()),
        ))
        .execute(conn)?;
    Ok(id)
}

/// A version of an algorithm, as stored.
pub struct NewVersion<'a> {
    pub algorithm_id: &'a str,
    pub version: &'a str,
    pub major: i64,
    pub minor: i64,
    pub patch: i64,
    pub runtime: &'a str,
}

pub fn insert_version(conn: &mut AnyConnection, v: &NewVersion<'_>) -> QueryResult<()> {
    diesel::insert_into(algorithm_versions::table)
        .values((
            algorithm_versions::id.eq(new_id()),
            algorithm_versions::algorithm_id.eq(v.algorithm_id),
            algorithm_versions::version.eq(v.version),
            algorithm_versions::major.eq(v.major),
            algorithm_versions::minor.eq(v.minor),
            algorithm_versions::patch.eq(v.patch),
            algorithm_versions::runtime.eq(v.runtime),
            algorithm_versions::created_at.eq(now_ms()),
        ))
        .execute(conn)
        .map(|_| ())
}

pub fn version_exists(
    conn: &mut AnyConnection,
    algorithm_id: &str,
    version: &str,
) -> QueryResult<bool> {
    let n: i64 = algorithm_versions::table
        .filter(algorithm_versions::algorithm_id.eq(algorithm_id))
        .filter(algorithm_versions::version.eq(version))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}
