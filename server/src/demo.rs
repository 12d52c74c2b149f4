//! The demo data: two organizations, their members, an admin, and algorithms
//! with several versions. Seeding twice changes nothing.

use app::domain::Role;

use crate::cli::already_there;
use crate::services::Services;

/// (username, password, role, organization)
pub const DEMO_USERS: &[(&str, &str, Role, Option<&str>)] = &[
    ("admin", "admin-password", Role::Admin, None),
    ("ana", "ana-password", Role::Member, Some("acme")),
    ("ben", "ben-password", Role::Member, Some("globex")),
];

/// (algorithm, version, runtime, description)
const DEMO_ALGORITHMS: &[(&str, &str, &str, &str)] = &[
    (
        "acme/sentiment",
        "1.0.0",
        "builtin:sentiment",
        "Scores the sentiment of a text.",
    ),
    ("acme/sentiment", "1.1.0", "builtin:sentiment", ""),
    (
        "acme/echo",
        "1.0.0",
        "builtin:echo",
        "Returns its input unchanged.",
    ),
    (
        "acme/word-count",
        "1.0.0",
        "builtin:word-count",
        "Counts the words of a text.",
    ),
    ("acme/word-count", "2.0.0", "builtin:word-count", ""),
    (
        "globex/json-validator",
        "1.0.0",
        "builtin:json-validate",
        "Checks that a message is a JSON object.",
    ),
];

pub async fn seed(services: &Services) -> anyhow::Result<()> {
    for org in ["acme", "globex"] {
        already_there(services.add_organization(org).await)?;
    }
    for (name, password, role, org) in DEMO_USERS {
        already_there(services.add_user(name, password, *role).await)?;
        if let Some(org) = org {
            services.add_member(org, name).await?;
        }
    }
    for (algorithm, version, runtime, description) in DEMO_ALGORITHMS {
        already_there(
            services
                .add_algorithm_version(algorithm, version, runtime, description)
                .await,
        )?;
    }
    println!("Demo data is ready. Log in as:");
    for (name, password, role, org) in DEMO_USERS {
        let what = match org {
            Some(org) => format!("member of {org}"),
            None => role.as_str().to_owned(),
        };
        println!("  {name:<6} password {password:<16} ({what})");
    }
    Ok(())
}
