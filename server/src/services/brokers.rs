//! Broker connections, topics and topic grants (the Queue manager).
//!
//! A connection reaches a Kafka cluster, Amazon SQS (whose "topics" are
//! queues) or an Azure Service Bus namespace (queues, topics and their
//! subscriptions). It is saved only after the broker answered; its password, CA
//! certificate or secret access key are sealed with the server's secret key
//! before they reach the database and are opened only to configure a client.

use app::api::BrokerAdmin;
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use app::domain::{
    AlgorithmPath, AppError, AwsRegion, BootstrapServers, BrokerConnectionDetails,
    BrokerConnectionSummary, BrokerKind, ConnectionStatus, NewBrokerConnection, SaslMechanism,
    SecurityProtocol, TopicDetails, TopicGrant, TopicInfo, TopicName,
};

use super::{Services, blocking, internal};
use crate::db::brokers::{self as queries, ConnectionRow};
use crate::db::{DbError, new_id, now_ms};
use crate::kafka::{BrokerClient, BrokerSettings, check_ca_pem};
use crate::servicebus::{ServiceBusAdmin, ServiceBusSettings};
use crate::sqs::{SqsClient, SqsSettings, check_endpoint_url};

/// How long the connection test and the details page wait for the broker.
const DETAILS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the list waits for each broker's status.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

const MAX_NAME_LEN: usize = 100;

use crate::kafka::sealed_context;

fn optional(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// The settings of a connection, of one kind or the other.
#[derive(Debug, Clone)]
pub enum ConnectionSettings {
    Kafka(BrokerSettings),
    Sqs(SqsSettings),
    ServiceBus(ServiceBusSettings),
}

impl ConnectionSettings {
    fn kind(&self) -> BrokerKind {
        match self {
            ConnectionSettings::Kafka(_) => BrokerKind::Kafka,
            ConnectionSettings::Sqs(_) => BrokerKind::Sqs,
            ConnectionSettings::ServiceBus(_) => BrokerKind::ServiceBus,
        }
    }

    /// Where the connection points, for the list and the audit log.
    fn address(&self) -> String {
        match self {
            ConnectionSettings::Kafka(k) => k.bootstrap_servers.to_string(),
            ConnectionSettings::Sqs(s) => s.address(),
            ConnectionSettings::ServiceBus(s) => s.address(),
        }
    }
}

/// Checks the form and turns it into settings (nothing is contacted yet).
pub fn validate(new: &NewBrokerConnection) -> Result<(String, ConnectionSettings), AppError> {
    let name = new.name.trim().to_owned();
    if name.is_empty() {
        return Err(AppError::validation(
            "name",
            "Enter a name for the connection.",
        ));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(AppError::validation(
            "name",
            format!("A name has at most {MAX_NAME_LEN} characters."),
        ));
    }
    let kind = BrokerKind::parse(&new.kind).ok_or_else(|| {
        AppError::validation("kind", "Choose Kafka, Amazon SQS or Azure Service Bus.")
    })?;
    let settings = match kind {
        BrokerKind::Kafka => ConnectionSettings::Kafka(kafka_settings(new)?),
        BrokerKind::Sqs => ConnectionSettings::Sqs(sqs_settings(new)?),
        BrokerKind::ServiceBus => {
            ConnectionSettings::ServiceBus(ServiceBusSettings::from_form(new)?)
        }
    };
    Ok((name, settings))
}

fn sqs_settings(new: &NewBrokerConnection) -> Result<SqsSettings, AppError> {
    let region = AwsRegion::parse(&new.region)?;
    let endpoint_url = optional(&new.endpoint_url)
        .map(|url| check_endpoint_url(&url))
        .transpose()?;
    let key = if new.use_default_credentials {
        None
    } else {
        let id = optional(&new.access_key_id).ok_or_else(|| {
            AppError::validation(
                "access_key_id",
                "Enter the access key id, or use the server's default AWS credentials.",
            )
        })?;
        if id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(AppError::validation(
                "access_key_id",
                "An access key id has only letters and digits, such as AKIAIOSFODNN7EXAMPLE.",
            ));
        }
        if new.secret_access_key.trim().is_empty() {
            return Err(AppError::validation(
                "secret_access_key",
                "Enter the secret access key.",
            ));
        }
        Some((id, new.secret_access_key.trim().to_owned()))
    };
    Ok(SqsSettings {
        region,
        endpoint_url,
        key,
    })
}

