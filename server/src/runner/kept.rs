//! Kept failures as the flow's monitor shows them.

use app::domain::KeptFailure;

use crate::db::failures::Failure;

/// How a kept failure is shown: its bytes as pretty-printed JSON, as text,
/// or (not UTF-8) as their length and first bytes in hex.
impl From<Failure> for KeptFailure {
    fn from(row: Failure) -> Self {
        let value_bytes = row.value_bytes.max(0) as u64;
        let kept = row.value.as_deref().unwrap_or_default();
        let value_cut = (kept.len() as u64) < value_bytes;
        let value = match row.value.as_deref() {
            None => "(no value)".to_owned(),
            Some(bytes) if !value_cut => shown(bytes, true),
            Some(bytes) => shown(bytes, false),
        };
        let headers: Vec<(String, String)> = serde_json::from_str(&row.headers).unwrap_or_default();
        KeptFailure {
            at: super::clock(row.at_ms),
            partition: row.partition,
            offset: row.offset,
            version: row.version,
            kind: row.kind,
            message: row.message,
            attempts: row.attempts.max(0) as u32,
            key: row.key.as_deref().map(|k| shown(k, false)),
            value,
            value_bytes,
            value_cut,
            headers,
        }
    }
}

/// Bytes for a person to read; `whole` values that are JSON are
/// pretty-printed.
fn shown(bytes: &[u8], whole: bool) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            if whole && let Ok(json) = serde_json::from_str::<serde_json::Value>(text) {
                return serde_json::to_string_pretty(&json).unwrap_or_else(|_| text.to_owned());
            }
            text.to_owned()
        }
        Err(_) => {
            let hex: String = bytes.iter().take(32).map(|b| format!("{b:02x}")).collect();
            format!(
                "({} bytes, not UTF-8 text: {hex}{})",
                bytes.len(),
                if bytes.len() > 32 { "…" } else { "" }
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(value: Option<&[u8]>, value_bytes: i64) -> Failure {
        Failure {
            at_ms: 0,
            partition: 1,
            offset: 7,
            version: "1.0.0".into(),
            kind: "bad-input".into(),
            message: "no".into(),
            attempts: 1,
            key: Some(vec![0xff, 0x00]),
            value: value.map(<[u8]>::to_vec),
            value_bytes,
            headers: r#"[["trace","abc"]]"#.into(),
        }
    }

    #[test]
    fn kept_values_are_shown_safely() {
        let json: KeptFailure = row(Some(br#"{"a":1}"#), 7).into();
        assert_eq!(json.value, "{\n  \"a\": 1\n}");
        assert!(!json.value_cut);
        assert_eq!(json.key.as_deref(), Some("(2 bytes, not UTF-8 text: ff00)"));
        assert_eq!(json.headers, vec![("trace".to_owned(), "abc".to_owned())]);
        assert_eq!(json.at, "1970-01-01 00:00:00 UTC");
        let text: KeptFailure = row(Some(b"not json"), 8).into();
        assert_eq!(text.value, "not json");
        let cut: KeptFailure = row(Some(br#"{"a":"#), 70_000).into();
        assert!(cut.value_cut);
        assert_eq!(cut.value, r#"{"a":"#, "a cut value is shown as it is");
        assert_eq!(KeptFailure::from(row(None, 0)).value, "(no value)");
    }
}
