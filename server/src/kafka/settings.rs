use app::domain::{AppError, BootstrapServers, SaslMechanism, SecurityProtocol};
use rdkafka::ClientConfig;

use crate::db::brokers::ConnectionRow;
use crate::secrets::SecretBox;

/// Everything needed to reach one Kafka cluster. `Debug` hides the secrets.
#[derive(Clone)]
pub struct BrokerSettings {
    pub bootstrap_servers: BootstrapServers,
    pub security_protocol: SecurityProtocol,
    pub sasl_mechanism: Option<SaslMechanism>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for BrokerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerSettings")
            .field("bootstrap_servers", &self.bootstrap_servers.as_str())
            .field("security_protocol", &self.security_protocol.as_str())
            .field("sasl_mechanism", &self.sasl_mechanism.map(|m| m.as_str()))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "set"))
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "set"))
            .finish()
    }
}

/// How long to wait for a broker to answer before giving up.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;

impl BrokerSettings {
    /// The librdkafka configuration: a fixed mapping, nothing else.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap_servers.as_str())
            .set("security.protocol", self.security_protocol.as_str())
            .set(
                "socket.connection.setup.timeout.ms",
                CONNECT_TIMEOUT_MS.to_string(),
            )
            .set("socket.timeout.ms", "10000")
            .set("reconnect.backoff.max.ms", "2000")
            .set("log.connection.close", "false");
        if self.security_protocol.uses_sasl() {
            if let Some(mechanism) = self.sasl_mechanism {
                config.set("sasl.mechanism", mechanism.as_str());
            }
            if let Some(username) = &self.username {
                config.set("sasl.username", username);
            }
            if let Some(password) = &self.password {
                config.set("sasl.password", password);
            }
        }
        if self.security_protocol.uses_tls()
            && let Some(pem) = &self.ca_pem
        {
            config.set("ssl.ca.pem", pem);
        }
        config
    }
}

/// Checks that a CA certificate is PEM: BEGIN/END CERTIFICATE blocks with
/// base64 in between.
pub fn check_ca_pem(pem: &str) -> Result<(), AppError> {
    use base64::Engine;
    let bad = |why: &str| {
        AppError::validation(
            "ca_pem",
            format!("The CA certificate is not a PEM certificate: {why}."),
        )
    };
    let mut blocks = 0;
    let mut rest = pem.trim();
    while !rest.is_empty() {
        let body = rest
            .strip_prefix("-----BEGIN CERTIFICATE-----")
            .ok_or_else(|| bad("it should start with -----BEGIN CERTIFICATE-----"))?;
        let (body, after) = body
            .split_once("-----END CERTIFICATE-----")
            .ok_or_else(|| bad("-----END CERTIFICATE----- is missing"))?;
        let b64: String = body.split_whitespace().collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad("the text between BEGIN and END is not base64"))?;
        if der.first() != Some(&0x30) || der.len() < 64 {
            return Err(bad("the decoded certificate is not DER"));
        }
        blocks += 1;
        rest = after.trim();
    }
    if blocks == 0 {
        return Err(bad("it is empty"));
    }
    Ok(())
}

/// The associated data a connection's sealed field is bound to.
pub fn sealed_context(id: &str, field: &str) -> String {
    format!("broker_connection/{id}/{field}")
}

impl BrokerSettings {
    /// The settings of a stored connection, its secrets opened.
    pub fn from_row(row: &ConnectionRow, secrets: &SecretBox) -> Result<Self, AppError> {
        let open = |sealed: &Option<String>, field: &str| -> Result<Option<String>, AppError> {
            sealed
                .as_deref()
                .map(|s| secrets.open(s, &sealed_context(&row.id, field)))
                .transpose()
                .map_err(|error| {
                    tracing::error!(connection = %row.id, %error, "a broker secret could not be opened");
                    AppError::Internal
                })
        };
        Ok(BrokerSettings {
            bootstrap_servers: BootstrapServers::parse(&row.bootstrap_servers)?,
            security_protocol: SecurityProtocol::parse(&row.security_protocol)
                .ok_or(AppError::Internal)?,
            sasl_mechanism: row.sasl_mechanism.as_deref().and_then(SaslMechanism::parse),
            username: row.username.clone(),
            password: open(&row.password_encrypted, "password")?,
            ca_pem: open(&row.ca_pem_encrypted, "ca_pem")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(protocol: SecurityProtocol) -> BrokerSettings {
        BrokerSettings {
            bootstrap_servers: BootstrapServers::parse("k:9092").unwrap(),
            security_protocol: protocol,
            sasl_mechanism: Some(SaslMechanism::ScramSha512),
            username: Some("svc".into()),
            password: Some("canary-password".into()),
            ca_pem: Some("PEM".into()),
        }
    }

    #[test]
    fn only_the_fields_of_the_form_reach_librdkafka() {
        let plain = settings(SecurityProtocol::Plaintext).client_config();
        assert_eq!(plain.get("bootstrap.servers"), Some("k:9092"));
        assert_eq!(plain.get("sasl.password"), None, "no SASL over PLAINTEXT");
        assert_eq!(plain.get("ssl.ca.pem"), None);
        let sasl_ssl = settings(SecurityProtocol::SaslSsl).client_config();
        assert_eq!(sasl_ssl.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(sasl_ssl.get("sasl.password"), Some("canary-password"));
        assert_eq!(sasl_ssl.get("ssl.ca.pem"), Some("PEM"));
        let keys: Vec<&str> = sasl_ssl.config_map().keys().copied().collect();
        for key in keys {
            assert!(
                [
                    "bootstrap.servers",
                    "security.protocol",
                    "socket.connection.setup.timeout.ms",
                    "socket.timeout.ms",
                    "reconnect.backoff.max.ms",
                    "log.connection.close",
                    "sasl.mechanism",
                    "sasl.username",
                    "sasl.password",
                    "ssl.ca.pem"
                ]
                .contains(&key),
                "unexpected key {key}"
            );
        }
    }

    #[test]
    fn debug_output_hides_the_secrets() {
        let text = format!("{:?}", settings(SecurityProtocol::SaslSsl));
        assert!(!text.contains("canary-password"));
        assert!(!text.contains("PEM\""));
    }

    #[test]
    fn ca_certificates_must_be_pem() {
        assert!(check_ca_pem("").is_err());
        assert!(check_ca_pem("hello").is_err());
        assert!(
            check_ca_pem("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----").is_err()
        );
        assert!(check_ca_pem("-----BEGIN CERTIFICATE-----\nMIIB\n").is_err());
        let der = [0x30u8; 80];
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let pem = format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
        assert!(check_ca_pem(&pem).is_ok());
    }
}
