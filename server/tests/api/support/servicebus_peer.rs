//! An in-process **Azure Service Bus test peer**: a small AMQP 1.0 server
//! (over `fe2o3-amqp`'s acceptor) and a tiny HTTP management side, enough
//! for the `azservicebus` 0.25 client and the server's Service Bus
//! connector to be tested without a cloud. It is a test peer, not a
//! Service Bus: one in-memory namespace, behind one mutex.
//!
//! What it implements:
//! - AMQP without TLS on `<ip>:5672` (the client always dials 5672 for an
//!   unsecured endpoint, and `127.0.0.1:5672` may be taken, so each peer
//!   takes its own `127.x.y.z`), SASL ANONYMOUS, any container id and
//!   hostname.
//! - CBS (`$cbs`): `put-token` with a shared access signature, checked
//!   against the peer's key name and key (HMAC-SHA256) and its expiry;
//!   202 or 401. Links to entities and to their `$management` nodes are
//!   refused (`amqp:unauthorized-access`) on a connection that has not put
//!   a valid token. The signed resource (`sr`) is not compared with the
//!   link's address: any `sr` whose signature verifies is taken.
//! - Senders to `<queue>` or `<topic>` (a topic fans out to its
//!   subscriptions); the `azservicebus` batch format (`0x80013700`) is
//!   unpacked. Each message is accepted, or rejected with
//!   `amqp:link:message-size-exceeded` above 256 KiB (the link also
//!   advertises that maximum).
//! - Peek-lock receivers on `<queue>`, `<topic>/Subscriptions/<sub>` and
//!   either's `/$DeadLetterQueue`: delivery by link credit, oldest first,
//!   skipping locked messages, with the lock token as the delivery
//!   annotation `x-opt-lock-token`, the message annotations
//!   `x-opt-sequence-number`, `x-opt-enqueued-time` and
//!   `x-opt-locked-until`, and the header's `delivery-count` (earlier
//!   failed deliveries). Locks last 30 s ([`ServiceBusPeer::set_lock_duration`]);
//!   an expired lock or an abandon counts a delivery, and the tenth
//!   dead-letters the message (`MaxDeliveryCountExceeded`).
//!   Receive-and-delete (pre-settled) links delete on delivery.
//! - Settlement by disposition: accepted completes, modified abandons
//!   (its annotations are merged into the application properties),
//!   rejected dead-letters (reason and description from the
//!   `com.microsoft:dead-letter` error's info), released unlocks without
//!   counting. A settlement whose lock was lost changes nothing and is
//!   counted ([`ServiceBusPeer::lost_lock_settlements`]): `fe2o3-amqp`
//!   settles by echoing the client's own state, and `azservicebus` does not
//!   wait for the broker's answer to a disposition anyway.
//! - `<entity>/$management`: `com.microsoft:renew-lock` (410 and
//!   `com.microsoft:message-lock-lost` for a lost lock),
//!   `com.microsoft:peek-message` (200, or 204 when there is nothing) and
//!   `com.microsoft:update-disposition`; any other operation gets 501.
//! - HTTP (ATOM), checked with the same signature as CBS (401 otherwise):
//!   `GET /$Resources/Queues`, `GET /$Resources/Topics`,
//!   `GET /<topic>/Subscriptions` (feeds, with `$skip`/`$top`),
//!   `GET`/`PUT`/`DELETE /<queue or topic>` and
//!   `/<topic>/Subscriptions/<sub>`.
//! - [`ServiceBusPeer::set_down`]: closes every AMQP connection and refuses
//!   new ones until it is lifted (the HTTP side stays up).
//!
//! Where it bends, for the clients it serves (each explained where it is
//! done): it ignores `drain` on flows ([`clear_drain`]), so after a
//! receive that timed out the client's credit stays outstanding as with
//! prefetch; it waits 10 ms before settling a client's transfer
//! ([`SETTLE_DELAY`]); it does not wait for the outcome of its replies. A
//! message over 256 KiB reaches it as several deliveries (an `fe2o3-amqp`
//! client cuts it at the link's max-message-size), so the link is closed
//! with `amqp:decode-error` and the client's send times out; the size
//! check itself catches what comes whole (an `azservicebus` batch).
//!
//! What it does not: sessions, transactions, scheduled messages (they are
//! enqueued at once), deferral (a deferred message is abandoned),
//! receive-by-sequence-number, duplicate detection, partitioning, message
//! expiry, TLS, AMQP over WebSockets, filters or rules on subscriptions,
//! auto-forwarding, per-entity settings (the lock duration is the
//! namespace's), ATOM paging beyond `$skip`/`$top`, and authorization
//! claims (a valid key may do everything).

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use fe2o3_amqp::acceptor::{
    ConnectionAcceptor, LinkAcceptor, LinkEndpoint, ListenerSessionHandle, SaslAnonymousMechanism,
    SessionAcceptor,
};
use fe2o3_amqp::link::SendError;
use fe2o3_amqp::link::delivery::DeliveryFut;
use fe2o3_amqp::types::definitions::{
    self, AmqpError, ConnectionError, ErrorCondition, Fields, LinkError, Role,
};
use fe2o3_amqp::types::messaging::message::__private::{Deserializable, Serializable};
use fe2o3_amqp::types::messaging::{
    AmqpValue, ApplicationProperties, Body, Data, DeliveryAnnotations, Header, Message,
    MessageAnnotations, Outcome, Properties, TargetArchetype,
};
use fe2o3_amqp::types::performatives::Attach;
use fe2o3_amqp::types::primitives::{
    Array, Binary, OrderedMap, SimpleValue, Timestamp, Uuid, Value,
};
use fe2o3_amqp::{Delivery, Receiver, Sendable, Sender};
use futures::FutureExt as _;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The largest message (encoded) a sender may send, as Service Bus Standard.
pub const MAX_MESSAGE_SIZE: u64 = 256 * 1024;
/// Deliveries after which a message is dead-lettered.
pub const MAX_DELIVERY_COUNT: u32 = 10;
const DEFAULT_LOCK_DURATION: Duration = Duration::from_secs(30);
/// The message format `azservicebus` sends several messages in.
const BATCH_FORMAT: u32 = 0x8001_3700;
/// How often a receiver link without credit looks again.
const CREDIT_POLL: Duration = Duration::from_millis(25);
/// How often an idle receiver link looks for expired locks.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How long the peer waits before settling a client's transfer.
/// `fe2o3-amqp` 0.14 writes a transfer before it records it as unsettled,
/// so an answer inside that window is lost and the client waits for its
/// outcome forever; a local peer on a loaded machine can be that fast.
const SETTLE_DELAY: Duration = Duration::from_millis(10);
use server::servicebus::hmac_sha256;
pub use server::servicebus::sas_token;

const NAMESPACES_CONNECT: &str =
    "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect";
const NAMESPACES_COUNTS: &str = "http://schemas.microsoft.com/netservices/2011/06/servicebus";
const FOREVER: &str = "P10675199DT2H48M5.4775807S";

type AmqpMessage = Message<Body<Value>>;

/// Prints what the peer does when `SERVICEBUS_PEER_TRACE` is set.
macro_rules! trace {
    ($($arg:tt)*) => {
        if std::env::var_os("SERVICEBUS_PEER_TRACE").is_some() {
            eprintln!("[servicebus peer {:?}] {}", std::time::SystemTime::now(), format!($($arg)*));
        }
    };
}

/// A dead-lettered message, as a test sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerLetter {
    pub body: Vec<u8>,
    pub reason: Option<String>,
    pub description: Option<String>,
    pub application_properties: BTreeMap<String, String>,
    pub delivery_count: u32,
}

/* ------------------------------- namespace ------------------------------- */

#[derive(Clone, Copy, PartialEq, Eq)]
struct Lock {
    token: [u8; 16],
    until_ms: i64,
}

struct Stored {
    seq: i64,
    enqueued_ms: i64,
    message: AmqpMessage,
    /// Earlier deliveries that ended without settlement (the header's
    /// `delivery-count` of the next delivery).
    delivery_count: u32,
    lock: Option<Lock>,
    reason: Option<String>,
    description: Option<String>,
}

impl Stored {
    fn annotated(&self, lock: Option<Lock>) -> AmqpMessage {
        let mut message = self.message.clone();
        message
            .header
            .get_or_insert_with(Header::default)
            .delivery_count = self.delivery_count;
        let annotations = message
            .message_annotations
            .get_or_insert_with(MessageAnnotations::default);
        annotations.insert("x-opt-sequence-number".into(), Value::Long(self.seq));
        annotations.insert(
            "x-opt-enqueued-time".into(),
            Value::Timestamp(Timestamp::from_milliseconds(self.enqueued_ms)),
        );
        if let Some(lock) = lock {
            annotations.insert(
                "x-opt-locked-until".into(),
                Value::Timestamp(Timestamp::from_milliseconds(lock.until_ms)),
            );
        }
        message
    }

    /// The message as delivered under `lock`.
    fn delivery(&self, lock: Lock) -> AmqpMessage {
        let mut message = self.annotated(Some(lock));
        message
            .delivery_annotations
            .get_or_insert_with(DeliveryAnnotations::default)
            .insert(
                "x-opt-lock-token".into(),
                Value::Uuid(Uuid::from(lock.token)),
            );
        message
    }

    fn letter(&self) -> PeerLetter {
        PeerLetter {
            body: body_bytes(&self.message),
            reason: self.reason.clone(),
            description: self.description.clone(),
            application_properties: self
                .message
                .application_properties
                .iter()
                .flat_map(|p| p.iter())
                .map(|(k, v)| (k.clone(), simple_text(v)))
                .collect(),
            delivery_count: self.delivery_count,
        }
    }
}

/// A queue or a subscription, with its dead-letter subqueue.
struct Entity {
    name: String,
    created_ms: i64,
    active: BTreeMap<i64, Stored>,
    dead: BTreeMap<i64, Stored>,
    /// Receivers must ask for a session, which the peer refuses them all
    /// (it does not implement sessions).
    requires_session: bool,
}

impl Entity {
    fn new(name: &str) -> Self {
        Entity {
            name: name.to_owned(),
            created_ms: now_ms(),
            active: BTreeMap::new(),
            dead: BTreeMap::new(),
            requires_session: false,
        }
    }

    fn subqueue(&mut self, dead_letter: bool) -> &mut BTreeMap<i64, Stored> {
        if dead_letter {
            &mut self.dead
        } else {
            &mut self.active
        }
    }

    /// Moves an active message to the dead-letter subqueue.
    fn dead_letter(
        &mut self,
        seq: i64,
        reason: Option<String>,
        description: Option<String>,
        properties: Vec<(String, SimpleValue)>,
    ) {
        let Some(mut stored) = self.active.remove(&seq) else {
            return;
        };
        stored.lock = None;
        let props = stored
            .message
            .application_properties
            .get_or_insert_with(ApplicationProperties::default);
        for (key, value) in properties {
            props.insert(key, value);
        }
        if let Some(reason) = &reason {
            props.insert(
                "DeadLetterReason".into(),
                SimpleValue::String(reason.clone()),
            );
        }
        if let Some(description) = &description {
            props.insert(
                "DeadLetterErrorDescription".into(),
                SimpleValue::String(description.clone()),
            );
        }
        stored.reason = reason;
        stored.description = description;
        self.dead.insert(seq, stored);
    }

    /// Counts one more failed delivery; the tenth dead-letters an active message.
    fn count_delivery(&mut self, seq: i64, dead_letter: bool) {
        let Some(stored) = self.subqueue(dead_letter).get_mut(&seq) else {
            return;
        };
        stored.lock = None;
        stored.delivery_count += 1;
        if !dead_letter && stored.delivery_count >= MAX_DELIVERY_COUNT {
            self.dead_letter(
                seq,
                Some("MaxDeliveryCountExceeded".into()),
                Some(format!(
                    "Message could not be consumed after {MAX_DELIVERY_COUNT} delivery attempts."
                )),
                Vec::new(),
            );
        }
    }

