//! The shared key that authenticates membership datagrams: HMAC-SHA256 (ring) over
//! every datagram, the tag in front. A datagram whose tag does not verify never reaches
//! the SWIM state machine, so a sender without the key can neither join nor spread
//! news about others (a member declared dead, say).

use std::path::Path;

use ring::hmac;

/// Marks our datagrams (and their format's version) before the tag.
const MAGIC: &[u8; 4] = b"MLB1";
const TAG_LEN: usize = 32;
/// What a datagram carries besides the SWIM message.
pub const OVERHEAD: usize = MAGIC.len() + TAG_LEN;
/// The shortest key accepted: 128 bits.
pub const MIN_KEY_BYTES: usize = 16;
/// The key of MetalLB's `memberlist` Secret, and so the file's name in the directory
/// it is mounted at (METALLB_ML_SECRET_KEY_PATH, /etc/ml_secret_key).
pub const SECRET_KEY_NAME: &str = "secretkey";

/// Why a key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading the membership key file {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error(
        "the membership key file {path} holds {len} byte(s): at least {MIN_KEY_BYTES} are needed (e.g. `head -c 32 /dev/urandom | base64 > {path}`)"
    )]
    TooShort { path: String, len: usize },
}

/// A key shared by every speaker of a cluster.
#[derive(Clone)]
pub struct SharedKey(hmac::Key);

impl std::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedKey(..)")
    }
}

impl SharedKey {
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The file's bytes are the key, less the line break an editor or `echo` adds at
    /// the end (a Secret's value mounted as a file has none). A directory is where a
    /// Secret is mounted, as MetalLB mounts its `memberlist` Secret: the key is its
    /// file [`SECRET_KEY_NAME`].
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let in_dir;
        let path = if path.is_dir() {
            in_dir = path.join(SECRET_KEY_NAME);
            in_dir.as_path()
        } else {
            path
        };
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|error| KeyError::Io {
            path: shown.clone(),
            error,
        })?;
        let secret = bytes.trim_ascii_end();
        if secret.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort {
                path: shown,
                len: secret.len(),
            });
        }
        Ok(Self::new(secret))
    }

    /// `message` with our magic and its tag in front.
    pub fn seal(&self, message: &[u8]) -> Vec<u8> {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(MAGIC);
        context.update(message);
        let tag = context.sign();
        let mut datagram = Vec::with_capacity(OVERHEAD + message.len());
        datagram.extend_from_slice(MAGIC);
        datagram.extend_from_slice(tag.as_ref());
        datagram.extend_from_slice(message);
        datagram
    }

    /// The message inside `datagram`, when it was sealed with this key.
    pub fn open<'a>(&self, datagram: &'a [u8]) -> Option<&'a [u8]> {
        let rest = datagram.strip_prefix(MAGIC)?;
        if rest.len() < TAG_LEN {
            return None;
        }
        let (tag, message) = rest.split_at(TAG_LEN);
        let mut signed = Vec::with_capacity(MAGIC.len() + message.len());
        signed.extend_from_slice(MAGIC);
        signed.extend_from_slice(message);
        hmac::verify(&self.0, &signed, tag).ok()?;
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_message_opens_with_the_same_key_only() {
        let key = SharedKey::new(b"0123456789abcdef");
        let datagram = key.seal(b"ping");
        assert_eq!(datagram.len(), OVERHEAD + 4);
        assert_eq!(key.open(&datagram), Some(&b"ping"[..]));
        assert_eq!(SharedKey::new(b"0123456789abcdeF").open(&datagram), None);
    }

    #[test]
    fn a_changed_byte_anywhere_is_refused() {
        let key = SharedKey::new(b"0123456789abcdef");
        let datagram = key.seal(b"member x is down");
        for i in 0..datagram.len() {
            let mut changed = datagram.clone();
            changed[i] ^= 1;
            assert_eq!(key.open(&changed), None, "byte {i} changed");
        }
        assert_eq!(key.open(&datagram[..OVERHEAD - 1]), None);
        assert_eq!(key.open(b""), None);
    }

    #[test]
    fn key_files() {
        let dir = std::env::temp_dir().join(format!("mlb-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "0123456789abcdef\n").unwrap();
        let key = SharedKey::from_file(&file).unwrap();
        // The line break is not part of the key.
        assert_eq!(
            key.open(&SharedKey::new(b"0123456789abcdef").seal(b"x")),
            Some(&b"x"[..])
        );
        std::fs::write(&file, "short\n").unwrap();
        assert_eq!(
            SharedKey::from_file(&file).unwrap_err().to_string(),
            format!(
                "the membership key file {0} holds 5 byte(s): at least 16 are needed (e.g. `head -c 32 /dev/urandom | base64 > {0}`)",
                file.display()
            )
        );
        let missing = dir.join("missing");
        assert!(
            SharedKey::from_file(&missing)
                .unwrap_err()
                .to_string()
                .starts_with(&format!(
                    "reading the membership key file {}: ",
                    missing.display()
                ))
        );
        // A mounted Secret: the directory holds `secretkey` (MetalLB's controller
        // writes 16 random bytes in unpadded base64: 22 characters, no line break).
        let mounted = dir.join("ml_secret_key");
        std::fs::create_dir_all(&mounted).unwrap();
        std::fs::write(mounted.join("secretkey"), "q83vEjRWeJq83vEjRWeJqw").unwrap();
        let key = SharedKey::from_file(&mounted).unwrap();
        assert_eq!(
            key.open(&SharedKey::new(b"q83vEjRWeJq83vEjRWeJqw").seal(b"x")),
            Some(&b"x"[..])
        );
        std::fs::remove_file(mounted.join("secretkey")).unwrap();
        assert!(
            SharedKey::from_file(&mounted)
                .unwrap_err()
                .to_string()
                .starts_with(&format!(
                    "reading the membership key file {}: ",
                    mounted.join("secretkey").display()
                ))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
