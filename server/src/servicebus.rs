//! Talking to an Azure Service Bus namespace.
//!
//! A Service Bus connection's "topics" are the namespace's queues, its
//! topics (which can be published to) and their subscriptions, shown as
//! `topic/subscriptions/name`. Entities are listed and created through the
//! namespace's management API (ATOM over HTTPS), signed with a shared access
//! signature made from the connection's key; messages travel over AMQP 1.0
//! ([`azservicebus`]).
//!
//! A connection string with `UseDevelopmentEmulator=true` points at a
//! development endpoint: AMQP without TLS on port 5672 of its host, and the
//! management API over plain HTTP on the port the endpoint names (5300 when
//! it names none).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use app::domain::{AppError, EntityInfo, EntityKind, NewBrokerConnection, TopicInfo};

/// How long one management call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a signature made for one call stays valid.
const TOKEN_LIFETIME: Duration = Duration::from_secs(600);
/// The management API's version.
const API_VERSION: &str = "2021-05";
/// Entities asked for per page of a list.
const PAGE: usize = 100;
/// The management port of a development endpoint that names none.
const DEVELOPMENT_MANAGEMENT_PORT: u16 = 5300;

/// How the server reaches a Service Bus namespace.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceBusSettings {
    /// The namespace's host, `name.servicebus.windows.net`.
    pub namespace: String,
    /// A development endpoint's management address (`http://host:port`);
    /// `None` for a namespace in Azure.
    pub development: Option<String>,
    pub key_name: String,
    pub key: String,
}

impl std::fmt::Debug for ServiceBusSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceBusSettings")
            .field("namespace", &self.namespace)
            .field("development", &self.development)
            .field("key_name", &self.key_name)
            .finish()
    }
}

/// Whether `host` is a host name or an IP address.
fn host_ok(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
}

impl ServiceBusSettings {
    /// The settings the **Connect queue** form gives: a connection string,
    /// or the namespace, key name and key.
    pub fn from_form(new: &NewBrokerConnection) -> Result<Self, AppError> {
        let connection_string = new.connection_string.trim();
        if !connection_string.is_empty() {
            return Self::parse_connection_string(connection_string);
        }
        let namespace = new.namespace.trim();
        let namespace = namespace
            .strip_prefix("sb://")
            .or_else(|| namespace.strip_prefix("https://"))
            .unwrap_or(namespace)
            .trim_end_matches('/');
        if namespace.is_empty() {
            return Err(AppError::validation(
                "connection_string",
                "Enter a connection string, or the namespace, key name and key.",
            ));
        }
        if !host_ok(namespace) {
            return Err(AppError::validation(
                "namespace",
                "Enter the namespace as name.servicebus.windows.net.",
            ));
        }
        // A bare name is a namespace in Azure's public cloud.
        let namespace = if namespace.contains('.') {
            namespace.to_owned()
        } else {
            format!("{namespace}.servicebus.windows.net")
        };
        let key_name = new.key_name.trim();
        if key_name.is_empty() {
            return Err(AppError::validation(
                "key_name",
                "Enter the name of the shared access policy, such as RootManageSharedAccessKey.",
            ));
        }
        if new.key.trim().is_empty() {
            return Err(AppError::validation("key", "Enter the shared access key."));
        }
        Ok(ServiceBusSettings {
            namespace,
            development: None,
            key_name: key_name.to_owned(),
            key: new.key.trim().to_owned(),
        })
    }