    /// Releases expired locks, counting a delivery for each.
    fn sweep(&mut self, now: i64) {
        for dead_letter in [false, true] {
            let expired: Vec<i64> = self
                .subqueue(dead_letter)
                .values()
                .filter(|m| m.lock.is_some_and(|l| l.until_ms <= now))
                .map(|m| m.seq)
                .collect();
            for seq in expired {
                self.count_delivery(seq, dead_letter);
            }
        }
    }

    fn counts(&self) -> (usize, usize) {
        (self.active.len(), self.dead.len())
    }

    fn size(&self) -> usize {
        self.active
            .values()
            .chain(self.dead.values())
            .map(|m| encoded_len(&m.message))
            .sum()
    }
}

struct Topic {
    name: String,
    created_ms: i64,
    subscriptions: BTreeMap<String, Entity>,
}

/// Which queue or subscription (keys in lower case), and which subqueue.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    queue_or_topic: String,
    subscription: Option<String>,
    dead_letter: bool,
}

enum Settle {
    Complete,
    Abandon(Vec<(String, SimpleValue)>),
    Release,
    DeadLetter(Option<String>, Option<String>, Vec<(String, SimpleValue)>),
}

struct Namespace {
    queues: BTreeMap<String, Entity>,
    topics: BTreeMap<String, Topic>,
    next_seq: i64,
    lock_duration: Duration,
    lost_locks: u32,
}

impl Namespace {
    fn lock_ms(&self) -> i64 {
        self.lock_duration.as_millis() as i64
    }

    fn entity_mut(&mut self, node: &Node) -> Option<&mut Entity> {
        match &node.subscription {
            None => self.queues.get_mut(&node.queue_or_topic),
            Some(sub) => self
                .topics
                .get_mut(&node.queue_or_topic)?
                .subscriptions
                .get_mut(sub),
        }
    }

    fn entity(&self, node: &Node) -> Option<&Entity> {
        match &node.subscription {
            None => self.queues.get(&node.queue_or_topic),
            Some(sub) => self
                .topics
                .get(&node.queue_or_topic)?
                .subscriptions
                .get(sub),
        }
    }

    fn exists(&self, node: &Node) -> bool {
        self.entity(node).is_some()
    }

    fn sweep(&mut self, now: i64) {
        for entity in self.queues.values_mut().chain(
            self.topics
                .values_mut()
                .flat_map(|t| t.subscriptions.values_mut()),
        ) {
            entity.sweep(now);
        }
    }

    /// Enqueues on a queue, or on every subscription of a topic.
    fn enqueue(&mut self, key: &str, messages: Vec<AmqpMessage>) -> bool {
        let now = now_ms();
        let next_seq = &mut self.next_seq;
        let stored = |seq: i64, message: AmqpMessage| Stored {
            seq,
            enqueued_ms: now,
            message,
            delivery_count: 0,
            lock: None,
            reason: None,
            description: None,
        };
        if let Some(queue) = self.queues.get_mut(key) {
            for message in messages {
                *next_seq += 1;
                queue.active.insert(*next_seq, stored(*next_seq, message));
            }
            return true;
        }
        if let Some(topic) = self.topics.get_mut(key) {
            for message in messages {
                *next_seq += 1;
                for sub in topic.subscriptions.values_mut() {
                    sub.active
                        .insert(*next_seq, stored(*next_seq, message.clone()));
                }
            }
            return true;
        }
        false
    }

    /// Settles the message locked with `token`; `Err` when the lock was lost.
    fn settle(&mut self, node: &Node, token: [u8; 16], how: Settle) -> Result<(), ()> {
        self.sweep(now_ms());
        let entity = self.entity_mut(node).ok_or(())?;
        let seq = entity
            .subqueue(node.dead_letter)
            .values()
            .find(|m| m.lock.is_some_and(|l| l.token == token))
            .map(|m| m.seq)
            .ok_or(())?;
        match how {
            Settle::Complete => {
                entity.subqueue(node.dead_letter).remove(&seq);
            }
            Settle::Release => {
                if let Some(m) = entity.subqueue(node.dead_letter).get_mut(&seq) {
                    m.lock = None;
                }
            }
            Settle::Abandon(properties) => {
                if let Some(m) = entity.subqueue(node.dead_letter).get_mut(&seq) {
                    let props = m
                        .message
                        .application_properties
                        .get_or_insert_with(ApplicationProperties::default);
                    for (key, value) in properties {
                        props.insert(key, value);
                    }
                }
                entity.count_delivery(seq, node.dead_letter);
            }
            Settle::DeadLetter(reason, description, properties) => {
                if node.dead_letter {
                    // A dead letter cannot be dead-lettered again: unlock it.
                    if let Some(m) = entity.dead.get_mut(&seq) {
                        m.lock = None;
                    }
                } else {
                    entity.dead_letter(seq, reason, description, properties);
                }
            }
        }
        Ok(())
    }
}

/* ------------------------------- the peer -------------------------------- */

struct Shared {
    ns: Mutex<Namespace>,
    /// Bumped on every change, to wake links.
    changes: watch::Sender<u64>,
    down: watch::Sender<bool>,
    key_name: String,
    key: String,
    ip: Ipv4Addr,
    management_port: OnceLock<u16>,
    connections: AtomicUsize,
}

/// Connection state: whether a valid token was put, and where replies go.
struct Conn {
    authorized: AtomicBool,
    routes: Mutex<HashMap<String, mpsc::UnboundedSender<AmqpMessage>>>,
}

/// A running test peer; dropping it stops it.
pub struct ServiceBusPeer {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ServiceBusPeer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shared.down.send_replace(true);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl ServiceBusPeer {
    /// Starts the peer: AMQP on `<ip>:5672` of a free `127.x.y.z`, HTTP
    /// management on an ephemeral port of the same address.
    pub async fn start() -> ServiceBusPeer {
        let (amqp, ip) = bind_amqp().await;
        let http = TcpListener::bind((ip, 0))
            .await
            .expect("the peer's HTTP side binds");
        let management_port = http.local_addr().expect("a bound address").port();
        let key = base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>());
        let shared = Arc::new(Shared {
            ns: Mutex::new(Namespace {
                queues: BTreeMap::new(),
                topics: BTreeMap::new(),
                next_seq: 0,
                lock_duration: DEFAULT_LOCK_DURATION,
                lost_locks: 0,
            }),
            changes: watch::channel(0).0,
            down: watch::channel(false).0,
            key_name: "RootManageSharedAccessKey".into(),
            key,
            ip,
            management_port: OnceLock::new(),
            connections: AtomicUsize::new(0),
        });
        let _ = shared.management_port.set(management_port);
        let router = axum::Router::new()
            .fallback(http_request)
            .with_state(shared.clone());
        let tasks = vec![
            tokio::spawn(serve_amqp(shared.clone(), amqp)),
            tokio::spawn(async move {
                let _ = axum::serve(http, router).await;
            }),
        ];
        ServiceBusPeer { shared, tasks }
    }

    /// `Endpoint=sb://<ip>:<http port>/;SharedAccessKeyName=…;SharedAccessKey=…;UseDevelopmentEmulator=true`
    pub fn connection_string(&self) -> String {
        format!(
            "Endpoint=sb://{}:{}/;SharedAccessKeyName={};SharedAccessKey={};UseDevelopmentEmulator=true",
            self.host(),
            self.management_port(),
            self.key_name(),
            self.key()
        )
    }

    pub fn key_name(&self) -> &str {
        &self.shared.key_name
    }

    pub fn key(&self) -> &str {
        &self.shared.key
    }

    /// The peer's IP address (AMQP listens on its port 5672).
    pub fn host(&self) -> String {
        self.shared.ip.to_string()
    }

    pub fn management_port(&self) -> u16 {
        self.shared
            .management_port
            .get()
            .copied()
            .unwrap_or_default()
    }

    /// `http://<ip>:<port>/`, the management API's base address.
    pub fn management_url(&self) -> String {
        format!("http://{}:{}/", self.host(), self.management_port())
    }

    fn ns(&self) -> MutexGuard<'_, Namespace> {
        let mut ns = lock(&self.shared.ns);
        ns.sweep(now_ms());
        ns
    }

    pub fn create_queue(&self, name: &str) {
        self.ns()
            .queues
            .entry(name.to_lowercase())
            .or_insert_with(|| Entity::new(name));
        self.shared.changed();
    }

    /// A queue that requires sessions: the management API says so, and
    /// receivers are refused, as Service Bus refuses receivers that ask
    /// for no session.
    pub fn create_session_queue(&self, name: &str) {
        self.ns()
            .queues
            .entry(name.to_lowercase())
            .or_insert_with(|| Entity::new(name))
            .requires_session = true;
        self.shared.changed();
    }

    pub fn create_topic(&self, name: &str) {
        self.ns()
            .topics
            .entry(name.to_lowercase())
            .or_insert_with(|| Topic {
                name: name.to_owned(),
                created_ms: now_ms(),
                subscriptions: BTreeMap::new(),
            });
        self.shared.changed();
    }

    pub fn create_subscription(&self, topic: &str, name: &str) {
        if let Some(topic) = self.ns().topics.get_mut(&topic.to_lowercase()) {
            topic
                .subscriptions
                .entry(name.to_lowercase())
                .or_insert_with(|| Entity::new(name));
        }
        self.shared.changed();
    }

    /// Deletes a queue, a topic (with its subscriptions) or a subscription
    /// (`topic/subscriptions/sub`); links to it are closed with `amqp:not-found`.
    pub fn delete_entity(&self, name: &str) {
        let key = name.to_lowercase();
        {
            let mut ns = self.ns();
            match parse_node(&key) {
                Some(node) if node.subscription.is_some() && !node.dead_letter => {
                    if let (Some(topic), Some(sub)) =
                        (ns.topics.get_mut(&node.queue_or_topic), &node.subscription)
                    {
                        topic.subscriptions.remove(sub);
                    }
                }
                _ => {
                    ns.queues.remove(&key);
                    ns.topics.remove(&key);
                }
            }
        }
        self.shared.changed();
    }

    /// Enqueues `body` as a sender would, on a queue or a topic.
    pub fn send(&self, entity: &str, body: &[u8]) {
        let message = Message::builder()
            .properties(
                Properties::builder()
                    .message_id(hex(&random_bytes::<16>()))
                    .build(),
            )
            .body(Body::Data(vec![Data(Binary::from(body.to_vec()))].into()))
            .build();
        let enqueued = self.ns().enqueue(&entity.to_lowercase(), vec![message]);
        assert!(enqueued, "the test peer has no queue or topic '{entity}'");
        self.shared.changed();
    }

    fn with_subqueue<T>(&self, entity: &str, f: impl FnOnce(&BTreeMap<i64, Stored>) -> T) -> T {
        let node = parse_node(&entity.to_lowercase())
            .unwrap_or_else(|| panic!("'{entity}' is not an entity path"));
        let mut ns = self.ns();
        let entity_ref = ns
            .entity_mut(&node)
            .unwrap_or_else(|| panic!("the test peer has no '{entity}'"));
        f(&*entity_ref.subqueue(node.dead_letter))
    }

    /// Bodies of the messages neither completed nor dead-lettered (locked
    /// ones included), oldest first; `queue` or `topic/subscriptions/sub`.
    pub fn active(&self, entity: &str) -> Vec<Vec<u8>> {
        self.with_subqueue(entity, |q| {
            q.values().map(|m| body_bytes(&m.message)).collect()
        })
    }

    /// The entity's dead letters, oldest first.
    pub fn dead_letters(&self, entity: &str) -> Vec<PeerLetter> {
        let path = format!("{}/$deadletterqueue", entity.trim_end_matches('/'));
        self.with_subqueue(&path, |q| q.values().map(Stored::letter).collect())
    }

    /// Earlier failed deliveries of each active message, oldest first.
    pub fn delivery_counts(&self, entity: &str) -> Vec<u32> {
        self.with_subqueue(entity, |q| q.values().map(|m| m.delivery_count).collect())
    }

    /// How long a delivery's lock lasts (30 s unless set), for every entity.
    pub fn set_lock_duration(&self, duration: Duration) {
        self.ns().lock_duration = duration;
    }

    /// Settlements that came after their lock was lost (and changed nothing).
    pub fn lost_lock_settlements(&self) -> u32 {
        self.ns().lost_locks
    }

    /// While down, every AMQP connection is closed and new ones refused.
    pub fn set_down(&self, down: bool) {
        self.shared.down.send_replace(down);
    }

    /// AMQP connections open now.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Shared {
    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Checks a shared access signature made with the peer's key.
    fn verify(&self, token: &str) -> Result<(), String> {
        check_signature(token, &self.key_name, &self.key, now_ms() / 1000)
    }
}