fn kafka_settings(new: &NewBrokerConnection) -> Result<BrokerSettings, AppError> {
    let bootstrap_servers = BootstrapServers::parse(&new.bootstrap_servers)?;
    let security_protocol =
        SecurityProtocol::parse(new.security_protocol.trim()).ok_or_else(|| {
            AppError::validation(
                "security_protocol",
                "Choose PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
            )
        })?;
    let (mut sasl_mechanism, mut username, mut password) = (None, None, None);
    if security_protocol.uses_sasl() {
        sasl_mechanism = Some(SaslMechanism::parse(new.sasl_mechanism.trim()).ok_or_else(
            || {
                AppError::validation(
                    "sasl_mechanism",
                    "Choose PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.",
                )
            },
        )?);
        username = Some(optional(&new.username).ok_or_else(|| {
            AppError::validation("username", "Enter the username the broker expects.")
        })?);
        if new.password.is_empty() {
            return Err(AppError::validation("password", "Enter the password."));
        }
        password = Some(new.password.clone());
    }
    let mut ca_pem = None;
    if security_protocol.uses_tls()
        && let Some(pem) = optional(&new.ca_pem)
    {
        check_ca_pem(&pem)?;
        ca_pem = Some(pem);
    }
    Ok(BrokerSettings {
        bootstrap_servers,
        security_protocol,
        sasl_mechanism,
        username,
        password,
        ca_pem,
    })
}

/// The client settings of a stored connection, its secrets opened.
impl Services {
    async fn connection_row(&self, id: &str) -> Result<ConnectionRow, AppError> {
        let key = id.to_owned();
        self.db
            .interact(move |c| queries::find_connection(c, &key))
            .await?
            .ok_or_else(|| AppError::not_found("The broker connection"))
    }

    fn settings_of(&self, row: &ConnectionRow) -> Result<BrokerSettings, AppError> {
        BrokerSettings::from_row(row, &self.secrets)
    }

    /// The shared client of a connection.
    pub fn broker_client(&self, row: &ConnectionRow) -> Result<Arc<BrokerClient>, AppError> {
        self.clients
            .get_or_try_insert(&row.id, || BrokerClient::new(&self.settings_of(row)?))
    }

    /// The shared client of an SQS connection.
    pub(super) fn sqs_client(&self, row: &ConnectionRow) -> Result<Arc<SqsClient>, AppError> {
        self.sqs.get_or_try_insert(&row.id, || {
            Ok(SqsClient::new(&SqsSettings::from_row(row, &self.secrets)?))
        })
    }

    /// The management API of a Service Bus connection.
    pub(super) fn service_bus(
        &self,
        row: &ConnectionRow,
    ) -> Result<Arc<ServiceBusAdmin>, AppError> {
        self.service_bus.get_or_try_insert(&row.id, || {
            ServiceBusAdmin::new(&ServiceBusSettings::from_row(row, &self.secrets)?)
        })
    }

    /// The topics (Kafka), queues (SQS) or entities (Service Bus) of a
    /// connection, read live.
    async fn live_topics(&self, row: &ConnectionRow) -> Result<Vec<TopicInfo>, AppError> {
        match row.kind() {
            BrokerKind::Kafka => {
                let client = self.broker_client(row)?;
                blocking(move || client.topics(DETAILS_TIMEOUT)).await?
            }
            BrokerKind::Sqs => self.sqs_client(row)?.queues().await,
            BrokerKind::ServiceBus => self.service_bus(row)?.entities().await,
        }
    }

