//! Algorithms and their versions.

use diesel::prelude::*;

use super::schema::{algorithm_versions, algorithms, organizations};
use super::{AnyConnection, new_id, now_ms};

/// An algorithm with its organization's name.
#[derive(Debug, Clone, Queryable)]
pub struct AlgorithmRow {
    pub id: String,
    pub org: String,
    pub name: String,
    pub description: String,
}

/// A version of an algorithm.
#[derive(Debug, Clone, Queryable)]
pub struct VersionRow {
    pub algorithm_id: String,
    pub version: String,
    pub runtime: String,
    pub created_at_ms: i64,
}

/// Every algorithm, by organization and name.
pub fn all(conn: &mut AnyConnection) -> QueryResult<Vec<AlgorithmRow>> {
    algorithms::table
        .inner_join(organizations::table)
        .select((
            algorithms::id,
            organizations::name,
            algorithms::name,
            algorithms::description,
        ))
        .order((organizations::name, algorithms::name))
        .load(conn)
}

/// The algorithm `org/name`.
pub fn find(conn: &mut AnyConnection, org: &str, name: &str) -> QueryResult<Option<AlgorithmRow>> {
    algorithms::table
        .inner_join(organizations::table)
        .filter(organizations::name.eq(org))
        .filter(algorithms::name.eq(name))
        .select((
            algorithms::id,
            organizations::name,
            algorithms::name,
            algorithms::description,
        ))
        .first(conn)
        .optional()
}

/// The versions of the algorithms, newest version first.
pub fn versions(
    conn: &mut AnyConnection,
    algorithm_ids: &[String],
) -> QueryResult<Vec<VersionRow>> {
    algorithm_versions::table
        .filter(algorithm_versions::algorithm_id.eq_any(algorithm_ids))
        .order((
            algorithm_versions::major.desc(),
            algorithm_versions::minor.desc(),
            algorithm_versions::patch.desc(),
        ))
        .select((
            algorithm_versions::algorithm_id,
            algorithm_versions::version,
            algorithm_versions::runtime,
            algorithm_versions::created_at,
        ))
        .load(conn)
}

/// An algorithm's `org/name`.
pub fn path(conn: &mut AnyConnection, algorithm_id: &str) -> QueryResult<String> {
    let (org, name): (String, String) = algorithms::table
        .inner_join(organizations::table)
        .filter(algorithms::id.eq(algorithm_id))
        .select((organizations::name, algorithms::name))
        .first(conn)?;
    Ok(format!("{org}/{name}"))
}

/// The organization an algorithm belongs to.
pub fn organization_of(conn: &mut AnyConnection, algorithm_id: &str) -> QueryResult<String> {
    algorithms::table
        .inner_join(organizations::table)
        .filter(algorithms::id.eq(algorithm_id))
        .select(organizations::name)
        .first(conn)
}

/// The id of the algorithm `name` of an organization (by its id).
pub fn id_in_organization(
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

/// Adds an algorithm; returns its id.
pub fn insert(
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