/// Checks `token` (`SharedAccessSignature sr=…&sig=…&se=…&skn=…`, in any
/// order) against a key name and key, and that it has not expired at `now`
/// (seconds since the epoch).
fn check_signature(token: &str, key_name: &str, key: &str, now: i64) -> Result<(), String> {
    let rest = token
        .trim()
        .strip_prefix("SharedAccessSignature ")
        .ok_or("not a shared access signature")?;
    let mut fields = HashMap::new();
    for pair in rest.split('&') {
        let (name, value) = pair.split_once('=').ok_or("a malformed signature")?;
        fields.insert(name.trim(), value.trim());
    }
    let field = |name: &str| {
        fields
            .get(name)
            .copied()
            .ok_or(format!("the signature has no '{name}'"))
    };
    let (sr, sig, se, skn) = (field("sr")?, field("sig")?, field("se")?, field("skn")?);
    if percent_decode(skn) != key_name {
        return Err(format!("unknown key name '{}'", percent_decode(skn)));
    }
    let expected = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(
        key.as_bytes(),
        format!("{sr}\n{se}").as_bytes(),
    ));
    if percent_decode(sig) != expected {
        return Err("the signature does not match the key".into());
    }
    let expiry: i64 = percent_decode(se)
        .parse()
        .map_err(|_| "the signature has no valid expiry")?;
    if expiry <= now {
        return Err("the signature has expired".into());
    }
    Ok(())
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if getrandom::fill(&mut bytes).is_err() {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let seed = format!(
            "{:?}{}",
            SystemTime::now(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let digest = Sha256::digest(seed.as_bytes());
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = digest[i % 32];
        }
    }
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn body_bytes(message: &AmqpMessage) -> Vec<u8> {
    match &message.body {
        Body::Data(sections) => sections.iter().flat_map(|d| d.0.iter().copied()).collect(),
        Body::Value(AmqpValue(Value::Binary(b))) => b.to_vec(),
        Body::Value(AmqpValue(Value::String(s))) => s.as_bytes().to_vec(),
        _ => Vec::new(),
    }
}

fn encoded_len(message: &AmqpMessage) -> usize {
    serde_amqp::to_vec(&Serializable(message.clone()))
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
}

fn simple_text(value: &SimpleValue) -> String {
    match value {
        SimpleValue::String(s) => s.clone(),
        SimpleValue::Symbol(s) => s.as_str().to_owned(),
        SimpleValue::Bool(b) => b.to_string(),
        SimpleValue::Int(n) => n.to_string(),
        SimpleValue::Long(n) => n.to_string(),
        SimpleValue::Uint(n) => n.to_string(),
        SimpleValue::Ulong(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// `[queue]`, `[queue, $deadletterqueue]`, `[topic, subscriptions, sub]`
/// or `[topic, subscriptions, sub, $deadletterqueue]`, in lower case.
fn parse_node(path: &str) -> Option<Node> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let (entity, dead_letter) = match parts.split_last() {
        Some((&"$deadletterqueue", rest)) => (rest, true),
        _ => (&parts[..], false),
    };
    match entity {
        [name] => Some(Node {
            queue_or_topic: (*name).to_owned(),
            subscription: None,
            dead_letter,
        }),
        [topic, "subscriptions", sub] => Some(Node {
            queue_or_topic: (*topic).to_owned(),
            subscription: Some((*sub).to_owned()),
            dead_letter,
        }),
        _ => None,
    }
}

/// The entity path of a link address (`amqp://host/queue` or `queue`), in lower case.
fn address_path(address: &str) -> String {
    let path = match address.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map(|(_, p)| p).unwrap_or(""),
        None => address,
    };
    path.trim_matches('/').to_lowercase()
}

fn error(
    condition: impl Into<ErrorCondition>,
    description: impl Into<String>,
) -> definitions::Error {
    definitions::Error::new(condition, Some(description.into()), None)
}

fn not_found(path: &str) -> definitions::Error {
    error(
        AmqpError::NotFound,
        format!("The messaging entity '{path}' could not be found (Service Bus test peer)."),
    )
}

/* ---------------------------------- AMQP --------------------------------- */

async fn bind_amqp() -> (TcpListener, Ipv4Addr) {
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU32::new(u32::from_le_bytes(random_bytes::<4>())));
    for _ in 0..1000 {
        let n = next.fetch_add(1, Ordering::Relaxed) % (254 * 254 * 254);
        let ip = Ipv4Addr::new(
            127,
            1 + (n % 254) as u8,
            1 + ((n / 254) % 254) as u8,
            1 + ((n / (254 * 254)) % 254) as u8,
        );
        match TcpListener::bind((ip, 5672)).await {
            Ok(listener) => return (listener, ip),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => panic!("the test peer cannot listen on {ip}:5672: {e}"),
        }
    }
    panic!("the test peer found no free 127.x.y.z:5672");
}

async fn serve_amqp(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        if *shared.down.borrow() {
            drop(stream);
            continue;
        }
        tokio::spawn(connection(shared.clone(), stream));
    }
}

async fn connection(shared: Arc<Shared>, stream: TcpStream) {
    connection_over(shared, Tap::new(stream)).await
}

/// The connection's bytes, frame by frame: clears `drain` on incoming flows
/// (see [`clear_drain`]) and, when `SERVICEBUS_PEER_TRACE` is set, logs
/// every frame.
#[derive(Debug)]
struct Tap {
    inner: TcpStream,
    /// Read, not yet a whole frame.
    pending: Vec<u8>,
    /// Whole frames, not yet handed on.
    ready: Vec<u8>,
    written: Vec<u8>,
}

impl Tap {
    fn new(inner: TcpStream) -> Self {
        Tap {
            inner,
            pending: Vec::new(),
            ready: Vec::new(),
            written: Vec::new(),
        }
    }

    /// Takes the whole frames (and protocol headers) off the front of `buffer`.
    fn frames(buffer: &mut Vec<u8>, direction: &str, mut out: Option<&mut Vec<u8>>) {
        loop {
            if buffer.starts_with(b"AMQP") && buffer.len() >= 8 {
                let header: Vec<u8> = buffer.drain(..8).collect();
                if let Some(out) = out.as_deref_mut() {
                    out.extend_from_slice(&header);
                }
                continue;
            }
            if buffer.len() < 8 {
                return;
            }
            let size = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
            if buffer.len() < size.max(8) {
                return;
            }
            let mut frame: Vec<u8> = buffer.drain(..size.max(8)).collect();
            let doff = (frame[4] as usize * 4).max(8);
            if frame[5] == 0 && frame.len() > doff {
                if out.is_some() {
                    clear_drain(&mut frame[doff..]);
                }
                if std::env::var_os("SERVICEBUS_PEER_TRACE").is_some() {
                    let channel = u16::from_be_bytes([frame[6], frame[7]]);
                    let text = match serde_amqp::from_slice::<
                        fe2o3_amqp::types::performatives::Performative,
                    >(&frame[doff..])
                    {
                        Ok(p) => format!("{p:?}"),
                        Err(e) => format!("undecoded ({e})"),
                    };
                    let text: String = text.chars().take(400).collect();
                    trace!("{direction} ch{channel} {text}");
                }
            }
            if let Some(out) = out.as_deref_mut() {
                out.extend_from_slice(&frame);
            }
        }
    }
}

/// Clears the `drain` flag of a flow performative, in place.
///
/// `azservicebus` 0.25 drains its link after a receive that timed out, and
/// gives new credit at once, before the drain's answer (which advances the
/// delivery count) has come back; `fe2o3-amqp` answers a drain at once,
/// without a chance to send what is available, so that new credit comes to
/// nothing and the receiver starves. Ignoring `drain` leaves the credit
/// outstanding instead (as prefetch would): a message that comes later is
/// delivered, and locked, before the client asks again.
fn clear_drain(body: &mut [u8]) {
    // Descriptor 0x13 (flow), then a list.
    let mut at = match body {
        [0x00, 0x53, 0x13, ..] => 3,
        [0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x13, ..] => 10,
        _ => return,
    };
    let count = match body.get(at) {
        Some(0xc0) => {
            at += 3;
            body.get(at - 1).map(|&c| c as usize)
        }
        Some(0xd0) => {
            at += 9;
            body.get(at - 4..at)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        }
        _ => None,
    };
    let Some(count) = count else { return };
    // drain is the ninth field.
    for field in 0..count.min(9) {
        let Some(&code) = body.get(at) else { return };
        if field == 8 {
            match code {
                0x41 => body[at] = 0x42,
                0x56 if body.get(at + 1).is_some() => body[at + 1] = 0,
                _ => {}
            }
            return;
        }
        let width = match code {
            0x40..=0x45 => 0,
            0x50..=0x56 => 1,
            0x60 | 0x61 => 2,
            0x70..=0x74 => 4,
            0x80..=0x84 => 8,
            0x98 => 16,
            0xa0..=0xaf | 0xc0..=0xcf | 0xe0..=0xef => {
                1 + body.get(at + 1).map(|&n| n as usize).unwrap_or(0)
            }
            0xb0..=0xbf | 0xd0..=0xdf | 0xf0..=0xff => {
                4 + body
                    .get(at + 1..at + 5)
                    .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
                    .unwrap_or(0)
            }
            _ => return,
        };
        at += 1 + width;
    }
}

impl tokio::io::AsyncRead for Tap {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.drain(..n);
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut chunk_buf = tokio::io::ReadBuf::new(&mut chunk);
            match std::pin::Pin::new(&mut this.inner).poll_read(cx, &mut chunk_buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if chunk_buf.filled().is_empty() => {
                    // The end: hand on whatever is left as it is.
                    let rest = std::mem::take(&mut this.pending);
                    if rest.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    this.ready = rest;
                }
                Poll::Ready(Ok(())) => {
                    this.pending.extend_from_slice(chunk_buf.filled());
                    Tap::frames(&mut this.pending, "<-", Some(&mut this.ready));
                }
            }
        }
    }
}

