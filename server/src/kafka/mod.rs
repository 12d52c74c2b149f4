//! Talking to external Kafka clusters.
//!
//! Client settings come only from [`BrokerSettings::client_config`], a fixed
//! mapping of the form's fields: nothing a user types can set any other
//! librdkafka property. One [`BrokerClient`] per broker connection is shared
//! by every request (see [`Clients`]).

mod client;
mod offsets;
mod settings;

pub use client::{BrokerClient, Clients};
pub use offsets::{ReadingConsumer, ReadingContext, watermarks};
pub use settings::{BrokerSettings, check_ca_pem, sealed_context};
