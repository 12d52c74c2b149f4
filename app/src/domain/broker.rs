//! Broker connections, topics and topic grants, as shown and as typed.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::AppError;

/// The kind of message broker a connection reaches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BrokerKind {
    #[default]
    Kafka,
    /// Amazon Simple Queue Service: its "topics" are the account's queues.
    Sqs,
    /// Azure Service Bus: its "topics" are the namespace's queues and topic
    /// subscriptions (`topic/subscriptions/name`); outputs go to queues or
    /// topics.
    ServiceBus,
}

impl BrokerKind {
    /// Whether its "topics" are queues, whose messages are taken one by
    /// one and given back, rather than logs read by offset.
    pub fn is_queue(self) -> bool {
        self != BrokerKind::Kafka
    }

    pub const ALL: [BrokerKind; 3] = [BrokerKind::Kafka, BrokerKind::Sqs, BrokerKind::ServiceBus];

    /// The name stored and sent in forms.
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerKind::Kafka => "kafka",
            BrokerKind::Sqs => "sqs",
            BrokerKind::ServiceBus => "servicebus",
        }
    }

    /// The name on the screen.
    pub fn label(self) -> &'static str {
        match self {
            BrokerKind::Kafka => "Kafka",
            BrokerKind::Sqs => "Amazon SQS",
            BrokerKind::ServiceBus => "Azure Service Bus",
        }
    }

    /// A form's kind; an empty one is Kafka, the first kind there was.
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim() {
            "" => Some(BrokerKind::Kafka),
            value => Self::ALL.into_iter().find(|k| k.as_str() == value),
        }
    }
}

/// An AWS region name, such as `us-east-1` or `eu-central-1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsRegion(String);

impl AwsRegion {
    pub fn parse(value: &str) -> Result<Self, AppError> {
        let value = value.trim();
        let parts: Vec<&str> = value.split('-').collect();
        let ok = parts.len() >= 3
            && parts[0].len() == 2
            && parts.iter().all(|p| !p.is_empty())
            && parts[..parts.len() - 1]
                .iter()
                .all(|p| p.chars().all(|c| c.is_ascii_lowercase()))
            && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit());
        if !ok {
            return Err(AppError::validation(
                "region",
                "Enter an AWS region, for example us-east-1.",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name of an SQS queue: 1–80 letters, digits, `-` and `_`, with
/// `.fifo` at the end of a FIFO queue's name.
pub fn check_queue_name(name: &str) -> Result<(), AppError> {
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    if name.len() > 80
        || base.is_empty()
        || !base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        return Err(AppError::validation(
            "topic",
            "A queue name has 1 to 80 letters, digits, '-' and '_', and ends in .fifo for a FIFO queue.",
        ));
    }
    Ok(())
}

/// How the server talks to the brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    /// The name Kafka clients use (`security.protocol`).
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == value)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

/// How a SASL client proves who it is (`sasl.mechanism`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub const ALL: [SaslMechanism; 3] = [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == value)
    }
}

/// A comma-separated list of `host:port`, as Kafka's `bootstrap.servers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapServers(String);