    /// Reads `Endpoint=sb://…/;SharedAccessKeyName=…;SharedAccessKey=…`
    /// (with `UseDevelopmentEmulator=true` for a development endpoint).
    pub fn parse_connection_string(value: &str) -> Result<Self, AppError> {
        let bad = |message: &str| AppError::validation("connection_string", message);
        let (mut endpoint, mut key_name, mut key, mut development) = (None, None, None, false);
        for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err(bad(
                    "A connection string is Name=value pairs separated by ';', such as Endpoint=sb://name.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=….",
                ));
            };
            let value = value.trim();
            match name.trim() {
                "Endpoint" => endpoint = Some(value),
                "SharedAccessKeyName" => key_name = Some(value),
                "SharedAccessKey" => key = Some(value),
                "UseDevelopmentEmulator" => development = value.eq_ignore_ascii_case("true"),
                "EntityPath" => {
                    return Err(bad(
                        "This connection string is for one entity (it has EntityPath): use the namespace's connection string.",
                    ));
                }
                "SharedAccessSignature" => {
                    return Err(bad(
                        "Connect with a shared access key (SharedAccessKeyName and SharedAccessKey), not a signature that expires.",
                    ));
                }
                _ => {}
            }
        }
        let endpoint = endpoint.ok_or_else(|| bad("The connection string has no Endpoint."))?;
        let rest = endpoint
            .strip_prefix("sb://")
            .ok_or_else(|| {
                bad("The Endpoint starts with sb://, such as sb://name.servicebus.windows.net/.")
            })?
            .trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (
                host,
                Some(
                    port.parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| bad("The Endpoint's port is not a number."))?,
                ),
            ),
            None => (rest, None),
        };
        if !host_ok(host) {
            return Err(bad("The Endpoint's host is not a host name."));
        }
        let key_name = key_name
            .filter(|k| !k.is_empty())
            .ok_or_else(|| bad("The connection string has no SharedAccessKeyName."))?;
        let key = key
            .filter(|k| !k.is_empty())
            .ok_or_else(|| bad("The connection string has no SharedAccessKey."))?;
        Ok(ServiceBusSettings {
            namespace: host.to_owned(),
            development: development.then(|| {
                format!(
                    "http://{host}:{}",
                    port.unwrap_or(DEVELOPMENT_MANAGEMENT_PORT)
                )
            }),
            key_name: key_name.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The settings of a stored Service Bus connection, its key opened.
    pub fn from_row(
        row: &crate::db::brokers::ConnectionRow,
        secrets: &crate::secrets::SecretBox,
    ) -> Result<Self, AppError> {
        let key = row
            .password_encrypted
            .as_deref()
            .map(|sealed| {
                secrets
                    .open(sealed, &crate::kafka::sealed_context(&row.id, "key"))
                    .map_err(|error| {
                        tracing::error!(connection = %row.id, %error, "a Service Bus key could not be opened");
                        AppError::Internal
                    })
            })
            .transpose()?
            .unwrap_or_default();
        Ok(ServiceBusSettings {
            namespace: row.bootstrap_servers.clone(),
            development: row.endpoint_url.clone(),
            key_name: row.username.clone().unwrap_or_default(),
            key,
        })
    }

    /// Where the connection points, as the Queue manager lists it.
    pub fn address(&self) -> String {
        address(&self.namespace, self.development.as_deref())
    }

    /// The base address of the management API, ending in `/`.
    fn management(&self) -> String {
        match &self.development {
            Some(base) => format!("{}/", base.trim_end_matches('/')),
            None => format!("https://{}/", self.namespace),
        }
    }

    /// The connection string the AMQP client is given.
    pub fn connection_string(&self) -> String {
        format!(
            "Endpoint=sb://{}/;SharedAccessKeyName={};SharedAccessKey={}",
            self.namespace, self.key_name, self.key
        )
    }
}

/// Where a Service Bus connection points: its namespace, or the
/// development endpoint.
pub fn address(namespace: &str, development: Option<&str>) -> String {
    match development {
        Some(management) => format!("sb://{namespace} (development endpoint, {management})"),
        None => format!("sb://{namespace}"),
    }
}

/// The suffix of an entity's dead-letter subqueue.
pub const DEAD_LETTER_SUFFIX: &str = "/$deadletterqueue";

/// The path of the dead-letter subqueue of the queue or subscription `path`.
pub fn dead_letter_path(path: &str) -> String {
    format!("{path}{DEAD_LETTER_SUFFIX}")
}

/// An error and the errors that caused it, each once: `a: b: c`.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let more = inner.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = inner.source();
    }
    text
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// A shared access signature for `resource`, valid until `expiry` (seconds
/// since the epoch): `SharedAccessSignature sr=…&sig=…&se=…&skn=…`.
pub fn sas_token(resource: &str, key_name: &str, key: &str, expiry: u64) -> String {
    use base64::Engine;
    let sr = url_encode(resource);
    let signature = hmac_sha256(key.as_bytes(), format!("{sr}\n{expiry}").as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(signature);
    format!(
        "SharedAccessSignature sr={sr}&sig={}&se={expiry}&skn={}",
        url_encode(&sig),
        url_encode(key_name)
    )
}

/// The namespace's management API, for listing and creating entities.
pub struct ServiceBusAdmin {
    settings: ServiceBusSettings,
    http: reqwest::Client,
}

impl ServiceBusAdmin {
    pub fn new(settings: &ServiceBusSettings) -> Result<Self, AppError> {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|error| {
                tracing::error!(%error, "an HTTP client could not be built");
                AppError::Internal
            })?;
        Ok(ServiceBusAdmin {
            settings: settings.clone(),
            http,
        })
    }

    fn authorization(&self) -> String {
        let expiry = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(TOKEN_LIFETIME)
            .as_secs();
        sas_token(
            &self.settings.management(),
            &self.settings.key_name,
            &self.settings.key,
            expiry,
        )
    }

    fn failed(&self, error: reqwest::Error) -> AppError {
        let message = if error.is_timeout() {
            format!(
                "Service Bus at {} did not answer within {} seconds.",
                self.settings.address(),
                CALL_TIMEOUT.as_secs()
            )
        } else {
            format!(
                "Could not reach Service Bus at {}: {}",
                self.settings.address(),
                with_causes(&error)
            )
        };
        AppError::Broker { message }
    }

    /// Why the namespace answered `status`, in words an admin can act on.
    fn refused(&self, status: reqwest::StatusCode, body: &str) -> AppError {
        let detail = tag_text(body, "Detail")
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        let message = match status.as_u16() {
            401 | 403 => format!(
                "Service Bus at {} refused the key '{}' (HTTP {}){detail}",
                self.settings.address(),
                self.settings.key_name,
                status.as_u16()
            ),
            code => format!(
                "Service Bus at {} answered with an error (HTTP {code}){detail}",
                self.settings.address()
            ),
        };
        AppError::Broker { message }
    }

    /// GETs `path` under the management API: `Ok(None)` on 404.
    async fn get(&self, path: &str, query: &str) -> Result<Option<String>, AppError> {
        let url = format!(
            "{}{path}?api-version={API_VERSION}{query}",
            self.settings.management()
        );
        let answer = self
            .http
            .get(url)
            .header("Authorization", self.authorization())
            .send()
            .await
            .map_err(|e| self.failed(e))?;
        let status = answer.status();
        let body = answer.text().await.map_err(|e| self.failed(e))?;
        match status.as_u16() {
            200 => Ok(Some(body)),
            404 => Ok(None),
            _ => Err(self.refused(status, &body)),
        }
    }

    /// Every entry of a feed, page after page.
    async fn feed(&self, path: &str) -> Result<Vec<String>, AppError> {
        let mut entries = Vec::new();
        loop {
            let query = format!("&$skip={}&$top={PAGE}", entries.len());
            let Some(body) = self.get(path, &query).await? else {
                return Ok(entries);
            };
            let page: Vec<String> = feed_entries(&body);
            let full = page.len() == PAGE;
            entries.extend(page);
            if !full {
                return Ok(entries);
            }
        }
    }

    /// Asks the namespace for its queues: `Ok(number of queues and
    /// topics)` when it answers and takes the key.
    pub async fn check(&self) -> Result<u32, AppError> {
        let queues = self.feed("$Resources/Queues").await?.len();
        let topics = self.feed("$Resources/Topics").await?.len();
        Ok((queues + topics) as u32)
    }

    /// Every queue, topic and topic subscription, by name.
    pub async fn entities(&self) -> Result<Vec<TopicInfo>, AppError> {
        let mut all: Vec<TopicInfo> = self
            .feed("$Resources/Queues")
            .await?
            .iter()
            .filter_map(|entry| entity_info(entry, EntityKind::Queue, None))
            .collect();
        for topic in self
            .feed("$Resources/Topics")
            .await?
            .iter()
            .filter_map(|entry| entity_info(entry, EntityKind::Topic, None))
        {
            let path = format!("{}/Subscriptions", topic.name);
            all.extend(
                self.feed(&path)
                    .await?
                    .iter()
                    .filter_map(|e| entity_info(e, EntityKind::Subscription, Some(&topic.name))),
            );
            all.push(topic);
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// The queue, topic or subscription at `path`, `None` if there is none
    /// (Service Bus answers a missing entity with an empty feed, or 404).
    pub async fn entity(&self, path: &str) -> Result<Option<TopicInfo>, AppError> {
        let (at, topic) = match path.split_once("/subscriptions/") {
            Some((topic, name)) => (format!("{topic}/Subscriptions/{name}"), Some(topic)),
            None => (path.to_owned(), None),
        };
        let Some(body) = self.get(&at, "").await? else {
            return Ok(None);
        };
        Ok(feed_entries(&body).first().and_then(|entry| {
            let kind = match topic {
                Some(_) => EntityKind::Subscription,
                None if entry.contains("<TopicDescription") => EntityKind::Topic,
                None => EntityKind::Queue,
            };
            entity_info(entry, kind, topic)
        }))
    }

    /// Creates a queue.
    pub async fn create_queue(&self, name: &str) -> Result<(), AppError> {
        check_queue_name(name)?;
        let url = format!(
            "{}{name}?api-version={API_VERSION}",
            self.settings.management()
        );
        let body = concat!(
            r#"<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml">"#,
            r#"<QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect" "#,
            r#"xmlns:i="http://www.w3.org/2001/XMLSchema-instance"></QueueDescription></content></entry>"#
        );
        let answer = self
            .http
            .put(url)
            .header("Authorization", self.authorization())
            .header(
                "Content-Type",
                "application/atom+xml;type=entry;charset=utf-8",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| self.failed(e))?;
        let status = answer.status();
        let text = answer.text().await.map_err(|e| self.failed(e))?;
        match status.as_u16() {
            200 | 201 => Ok(()),
            409 => Err(AppError::validation(
                "topic",
                format!("The queue '{name}' already exists."),
            )),
            _ => Err(self.refused(status, &text)),
        }
    }
}

/// A Service Bus queue name: 1–260 letters, digits, `.`, `-` and `_`
/// (the Queue manager creates no nested paths).
pub fn check_queue_name(name: &str) -> Result<(), AppError> {
    if name.is_empty()
        || name.len() > 260
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        || name.starts_with(['.', '-', '_'])
        || name.ends_with(['.', '-', '_'])
    {
        return Err(AppError::validation(
            "topic",
            "A Service Bus queue name has letters, digits, '.', '-' and '_', and starts and ends with a letter or digit.",
        ));
    }
    Ok(())
}

/// The `<entry>` elements of an ATOM feed, each as its text.
fn feed_entries(feed: &str) -> Vec<String> {
    let mut entries = Vec::new();
    let mut rest = feed;
    while let Some(start) = rest.find("<entry") {
        let Some(end) = rest[start..].find("</entry>") else {
            break;
        };
        entries.push(rest[start..start + end].to_owned());
        rest = &rest[start + end + "</entry>".len()..];
    }
    entries
}

/// The text of the first element named `name` (with or without a
/// namespace prefix) in `xml`, its entities decoded.
fn tag_text(xml: &str, name: &str) -> Option<String> {
    let mut from = 0;
    while let Some(at) = xml[from..].find(name) {
        let at = from + at;
        from = at + name.len();
        let before = xml[..at].chars().next_back();
        let opening = matches!(before, Some('<') | Some(':'))
            && !xml[..at].ends_with("</")
            && xml[..at]
                .rfind('<')
                .is_some_and(|lt| !xml[lt..at].contains(['/', ' ']));
        let after = xml[from..].chars().next();
        if !opening || !matches!(after, Some('>') | Some(' ')) {
            continue;
        }
        let open_end = from + xml[from..].find('>')?;
        if xml[..open_end].ends_with('/') {
            return Some(String::new());
        }
        let text_start = open_end + 1;
        let text_end = text_start + xml[text_start..].find("</")?;
        let text = &xml[text_start..text_end];
        return Some(
            text.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&")
                .trim()
                .to_owned(),
        );
    }
    None
}

/// An ISO 8601 duration such as `PT1M` or `PT30S`, in seconds.
fn duration_secs(value: &str) -> Option<u32> {
    let mut rest = value.strip_prefix('P')?;
    let mut seconds = 0f64;
    let mut in_time = false;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('T') {
            in_time = true;
            rest = r;
            continue;
        }
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..end].parse().ok()?;
        let unit = rest[end..].chars().next()?;
        seconds += number
            * match (in_time, unit) {
                (false, 'D') => 86_400.0,
                (true, 'H') => 3_600.0,
                (true, 'M') => 60.0,
                (true, 'S') => 1.0,
                _ => return None,
            };
        rest = &rest[end + 1..];
    }
    Some(seconds as u32)
}

