//! Broker connections, topics and topic grants, as shown and as typed.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::AppError;

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

/// A topic name Kafka accepts: 1–249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
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
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(AppError::validation(
                field,
                "A topic name may use only letters, digits, '.', '_' and '-'.",
            ));
        }
        Ok(Self(value.to_owned()))
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
/// whether a password was given, never the password.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewBrokerConnection {
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
}

impl std::fmt::Debug for NewBrokerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewBrokerConnection")
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
    /// Always "Kafka" for now.
    pub kind: String,
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
    /// Sum over partitions of high minus low watermark.
    pub message_count: u64,
}

/// The connection details page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerConnectionDetails {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub bootstrap_servers: String,
    pub security_protocol: String,
    pub sasl_mechanism: Option<String>,
    pub username: Option<String>,
    /// Only whether a password is stored: the password itself never leaves the server.
    pub password_set: bool,
    pub ca_certificate_set: bool,
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
            "a/b",
            &"a".repeat(250),
        ] {
            assert!(TopicName::parse(bad).is_err(), "{bad}");
        }
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