impl BootstrapServers {
    pub fn parse(value: &str) -> Result<Self, AppError> {
        let field = "bootstrap_servers";
        let servers: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if servers.is_empty() {
            return Err(AppError::validation(
                field,
                "Enter at least one bootstrap server as host:port, for example kafka-1:9092.",
            ));
        }
        for server in &servers {
            let bad = || {
                AppError::validation(
                    field,
                    format!("'{server}' is not host:port, for example kafka-1:9092."),
                )
            };
            let (host, port) = server.rsplit_once(':').ok_or_else(bad)?;
            let host_ok = !host.is_empty()
                && host.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':')
                });
            let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
            if !host_ok || !port_ok {
                return Err(bad());
            }
        }
        Ok(Self(servers.join(",")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BootstrapServers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A topic name: 1–249 of `[a-zA-Z0-9._-]`, not `.` or `..`, as Kafka
/// takes; a Service Bus entity's path may have segments joined by `/`
/// (`orders/subscriptions/scoring`), which Kafka refuses
/// ([`TopicName::check_kafka`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicName(String);

impl TopicName {
    pub const MAX_LEN: usize = 249;

    pub fn parse(value: &str) -> Result<Self, AppError> {
        let field = "topic";
        if value.is_empty() {
            return Err(AppError::validation(field, "Enter a topic name."));
        }
        if value == "." || value == ".." {
            return Err(AppError::validation(
                field,
                "A topic cannot be named '.' or '..'.",
            ));
        }
        if value.len() > Self::MAX_LEN {
            return Err(AppError::validation(
                field,
                format!("A topic name has at most {} characters.", Self::MAX_LEN),
            ));
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
            || value
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(AppError::validation(
                field,
                "A topic name may use only letters, digits, '.', '_' and '-' (and '/' between the parts of a Service Bus path).",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// Refuses a name Kafka does not take: one with `/`.
    pub fn check_kafka(&self) -> Result<(), AppError> {
        if self.0.contains('/') {
            return Err(AppError::validation(
                "topic",
                "A Kafka topic name may use only letters, digits, '.', '_' and '-'.",
            ));
        }
        Ok(())
    }

    /// A Service Bus topic subscription's path, `topic/subscriptions/name`:
    /// the topic and the subscription.
    pub fn subscription(&self) -> Option<(&str, &str)> {
        let (topic, rest) = self.0.split_once("/subscriptions/")?;
        (!rest.contains('/')).then_some((topic, rest))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the admin types into the **Connect queue** form. Its `Debug` shows
/// whether a password was given, never the password. A field left out is
/// empty: each kind of broker reads only its own fields.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewBrokerConnection {
    /// One of the [`BrokerKind`] names; empty for Kafka.
    pub kind: String,
    pub name: String,
    pub bootstrap_servers: String,
    /// One of the [`SecurityProtocol`] names.
    pub security_protocol: String,
    /// One of the [`SaslMechanism`] names; only with a SASL protocol.
    pub sasl_mechanism: String,
    pub username: String,
    pub password: String,
    /// PEM of the certificate authority that signed the brokers' certificates.
    pub ca_pem: String,
    /// SQS: the AWS region.
    pub region: String,
    /// SQS: the address of an SQS-compatible service; empty for AWS itself.
    pub endpoint_url: String,
    /// SQS: the access key id, unless the server's default credentials are used.
    pub access_key_id: String,
    /// SQS: the secret access key.
    pub secret_access_key: String,
    /// SQS: use the credentials the server finds itself (environment,
    /// profile, instance role) instead of a key.
    pub use_default_credentials: bool,
    /// Service Bus: a connection string with a shared access key
    /// (`Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…`), or else
    /// the three fields below.
    pub connection_string: String,
    /// Service Bus: the namespace's host, `name.servicebus.windows.net`.
    pub namespace: String,
    /// Service Bus: the shared access policy's name.
    pub key_name: String,
    /// Service Bus: the shared access policy's key.
    pub key: String,
}

impl std::fmt::Debug for NewBrokerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewBrokerConnection")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() { "" } else { "set" },
            )
            .field("ca_pem", &if self.ca_pem.is_empty() { "" } else { "set" })
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &if self.secret_access_key.is_empty() {
                    ""
                } else {
                    "set"
                },
            )
            .field("use_default_credentials", &self.use_default_credentials)
            .field(
                "connection_string",
                &if self.connection_string.is_empty() {
                    ""
                } else {
                    "set"
                },
            )
            .field("namespace", &self.namespace)
            .field("key_name", &self.key_name)
            .field("key", &if self.key.is_empty() { "" } else { "set" })
            .finish()
    }
}

/// Whether the broker answered the last time it was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectionStatus {
    Reachable,
    Unreachable(String),
}

/// One row of the Queue manager list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerConnectionSummary {
    pub id: String,
    pub name: String,
    pub kind: BrokerKind,
    /// Kafka: the bootstrap servers; SQS: the region and endpoint.
    pub bootstrap_servers: String,
    pub status: ConnectionStatus,
    /// `None` when the broker could not be asked.
    pub topic_count: Option<u32>,
    pub flow_count: u32,
}

/// A topic as read live from the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u32,
    /// Kafka: sum over partitions of high minus low watermark; SQS: the
    /// messages visible in the queue.
    pub message_count: u64,
    /// What an SQS queue has besides; `None` for a Kafka topic.
    pub queue: Option<QueueInfo>,
    /// What a Service Bus entity has besides.
    pub entity: Option<EntityInfo>,
}

