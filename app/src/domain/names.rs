//! Names and values that validate themselves: parse once, trust afterwards.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::AppError;

fn check_name(field: &str, what: &str, value: &str, max: usize) -> Result<String, AppError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(AppError::validation(field, format!("Enter a {what}.")));
    }
    if value.len() > max {
        return Err(AppError::validation(
            field,
            format!("A {what} has at most {max} characters."),
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !value.chars().all(allowed) || value.starts_with('.') {
        return Err(AppError::validation(
            field,
            format!(
                "A {what} may use only letters, digits, '-', '_' and '.', and may not start with '.'."
            ),
        ));
    }
    Ok(value.to_owned())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $what:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, AppError> {
                check_name($field, $what, value, $max).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A login name.
    Username, "username", "username", 64
);
name_type!(
    /// The name of an organization (the `org` in `org/name`).
    OrgName, "organization", "organization name", 64
);
name_type!(
    /// The name of an algorithm within its organization.
    AlgorithmName, "name", "algorithm name", 64
);

/// `org/name` of an algorithm.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AlgorithmPath {
    pub org: OrgName,
    pub name: AlgorithmName,
}

impl AlgorithmPath {
    pub fn parse(value: &str) -> Result<Self, AppError> {
        let (org, name) = value.trim().split_once('/').ok_or_else(|| {
            AppError::validation(
                "algorithm",
                "Write the algorithm as ORG/NAME, for example acme/sentiment.",
            )
        })?;
        Ok(Self {
            org: OrgName::parse(org)?,
            name: AlgorithmName::parse(name)?,
        })
    }
}

impl fmt::Display for AlgorithmPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.org, self.name)
    }
}

/// A semantic version `MAJOR.MINOR.PATCH`; orders numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub fn parse(value: &str) -> Result<Self, AppError> {
        let bad = || {
            AppError::validation(
                "version",
                format!(
                    "'{}' is not a version: write MAJOR.MINOR.PATCH, for example 1.2.0.",
                    value.trim()
                ),
            )
        };
        let parts: Vec<&str> = value.trim().split('.').collect();
        if parts.len() != 3 {
            return Err(bad());
        }
        let number = |p: &str| -> Result<u32, AppError> {
            let leading_zero = p.len() > 1 && p.starts_with('0');
            if p.is_empty() || leading_zero || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        Ok(Self {
            major: number(parts[0])?,
            minor: number(parts[1])?,
            patch: number(parts[2])?,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The algorithms shipped with the product, usable as `builtin:<id>`.
pub const BUILTIN_ALGORITHMS: &[&str] = &["echo", "sentiment", "word-count", "json-validate"];

/// How a version runs: shipped with the product, or a model server over HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Runtime {
    Builtin(String),
    /// A model server that takes one input per request (POST, JSON).
    Http(String),
    /// A model server that takes batches: `{"instances": [...]}` in,
    /// `{"predictions": [...]}` out, one prediction per instance, in order
    /// (the KServe v1 / TF Serving shape).
    HttpBatch(String),
}

impl Runtime {
    pub fn parse(value: &str) -> Result<Self, AppError> {
        let value = value.trim();
        if let Some(id) = value.strip_prefix("builtin:") {
            if BUILTIN_ALGORITHMS.contains(&id) {
                return Ok(Self::Builtin(id.to_owned()));
            }
            return Err(AppError::validation(
                "runtime",
                format!(
                    "There is no built-in algorithm '{id}'. Built-in algorithms: {}.",
                    BUILTIN_ALGORITHMS.join(", ")
                ),
            ));
        }
        let (url, batch) = match (
            value.strip_prefix("http:"),
            value.strip_prefix("http-batch:"),
        ) {
            (Some(url), _) => (url, false),
            (_, Some(url)) => (url, true),
            (None, None) => {
                return Err(AppError::validation(
                    "runtime",
                    "A runtime is builtin:ID, http:URL or http-batch:URL, for example builtin:sentiment.",
                ));
            }
        };
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
        if host.is_some_and(|h| !h.is_empty() && !h.contains(char::is_whitespace)) {
            return Ok(match batch {
                false => Self::Http(url.to_owned()),
                true => Self::HttpBatch(url.to_owned()),
            });
        }
        Err(AppError::validation(
            "runtime",
            "An HTTP runtime needs a full URL, for example http:http://127.0.0.1:8080/predict.",
        ))
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Runtime::Builtin(id) => write!(f, "builtin:{id}"),
            Runtime::Http(url) => write!(f, "http:{url}"),
            Runtime::HttpBatch(url) => write!(f, "http-batch:{url}"),
        }
    }
}

impl Runtime {
    /// Whether the model takes batches of inputs in one request.
    pub fn takes_batches(&self) -> bool {
        matches!(self, Runtime::HttpBatch(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_empty_long_and_odd_values() {
        assert_eq!(Username::parse("  ana ").unwrap().as_str(), "ana");
        assert!(Username::parse("").is_err());
        assert!(Username::parse("a b").is_err());
        assert!(Username::parse(".hidden").is_err());
        assert!(OrgName::parse(&"x".repeat(65)).is_err());
        assert_eq!(
            OrgName::parse("acme-labs").unwrap().to_string(),
            "acme-labs"
        );
    }

    #[test]
    fn algorithm_paths_need_both_halves() {
        let path = AlgorithmPath::parse("acme/sentiment").unwrap();
        assert_eq!(path.to_string(), "acme/sentiment");
        assert!(AlgorithmPath::parse("sentiment").is_err());
        assert!(AlgorithmPath::parse("acme/").is_err());
        assert!(AlgorithmPath::parse("/x").is_err());
    }

    #[test]
    fn versions_parse_and_order_numerically() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("1.10.0") > v("1.9.3"));
        assert_eq!(v("2.0.1").to_string(), "2.0.1");
        for bad in [
            "1.0",
            "1.0.0.0",
            "a.b.c",
            "01.0.0",
            "1..0",
            "-1.0.0",
            "1.0.0-beta",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn runtimes_are_builtin_ids_or_http_urls() {
        assert_eq!(
            Runtime::parse("builtin:echo").unwrap(),
            Runtime::Builtin("echo".into())
        );
        assert_eq!(
            Runtime::parse("http:https://models.local/predict")
                .unwrap()
                .to_string(),
            "http:https://models.local/predict"
        );
        assert_eq!(
            Runtime::parse("http-batch:http://models.local/v1/models/m:predict").unwrap(),
            Runtime::HttpBatch("http://models.local/v1/models/m:predict".into())
        );
        assert!(
            Runtime::parse("http-batch:http://m/predict")
                .unwrap()
                .takes_batches()
        );
        assert!(
            !Runtime::parse("http:http://m/predict")
                .unwrap()
                .takes_batches()
        );
        assert!(Runtime::parse("http-batch:ftp://x").is_err());
        assert!(Runtime::parse("builtin:nope").is_err());
        assert!(Runtime::parse("http:ftp://x").is_err());
        assert!(Runtime::parse("http:http://").is_err());
        assert!(Runtime::parse("python:main.py").is_err());
    }
}