impl tokio::io::AsyncWrite for Tap {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let poll = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &poll
            && std::env::var_os("SERVICEBUS_PEER_TRACE").is_some()
        {
            this.written.extend_from_slice(&buf[..*n]);
            Tap::frames(&mut this.written, "->", None);
        }
        poll
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn connection_over<Io>(shared: Arc<Shared>, stream: Io)
where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
{
    let acceptor = ConnectionAcceptor::builder()
        .container_id("servicebus-test-peer")
        .sasl_acceptor(SaslAnonymousMechanism::new())
        .build();
    let Ok(mut connection) = acceptor.accept(stream).await else {
        return;
    };
    shared.connections.fetch_add(1, Ordering::SeqCst);
    serve_connection(&shared, &mut connection).await;
    shared.connections.fetch_sub(1, Ordering::SeqCst);
}

async fn serve_connection(
    shared: &Arc<Shared>,
    connection: &mut fe2o3_amqp::acceptor::ListenerConnectionHandle,
) {
    let conn = Arc::new(Conn {
        authorized: AtomicBool::new(false),
        routes: Mutex::new(HashMap::new()),
    });
    let mut down = shared.down.subscribe();
    loop {
        if *down.borrow_and_update() {
            let _ = connection
                .close_with_error(error(
                    ConnectionError::ConnectionForced,
                    "The Service Bus test peer is down.",
                ))
                .await;
            return;
        }
        tokio::select! {
            incoming = connection.next_incoming_session() => {
                let Some(incoming) = incoming else { break };
                match SessionAcceptor::new()
                    .accept_incoming_session(incoming, connection)
                    .await
                {
                    Ok(session) => {
                        tokio::spawn(session_loop(shared.clone(), conn.clone(), session));
                    }
                    Err(_) => break,
                }
            }
            changed = down.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    let _ = connection.close().await;
}

/// What to do with an incoming link.
enum Plan {
    CbsRequests,
    ManagementRequests(Node),
    /// Replies to the client node at this address.
    Replies(String),
    /// Messages sent to this queue or topic (lower case).
    Enqueue(String),
    Deliver(Node),
    Refuse(definitions::Error),
}

async fn session_loop(shared: Arc<Shared>, conn: Arc<Conn>, mut session: ListenerSessionHandle) {
    let acceptor = LinkAcceptor::builder()
        .max_message_size(MAX_MESSAGE_SIZE)
        .build();
    while let Some(attach) = session.next_incoming_attach().await {
        let plan = plan_link(&shared, &conn, &attach);
        trace!("attach {} ({:?})", attach.name, attach.role);
        if let Ok(link) = acceptor.accept_incoming_attach(attach, &mut session).await {
            tokio::spawn(run_link(shared.clone(), conn.clone(), link, plan));
        }
    }
    let _ = session.end().await;
}

fn plan_link(shared: &Shared, conn: &Conn, attach: &Attach) -> Plan {
    let source = attach.source.as_ref().and_then(|s| s.address.clone());
    let target = attach.target.as_ref().and_then(|t| match t.as_ref() {
        TargetArchetype::Target(t) => t.address.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    });
    let (address, client_sends) = match attach.role {
        Role::Sender => (target.clone(), true),
        Role::Receiver => (source, false),
    };
    let Some(address) = address else {
        return Plan::Refuse(error(AmqpError::InvalidField, "The link has no address."));
    };
    if address == "$cbs" {
        return if client_sends {
            Plan::CbsRequests
        } else {
            Plan::Replies(target.unwrap_or_default())
        };
    }
    if !conn.authorized.load(Ordering::SeqCst) {
        return Plan::Refuse(error(
            AmqpError::UnauthorizedAccess,
            "Unauthorized access: put a valid token on $cbs first (Service Bus test peer).",
        ));
    }
    let path = address_path(&address);
    let ns = lock(&shared.ns);
    if let Some(entity) = path.strip_suffix("/$management") {
        return match parse_node(entity).filter(|n| ns.exists(n)) {
            None => Plan::Refuse(not_found(entity)),
            Some(node) if client_sends => Plan::ManagementRequests(node),
            Some(_) => Plan::Replies(target.unwrap_or_default()),
        };
    }
    if client_sends {
        if ns.queues.contains_key(&path) || ns.topics.contains_key(&path) {
            Plan::Enqueue(path)
        } else {
            Plan::Refuse(not_found(&path))
        }
    } else {
        match parse_node(&path).filter(|n| ns.exists(n)) {
            Some(node) if ns.entity(&node).is_some_and(|e| e.requires_session) => {
                Plan::Refuse(error(
                    AmqpError::NotAllowed,
                    format!(
                        "It is not possible for an entity that requires sessions ('{path}') to create a non-sessionful message receiver (Service Bus test peer)."
                    ),
                ))
            }
            Some(node) => Plan::Deliver(node),
            None => Plan::Refuse(not_found(&path)),
        }
    }
}

async fn run_link(shared: Arc<Shared>, conn: Arc<Conn>, link: LinkEndpoint, plan: Plan) {
    match (plan, link) {
        (Plan::Refuse(e), LinkEndpoint::Sender(s)) => {
            let _ = s.close_with_error(e).await;
        }
        (Plan::Refuse(e), LinkEndpoint::Receiver(r)) => {
            let _ = r.close_with_error(e).await;
        }
        (Plan::CbsRequests, LinkEndpoint::Receiver(r)) => requests(shared, conn, r, None).await,
        (Plan::ManagementRequests(node), LinkEndpoint::Receiver(r)) => {
            requests(shared, conn, r, Some(node)).await
        }
        (Plan::Replies(address), LinkEndpoint::Sender(s)) => replies(conn, address, s).await,
        (Plan::Enqueue(key), LinkEndpoint::Receiver(r)) => enqueue_loop(shared, key, r).await,
        (Plan::Deliver(node), LinkEndpoint::Sender(s)) => deliver_loop(shared, node, s).await,
        (_, LinkEndpoint::Sender(s)) => {
            let _ = s
                .close_with_error(error(AmqpError::NotImplemented, "Unexpected link."))
                .await;
        }
        (_, LinkEndpoint::Receiver(r)) => {
            let _ = r
                .close_with_error(error(AmqpError::NotImplemented, "Unexpected link."))
                .await;
        }
    }
}

/// Request/response links (`$cbs`, `<entity>/$management`).
async fn requests(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    mut receiver: Receiver,
    node: Option<Node>,
) {
    loop {
        let delivery: Delivery<Body<Value>> = match receiver.recv().await {
            Ok(delivery) => delivery,
            Err(_) => break,
        };
        tokio::time::sleep(SETTLE_DELAY).await;
        let _ = receiver.accept(&delivery).await;
        let request = delivery.into_message();
        let reply_to = request.properties.as_ref().and_then(|p| p.reply_to.clone());
        trace!(
            "request {:?} on {node:?}, reply to {reply_to:?}",
            app_property(&request, "operation")
        );
        let response = match &node {
            None => cbs(&shared, &conn, &request),
            Some(node) => management(&shared, node, &request),
        };
        if let Some(reply_to) = reply_to {
            reply(&conn, &reply_to, response).await;
        }
    }
    let _ = receiver.close().await;
}

async fn reply(conn: &Conn, to: &str, message: AmqpMessage) {
    // The client attaches its reply link before it sends; give the peer's
    // side of that link a moment to be registered.
    for _ in 0..200 {
        let route = lock(&conn.routes).get(to).cloned();
        if let Some(route) = route {
            trace!(
                "reply to {to}: status {:?}",
                app_property(&message, "status-code")
            );
            let _ = route.send(message);
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    trace!("no reply link {to}");
}

async fn replies(conn: Arc<Conn>, address: String, mut sender: Sender) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    lock(&conn.routes).insert(address.clone(), tx);
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Some(message) => {
                    // Not waiting for the outcome: the same race as above
                    // could lose it, and the client accepts every reply.
                    let sent = sender.send_batchable(message).await;
                    trace!("replied on {address}: {}", sent.is_ok());
                    if sent.is_err() {
                        break;
                    }
                }
                None => break,
            },
            _ = sender.on_detach() => break,
        }
    }
    trace!("reply link {address} ends");
    lock(&conn.routes).remove(&address);
    let _ = sender.close().await;
}

fn app_property<'a>(message: &'a AmqpMessage, name: &str) -> Option<&'a SimpleValue> {
    message.application_properties.as_ref()?.get(name)
}

fn response(
    request: &AmqpMessage,
    status: i32,
    description: &str,
    body: Value,
    condition: Option<&str>,
) -> AmqpMessage {
    let mut properties = ApplicationProperties::default();
    properties.insert("status-code".into(), SimpleValue::Int(status));
    properties.insert(
        "status-description".into(),
        SimpleValue::String(description.into()),
    );
    if let Some(condition) = condition {
        properties.insert(
            "error-condition".into(),
            SimpleValue::Symbol(condition.into()),
        );
    }
    let props = Properties {
        correlation_id: request
            .properties
            .as_ref()
            .and_then(|p| p.message_id.clone()),
        ..Default::default()
    };
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(props),
        application_properties: Some(properties),
        body: Body::Value(AmqpValue(body)),
        footer: None,
    }
}

fn cbs(shared: &Shared, conn: &Conn, request: &AmqpMessage) -> AmqpMessage {
    match app_property(request, "operation") {
        Some(SimpleValue::String(op)) if op == "put-token" => {}
        _ => {
            return response(
                request,
                501,
                "Only put-token is implemented.",
                Value::Null,
                None,
            );
        }
    }
    let token = match &request.body {
        Body::Value(AmqpValue(Value::String(token))) => token.as_str(),
        _ => {
            return response(
                request,
                400,
                "The token must be a string.",
                Value::Null,
                None,
            );
        }
    };
    match shared.verify(token) {
        Ok(()) => {
            conn.authorized.store(true, Ordering::SeqCst);
            response(request, 202, "Accepted", Value::Null, None)
        }
        Err(why) => response(
            request,
            401,
            &format!("InvalidSignature: {why}."),
            Value::Null,
            Some("amqp:unauthorized-access"),
        ),
    }
}

fn body_field<'a>(request: &'a AmqpMessage, name: &str) -> Option<&'a Value> {
    match &request.body {
        Body::Value(AmqpValue(Value::Map(map))) => map.get(&Value::String(name.to_owned())),
        _ => None,
    }
}

fn lock_tokens(request: &AmqpMessage) -> Vec<[u8; 16]> {
    let values: Vec<Value> = match body_field(request, "lock-tokens") {
        Some(Value::Array(array)) => array.iter().cloned().collect(),
        Some(Value::List(list)) => list.clone(),
        _ => Vec::new(),
    };
    values
        .into_iter()
        .filter_map(|v| match v {
            Value::Uuid(uuid) => Some(uuid.into_inner()),
            _ => None,
        })
        .collect()
}