    /// Asks the broker: `Ok(number of topics or queues)` when it answers.
    async fn check(&self, row: &ConnectionRow) -> Result<u32, AppError> {
        match row.kind() {
            BrokerKind::Kafka => {
                let client = self.broker_client(row)?;
                blocking(move || client.check(STATUS_TIMEOUT)).await?
            }
            BrokerKind::Sqs => self.sqs_client(row)?.check().await,
            BrokerKind::ServiceBus => self.service_bus(row)?.check().await,
        }
    }
}

/// Where a connection points, from its stored row.
fn address_of(row: &ConnectionRow) -> String {
    match row.kind() {
        BrokerKind::Kafka => row.bootstrap_servers.clone(),
        BrokerKind::Sqs => crate::sqs::address(
            row.region.as_deref().unwrap_or_default(),
            row.endpoint_url.as_deref(),
        ),
        BrokerKind::ServiceBus => {
            crate::servicebus::address(&row.bootstrap_servers, row.endpoint_url.as_deref())
        }
    }
}

/// What changed in a topic's grants, one algorithm after another
/// (`acme/x: subscribe → subscribe, publish`); `None` if nothing did.
fn grants_changed(
    before: &std::collections::BTreeMap<String, (bool, bool)>,
    after: &std::collections::BTreeMap<String, (bool, bool)>,
) -> Option<String> {
    let shown = |access: Option<&(bool, bool)>| match access.copied().unwrap_or_default() {
        (true, true) => "subscribe, publish",
        (true, false) => "subscribe",
        (false, true) => "publish",
        (false, false) => "none",
    };
    let algorithms: std::collections::BTreeSet<&String> =
        before.keys().chain(after.keys()).collect();
    let changes: Vec<String> = algorithms
        .into_iter()
        .filter(|a| before.get(*a) != after.get(*a))
        .map(|a| format!("{a}: {} → {}", shown(before.get(a)), shown(after.get(a))))
        .collect();
    (!changes.is_empty()).then(|| changes.join("; "))
}

#[async_trait]
impl BrokerAdmin for Services {
    async fn list_broker_connections(&self) -> Result<Vec<BrokerConnectionSummary>, AppError> {
        let (rows, counts) = self
            .db
            .interact(|c| Ok((queries::list_connections(c)?, queries::flow_counts(c)?)))
            .await?;
        let counts: HashMap<String, i64> = counts.into_iter().collect();
        // Every broker is asked at once.
        let statuses = futures::future::join_all(rows.iter().map(|row| self.check(row))).await;
        Ok(rows
            .into_iter()
            .zip(statuses)
            .map(|(row, status)| BrokerConnectionSummary {
                flow_count: counts.get(&row.id).copied().unwrap_or(0) as u32,
                kind: row.kind(),
                bootstrap_servers: address_of(&row),
                name: row.name,
                id: row.id,
                topic_count: status.as_ref().ok().copied(),
                status: match status {
                    Ok(_) => ConnectionStatus::Reachable,
                    Err(e) => ConnectionStatus::Unreachable(e.to_string()),
                },
            })
            .collect())
    }

