//! The model hosts an admin allows (see `runner::model_hosts`).

use diesel::prelude::*;

use super::AnyConnection;
use super::schema::model_hosts;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = model_hosts)]
pub struct ModelHostRow {
    pub entry: String,
    pub added_by: String,
    pub added_at_ms: i64,
}

/// Every entry, in order.
pub fn list(conn: &mut AnyConnection) -> QueryResult<Vec<ModelHostRow>> {
    model_hosts::table
        .select(ModelHostRow::as_select())
        .order(model_hosts::entry)
        .load(conn)
}

/// The entries alone, for the executor.
pub fn entries(conn: &mut AnyConnection) -> QueryResult<Vec<String>> {
    model_hosts::table
        .select(model_hosts::entry)
        .order(model_hosts::entry)
        .load(conn)
}

/// Adds an entry; false if it was there already.
pub fn add(conn: &mut AnyConnection, row: &ModelHostRow) -> QueryResult<bool> {
    conn.transaction(|c| {
        let present = model_hosts::table
            .find(&row.entry)
            .count()
            .get_result::<i64>(c)?
            > 0;
        if present {
            return Ok(false);
        }
        diesel::insert_into(model_hosts::table)
            .values(row)
            .execute(c)?;
        Ok(true)
    })
}

/// Removes an entry; false if there was none.
pub fn remove(conn: &mut AnyConnection, entry: &str) -> QueryResult<bool> {
    diesel::delete(model_hosts::table.find(entry))
        .execute(conn)
        .map(|n| n > 0)
}