fn string_field(request: &AmqpMessage, name: &str) -> Option<String> {
    match body_field(request, name) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn properties_field(fields: Option<&Value>) -> Vec<(String, SimpleValue)> {
    match fields {
        Some(Value::Map(map)) => map
            .iter()
            .filter_map(|(k, v)| match k {
                Value::String(k) => Some((k.clone(), SimpleValue::try_from(v.clone()).ok()?)),
                Value::Symbol(k) => Some((
                    k.as_str().to_owned(),
                    SimpleValue::try_from(v.clone()).ok()?,
                )),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

const LOCK_LOST: &str = "com.microsoft:message-lock-lost";
const LOCK_LOST_TEXT: &str = "The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue.";

fn management(shared: &Shared, node: &Node, request: &AmqpMessage) -> AmqpMessage {
    let operation = match app_property(request, "operation") {
        Some(SimpleValue::String(op)) => op.clone(),
        _ => String::new(),
    };
    let answer = {
        let mut ns = lock(&shared.ns);
        let now = now_ms();
        ns.sweep(now);
        let lock_ms = ns.lock_ms();
        match operation.as_str() {
            "com.microsoft:renew-lock" => {
                let tokens = lock_tokens(request);
                match ns.entity_mut(node) {
                    None => response(
                        request,
                        404,
                        "The entity is gone.",
                        Value::Null,
                        Some("amqp:not-found"),
                    ),
                    Some(entity) => {
                        let subqueue = entity.subqueue(node.dead_letter);
                        let mut expirations = Vec::new();
                        for token in &tokens {
                            match subqueue
                                .values_mut()
                                .find(|m| m.lock.is_some_and(|l| l.token == *token))
                            {
                                Some(m) => {
                                    let until_ms = now + lock_ms;
                                    m.lock = Some(Lock {
                                        token: *token,
                                        until_ms,
                                    });
                                    expirations.push(Value::Timestamp(
                                        Timestamp::from_milliseconds(until_ms),
                                    ));
                                }
                                None => break,
                            }
                        }
                        if tokens.is_empty() || expirations.len() < tokens.len() {
                            response(request, 410, LOCK_LOST_TEXT, Value::Null, Some(LOCK_LOST))
                        } else {
                            let mut body = OrderedMap::new();
                            body.insert(
                                Value::String("expirations".into()),
                                Value::Array(Array::from(expirations)),
                            );
                            response(request, 200, "OK", Value::Map(body), None)
                        }
                    }
                }
            }
            "com.microsoft:peek-message" => {
                let from = match body_field(request, "from-sequence-number") {
                    Some(Value::Long(n)) => *n,
                    _ => 0,
                };
                let count = match body_field(request, "message-count") {
                    Some(Value::Int(n)) => (*n).max(0) as usize,
                    _ => 1,
                };
                let messages: Vec<Value> = ns
                    .entity_mut(node)
                    .map(|entity| {
                        entity
                            .subqueue(node.dead_letter)
                            .range(from..)
                            .take(count)
                            .filter_map(|(_, m)| {
                                serde_amqp::to_vec(&Serializable(m.annotated(m.lock))).ok()
                            })
                            .map(|bytes| {
                                let mut entry = OrderedMap::new();
                                entry.insert(
                                    Value::String("message".into()),
                                    Value::Binary(Binary::from(bytes)),
                                );
                                Value::Map(entry)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if messages.is_empty() {
                    response(request, 204, "No messages.", Value::Null, None)
                } else {
                    let mut body = OrderedMap::new();
                    body.insert(Value::String("messages".into()), Value::List(messages));
                    response(request, 200, "OK", Value::Map(body), None)
                }
            }
            "com.microsoft:update-disposition" => {
                let how = match string_field(request, "disposition-status").as_deref() {
                    Some("completed") => Some(Settle::Complete),
                    Some("abandoned") | Some("defered") => Some(Settle::Abandon(properties_field(
                        body_field(request, "properties-to-modify"),
                    ))),
                    Some("suspended") => Some(Settle::DeadLetter(
                        string_field(request, "deadletter-reason"),
                        string_field(request, "deadletter-description"),
                        properties_field(body_field(request, "properties-to-modify")),
                    )),
                    _ => None,
                };
                match how {
                    None => response(
                        request,
                        400,
                        "Unknown disposition-status.",
                        Value::Null,
                        None,
                    ),
                    Some(how) => {
                        let mut lost = false;
                        for token in lock_tokens(request) {
                            let how = match &how {
                                Settle::Complete => Settle::Complete,
                                Settle::Release => Settle::Release,
                                Settle::Abandon(p) => Settle::Abandon(p.clone()),
                                Settle::DeadLetter(r, d, p) => {
                                    Settle::DeadLetter(r.clone(), d.clone(), p.clone())
                                }
                            };
                            lost |= ns.settle(node, token, how).is_err();
                        }
                        if lost {
                            ns.lost_locks += 1;
                            response(request, 410, LOCK_LOST_TEXT, Value::Null, Some(LOCK_LOST))
                        } else {
                            response(request, 200, "OK", Value::Map(OrderedMap::new()), None)
                        }
                    }
                }
            }
            other => response(
                request,
                501,
                &format!(
                    "The operation '{other}' is not implemented by the Service Bus test peer."
                ),
                Value::Null,
                Some("com.microsoft:not-implemented"),
            ),
        }
    };
    shared.changed();
    answer
}

/// A client's sender link: enqueue what it sends.
async fn enqueue_loop(shared: Arc<Shared>, key: String, mut receiver: Receiver) {
    let mut changes = shared.changes.subscribe();
    loop {
        tokio::select! {
            delivery = receiver.recv::<Body<Value>>() => {
                let delivery = match delivery {
                    Ok(delivery) => delivery,
                    Err(fe2o3_amqp::link::RecvError::LinkStateError(_)) => break,
                    Err(e) => {
                        // `fe2o3-amqp` 0.14 cuts a message larger than the
                        // link's max-message-size into several deliveries
                        // with different delivery ids, which ends here.
                        trace!("transfer refused: {e}");
                        let _ = receiver
                            .close_with_error(error(
                                AmqpError::DecodeError,
                                format!("The transfer could not be received ({e}); a message over {MAX_MESSAGE_SIZE} bytes?"),
                            ))
                            .await;
                        return;
                    }
                };
                tokio::time::sleep(SETTLE_DELAY).await;
                match accept_transfer(&shared, &key, &delivery) {
                    Ok(()) => {
                        let _ = receiver.accept(&delivery).await;
                    }
                    Err((e, fatal)) => {
                        let _ = receiver.reject(&delivery, e.clone()).await;
                        if fatal {
                            let _ = receiver.close_with_error(e).await;
                            return;
                        }
                    }
                }
            }
            changed = changes.changed() => {
                let gone = {
                    let ns = lock(&shared.ns);
                    !ns.queues.contains_key(&key) && !ns.topics.contains_key(&key)
                };
                if changed.is_err() || gone {
                    let _ = receiver.close_with_error(not_found(&key)).await;
                    return;
                }
            }
        }
    }
    let _ = receiver.close().await;
}

/// Enqueues a transfer (one message, or an `azservicebus` batch); the
/// error says whether the link must close.
fn accept_transfer(
    shared: &Shared,
    key: &str,
    delivery: &Delivery<Body<Value>>,
) -> Result<(), (definitions::Error, bool)> {
    let message = delivery.message();
    let messages: Vec<AmqpMessage> = if *delivery.message_format() == Some(BATCH_FORMAT) {
        let Body::Data(sections) = &message.body else {
            return Err((
                error(AmqpError::DecodeError, "A batch must hold data sections."),
                false,
            ));
        };
        let mut messages = Vec::new();
        for section in sections.iter() {
            match serde_amqp::from_slice::<Deserializable<AmqpMessage>>(&section.0) {
                Ok(inner) => messages.push(inner.0),
                Err(e) => {
                    return Err((
                        error(
                            AmqpError::DecodeError,
                            format!("A batched message does not decode: {e}"),
                        ),
                        false,
                    ));
                }
            }
        }
        messages
    } else {
        vec![message.clone()]
    };
    let size: usize = messages.iter().map(encoded_len).sum();
    if size as u64 > MAX_MESSAGE_SIZE {
        return Err((
            error(
                LinkError::MessageSizeExceeded,
                format!(
                    "The received message (size: {size} bytes) exceeds the limit ({MAX_MESSAGE_SIZE} bytes) currently allowed on the link."
                ),
            ),
            false,
        ));
    }
    if !lock(&shared.ns).enqueue(key, messages) {
        return Err((not_found(key), true));
    }
    shared.changed();
    Ok(())
}

enum Attempt {
    Sent(DeliveryFut<Result<Outcome, SendError>>, [u8; 16]),
    Idle(Duration),
    Gone,
    Broken,
}

/// A client's receiver link: deliver by credit, oldest unlocked first.
async fn deliver_loop(shared: Arc<Shared>, node: Node, mut sender: Sender) {
    let mut changes = shared.changes.subscribe();
    loop {
        let wait = loop {
            match try_deliver(&shared, &node, &mut sender) {
                Attempt::Sent(outcome, token) => {
                    let shared = shared.clone();
                    let node = node.clone();
                    tokio::spawn(async move {
                        let outcome = outcome.await;
                        settle_delivery(&shared, &node, token, outcome);
                    });
                }
                Attempt::Idle(wait) => break wait,
                Attempt::Gone => {
                    let path = match &node.subscription {
                        Some(sub) => format!("{}/subscriptions/{sub}", node.queue_or_topic),
                        None => node.queue_or_topic.clone(),
                    };
                    let _ = sender.close_with_error(not_found(&path)).await;
                    return;
                }
                Attempt::Broken => {
                    let _ = sender.close().await;
                    return;
                }
            }
        };
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = sender.on_detach() => {
                let _ = sender.close().await;
                return;
            }
        }
    }
}

fn try_deliver(shared: &Shared, node: &Node, sender: &mut Sender) -> Attempt {
    let mut ns = lock(&shared.ns);
    let now = now_ms();
    ns.sweep(now);
    let until_ms = now + ns.lock_ms();
    let Some(entity) = ns.entity_mut(node) else {
        return Attempt::Gone;
    };
    let Some(stored) = entity
        .subqueue(node.dead_letter)
        .values_mut()
        .find(|m| m.lock.is_none())
    else {
        return Attempt::Idle(IDLE_POLL);
    };
    let mut token = random_bytes::<16>();
    token[6] = (token[6] & 0x0f) | 0x40;
    token[8] = (token[8] & 0x3f) | 0x80;
    let lock = Lock { token, until_ms };
    let sendable = Sendable::builder().message(stored.delivery(lock)).build();
    // Sending waits for link credit, which `fe2o3-amqp` does not show: poll
    // once (without the runtime's budget), and look again later if the
    // client has given none.
    match tokio::task::unconstrained(sender.send_batchable(sendable)).now_or_never() {
        None => Attempt::Idle(CREDIT_POLL),
        Some(Ok(outcome)) => {
            stored.lock = Some(lock);
            Attempt::Sent(outcome, token)
        }
        Some(Err(_)) => Attempt::Broken,
    }
}

fn settle_delivery(
    shared: &Shared,
    node: &Node,
    token: [u8; 16],
    outcome: Result<Outcome, SendError>,
) {
    // Without an outcome (the link went away) the lock just runs out.
    let Ok(outcome) = outcome else { return };
    let how = match outcome {
        Outcome::Accepted(_) => Settle::Complete,
        Outcome::Released(_) => Settle::Release,
        Outcome::Modified(modified) => {
            Settle::Abandon(fields_properties(modified.message_annotations.as_ref()))
        }
        Outcome::Rejected(rejected) => {
            let (mut reason, mut description, mut properties) = (None, None, Vec::new());
            if let Some(e) = &rejected.error {
                for (key, value) in fields_properties(e.info.as_deref()) {
                    match (key.as_str(), value) {
                        ("DeadLetterReason", SimpleValue::String(s)) => reason = Some(s),
                        ("DeadLetterErrorDescription", SimpleValue::String(s)) => {
                            description = Some(s)
                        }
                        (_, value) => properties.push((key, value)),
                    }
                }
                if reason.is_none() && !is_dead_letter(&e.condition) {
                    reason = Some(condition_text(&e.condition));
                    description = description.or_else(|| e.description.clone());
                }
            }
            Settle::DeadLetter(reason, description, properties)
        }
        #[allow(unreachable_patterns)]
        _ => Settle::Release,
    };
    {
        let mut ns = lock(&shared.ns);
        if ns.settle(node, token, how).is_err() {
            ns.lost_locks += 1;
        }
    }
    shared.changed();
}

fn fields_properties(fields: Option<&Fields>) -> Vec<(String, SimpleValue)> {
    fields
        .into_iter()
        .flat_map(|f| f.iter())
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_owned(),
                SimpleValue::try_from(v.clone()).ok()?,
            ))
        })
        .collect()
}

fn is_dead_letter(condition: &ErrorCondition) -> bool {
    matches!(condition, ErrorCondition::Custom(s) if s.as_str() == "com.microsoft:dead-letter")
}

fn condition_text(condition: &ErrorCondition) -> String {
    match serde_amqp::to_value(condition) {
        Ok(Value::Symbol(s)) => s.as_str().to_owned(),
        _ => format!("{condition:?}"),
    }
}

/* ---------------------------------- HTTP --------------------------------- */

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `2024-05-01T12:00:00.1230000Z`
fn iso_time(ms: i64) -> String {
    // `2024-05-01 12:00:00 UTC`, as the server shows times.
    let shown = server::runner::clock(ms);
    let (date, time) = shown
        .trim_end_matches(" UTC")
        .split_once(' ')
        .unwrap_or(("1970-01-01", "00:00:00"));
    format!("{date}T{time}.{:03}0000Z", ms.rem_euclid(1000))
}

fn iso_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) {
        format!("PT{}S", ms / 1000)
    } else {
        format!("PT{}.{:03}S", ms / 1000, ms % 1000)
    }
}

fn count_details(active: usize, dead: usize) -> String {
    format!(
        r#"<CountDetails xmlns:d2p1="{NAMESPACES_COUNTS}"><d2p1:ActiveMessageCount>{active}</d2p1:ActiveMessageCount><d2p1:DeadLetterMessageCount>{dead}</d2p1:DeadLetterMessageCount><d2p1:ScheduledMessageCount>0</d2p1:ScheduledMessageCount><d2p1:TransferMessageCount>0</d2p1:TransferMessageCount><d2p1:TransferDeadLetterMessageCount>0</d2p1:TransferDeadLetterMessageCount></CountDetails>"#
    )
}

fn queue_description(entity: &Entity, lock: Duration) -> String {
    let (active, dead) = entity.counts();
    let created = iso_time(entity.created_ms);
    format!(
        r#"<QueueDescription xmlns="{NAMESPACES_CONNECT}" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><LockDuration>{lock}</LockDuration><MaxSizeInMegabytes>1024</MaxSizeInMegabytes><RequiresDuplicateDetection>false</RequiresDuplicateDetection><RequiresSession>{sessions}</RequiresSession><DefaultMessageTimeToLive>{FOREVER}</DefaultMessageTimeToLive><DeadLetteringOnMessageExpiration>false</DeadLetteringOnMessageExpiration><DuplicateDetectionHistoryTimeWindow>PT10M</DuplicateDetectionHistoryTimeWindow><MaxDeliveryCount>{MAX_DELIVERY_COUNT}</MaxDeliveryCount><EnableBatchedOperations>true</EnableBatchedOperations><SizeInBytes>{size}</SizeInBytes><MessageCount>{total}</MessageCount><IsAnonymousAccessible>false</IsAnonymousAccessible><AuthorizationRules></AuthorizationRules><Status>Active</Status><CreatedAt>{created}</CreatedAt><UpdatedAt>{created}</UpdatedAt><AccessedAt>{now}</AccessedAt><SupportOrdering>true</SupportOrdering>{counts}<AutoDeleteOnIdle>{FOREVER}</AutoDeleteOnIdle><EnablePartitioning>false</EnablePartitioning><EntityAvailabilityStatus>Available</EntityAvailabilityStatus><EnableExpress>false</EnableExpress></QueueDescription>"#,
        lock = iso_duration(lock),
        sessions = entity.requires_session,
        size = entity.size(),
        total = active + dead,
        now = iso_time(now_ms()),
        counts = count_details(active, dead),
    )
}

fn subscription_description(entity: &Entity, lock: Duration) -> String {
    let (active, dead) = entity.counts();
    let created = iso_time(entity.created_ms);
    format!(
        r#"<SubscriptionDescription xmlns="{NAMESPACES_CONNECT}" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><LockDuration>{lock}</LockDuration><RequiresSession>false</RequiresSession><DefaultMessageTimeToLive>{FOREVER}</DefaultMessageTimeToLive><DeadLetteringOnMessageExpiration>false</DeadLetteringOnMessageExpiration><DeadLetteringOnFilterEvaluationExceptions>true</DeadLetteringOnFilterEvaluationExceptions><MessageCount>{total}</MessageCount><MaxDeliveryCount>{MAX_DELIVERY_COUNT}</MaxDeliveryCount><EnableBatchedOperations>true</EnableBatchedOperations><Status>Active</Status><CreatedAt>{created}</CreatedAt><UpdatedAt>{created}</UpdatedAt><AccessedAt>{now}</AccessedAt>{counts}<AutoDeleteOnIdle>{FOREVER}</AutoDeleteOnIdle><EntityAvailabilityStatus>Available</EntityAvailabilityStatus></SubscriptionDescription>"#,
        lock = iso_duration(lock),
        total = active + dead,
        now = iso_time(now_ms()),
        counts = count_details(active, dead),
    )
}

fn topic_description(topic: &Topic) -> String {
    let created = iso_time(topic.created_ms);
    format!(
        r#"<TopicDescription xmlns="{NAMESPACES_CONNECT}" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><DefaultMessageTimeToLive>{FOREVER}</DefaultMessageTimeToLive><MaxSizeInMegabytes>1024</MaxSizeInMegabytes><RequiresDuplicateDetection>false</RequiresDuplicateDetection><DuplicateDetectionHistoryTimeWindow>PT10M</DuplicateDetectionHistoryTimeWindow><EnableBatchedOperations>true</EnableBatchedOperations><SizeInBytes>0</SizeInBytes><FilteringMessagesBeforePublishing>false</FilteringMessagesBeforePublishing><IsAnonymousAccessible>false</IsAnonymousAccessible><AuthorizationRules></AuthorizationRules><Status>Active</Status><CreatedAt>{created}</CreatedAt><UpdatedAt>{created}</UpdatedAt><AccessedAt>{now}</AccessedAt><SupportOrdering>true</SupportOrdering>{counts}<SubscriptionCount>{subs}</SubscriptionCount><AutoDeleteOnIdle>{FOREVER}</AutoDeleteOnIdle><EnablePartitioning>false</EnablePartitioning><IsExpress>false</IsExpress><EntityAvailabilityStatus>Available</EntityAvailabilityStatus><EnableExpress>false</EnableExpress></TopicDescription>"#,
        now = iso_time(now_ms()),
        counts = count_details(0, 0),
        subs = topic.subscriptions.len(),
    )
}

fn entry(base: &str, path: &str, title: &str, created_ms: i64, content: &str) -> String {
    let created = iso_time(created_ms);
    format!(
        r#"<entry xmlns="http://www.w3.org/2005/Atom"><id>{base}{path}?api-version=2021-05</id><title type="text">{title}</title><published>{created}</published><updated>{created}</updated><author><name>servicebus-test-peer</name></author><link rel="self" href="{base}{path}?api-version=2021-05"/><content type="application/xml">{content}</content></entry>"#,
        path = xml_escape(path),
        title = xml_escape(title),
    )
}

fn feed(
    base: &str,
    path: &str,
    title: &str,
    entries: Vec<String>,
    skip: usize,
    top: usize,
) -> String {
    let entries: String = entries.into_iter().skip(skip).take(top).collect();
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title type="text">{title}</title><id>{base}{path}?api-version=2021-05</id><updated>{now}</updated><link rel="self" href="{base}{path}?api-version=2021-05"/>{entries}</feed>"#,
        now = iso_time(now_ms()),
        path = xml_escape(path),
    )
}

fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            "application/atom+xml;type=entry;charset=utf-8",
        )],
        body,
    )
        .into_response()
}