    async fn connect_broker(&self, by: &str, new: NewBrokerConnection) -> Result<String, AppError> {
        let (name, settings) = validate(&new)?;
        let taken_name = name.clone();
        if self
            .db
            .interact(move |c| queries::connection_name_taken(c, &taken_name))
            .await?
        {
            return Err(AppError::validation(
                "name",
                format!("A broker connection named '{name}' already exists."),
            ));
        }
        // The broker is asked before anything is saved.
        let client = match &settings {
            ConnectionSettings::Kafka(kafka) => {
                let client = BrokerClient::new(kafka)?;
                let client =
                    blocking(move || client.check(DETAILS_TIMEOUT).map(|_| client)).await??;
                Some(client)
            }
            ConnectionSettings::Sqs(sqs) => {
                SqsClient::new(sqs).check().await?;
                None
            }
            ConnectionSettings::ServiceBus(bus) => {
                ServiceBusAdmin::new(bus)?.check().await?;
                #[cfg(feature = "servicebus")]
                crate::runner::servicebus_flow::check(bus).await?;
                None
            }
        };

        let id = new_id();
        let seal = |value: Option<&str>, field: &str| -> Result<Option<String>, AppError> {
            value
                .map(|v| self.secrets.seal(v, &sealed_context(&id, field)))
                .transpose()
                .map_err(|error| {
                    tracing::error!(%error, "could not seal a broker secret");
                    AppError::Internal
                })
        };
        let row = match &settings {
            ConnectionSettings::Kafka(kafka) => ConnectionRow {
                id: id.clone(),
                name: name.clone(),
                bootstrap_servers: kafka.bootstrap_servers.to_string(),
                security_protocol: kafka.security_protocol.as_str().to_owned(),
                sasl_mechanism: kafka.sasl_mechanism.map(|m| m.as_str().to_owned()),
                username: kafka.username.clone(),
                password_encrypted: seal(kafka.password.as_deref(), "password")?,
                ca_pem_encrypted: seal(kafka.ca_pem.as_deref(), "ca_pem")?,
                created_at: now_ms(),
                kind: BrokerKind::Kafka.as_str().to_owned(),
                region: None,
                endpoint_url: None,
            },
            ConnectionSettings::Sqs(sqs) => ConnectionRow {
                id: id.clone(),
                name: name.clone(),
                bootstrap_servers: String::new(),
                security_protocol: String::new(),
                sasl_mechanism: None,
                username: sqs.key.as_ref().map(|(key_id, _)| key_id.clone()),
                password_encrypted: seal(
                    sqs.key.as_ref().map(|(_, secret)| secret.as_str()),
                    "secret_access_key",
                )?,
                ca_pem_encrypted: None,
                created_at: now_ms(),
                kind: BrokerKind::Sqs.as_str().to_owned(),
                region: Some(sqs.region.as_str().to_owned()),
                endpoint_url: sqs.endpoint_url.clone(),
            },
            ConnectionSettings::ServiceBus(bus) => ConnectionRow {
                id: id.clone(),
                name: name.clone(),
                bootstrap_servers: bus.namespace.clone(),
                security_protocol: String::new(),
                sasl_mechanism: None,
                username: Some(bus.key_name.clone()),
                password_encrypted: seal(Some(&bus.key), "key")?,
                ca_pem_encrypted: None,
                created_at: now_ms(),
                kind: BrokerKind::ServiceBus.as_str().to_owned(),
                region: None,
                endpoint_url: bus.development.clone(),
            },
        };
        self.db
            .interact(move |c| queries::insert_connection(c, &row))
            .await
            .map_err(|e| {
                if e.is_unique_violation() {
                    AppError::validation(
                        "name",
                        format!("A broker connection named '{name}' already exists."),
                    )
                } else {
                    internal(e)
                }
            })?;
        if let Some(client) = client {
            self.clients.get_or_try_insert(&id, || Ok(client))?;
        }
        let address = settings.address();
        tracing::info!(connection = %id, kind = settings.kind().as_str(), %address, "broker connection created");
        let detail = match &settings {
            ConnectionSettings::Kafka(k) => format!("{address} ({})", k.security_protocol.as_str()),
            ConnectionSettings::Sqs(_) => format!("Amazon SQS, {address}"),
            ConnectionSettings::ServiceBus(_) => format!("Azure Service Bus, {address}"),
        };
        self.audit(by, "broker-connected", &name, &detail).await;
        Ok(id)
    }

    async fn broker_connection(&self, id: &str) -> Result<BrokerConnectionDetails, AppError> {
        let row = self.connection_row(id).await?;
        let key = row.id.clone();
        let flows = self
            .db
            .interact(move |c| queries::enabled_flows(c, &key))
            .await?;
        let (status, topics) = match self.live_topics(&row).await {
            Ok(topics) => (ConnectionStatus::Reachable, topics),
            Err(e) => (ConnectionStatus::Unreachable(e.to_string()), Vec::new()),
        };
        let kind = row.kind();
        let sqs = kind == BrokerKind::Sqs;
        Ok(BrokerConnectionDetails {
            kind,
            bootstrap_servers: address_of(&row),
            region: row.region.clone(),
            endpoint_url: row.endpoint_url.clone(),
            access_key_id: if sqs { row.username.clone() } else { None },
            username: if sqs { None } else { row.username.clone() },
            password_set: row.password_encrypted.is_some(),
            ca_certificate_set: row.ca_pem_encrypted.is_some(),
            flows: flows
                .into_iter()
                .map(|(org, name, topic, direction)| {
                    format!("{org}/{name} ({direction}) on {topic}")
                })
                .collect(),
            id: row.id,
            name: row.name,
            security_protocol: row.security_protocol,
            sasl_mechanism: row.sasl_mechanism,
            created_at_ms: row.created_at,
            status,
            topics,
        })
    }

