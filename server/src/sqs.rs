//! Talking to Amazon SQS, or an SQS-compatible service at an endpoint URL.
//!
//! An SQS connection's "topics" are the account's queues in its region. The
//! client is the AWS SDK's, over rustls; its credentials are the connection's
//! access key, or the server's own (environment, shared profile, container or
//! instance role) when the admin chose them.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use app::domain::{AppError, AwsRegion, QueueInfo, TopicInfo, check_queue_name};

/// Error codes that sending the same message again cannot cure.
const REFUSED_FOR_GOOD: &[&str] = &[
    "InvalidParameterValue",
    "InvalidMessageContents",
    "InvalidAttributeName",
    "InvalidAttributeValue",
    "MissingParameter",
    "UnsupportedOperation",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
];

/// The codes with which SQS says a queue does not exist.
const QUEUE_GONE: &[&str] = &[
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
];

/// The codes with which AWS refuses a key.
const CREDENTIAL_ERRORS: &[&str] = &[
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "AccessDenied",
    "AccessDeniedException",
];

/// How long one call may take, retries included.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How the server reaches an SQS service.
#[derive(Clone, PartialEq, Eq)]
pub struct SqsSettings {
    pub region: AwsRegion,
    /// An SQS-compatible service; `None` for AWS itself.
    pub endpoint_url: Option<String>,
    /// The access key id and secret access key; `None` for the server's
    /// default credentials.
    pub key: Option<(String, String)>,
}

impl std::fmt::Debug for SqsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsSettings")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("access_key_id", &self.key.as_ref().map(|(id, _)| id))
            .finish()
    }
}

impl SqsSettings {
    /// The settings of a stored SQS connection, its secret key opened.
    pub fn from_row(
        row: &crate::db::brokers::ConnectionRow,
        secrets: &crate::secrets::SecretBox,
    ) -> Result<Self, AppError> {
        let secret = row
            .password_encrypted
            .as_deref()
            .map(|sealed| {
                secrets
                    .open(sealed, &crate::kafka::sealed_context(&row.id, "secret_access_key"))
                    .map_err(|error| {
                        tracing::error!(connection = %row.id, %error, "an SQS secret key could not be opened");
                        AppError::Internal
                    })
            })
            .transpose()?;
        Ok(SqsSettings {
            region: AwsRegion::parse(row.region.as_deref().unwrap_or_default())?,
            endpoint_url: row.endpoint_url.clone(),
            key: row.username.clone().zip(secret),
        })
    }

    /// Where the connection points, as the Queue manager lists it.
    pub fn address(&self) -> String {
        address(self.region.as_str(), self.endpoint_url.as_deref())
    }
}

/// Where an SQS connection points: AWS's endpoint of the region, or the
/// region at an SQS-compatible service.
pub fn address(region: &str, endpoint_url: Option<&str>) -> String {
    match endpoint_url {
        Some(url) => format!("{region} at {url}"),
        None => format!("sqs.{region}.amazonaws.com"),
    }
}

/// Checks an endpoint URL: `http://` or `https://`, a host, and nothing
/// after the host and port but an optional `/`.
pub fn check_endpoint_url(url: &str) -> Result<String, AppError> {
    let bad = || {
        AppError::validation(
            "endpoint_url",
            "Enter the endpoint as http(s)://host[:port], for example https://sqs.example.com.",
        )
    };
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => (host, Some(port)),
        _ => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if !host_ok || !port_ok {
        return Err(bad());
    }
    Ok(url.to_owned())
}

/// The SDK client of one SQS connection.
pub struct SqsClient {
    client: Client,
    address: String,
    timeout: Duration,
}

impl SqsClient {
    /// A client for the Queue manager: each call answers within
    /// [`CALL_TIMEOUT`].
    pub fn new(settings: &SqsSettings) -> Self {
        Self::with_timeout(settings, CALL_TIMEOUT)
    }