fn xml_error(status: StatusCode, detail: &str) -> Response {
    xml(
        status,
        format!(
            "<Error><Code>{}</Code><Detail>{}</Detail></Error>",
            status.as_u16(),
            xml_escape(detail)
        ),
    )
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 260
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

async fn http_request(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Err(why) = shared.verify(authorization) {
        return xml_error(
            StatusCode::UNAUTHORIZED,
            &format!("InvalidSignature: {why}."),
        );
    }
    let (mut skip, mut top) = (0usize, usize::MAX);
    for pair in uri.query().unwrap_or("").split('&') {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        match percent_decode(name).as_str() {
            "$skip" => skip = value.parse().unwrap_or(0),
            "$top" => top = value.parse().unwrap_or(usize::MAX),
            _ => {}
        }
    }
    let path = percent_decode(uri.path().trim_matches('/'));
    let lower = path.to_lowercase();
    let parts: Vec<&str> = lower.split('/').collect();
    let base = format!(
        "http://{}:{}/",
        shared.ip,
        shared.management_port.get().copied().unwrap_or_default()
    );
    let mut ns = lock(&shared.ns);
    ns.sweep(now_ms());
    let lock_duration = ns.lock_duration;
    let verb = method.as_str();
    let answer = match (verb, parts.as_slice()) {
        ("GET", ["$resources", "queues"]) => {
            let entries = ns
                .queues
                .values()
                .map(|q| {
                    entry(
                        &base,
                        &q.name,
                        &q.name,
                        q.created_ms,
                        &queue_description(q, lock_duration),
                    )
                })
                .collect();
            xml(
                StatusCode::OK,
                feed(&base, &path, "Queues", entries, skip, top),
            )
        }
        ("GET", ["$resources", "topics"]) => {
            let entries = ns
                .topics
                .values()
                .map(|t| entry(&base, &t.name, &t.name, t.created_ms, &topic_description(t)))
                .collect();
            xml(
                StatusCode::OK,
                feed(&base, &path, "Topics", entries, skip, top),
            )
        }
        ("GET", [topic, "subscriptions"]) => match ns.topics.get(*topic) {
            None => xml_error(StatusCode::NOT_FOUND, "No such topic."),
            Some(t) => {
                let entries = t
                    .subscriptions
                    .values()
                    .map(|s| {
                        let path = format!("{}/Subscriptions/{}", t.name, s.name);
                        entry(
                            &base,
                            &path,
                            &s.name,
                            s.created_ms,
                            &subscription_description(s, lock_duration),
                        )
                    })
                    .collect();
                xml(
                    StatusCode::OK,
                    feed(&base, &path, "Subscriptions", entries, skip, top),
                )
            }
        },
        (_, [topic, "subscriptions", sub]) => {
            let sub_name = path.rsplit('/').next().unwrap_or(sub).to_owned();
            match ns.topics.get_mut(*topic) {
                None => xml_error(StatusCode::NOT_FOUND, "No such topic."),
                Some(t) => match verb {
                    "GET" => match t.subscriptions.get(*sub) {
                        Some(s) => xml(
                            StatusCode::OK,
                            entry(
                                &base,
                                &path,
                                &s.name,
                                s.created_ms,
                                &subscription_description(s, lock_duration),
                            ),
                        ),
                        None => xml_error(StatusCode::NOT_FOUND, "No such subscription."),
                    },
                    "PUT" if !valid_name(&sub_name) => {
                        xml_error(StatusCode::BAD_REQUEST, "Invalid name.")
                    }
                    "PUT" if t.subscriptions.contains_key(*sub) => {
                        xml_error(StatusCode::CONFLICT, "The subscription already exists.")
                    }
                    "PUT" => {
                        let s = Entity::new(&sub_name);
                        let answer = entry(
                            &base,
                            &path,
                            &s.name,
                            s.created_ms,
                            &subscription_description(&s, lock_duration),
                        );
                        t.subscriptions.insert(sub.to_string(), s);
                        xml(StatusCode::CREATED, answer)
                    }
                    "DELETE" => match t.subscriptions.remove(*sub) {
                        Some(_) => xml(StatusCode::OK, String::new()),
                        None => xml_error(StatusCode::NOT_FOUND, "No such subscription."),
                    },
                    _ => xml_error(StatusCode::METHOD_NOT_ALLOWED, "Not supported."),
                },
            }
        }
        (_, [key]) if !key.is_empty() && !key.starts_with('$') => {
            let key = key.to_string();
            match verb {
                "GET" => {
                    if let Some(q) = ns.queues.get(&key) {
                        xml(
                            StatusCode::OK,
                            entry(
                                &base,
                                &q.name,
                                &q.name,
                                q.created_ms,
                                &queue_description(q, lock_duration),
                            ),
                        )
                    } else if let Some(t) = ns.topics.get(&key) {
                        xml(
                            StatusCode::OK,
                            entry(&base, &t.name, &t.name, t.created_ms, &topic_description(t)),
                        )
                    } else {
                        xml_error(StatusCode::NOT_FOUND, "No such entity.")
                    }
                }
                "PUT" if !valid_name(&path) => xml_error(StatusCode::BAD_REQUEST, "Invalid name."),
                "PUT" if ns.queues.contains_key(&key) || ns.topics.contains_key(&key) => xml_error(
                    StatusCode::CONFLICT,
                    &format!("The entity '{path}' already exists."),
                ),
                "PUT" if body.contains("<QueueDescription") => {
                    let q = Entity::new(&path);
                    let answer = entry(
                        &base,
                        &q.name,
                        &q.name,
                        q.created_ms,
                        &queue_description(&q, lock_duration),
                    );
                    ns.queues.insert(key, q);
                    xml(StatusCode::CREATED, answer)
                }
                "PUT" if body.contains("<TopicDescription") => {
                    let t = Topic {
                        name: path.clone(),
                        created_ms: now_ms(),
                        subscriptions: BTreeMap::new(),
                    };
                    let answer = entry(
                        &base,
                        &t.name,
                        &t.name,
                        t.created_ms,
                        &topic_description(&t),
                    );
                    ns.topics.insert(key, t);
                    xml(StatusCode::CREATED, answer)
                }
                "PUT" => xml_error(
                    StatusCode::BAD_REQUEST,
                    "The body holds no QueueDescription or TopicDescription.",
                ),
                "DELETE" => {
                    if ns.queues.remove(&key).is_some() || ns.topics.remove(&key).is_some() {
                        xml(StatusCode::OK, String::new())
                    } else {
                        xml_error(StatusCode::NOT_FOUND, "No such entity.")
                    }
                }
                _ => xml_error(StatusCode::METHOD_NOT_ALLOWED, "Not supported."),
            }
        }
        _ => xml_error(StatusCode::NOT_FOUND, "Not found."),
    };
    drop(ns);
    if verb != "GET" {
        shared.changed();
    }
    answer
}

/* --------------------------------- tests --------------------------------- */

use azservicebus::core::BasicRetryPolicy;
use azservicebus::receiver::DeadLetterOptions;
use azservicebus::{
    ServiceBusClient, ServiceBusClientOptions, ServiceBusMessage, ServiceBusReceivedMessage,
    ServiceBusReceiver, ServiceBusReceiverOptions, ServiceBusRetryOptions, ServiceBusSenderOptions,
    SubQueue,
};

type Client = ServiceBusClient<BasicRetryPolicy>;

/// How long a test waits for a condition.
const WAIT: Duration = Duration::from_secs(30);

async fn connect(connection_string: &str) -> Result<Client, String> {
    connect_with_timeout(connection_string, Duration::from_secs(20)).await
}

async fn connect_with_timeout(
    connection_string: &str,
    try_timeout: Duration,
) -> Result<Client, String> {
    let options = ServiceBusClientOptions {
        retry_options: ServiceBusRetryOptions {
            max_retries: 0,
            try_timeout,
            ..Default::default()
        },
        ..Default::default()
    };
    Client::unsecured()
        .new_from_connection_string(connection_string, options)
        .await
        .map_err(|e| e.to_string())
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {WAIT:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Receives exactly `n` messages (peek-lock), waiting up to [`WAIT`].
async fn receive(receiver: &mut ServiceBusReceiver, n: usize) -> Vec<ServiceBusReceivedMessage> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "received {} of {n} messages in {WAIT:?}",
            got.len()
        );
        let more = receiver
            .receive_messages_with_max_wait_time((n - got.len()) as u32, Duration::from_secs(1))
            .await
            .expect("receiving");
        got.extend(more);
    }
    got
}