    async fn delete_broker_connection(&self, by: &str, id: &str) -> Result<(), AppError> {
        let row = self.connection_row(id).await?;
        let key = id.to_owned();
        let existed = self
            .db
            .interact(move |c| queries::delete_connection(c, &key))
            .await?;
        if !existed {
            return Err(AppError::not_found("The broker connection"));
        }
        let address = address_of(&row);
        self.audit(by, "broker-deleted", &row.name, &address).await;
        self.clients.remove(id);
        self.sqs.remove(id);
        self.service_bus.remove(id);
        self.runner.reconcile().await?;
        self.runner.drop_producer(id);
        tracing::info!(connection = %id, "broker connection deleted");
        Ok(())
    }

    async fn create_topic(
        &self,
        by: &str,
        id: &str,
        topic: &TopicName,
        partitions: u32,
    ) -> Result<(), AppError> {
        let row = self.connection_row(id).await?;
        let detail = match row.kind() {
            BrokerKind::Kafka => {
                self.broker_client(&row)?
                    .create_topic(topic, partitions)
                    .await?;
                format!(
                    "{partitions} partition{}",
                    if partitions == 1 { "" } else { "s" }
                )
            }
            BrokerKind::Sqs => {
                self.sqs_client(&row)?.create_queue(topic.as_str()).await?;
                if topic.as_str().ends_with(".fifo") {
                    "FIFO queue".to_owned()
                } else {
                    "standard queue".to_owned()
                }
            }
            BrokerKind::ServiceBus => {
                self.service_bus(&row)?.create_queue(topic.as_str()).await?;
                "Service Bus queue".to_owned()
            }
        };
        let target = format!("{topic} on {}", row.name);
        self.audit(by, "topic-created", &target, &detail).await;
        Ok(())
    }

    async fn topic_details(&self, id: &str, topic: &TopicName) -> Result<TopicDetails, AppError> {
        let row = self.connection_row(id).await?;
        let info = self
            .live_topics(&row)
            .await?
            .into_iter()
            .find(|t| t.name == topic.as_str())
            .ok_or_else(|| AppError::not_found(format!("The topic '{topic}'")))?;
        let (key, name) = (row.id.clone(), topic.to_string());
        let grants = self
            .db
            .interact(move |c| queries::topic_grants(c, &key, &name))
            .await?;
        Ok(TopicDetails {
            connection_id: row.id,
            connection_name: row.name,
            topic: info,
            grants: grants
                .into_iter()
                .map(|(org, name, subscribe, publish)| TopicGrant {
                    algorithm: format!("{org}/{name}"),
                    access: app::domain::Access { subscribe, publish },
                })
                .collect(),
        })
    }