/// An entry of a queue, topic or subscription feed as the Queue manager
/// shows it; a subscription is named `topic/subscriptions/name`.
fn entity_info(entry: &str, kind: EntityKind, topic: Option<&str>) -> Option<TopicInfo> {
    let title = tag_text(entry, "title")?;
    let name = match topic {
        Some(topic) => format!("{topic}/subscriptions/{title}"),
        None => title,
    };
    let count = |tag: &str| {
        tag_text(entry, tag)
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let active = count("ActiveMessageCount");
    Some(TopicInfo {
        partitions: 1,
        replication_factor: 0,
        message_count: active,
        queue: None,
        entity: Some(EntityInfo {
            kind,
            active,
            dead_letter: count("DeadLetterMessageCount"),
            lock_duration_secs: tag_text(entry, "LockDuration")
                .and_then(|d| duration_secs(&d))
                .unwrap_or(0),
            max_delivery_count: count("MaxDeliveryCount") as u32,
            requires_session: tag_text(entry, "RequiresSession").as_deref() == Some("true"),
        }),
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_string_gives_the_namespace_and_key() {
        let settings = ServiceBusSettings::parse_connection_string(
            "Endpoint=sb://acme.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=abc+/=",
        )
        .unwrap();
        assert_eq!(settings.namespace, "acme.servicebus.windows.net");
        assert_eq!(settings.key_name, "RootManageSharedAccessKey");
        assert_eq!(settings.key, "abc+/=");
        assert_eq!(settings.development, None);
        assert_eq!(
            settings.management(),
            "https://acme.servicebus.windows.net/"
        );
        assert!(!format!("{settings:?}").contains("abc+/="));

        let local = ServiceBusSettings::parse_connection_string(
            "Endpoint=sb://127.0.0.9:8080;SharedAccessKeyName=k;SharedAccessKey=s;UseDevelopmentEmulator=true;",
        )
        .unwrap();
        assert_eq!(local.development.as_deref(), Some("http://127.0.0.9:8080"));
        assert_eq!(local.namespace, "127.0.0.9");

        for (bad, says) in [
            (
                "Endpoint=sb://a.b/;SharedAccessKeyName=k",
                "SharedAccessKey",
            ),
            ("SharedAccessKeyName=k;SharedAccessKey=s", "Endpoint"),
            (
                "Endpoint=https://a.b/;SharedAccessKeyName=k;SharedAccessKey=s",
                "sb://",
            ),
            (
                "Endpoint=sb://a.b/;SharedAccessSignature=SharedAccessSignature sr=x",
                "signature",
            ),
            (
                "Endpoint=sb://a.b/;SharedAccessKeyName=k;SharedAccessKey=s;EntityPath=q",
                "EntityPath",
            ),
            ("just words", "Name=value"),
        ] {
            let error = ServiceBusSettings::parse_connection_string(bad).unwrap_err();
            assert_eq!(error.field(), Some("connection_string"), "{bad}");
            assert!(error.to_string().contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn the_three_fields_give_a_namespace_in_azure() {
        let form = NewBrokerConnection {
            namespace: "acme".into(),
            key_name: "send-listen".into(),
            key: "secret".into(),
            ..Default::default()
        };
        let settings = ServiceBusSettings::from_form(&form).unwrap();
        assert_eq!(settings.namespace, "acme.servicebus.windows.net");
        let missing = NewBrokerConnection {
            key: String::new(),
            ..form
        };
        assert_eq!(
            ServiceBusSettings::from_form(&missing).unwrap_err().field(),
            Some("key")
        );
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 of RFC 4231.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let token = sas_token("https://a.b/", "k", "s", 1_700_000_000);
        assert!(token.starts_with("SharedAccessSignature sr=https%3A%2F%2Fa.b%2F&sig="));
        assert!(token.ends_with("&se=1700000000&skn=k"));
    }

    #[test]
    fn feeds_are_read_into_entities() {
        let feed = r#"<feed xmlns="http://www.w3.org/2005/Atom"><title type="text">Queues</title>
<entry><id>https://a/orders</id><title type="text">orders</title><content type="application/xml">
<QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"><LockDuration>PT1M</LockDuration>
<MaxDeliveryCount>10</MaxDeliveryCount><MessageCount>7</MessageCount><RequiresSession>true</RequiresSession>
<CountDetails xmlns:d2p1="http://schemas.microsoft.com/netservices/2011/06/servicebus"><d2p1:ActiveMessageCount>5</d2p1:ActiveMessageCount><d2p1:DeadLetterMessageCount>2</d2p1:DeadLetterMessageCount></CountDetails>
</QueueDescription></content></entry>
<entry><title type="text">empty</title><content><QueueDescription><LockDuration>PT30S</LockDuration></QueueDescription></content></entry></feed>"#;
        let entries = feed_entries(feed);
        assert_eq!(entries.len(), 2);
        let orders = entity_info(&entries[0], EntityKind::Queue, None).unwrap();
        assert_eq!(orders.name, "orders");
        let info = orders.entity.unwrap();
        assert_eq!((info.active, info.dead_letter), (5, 2));
        assert_eq!((info.lock_duration_secs, info.max_delivery_count), (60, 10));
        assert!(info.requires_session);
        assert_eq!(info.kind_label(), "queue (sessions)");
        let sub = entity_info(&entries[1], EntityKind::Subscription, Some("t")).unwrap();
        assert_eq!(sub.name, "t/subscriptions/empty");
        let sub = sub.entity.unwrap();
        assert_eq!(sub.lock_duration_secs, 30);
        assert!(!sub.requires_session);
        assert_eq!(duration_secs("P1DT1H2M3.5S"), Some(86_400 + 3_723));
        assert_eq!(duration_secs("1M"), None);
    }
}