fn raw_delivery_count(message: &ServiceBusReceivedMessage) -> Option<u32> {
    message
        .raw_amqp_message()
        .header
        .as_ref()
        .map(|h| h.delivery_count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servicebus_peer_signature_matches_azservicebus() {
    // The example of azservicebus' own `build_signature` test.
    let token = "SharedAccessSignature sig=WOVqJi%2B2fowHpCC2g3ztxEQrYAU173BGWrkVaPlvPj4%3D&se=1667344375&skn=RootManageSharedAccessKey&sr=amqps%3A%2F%2Ffe2o3-amqp-example.servicebus.windows.net";
    let key = "r9rdIglXNiIPN2Lgj/HyhgOuq+aGht0qH3n+/lYQhfo=";
    let key_name = "RootManageSharedAccessKey";
    assert_eq!(check_signature(token, key_name, key, 1_667_344_000), Ok(()));
    assert!(
        check_signature(token, key_name, key, 1_667_344_375).is_err(),
        "expired"
    );
    assert!(check_signature(token, key_name, "other", 1_667_344_000).is_err());
    assert!(check_signature(token, "other", key, 1_667_344_000).is_err());
    let ours = sas_token("http://127.1.2.3:80/", key_name, key, 1_667_344_375);
    assert_eq!(check_signature(&ours, key_name, key, 1_667_344_000), Ok(()));
    assert_eq!(iso_time(0), "1970-01-01T00:00:00.0000000Z");
    assert_eq!(iso_time(1_709_210_096_789), "2024-02-29T12:34:56.7890000Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servicebus_peer_completes_and_abandons_in_peek_lock() {
    let peer = ServiceBusPeer::start().await;
    peer.create_queue("orders");
    let mut client = connect(&peer.connection_string()).await.unwrap();
    let mut sender = client
        .create_sender("orders", ServiceBusSenderOptions::default())
        .await
        .unwrap();
    // Several messages at once travel in azservicebus' batch format.
    sender.send_messages(["one", "two", "three"]).await.unwrap();
    assert_eq!(
        peer.active("orders"),
        vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );

    let mut receiver = client
        .create_receiver_for_queue("orders", ServiceBusReceiverOptions::default())
        .await
        .unwrap();
    let got = receive(&mut receiver, 3).await;
    let bodies: Vec<&[u8]> = got.iter().map(|m| m.body().unwrap()).collect();
    assert_eq!(bodies, vec![&b"one"[..], b"two", b"three"]);
    assert!(
        got.windows(2)
            .all(|w| w[0].sequence_number() < w[1].sequence_number())
    );
    for message in &got {
        assert_eq!(raw_delivery_count(message), Some(0));
        assert_eq!(message.delivery_count(), Some(1));
        assert!(message.locked_until().is_some());
    }
    assert_ne!(got[0].lock_token(), got[1].lock_token());

    receiver.complete_message(&got[0]).await.unwrap();
    receiver.abandon_message(&got[1], None).await.unwrap();
    receiver.complete_message(&got[2]).await.unwrap();
    wait_until("only the abandoned message to be left", || {
        peer.active("orders") == vec![b"two".to_vec()] && peer.delivery_counts("orders") == vec![1]
    })
    .await;

    let again = receive(&mut receiver, 1).await;
    assert_eq!(again[0].body().unwrap(), b"two");
    assert_eq!(raw_delivery_count(&again[0]), Some(1));
    assert_eq!(again[0].delivery_count(), Some(2), "azservicebus adds one");
    assert_eq!(again[0].sequence_number(), got[1].sequence_number());
    receiver.complete_message(&again[0]).await.unwrap();
    wait_until("the queue to be empty", || peer.active("orders").is_empty()).await;
    assert_eq!(peer.lost_lock_settlements(), 0);

    receiver.dispose().await.unwrap();
    sender.dispose().await.unwrap();
    client.dispose().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servicebus_peer_dead_letters_with_reason_and_description() {
    let peer = ServiceBusPeer::start().await;
    peer.create_queue("jobs");
    let mut client = connect(&peer.connection_string()).await.unwrap();
    let mut sender = client
        .create_sender("jobs", ServiceBusSenderOptions::default())
        .await
        .unwrap();
    let mut message = ServiceBusMessage::new("poison");
    message
        .application_properties_mut()
        .get_or_insert_with(Default::default)
        .insert("kind".into(), "test".into());
    sender.send_message(message).await.unwrap();

    let mut receiver = client
        .create_receiver_for_queue("jobs", ServiceBusReceiverOptions::default())
        .await
        .unwrap();
    let got = receive(&mut receiver, 1).await;
    receiver
        .dead_letter_message(
            &got[0],
            DeadLetterOptions {
                dead_letter_reason: Some("BadInput".into()),
                dead_letter_error_description: Some("not JSON".into()),
                properties_to_modify: None,
            },
        )
        .await
        .unwrap();
    wait_until("the dead letter", || peer.dead_letters("jobs").len() == 1).await;
    let letter = &peer.dead_letters("jobs")[0];
    assert_eq!(letter.body, b"poison");
    assert_eq!(letter.reason.as_deref(), Some("BadInput"));
    assert_eq!(letter.description.as_deref(), Some("not JSON"));
    assert_eq!(letter.application_properties["kind"], "test");
    assert_eq!(
        letter.application_properties["DeadLetterReason"],
        "BadInput"
    );
    assert!(peer.active("jobs").is_empty());

    // The dead-letter subqueue, through the client: peeking takes nothing.
    let mut dead = client
        .create_receiver_for_queue(
            "jobs",
            ServiceBusReceiverOptions {
                sub_queue: SubQueue::DeadLetter,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let peeked = dead.peek_messages(10, None).await.unwrap();
    assert_eq!(peeked.len(), 1);
    assert_eq!(peeked[0].body().unwrap(), b"poison");
    assert!(
        dead.peek_messages(10, None).await.unwrap().is_empty(),
        "peeked past it"
    );
    assert_eq!(peer.dead_letters("jobs").len(), 1);

    let letters = receive(&mut dead, 1).await;
    assert_eq!(letters[0].body().unwrap(), b"poison");
    assert_eq!(letters[0].dead_letter_reason(), Some("BadInput"));
    assert_eq!(letters[0].dead_letter_error_description(), Some("not JSON"));
    dead.complete_message(&letters[0]).await.unwrap();
    wait_until("the dead letter to be taken", || {
        peer.dead_letters("jobs").is_empty()
    })
    .await;

    dead.dispose().await.unwrap();
    receiver.dispose().await.unwrap();
    sender.dispose().await.unwrap();
    client.dispose().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servicebus_peer_renews_locks_and_loses_them() {
    let peer = ServiceBusPeer::start().await;
    let lock = Duration::from_secs(2);
    peer.set_lock_duration(lock);
    peer.create_queue("slow");
    peer.send("slow", b"work");
    let mut client = connect(&peer.connection_string()).await.unwrap();
    let mut first = client
        .create_receiver_for_queue("slow", ServiceBusReceiverOptions::default())
        .await
        .unwrap();
    let mut second = client
        .create_receiver_for_queue("slow", ServiceBusReceiverOptions::default())
        .await
        .unwrap();
    let mut held = receive(&mut first, 1).await.remove(0);
    let locked_until = held.locked_until().unwrap();

    // Renewed well within each lock, for longer than two locks: the other
    // receiver never gets it.
    let started = tokio::time::Instant::now();
    while started.elapsed() < lock * 2 + Duration::from_millis(500) {
        first.renew_message_lock(&mut held).await.unwrap();
        let got = second
            .receive_messages_with_max_wait_time(1, Duration::from_millis(400))
            .await
            .unwrap();
        assert!(got.is_empty(), "a renewed lock was given away");
    }
    assert!(held.locked_until().unwrap() > locked_until);
    assert_eq!(peer.delivery_counts("slow"), vec![0]);

    // Left alone, the lock runs out and the message goes to the other receiver.
    let again = receive(&mut second, 1).await.remove(0);
    assert_eq!(again.body().unwrap(), b"work");
    assert_eq!(raw_delivery_count(&again), Some(1));

    // The first receiver's lock is lost: renewing fails, and completing
    // (which azservicebus does not wait on) changes nothing.
    let renewal = first.renew_message_lock(&mut held).await;
    let error = renewal.expect_err("renewing a lost lock").to_string();
    eprintln!("renewing a lost lock: {error}");
    assert!(error.contains("410") || error.contains("lock"), "{error}");
    let _ = first.complete_message(&held).await;
    wait_until("the late settlement", || peer.lost_lock_settlements() == 1).await;
    assert_eq!(peer.active("slow"), vec![b"work".to_vec()]);

    second.complete_message(&again).await.unwrap();
    wait_until("the queue to be empty", || peer.active("slow").is_empty()).await;

    first.dispose().await.unwrap();
    second.dispose().await.unwrap();
    client.dispose().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servicebus_peer_refuses_a_wrong_key_and_unknown_entities() {
    let peer = ServiceBusPeer::start().await;
    peer.create_queue("q");
    let wrong = format!(
        "Endpoint=sb://{}:{}/;SharedAccessKeyName={};SharedAccessKey=d3Jvbmc=;UseDevelopmentEmulator=true",
        peer.host(),
        peer.management_port(),
        peer.key_name()
    );
    // The connection needs no key; the first link's token does.
    let mut client = connect(&wrong).await.unwrap();
    let error = client
        .create_sender("q", ServiceBusSenderOptions::default())
        .await
        .expect_err("a wrong key cannot send")
        .to_string();
    eprintln!("wrong key: {error}");
    assert!(error.contains("401"), "{error}");
    let error = client
        .create_receiver_for_queue("q", ServiceBusReceiverOptions::default())
        .await
        .expect_err("a wrong key cannot receive")
        .to_string();
    eprintln!("wrong key: {error}");
    assert!(error.contains("401"), "{error}");
    let _ = client.dispose().await;

    let mut client = connect(&peer.connection_string()).await.unwrap();
    let error = match client
        .create_sender("missing", ServiceBusSenderOptions::default())
        .await
    {
        Err(error) => error.to_string(),
        Ok(mut sender) => sender
            .send_message("lost")
            .await
            .expect_err("no queue 'missing'")
            .to_string(),
    };
    eprintln!("unknown queue: {error}");
    assert!(
        error.contains("not-found") || error.contains("could not be found"),
        "{error}"
    );
    assert!(peer.active("q").is_empty());
    let _ = client.dispose().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servicebus_peer_goes_down_and_comes_back() {
    let peer = ServiceBusPeer::start().await;
    peer.create_queue("q");
    let mut client = connect(&peer.connection_string()).await.unwrap();
    let mut sender = client
        .create_sender("q", ServiceBusSenderOptions::default())
        .await
        .unwrap();
    sender.send_message("before").await.unwrap();

    peer.set_down(true);
    wait_until("the connection to be closed", || peer.connections() == 0).await;
    assert!(sender.send_message("during").await.is_err());
    assert!(connect(&peer.connection_string()).await.is_err());

    peer.set_down(false);
    let mut client = connect(&peer.connection_string()).await.unwrap();
    let mut sender = client
        .create_sender("q", ServiceBusSenderOptions::default())
        .await
        .unwrap();
    sender.send_message("after").await.unwrap();
    assert_eq!(
        peer.active("q"),
        vec![b"before".to_vec(), b"after".to_vec()]
    );
    let _ = client.dispose().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servicebus_peer_http_lists_entities_with_counts() {
    let peer = ServiceBusPeer::start().await;
    peer.create_queue("orders");
    peer.create_topic("events");
    peer.create_subscription("events", "audit");
    for body in ["a", "b", "c"] {
        peer.send("orders", body.as_bytes());
    }
    peer.send("events", b"e");
    assert_eq!(
        peer.active("events/subscriptions/audit"),
        vec![b"e".to_vec()]
    );

    let mut client = connect(&peer.connection_string()).await.unwrap();
    let mut receiver = client
        .create_receiver_for_queue("orders", ServiceBusReceiverOptions::default())
        .await
        .unwrap();
    let got = receive(&mut receiver, 1).await;
    receiver
        .dead_letter_message(&got[0], DeadLetterOptions::default())
        .await
        .unwrap();
    wait_until("the dead letter", || peer.dead_letters("orders").len() == 1).await;

    let http = reqwest::Client::new();
    let base = peer.management_url();
    let expiry = now_ms() as u64 / 1000 + 600;
    let token = sas_token(&base, peer.key_name(), peer.key(), expiry);
    let get = |path: &str, token: Option<&str>| {
        let mut request = http.get(format!("{base}{path}?api-version=2021-05&$skip=0&$top=100"));
        if let Some(token) = token {
            request = request.header("Authorization", token);
        }
        request.send()
    };

    let answer = get("$Resources/Queues", Some(&token)).await.unwrap();
    assert_eq!(answer.status(), 200);
    let queues = answer.text().await.unwrap();
    assert!(queues.starts_with("<?xml"), "{queues}");
    assert!(
        queues.contains(r#"<feed xmlns="http://www.w3.org/2005/Atom">"#),
        "{queues}"
    );
    assert!(
        queues.contains(r#"<title type="text">orders</title>"#),
        "{queues}"
    );
    assert!(
        queues.contains("<MessageCount>3</MessageCount>"),
        "{queues}"
    );
    assert!(
        queues.contains("<d2p1:ActiveMessageCount>2</d2p1:ActiveMessageCount>"),
        "{queues}"
    );
    assert!(
        queues.contains("<d2p1:DeadLetterMessageCount>1</d2p1:DeadLetterMessageCount>"),
        "{queues}"
    );

    let topics = get("$Resources/Topics", Some(&token))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        topics.contains(r#"<title type="text">events</title>"#),
        "{topics}"
    );
    assert!(topics.contains("<TopicDescription"), "{topics}");
    let subscriptions = get("events/Subscriptions", Some(&token))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        subscriptions.contains(r#"<title type="text">audit</title>"#),
        "{subscriptions}"
    );
    assert!(
        subscriptions.contains("<d2p1:ActiveMessageCount>1</d2p1:ActiveMessageCount>"),
        "{subscriptions}"
    );
    let paged = http
        .get(format!(
            "{base}$Resources/Queues?api-version=2021-05&$skip=1&$top=100"
        ))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!paged.contains("<entry"), "{paged}");

    // A wrong key, or none, is refused.
    let wrong = sas_token(&base, peer.key_name(), "d3Jvbmc=", expiry);
    assert_eq!(
        get("$Resources/Queues", Some(&wrong))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(get("$Resources/Queues", None).await.unwrap().status(), 401);

    // Creating a queue, twice; reading one.
    let description = concat!(
        r#"<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml">"#,
        r#"<QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect" "#,
        r#"xmlns:i="http://www.w3.org/2001/XMLSchema-instance"></QueueDescription></content></entry>"#
    );
    let put = || {
        http.put(format!("{base}fresh?api-version=2021-05"))
            .header("Authorization", &token)
            .header(
                "Content-Type",
                "application/atom+xml;type=entry;charset=utf-8",
            )
            .body(description)
            .send()
    };
    assert_eq!(put().await.unwrap().status(), 201);
    assert_eq!(put().await.unwrap().status(), 409);
    assert!(peer.active("fresh").is_empty());
    let fresh = get("fresh", Some(&token)).await.unwrap();
    assert_eq!(fresh.status(), 200);
    assert!(fresh.text().await.unwrap().contains("<QueueDescription"));
    assert_eq!(get("missing", Some(&token)).await.unwrap().status(), 404);

    receiver.dispose().await.unwrap();
    client.dispose().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servicebus_peer_fans_topics_out_to_subscriptions() {
    let peer = ServiceBusPeer::start().await;
    peer.create_topic("events");
    peer.create_subscription("events", "audit");
    peer.create_subscription("events", "billing");
    let mut client = connect(&peer.connection_string()).await.unwrap();
    let mut sender = client
        .create_sender("events", ServiceBusSenderOptions::default())
        .await
        .unwrap();
    sender.send_message("created").await.unwrap();
    for sub in ["audit", "billing"] {
        assert_eq!(
            peer.active(&format!("events/subscriptions/{sub}")),
            vec![b"created".to_vec()]
        );
    }
    let mut receiver = client
        .create_receiver_for_subscription("events", "audit", ServiceBusReceiverOptions::default())
        .await
        .unwrap();
    let got = receive(&mut receiver, 1).await;
    assert_eq!(got[0].body().unwrap(), b"created");
    receiver.complete_message(&got[0]).await.unwrap();
    wait_until("audit's copy to be taken", || {
        peer.active("events/subscriptions/audit").is_empty()
    })
    .await;
    assert_eq!(
        peer.active("events/subscriptions/billing"),
        vec![b"created".to_vec()]
    );
    let _ = client.dispose().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servicebus_peer_dead_letters_after_too_many_deliveries() {
    let peer = ServiceBusPeer::start().await;
    peer.create_queue("flaky");
    peer.send("flaky", b"again");
    let mut client = connect(&peer.connection_string()).await.unwrap();
    let mut receiver = client
        .create_receiver_for_queue("flaky", ServiceBusReceiverOptions::default())
        .await
        .unwrap();
    for attempt in 0..MAX_DELIVERY_COUNT {
        let got = receive(&mut receiver, 1).await;
        assert_eq!(raw_delivery_count(&got[0]), Some(attempt));
        receiver.abandon_message(&got[0], None).await.unwrap();
        let settled = attempt + 1;
        wait_until("the abandon", || {
            peer.delivery_counts("flaky") == vec![settled]
                || (settled == MAX_DELIVERY_COUNT && peer.dead_letters("flaky").len() == 1)
        })
        .await;
    }
    assert!(peer.active("flaky").is_empty());
    let letter = &peer.dead_letters("flaky")[0];
    assert_eq!(letter.reason.as_deref(), Some("MaxDeliveryCountExceeded"));
    assert_eq!(letter.delivery_count, MAX_DELIVERY_COUNT);
    let _ = client.dispose().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servicebus_peer_closes_links_to_a_deleted_queue() {
    let peer = ServiceBusPeer::start().await;
    peer.create_queue("doomed");
    let mut client = connect(&peer.connection_string()).await.unwrap();
    let mut sender = client
        .create_sender("doomed", ServiceBusSenderOptions::default())
        .await
        .unwrap();
    let mut receiver = client
        .create_receiver_for_queue("doomed", ServiceBusReceiverOptions::default())
        .await
        .unwrap();
    sender.send_message("first").await.unwrap();
    let got = receive(&mut receiver, 1).await;
    receiver.complete_message(&got[0]).await.unwrap();

    peer.delete_entity("doomed");
    let error = receiver
        .receive_messages_with_max_wait_time(1, Duration::from_secs(5))
        .await
        .expect_err("a deleted queue cannot be received from")
        .to_string();
    eprintln!("receiving from a deleted queue: {error}");
    let error = sender
        .send_message("second")
        .await
        .expect_err("a deleted queue cannot be sent to")
        .to_string();
    eprintln!("sending to a deleted queue: {error}");
    let _ = client.dispose().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servicebus_peer_rejects_oversized_messages() {
    let peer = ServiceBusPeer::start().await;
    peer.create_queue("big");
    // An oversized message is never answered (see `enqueue_loop`): keep the
    // client's timeout short.
    let mut client = connect_with_timeout(&peer.connection_string(), Duration::from_secs(3))
        .await
        .unwrap();
    let mut sender = client
        .create_sender("big", ServiceBusSenderOptions::default())
        .await
        .unwrap();
    sender
        .send_message(vec![b'x'; 200 * 1024])
        .await
        .expect("200 KiB fits");
    let error = sender
        .send_message(vec![b'x'; 300 * 1024])
        .await
        .expect_err("300 KiB does not fit")
        .to_string();
    eprintln!("sending 300 KiB: {error}");
    assert_eq!(peer.active("big").len(), 1);
    let _ = client.dispose().await;
}