    async fn save_topic_grants(
        &self,
        by: &str,
        id: &str,
        topic: &TopicName,
        grants: Vec<TopicGrant>,
    ) -> Result<(), AppError> {
        let row = self.connection_row(id).await?;
        let mut seen = HashSet::new();
        for grant in &grants {
            let path = AlgorithmPath::parse(&grant.algorithm)?;
            if !seen.insert(path.to_string()) {
                return Err(AppError::validation(
                    "grants",
                    format!("{path} is listed twice."),
                ));
            }
            if !grant.access.subscribe && !grant.access.publish {
                return Err(AppError::validation(
                    "grants",
                    format!("Choose Subscribe, Publish or both for {path}, or remove it."),
                ));
            }
        }
        // Access is given only on a topic the broker shows; it can always
        // be taken away (the broker down, the topic gone).
        let on_broker = match self.live_topics(&row).await {
            Ok(topics) if topics.iter().any(|t| t.name == topic.as_str()) => Ok(()),
            Ok(_) => Err(AppError::not_found(format!("The topic '{topic}'"))),
            Err(error) => Err(error),
        };
        let (key, name) = (row.id.clone(), topic.to_string());
        let (actor, target) = (by.to_owned(), format!("{topic} on {}", row.name));
        self.db
            .transaction(move |c| {
                let ids: HashMap<String, String> = crate::db::algorithms::all(c)?
                    .into_iter()
                    .map(|a| (format!("{}/{}", a.org, a.name), a.id))
                    .collect();
                let mut resolved = Vec::new();
                for grant in &grants {
                    match ids.get(grant.algorithm.trim()) {
                        Some(id) => resolved.push((
                            id.clone(),
                            grant.access.subscribe,
                            grant.access.publish,
                        )),
                        None => {
                            return Err(DbError::Refused(AppError::not_found(format!(
                                "The algorithm '{}'",
                                grant.algorithm.trim()
                            ))));
                        }
                    }
                }
                if let Err(error) = on_broker {
                    let before: HashMap<String, (bool, bool)> =
                        queries::topic_grants(c, &key, &name)?
                            .into_iter()
                            .map(|(org, alg, s, p)| (format!("{org}/{alg}"), (s, p)))
                            .collect();
                    let adds = grants.iter().any(|g| {
                        let (s, p) = before
                            .get(g.algorithm.trim())
                            .copied()
                            .unwrap_or((false, false));
                        (g.access.subscribe && !s) || (g.access.publish && !p)
                    });
                    // Nothing granted there: nothing to take away either.
                    if adds || before.is_empty() {
                        return Err(DbError::Refused(error));
                    }
                }
                let before = queries::topic_grants(c, &key, &name)?
                    .into_iter()
                    .map(|(org, alg, s, p)| (format!("{org}/{alg}"), (s, p)))
                    .collect();
                queries::replace_topic_grants(c, &key, &name, &resolved)?;
                let after = grants
                    .iter()
                    .map(|g| {
                        let access = (g.access.subscribe, g.access.publish);
                        (g.algorithm.trim().to_owned(), access)
                    })
                    .collect();
                if let Some(detail) = grants_changed(&before, &after) {
                    crate::db::audit::record(c, &actor, "grants-changed", &target, &detail)?;
                }
                crate::db::flows::delete_ungranted_flows(c, &key, &name)?;
                crate::db::flows::drop_ungranted_dead_letter_queues(c, &key, &name)?;
                Ok(())
            })
            .await?;
        // Flows that lost their access stop now, not at the next round.
        self.runner.reconcile().await
    }

    async fn algorithm_names(&self) -> Result<Vec<String>, AppError> {
        let all = self.db.interact(crate::db::algorithms::all).await?;
        Ok(all
            .into_iter()
            .map(|a| format!("{}/{}", a.org, a.name))
            .collect())
    }
}

#[cfg(test)]
mod audit_tests {
    use super::grants_changed;

    #[test]
    fn grant_changes_read_before_and_after_per_algorithm() {
        let map = |entries: &[(&str, (bool, bool))]| {
            entries
                .iter()
                .map(|(a, g)| (a.to_string(), *g))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let before = map(&[("acme/a", (true, false)), ("acme/b", (false, true))]);
        let after = map(&[
            ("acme/a", (true, true)),
            ("acme/c", (true, false)),
            ("acme/b", (false, true)),
        ]);
        assert_eq!(
            grants_changed(&before, &after).as_deref(),
            Some("acme/a: subscribe → subscribe, publish; acme/c: none → subscribe")
        );
        assert_eq!(
            grants_changed(&after, &map(&[])).as_deref(),
            Some(
                "acme/a: subscribe, publish → none; acme/b: publish → none; acme/c: subscribe → none"
            )
        );
        assert_eq!(grants_changed(&before, &before), None);
    }
}