/// What kind of Service Bus entity a "topic" of a Service Bus connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntityKind {
    Queue,
    /// A topic: it can be published to, and read through its subscriptions.
    Topic,
    Subscription,
}

impl EntityKind {
    pub fn label(self) -> &'static str {
        match self {
            EntityKind::Queue => "queue",
            EntityKind::Topic => "topic",
            EntityKind::Subscription => "subscription",
        }
    }
}

/// A Service Bus queue's, topic's or subscription's counts, as read live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityInfo {
    pub kind: EntityKind,
    /// Messages that can be received (0 for a topic, whose messages are
    /// in its subscriptions).
    pub active: u64,
    /// Messages in the entity's dead-letter subqueue (`$deadletterqueue`).
    pub dead_letter: u64,
    /// How long a received message stays locked, in seconds.
    pub lock_duration_secs: u32,
    /// After how many deliveries Service Bus dead-letters a message.
    pub max_delivery_count: u32,
    /// Its messages are read by session, which flows do not do.
    #[serde(default)]
    pub requires_session: bool,
}

impl EntityInfo {
    /// Its kind as the Queue manager shows it: "queue", "queue (sessions)".
    pub fn kind_label(&self) -> String {
        if self.requires_session {
            format!("{} (sessions)", self.kind.label())
        } else {
            self.kind.label().to_owned()
        }
    }
}

/// An SQS queue's attributes, as read live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueInfo {
    pub fifo: bool,
    /// Messages that can be received now.
    pub visible: u64,
    /// Messages received and not yet deleted.
    pub in_flight: u64,
    /// Messages that become visible after their delay.
    pub delayed: u64,
    pub visibility_timeout_secs: u32,
    /// The queue's own dead-letter queue, when it has a redrive policy:
    /// "orders-dlq after 5 receives".
    pub redrive: Option<String>,
}

/// The connection details page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerConnectionDetails {
    pub id: String,
    pub name: String,
    pub kind: BrokerKind,
    pub bootstrap_servers: String,
    pub security_protocol: String,
    pub sasl_mechanism: Option<String>,
    pub username: Option<String>,
    /// Only whether a password is stored: the password itself never leaves the server.
    pub password_set: bool,
    pub ca_certificate_set: bool,
    /// SQS: the region, the endpoint (when not AWS itself) and the access
    /// key id (`None` with the server's default credentials).
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub access_key_id: Option<String>,
    pub created_at_ms: i64,
    pub status: ConnectionStatus,
    pub topics: Vec<TopicInfo>,
    /// Flows that deleting this connection would stop, as "org/name on topic".
    pub flows: Vec<String>,
}

/// What an algorithm may do on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    pub subscribe: bool,
    pub publish: bool,
}

impl Access {
    pub fn label(self) -> &'static str {
        match (self.subscribe, self.publish) {
            (true, true) => "Subscribe and Publish",
            (true, false) => "Subscribe",
            (false, true) => "Publish",
            (false, false) => "None",
        }
    }
}

/// One algorithm's access to one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicGrant {
    /// `org/name`
    pub algorithm: String,
    pub access: Access,
}