    /// A client whose calls may take `timeout`: a flow's long-polled
    /// receives wait for messages longer than an admin's call may take.
    pub fn with_timeout(settings: &SqsSettings, timeout: Duration) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let credentials = match &settings.key {
            Some((id, secret)) => SharedCredentialsProvider::new(Credentials::new(
                id.clone(),
                secret.clone(),
                None,
                None,
                "eventflows-connection",
            )),
            None => default_credentials(http.clone()),
        };
        let mut config = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.as_str().to_owned()))
            .credentials_provider(credentials)
            .http_client(http)
            .timeout_config(
                aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(timeout)
                    .connect_timeout(Duration::from_secs(3))
                    .build(),
            );
        if let Some(url) = &settings.endpoint_url {
            config = config.endpoint_url(url.clone());
        }
        Self {
            client: Client::from_conf(config.build()),
            address: settings.address(),
            timeout,
        }
    }

    /// Why a call failed, in words an admin can act on.
    pub(crate) fn describe<E>(&self, error: SdkError<E, HttpResponse>) -> AppError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let message = match &error {
            SdkError::TimeoutError(_) => format!(
                "SQS at {} did not answer within {} seconds.",
                self.address,
                self.timeout.as_secs()
            ),
            SdkError::DispatchFailure(_) => format!(
                "Could not reach SQS at {}: {}",
                self.address,
                DisplayErrorContext(&error)
            ),
            SdkError::ServiceError(e) => {
                let status = e.raw().status().as_u16();
                let code = error_code(&error);
                let reason = e.err().message().unwrap_or("no reason given");
                let code = code.as_deref().unwrap_or("unknown");
                if matches!(status, 401 | 403) || CREDENTIAL_ERRORS.contains(&code) {
                    format!(
                        "SQS at {} refused the credentials ({code}, HTTP {status}): {reason}",
                        self.address
                    )
                } else {
                    format!(
                        "SQS at {} answered with an error ({code}, HTTP {status}): {reason}",
                        self.address
                    )
                }
            }
            _ => format!("SQS at {}: {}", self.address, DisplayErrorContext(&error)),
        };
        AppError::Broker { message }
    }

    /// Whether sending a message again cannot cure `error`: the message
    /// or the request is refused as it is, or the queue is gone.
    pub(crate) fn refused_for_good<E>(error: &SdkError<E, HttpResponse>) -> bool
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        error_code(error).is_some_and(|code| REFUSED_FOR_GOOD.contains(&code.as_str()))
    }

    /// Whether `error` says the queue does not exist (any more).
    pub(crate) fn queue_gone<E>(error: &SdkError<E, HttpResponse>) -> bool
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        error_code(error).is_some_and(|code| QUEUE_GONE.contains(&code.as_str()))
    }

    /// The messages on the queue at `url` that are not deleted yet:
    /// visible, in flight and delayed (as SQS counts them, approximately).
    /// `Ok(None)` when the queue does not exist.
    pub async fn waiting(&self, url: &str) -> Result<Option<u64>, AppError> {
        let answer = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await;
        match answer {
            Ok(answer) => Ok(Some(
                answer
                    .attributes()
                    .map(|a| a.values().filter_map(|v| v.parse::<u64>().ok()).sum())
                    .unwrap_or(0),
            )),
            Err(e) if Self::queue_gone(&e) => Ok(None),
            Err(e) => Err(self.describe(e)),
        }
    }

    /// The URLs of every queue, following the pages of the list.
    async fn queue_urls(&self) -> Result<Vec<String>, AppError> {
        let mut urls = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_queues()
                .max_results(1000)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| self.describe(e))?;
            urls.extend(page.queue_urls().iter().cloned());
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(urls);
            }
        }
    }

    /// Asks SQS for the queues: `Ok(number of queues)` when it answers.
    pub async fn check(&self) -> Result<u32, AppError> {
        Ok(self.queue_urls().await?.len() as u32)
    }

    /// Every queue with its attributes, by name.
    pub async fn queues(&self) -> Result<Vec<TopicInfo>, AppError> {
        let mut queues = Vec::new();
        for url in self.queue_urls().await? {
            let answer = self
                .client
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::All)
                .send()
                .await;
            let attributes = match answer {
                Ok(answer) => answer.attributes().cloned().unwrap_or_default(),
                // Deleted between the list and this call.
                Err(e) if e.code() == Some("AWS.SimpleQueueService.NonExistentQueue") => continue,
                Err(e) => return Err(self.describe(e)),
            };
            let name = url.rsplit('/').next().unwrap_or(&url).to_owned();
            queues.push(queue_info(name, &attributes));
        }
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(queues)
    }

    /// Creates a queue; a FIFO queue when the name ends in `.fifo`.
    pub async fn create_queue(&self, name: &str) -> Result<(), AppError> {
        check_queue_name(name)?;
        if self.queue_url(name).await?.is_some() {
            return Err(AppError::validation(
                "topic",
                format!("The queue '{name}' already exists."),
            ));
        }
        let mut request = self.client.create_queue().queue_name(name);
        if name.ends_with(".fifo") {
            request = request.attributes(QueueAttributeName::FifoQueue, "true");
        }
        request.send().await.map_err(|e| self.describe(e))?;
        Ok(())
    }

    /// The URL of the queue named `name`, if there is one.
    pub async fn queue_url(&self, name: &str) -> Result<Option<String>, AppError> {
        match self.client.get_queue_url().queue_name(name).send().await {
            Ok(answer) => Ok(answer.queue_url().map(str::to_owned)),
            Err(e) if e.code() == Some("AWS.SimpleQueueService.NonExistentQueue") => Ok(None),
            Err(e) => Err(self.describe(e)),
        }
    }

    /// The redrive policy of the queue named `name`, if it has one (or
    /// does not exist).
    pub async fn redrive_policy(&self, name: &str) -> Result<Option<String>, AppError> {
        let Some(url) = self.queue_url(name).await? else {
            return Ok(None);
        };
        let answer = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| self.describe(e))?;
        Ok(answer
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
            .filter(|policy| !policy.trim().is_empty())
            .cloned())
    }

    /// The SDK client, for the tests that put messages on a queue.
    pub fn sdk(&self) -> &Client {
        &self.client
    }
}

