//! Types shared by the browser and the server. Nothing here may depend on
//! the database, the async runtime or Kafka: this module compiles to wasm.

mod error;
mod names;
mod user;

pub use error::AppError;
pub use names::{
    AlgorithmName, AlgorithmPath, BUILTIN_ALGORITHMS, OrgName, Runtime, Username, Version,
};
pub use user::{CurrentUser, Role};
