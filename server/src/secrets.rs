//! Encryption at rest for broker passwords and CA certificates.
//!
//! ChaCha20-Poly1305 (authenticated) under a 32-byte key that lives outside
//! the database: `EVENTFLOWS_SECRET_KEY`, or a key file created once in the
//! data directory with mode 0600. Each value is bound to its row and field
//! (associated data), so a ciphertext copied to another row does not decrypt.

use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

const PREFIX: &str = "v1:";
pub const KEY_FILE: &str = "secret.key";

#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub fn from_key(key: &[u8; 32]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// A box with a fresh random key (tests, throw-away instances).
    pub fn random() -> anyhow::Result<Self> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).context("the operating system's random source failed")?;
        Ok(Self::from_key(&key))
    }

    /// The key from the setting, or from (or newly into) the key file.
    pub fn load(setting: Option<&str>, data_dir: &Path) -> anyhow::Result<Self> {
        if let Some(encoded) = setting {
            return Ok(Self::from_key(
                &decode_key(encoded).context("EVENTFLOWS_SECRET_KEY")?,
            ));
        }
        let path = data_dir.join(KEY_FILE);
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("could not read the key file {}", path.display()))?;
            return Ok(Self::from_key(
                &decode_key(text.trim())
                    .with_context(|| format!("the key file {}", path.display()))?,
            ));
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).context("the operating system's random source failed")?;
        write_private(&path, &STANDARD.encode(key))
            .with_context(|| format!("could not create the key file {}", path.display()))?;
        tracing::info!(path = %path.display(), "created a new secret key file; keep it with the database");
        Ok(Self::from_key(&key))
    }

    /// Encrypts `plain` for the field `context` (for example "connection/ID/password").
    pub fn seal(&self, plain: &str, context: &str) -> anyhow::Result<String> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).context("the operating system's random source failed")?;
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", STANDARD.encode(bytes)))
    }

    pub fn open(&self, sealed: &str, context: &str) -> anyhow::Result<String> {
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|b| b.len() > 12)
            .ok_or_else(|| anyhow::anyhow!("a stored secret is not in the expected format"))?;
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(&bytes[..12]),
                Payload {
                    msg: &bytes[12..],
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| {
                anyhow::anyhow!("a stored secret could not be decrypted: is this the secret key it was saved with?")
            })?;
        String::from_utf8(plain).context("a stored secret is not text")
    }
}

fn decode_key(encoded: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = STANDARD
        .decode(encoded.trim())
        .context("the secret key is not base64")?;
    match <[u8; 32]>::try_from(bytes.as_slice()) {
        Ok(key) => Ok(key),
        Err(_) => bail!(
            "the secret key must be 32 bytes (base64), not {}",
            bytes.len()
        ),
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_context() {
        let a = SecretBox::random().unwrap();
        let sealed = a.seal("hunter2-canary", "connection/1/password").unwrap();
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            a.open(&sealed, "connection/1/password").unwrap(),
            "hunter2-canary"
        );
        assert!(a.open(&sealed, "connection/2/password").is_err());
        assert!(
            SecretBox::random()
                .unwrap()
                .open(&sealed, "connection/1/password")
                .is_err()
        );
        assert_ne!(
            sealed,
            a.seal("hunter2-canary", "connection/1/password").unwrap()
        );
    }

    #[test]
    fn the_key_file_is_created_once_with_private_permissions() {
        let dir = std::env::temp_dir().join(format!("ef-secret-{}", crate::db::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = SecretBox::load(None, &dir).unwrap();
        let sealed = first.seal("x", "c").unwrap();
        let again = SecretBox::load(None, &dir).unwrap();
        assert_eq!(again.open(&sealed, "c").unwrap(), "x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(SecretBox::load(Some("dG9vIHNob3J0"), &dir).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
