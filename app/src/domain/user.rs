use serde::{Deserialize, Serialize};

/// What a user may do across the whole product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Cluster administrator: manages broker connections and topic grants.
    Admin,
    /// Member of one or more organizations.
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// The logged-in user, as the browser sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentUser {
    pub username: String,
    pub role: Role,
    /// Names of the organizations the user belongs to.
    pub organizations: Vec<String>,
}

impl CurrentUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in [Role::Admin, Role::Member] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}

/// A model host an admin allows `http:` runtimes to call (Admin → Model
/// hosts): a host, `host:port`, `*.domain`, or a URL prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelHost {
    pub entry: String,
    pub added_by: String,
    /// When, as UTC text.
    pub added_at: String,
}

/// One of a user's API keys, as Settings → API keys lists it (never the
/// key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    /// Times as UTC text.
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub state: String,
}

/// A key just created: the key itself, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedApiKey {
    pub key: String,
    pub summary: ApiKey,
}

/// The kinds of event the audit log records.
pub const AUDIT_KINDS: &[&str] = &[
    "login",
    "login-refused",
    "broker-connected",
    "broker-deleted",
    "topic-created",
    "grants-changed",
    "flow-enabled",
    "flow-edited",
    "flow-disabled",
    "version-added",
    "api-key-created",
    "api-key-revoked",
    "model-host-allowed",
    "model-host-removed",
    "user-created",
    "organization-created",
    "member-added",
];

/// One event of the audit log (Admin → Audit log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// UTC text.
    pub at: String,
    /// The user, or `(command line)`.
    pub actor: String,
    pub kind: String,
    /// What it concerns: a connection, topic, flow, key, host or user.
    pub target: String,
    /// More about it, such as a version before → after.
    pub detail: String,
}

/// Which events of the audit log to show; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub kind: Option<String>,
    /// From this time (milliseconds since the epoch, UTC), inclusive.
    pub from_ms: Option<i64>,
    /// Up to this time, exclusive.
    pub to_ms: Option<i64>,
    /// The page after this one (an `older` cursor of an earlier page).
    pub before: Option<String>,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// The cursor of the next (older) page, if there is one.
    pub older: Option<String>,
}