/// What the sidesheet and the topic edit page show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDetails {
    pub connection_id: String,
    pub connection_name: String,
    pub topic: TopicInfo,
    pub grants: Vec<TopicGrant>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_form_prints_without_its_password() {
        let form = NewBrokerConnection {
            name: "prod".into(),
            username: "svc".into(),
            password: "canary-password".into(),
            ..Default::default()
        };
        let printed = format!("{form:?}");
        assert!(!printed.contains("canary-password"), "{printed}");
        assert!(printed.contains(r#"password: "set""#) && printed.contains("svc"));
    }

    #[test]
    fn a_connection_form_prints_without_its_secret_access_key() {
        let form = NewBrokerConnection {
            kind: "sqs".into(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "canary-secret-key".into(),
            ..Default::default()
        };
        let printed = format!("{form:?}");
        assert!(!printed.contains("canary-secret-key"), "{printed}");
        assert!(printed.contains(r#"secret_access_key: "set""#) && printed.contains("AKIDEXAMPLE"));
    }

    #[test]
    fn kinds_regions_and_queue_names() {
        assert_eq!(BrokerKind::parse(""), Some(BrokerKind::Kafka));
        for kind in BrokerKind::ALL {
            assert_eq!(BrokerKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(BrokerKind::parse("rabbitmq"), None);
        for good in [
            "us-east-1",
            "eu-central-1",
            "us-gov-west-1",
            "ap-southeast-2",
        ] {
            assert_eq!(AwsRegion::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "us-east",
            "US-EAST-1",
            "useast1",
            "us--1",
            "u-east-1",
            "us-east-1a",
        ] {
            assert_eq!(
                AwsRegion::parse(bad).unwrap_err().field(),
                Some("region"),
                "{bad}"
            );
        }
        for good in ["orders", "orders_v2-a", "orders.fifo", &"q".repeat(80)] {
            assert!(check_queue_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".fifo",
            "a.b",
            "a.fifo.fifo",
            "with space",
            &"q".repeat(81),
        ] {
            assert!(check_queue_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bootstrap_servers_need_host_and_port() {
        assert_eq!(
            BootstrapServers::parse(" a:9092, b.example:9093 ")
                .unwrap()
                .as_str(),
            "a:9092,b.example:9093"
        );
        for bad in [
            "",
            " , ",
            "kafka",
            "kafka:",
            ":9092",
            "kafka:0",
            "kafka:99999",
            "ka fka:9092",
            "kafka:port",
        ] {
            let err = BootstrapServers::parse(bad).unwrap_err();
            assert_eq!(err.field(), Some("bootstrap_servers"), "{bad}");
        }
    }

    #[test]
    fn topic_names_follow_kafkas_rules() {
        assert!(TopicName::parse("orders.v1_in-2").is_ok());
        assert!(TopicName::parse(&"a".repeat(249)).is_ok());
        for bad in [
            "",
            ".",
            "..",
            "with space",
            "ümlaut",
            "a//b",
            "/a",
            "a/",
            "a/../b",
            &"a".repeat(250),
        ] {
            assert!(TopicName::parse(bad).is_err(), "{bad}");
        }
        let path = TopicName::parse("orders/subscriptions/scoring").unwrap();
        assert_eq!(path.subscription(), Some(("orders", "scoring")));
        assert!(path.check_kafka().is_err());
        assert!(TopicName::parse("orders").unwrap().check_kafka().is_ok());
        assert_eq!(TopicName::parse("orders").unwrap().subscription(), None);
    }

    #[test]
    fn protocols_and_mechanisms_round_trip() {
        for p in SecurityProtocol::ALL {
            assert_eq!(SecurityProtocol::parse(p.as_str()), Some(p));
        }
        for m in SaslMechanism::ALL {
            assert_eq!(SaslMechanism::parse(m.as_str()), Some(m));
        }
        assert!(SecurityProtocol::SaslSsl.uses_sasl() && SecurityProtocol::SaslSsl.uses_tls());
        assert!(!SecurityProtocol::Plaintext.uses_sasl());
        assert_eq!(SecurityProtocol::parse("plaintext"), None);
    }
}