/// The code of a service's error answer. An SQS-compatible service may
/// answer in XML where the SDK reads JSON: the code is then read from the
/// body.
fn error_code<E>(error: &SdkError<E, HttpResponse>) -> Option<String>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match error {
        SdkError::ServiceError(e) => e
            .err()
            .code()
            .map(str::to_owned)
            .or_else(|| e.raw().body().bytes().and_then(xml_error_code)),
        _ => None,
    }
}

/// The `<Code>` of an XML error answer.
fn xml_error_code(body: &[u8]) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    let start = body.find("<Code>")? + "<Code>".len();
    let end = start + body[start..].find("</Code>")?;
    Some(body[start..end].trim().to_owned()).filter(|c| !c.is_empty())
}

/// A queue as the Queue manager shows it.
fn queue_info(name: String, attributes: &HashMap<QueueAttributeName, String>) -> TopicInfo {
    let number = |key: QueueAttributeName| {
        attributes
            .get(&key)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let visible = number(QueueAttributeName::ApproximateNumberOfMessages);
    let redrive = attributes
        .get(&QueueAttributeName::RedrivePolicy)
        .and_then(|policy| serde_json::from_str::<serde_json::Value>(policy).ok())
        .map(|policy| {
            let target = policy["deadLetterTargetArn"]
                .as_str()
                .and_then(|arn| arn.rsplit(':').next())
                .unwrap_or("?")
                .to_owned();
            let receives = match &policy["maxReceiveCount"] {
                serde_json::Value::String(n) => n.clone(),
                other => other.to_string(),
            };
            format!("{target} after {receives} receives")
        });
    TopicInfo {
        partitions: 1,
        replication_factor: 0,
        message_count: visible,
        queue: Some(QueueInfo {
            fifo: attributes
                .get(&QueueAttributeName::FifoQueue)
                .is_some_and(|v| v == "true")
                || name.ends_with(".fifo"),
            visible,
            in_flight: number(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: number(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            visibility_timeout_secs: number(QueueAttributeName::VisibilityTimeout) as u32,
            redrive,
        }),
        entity: None,
        name,
    }
}

/// The server's own credentials, looked for in turn: the `AWS_*`
/// environment variables, the shared profile files, a container's
/// credentials endpoint, then the instance's role.
fn default_credentials(
    http: aws_smithy_runtime_api::client::http::SharedHttpClient,
) -> SharedCredentialsProvider {
    use aws_config::{ecs, environment, imds, profile, provider_config::ProviderConfig};
    let config = ProviderConfig::default().with_http_client(http);
    let chain = aws_config::meta::credentials::CredentialsProviderChain::first_try(
        "Environment",
        environment::EnvironmentVariableCredentialsProvider::new(),
    )
    .or_else(
        "Profile",
        profile::ProfileFileCredentialsProvider::builder()
            .configure(&config)
            .build(),
    )
    .or_else(
        "EcsContainer",
        ecs::EcsCredentialsProvider::builder()
            .configure(&config)
            .build(),
    )
    .or_else(
        "Ec2InstanceMetadata",
        imds::credentials::ImdsCredentialsProvider::builder()
            .configure(&config)
            .build(),
    );
    SharedCredentialsProvider::new(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_need_a_scheme_and_a_host() {
        assert_eq!(
            check_endpoint_url(" http://127.0.0.1:4566/ ").unwrap(),
            "http://127.0.0.1:4566"
        );
        assert!(check_endpoint_url("https://sqs.example.com").is_ok());
        for bad in [
            "",
            "127.0.0.1:4566",
            "ftp://x",
            "http://",
            "http://host:0",
            "http://host:port",
            "http://ho st",
            "http://host/path",
        ] {
            let err = check_endpoint_url(bad).unwrap_err();
            assert_eq!(err.field(), Some("endpoint_url"), "{bad}");
        }
    }

    #[test]
    fn an_xml_error_answer_gives_its_code() {
        let body = br#"<ErrorResponse><Errors><Error><Code>InvalidClientTokenId</Code><Message>x</Message></Error></Errors></ErrorResponse>"#;
        assert_eq!(
            xml_error_code(body).as_deref(),
            Some("InvalidClientTokenId")
        );
        assert_eq!(xml_error_code(b"{}"), None);
        assert_eq!(xml_error_code(b"<Code></Code>"), None);
    }

    #[test]
    fn settings_print_without_the_secret_key() {
        let settings = SqsSettings {
            region: AwsRegion::parse("us-east-1").unwrap(),
            endpoint_url: None,
            key: Some(("AKIDEXAMPLE".into(), "canary-secret".into())),
        };
        let printed = format!("{settings:?}");
        assert!(!printed.contains("canary-secret") && printed.contains("AKIDEXAMPLE"));
        assert_eq!(settings.address(), "sqs.us-east-1.amazonaws.com");
    }

    #[test]
    fn a_queue_shows_its_counts_and_its_redrive_policy() {
        let attributes = HashMap::from([
            (QueueAttributeName::ApproximateNumberOfMessages, "7".into()),
            (QueueAttributeName::ApproximateNumberOfMessagesNotVisible, "2".into()),
            (QueueAttributeName::ApproximateNumberOfMessagesDelayed, "1".into()),
            (QueueAttributeName::VisibilityTimeout, "30".into()),
            (
                QueueAttributeName::RedrivePolicy,
                r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:orders-dlq","maxReceiveCount":5}"#.into(),
            ),
        ]);
        let info = queue_info("orders".into(), &attributes);
        assert_eq!(info.message_count, 7);
        let queue = info.queue.unwrap();
        assert_eq!((queue.visible, queue.in_flight, queue.delayed), (7, 2, 1));
        assert_eq!(queue.visibility_timeout_secs, 30);
        assert!(!queue.fifo);
        assert_eq!(
            queue.redrive.as_deref(),
            Some("orders-dlq after 5 receives")
        );
        assert!(
            queue_info("o.fifo".into(), &HashMap::new())
                .queue
                .unwrap()
                .fifo
        );
    }
}
