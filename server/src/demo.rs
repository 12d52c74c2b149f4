//! The demo data: two organizations, their members, an admin, and algorithms
//! with several versions. Seeding twice changes nothing.

use app::api::BrokerAdmin;
use app::domain::{Access, AppError, NewBrokerConnection, Role, TopicGrant, TopicName};

use crate::services::Services;

/// The demo broker connection's name.
const DEMO_CONNECTION: &str = "local tansu";

/// (topic, partitions, grants as (algorithm, subscribe, publish))
const DEMO_TOPICS: &[(&str, u32, &[(&str, bool, bool)])] = &[
    (
        "reviews",
        3,
        &[("acme/sentiment", true, false), ("acme/echo", false, true)],
    ),
    ("review-scores", 1, &[("acme/sentiment", false, true)]),
    ("reviews-dlq", 1, &[("acme/sentiment", false, true)]),
];

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

pub async fn seed(services: &Services, kafka: Option<&str>) -> anyhow::Result<()> {
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
    if let Some(bootstrap) = kafka {
        seed_broker(services, bootstrap).await?;
        println!(
            "Broker connection '{DEMO_CONNECTION}' ({bootstrap}) with topics reviews, review-scores, reviews-dlq."
        );
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

/// A connection to the local broker, three topics and their grants.
async fn seed_broker(services: &Services, bootstrap: &str) -> anyhow::Result<()> {
    let existing = services
        .list_broker_connections()
        .await?
        .into_iter()
        .find(|c| c.name == DEMO_CONNECTION);
    let id = match existing {
        Some(c) => c.id,
        None => {
            services
                .connect_broker(
                    crate::cli::CLI_ACTOR,
                    NewBrokerConnection {
                        name: DEMO_CONNECTION.into(),
                        bootstrap_servers: bootstrap.into(),
                        security_protocol: "PLAINTEXT".into(),
                        ..Default::default()
                    },
                )
                .await?
        }
    };
    for (topic, partitions, grants) in DEMO_TOPICS {
        let name = TopicName::parse(topic)?;
        match services
            .create_topic(crate::cli::CLI_ACTOR, &id, &name, *partitions)
            .await
        {
            Ok(()) | Err(AppError::Validation { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let grants = grants
            .iter()
            .map(|(algorithm, subscribe, publish)| TopicGrant {
                algorithm: (*algorithm).into(),
                access: Access {
                    subscribe: *subscribe,
                    publish: *publish,
                },
            })
            .collect();
        services
            .save_topic_grants(crate::cli::CLI_ACTOR, &id, &name, grants)
            .await?;
    }
    Ok(())
}

/// Errors that a repeated `demo` run expects and skips.
fn already_there(result: Result<(), AppError>) -> Result<(), AppError> {
    match result {
        Err(AppError::Conflict { .. }) => Ok(()),
        other => other,
    }
}
