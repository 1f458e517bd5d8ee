//! Encryption of the secrets copr-pools stores (teams' cloud credentials): AES-256-GCM from
//! `ring`, a fresh random 96-bit nonce for every encryption, the id of the sealing key stored
//! beside each ciphertext, and associated data that binds a ciphertext to its row and field,
//! so one copied elsewhere does not decrypt.
//!
//! Keys are `<id>:<base64 of 32 random bytes>` (`copr-pools key generate` prints one). With
//! several keys configured the first seals and all open, so keys rotate: add a new key first,
//! run `copr-pools key rotate`, then drop the old one. On the embedded SQLite default a key is
//! created once in `<data_dir>/secret.key` (mode 0600); PostgreSQL deployments must configure
//! one, since several replicas need the same key.
//!
//! Nothing here logs, prints or formats a key or a plaintext: [`Keyring`]'s `Debug` shows key
//! ids only, and plaintexts come back as [`SecretString`].

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::config::{Config, Secret};

/// Length of a key in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// The file the embedded default keeps its key in, under `data_dir`.
pub const KEY_FILE: &str = "secret.key";

/// Why keys could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "no encryption key for stored secrets: set secret_keys_file (or COPR_POOLS_SECRET_KEYS_FILE) \
         to a file holding a key from `copr-pools key generate`; every replica needs the same key"
    )]
    Missing,
    #[error(
        "secret_keys: key #{position} {problem}; keys look like <id>:<base64 of 32 bytes>, as `copr-pools key generate` prints them"
    )]
    Malformed { position: usize, problem: String },
    #[error("secret_keys: the key id {0:?} is used twice; give every key its own id")]
    DuplicateId(String),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

/// Why a ciphertext did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("it was sealed with key {0:?}, which is not configured")]
    UnknownKey(String),
    #[error(
        "key {0:?} does not open it (a different key under the same id, or data moved or damaged)"
    )]
    Rejected(String),
}

/// One configured key.
struct Key {
    id: String,
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

/// The configured keys; the first one seals.
pub struct Keyring {
    keys: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field(
                "key_ids",
                &self.keys.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A sealed secret: the key that sealed it, and the nonce followed by ciphertext and tag.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub blob: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({}, {} bytes)", self.key_id, self.blob.len())
    }
}

/// Where the keys came from, for the startup log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Configured,
    /// The embedded default's key file, created now.
    Created(PathBuf),
    /// The embedded default's key file, as found.
    Found(PathBuf),
}

impl Keyring {
    /// Parses `<id>:<base64>` keys. The first seals.
    pub fn parse(keys: &[Secret]) -> Result<Keyring, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Missing);
        }
        let mut parsed: Vec<Key> = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let malformed = |problem: &str| KeyError::Malformed {
                position: i + 1,
                problem: problem.to_string(),
            };
            let (id, b64) = key
                .expose()
                .trim()
                .split_once(':')
                .ok_or_else(|| malformed("has no ':' between its id and its bytes"))?;
            if id.is_empty()
                || id.len() > 64
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(malformed(
                    "has an id that is not 1 to 64 letters, digits, '-' or '_'",
                ));
            }
            let bytes = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| malformed("is not base64 after its id"))?,
            );
            let bytes: [u8; KEY_LEN] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| malformed("is not 32 bytes long"))?;
            if parsed.iter().any(|k| k.id == id) {
                return Err(KeyError::DuplicateId(id.to_string()));
            }
            parsed.push(Key {
                id: id.to_string(),
                bytes: Zeroizing::new(bytes),
            });
        }
        Ok(Keyring { keys: parsed })
    }

    /// The keys of the configuration; on the embedded SQLite default without any, the key in
    /// `<data_dir>/secret.key`, created (mode 0600) the first time.
    pub fn load(config: &Config) -> Result<(Keyring, KeySource), KeyError> {
        if !config.secret_keys.is_empty() {
            return Ok((Keyring::parse(&config.secret_keys)?, KeySource::Configured));
        }
        if !config.is_sqlite() {
            return Err(KeyError::Missing);
        }
        let path = config.data_dir.join(KEY_FILE);
        let file_error = |message: String| KeyError::File {
            path: path.clone(),
            message,
        };
        let created = match std::fs::metadata(&path) {
            Ok(_) => false,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_key_file(&path)
                    .map_err(|e| file_error(format!("cannot be created: {e}")))?;
                true
            }
            Err(e) => return Err(file_error(format!("cannot be read: {e}"))),
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| file_error(format!("cannot be read: {e}")))?;
        let keys = crate::config::key_lines(&text);
        let keyring = Keyring::parse(&keys)?;
        let source = if created {
            KeySource::Created(path)
        } else {
            KeySource::Found(path)
        };
        Ok((keyring, source))
    }

    /// A keyring of one fixed key, for tests.
    pub fn for_tests() -> Keyring {
        Keyring::parse(&[Secret::new(format!(
            "test:{}",
            base64::engine::general_purpose::STANDARD.encode([7u8; KEY_LEN])
        ))])
        .expect("a valid test key")
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    /// The ids of every configured key.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// Seals `plaintext` with the first key, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Sealed {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the operating system provides randomness");
        let mut in_out = Zeroizing::new(plaintext.to_vec());
        aead_key(key)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut *in_out,
            )
            .expect("AES-GCM seals any length copr-pools stores");
        let mut blob = Vec::with_capacity(NONCE_LEN + in_out.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&in_out);
        Sealed {
            key_id: key.id.clone(),
            blob,
        }
    }

    /// Opens a sealed secret, checking it was sealed for `aad`.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<SecretString, OpenError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| OpenError::UnknownKey(sealed.key_id.clone()))?;
        let rejected = || OpenError::Rejected(sealed.key_id.clone());
        if sealed.blob.len() < NONCE_LEN {
            return Err(rejected());
        }
        let (nonce, ciphertext) = sealed.blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| rejected())?;
        let mut in_out = Zeroizing::new(ciphertext.to_vec());
        let plain = aead_key(key)
            .open_in_place(nonce, Aad::from(aad), &mut in_out)
            .map_err(|_| rejected())?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| rejected())?;
        Ok(SecretString::from(text))
    }

    /// A short fingerprint of secret material: HMAC-SHA-256 under a key derived from the
    /// sealing key, so that a fingerprint of a weak password cannot be tested offline by
    /// someone who only sees the page. Shown as `ab12:cd34:ef56:7890`.
    pub fn fingerprint(&self, material: &[&SecretString]) -> String {
        let derived = ring::digest::digest(
            &ring::digest::SHA256,
            &[
                b"copr-pools fingerprint v1\0".as_slice(),
                &*self.keys[0].bytes,
            ]
            .concat(),
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref());
        let mut ctx = ring::hmac::Context::with_key(&key);
        for part in material {
            let bytes = part.expose_secret().as_bytes();
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(bytes);
        }
        let tag = ctx.sign();
        tag.as_ref()[..8]
            .chunks(2)
            .map(|c| format!("{:02x}{:02x}", c[0], c[1]))
            .collect::<Vec<_>>()
            .join(":")
    }
}

fn aead_key(key: &Key) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &*key.bytes).expect("a 32-byte AES-256 key"))
}

/// A new key, `k<YYYYMMDD>-<4 hex>:<base64 of 32 random bytes>`.
pub fn generate_key() -> String {
    let rng = SystemRandom::new();
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    rng.fill(&mut *bytes)
        .expect("the operating system provides randomness");
    let mut tag = [0u8; 2];
    rng.fill(&mut tag)
        .expect("the operating system provides randomness");
    format!(
        "k{}-{:02x}{:02x}:{}",
        chrono::Utc::now().format("%Y%m%d"),
        tag[0],
        tag[1],
        base64::engine::general_purpose::STANDARD.encode(*bytes)
    )
}

/// Writes a new key to `path` (0600, never over an existing file), creating its directory.
fn create_key_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let key = Zeroizing::new(generate_key());
    f.write_all(
        format!(
            "# copr-pools' key for stored secrets, made {}. Back it up: without it the stored\n\
             # credentials cannot be read. Never share it.\n{}\n",
            chrono::Utc::now().format("%Y-%m-%d"),
            key.as_str()
        )
        .as_bytes(),
    )?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_of(keys: &[&str]) -> Keyring {
        Keyring::parse(&keys.iter().map(|k| Secret::new(*k)).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_their_place() {
        let a = generate_key();
        let ring = ring_of(&[&a]);
        let one = ring.seal(b"credential/1/secret_access_key", b"wJalrXUtnFEMI");
        let two = ring.seal(b"credential/1/secret_access_key", b"wJalrXUtnFEMI");
        assert_ne!(one.blob, two.blob, "a fresh nonce every time");
        assert_eq!(one.key_id, a.split(':').next().unwrap());
        assert!(
            !one.blob
                .windows(b"wJalrXUtnFEMI".len())
                .any(|w| w == b"wJalrXUtnFEMI")
        );
        assert_eq!(
            ring.open(&one, b"credential/1/secret_access_key")
                .unwrap()
                .expose_secret(),
            "wJalrXUtnFEMI"
        );
        // Copied to another row or field, it does not open.
        for aad in [
            b"credential/2/secret_access_key".as_slice(),
            b"credential/1/password",
        ] {
            assert!(matches!(ring.open(&one, aad), Err(OpenError::Rejected(_))));
        }
        let mut tampered = one.clone();
        tampered.blob[20] ^= 1;
        assert!(
            ring.open(&tampered, b"credential/1/secret_access_key")
                .is_err()
        );
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let (old, new) = (generate_key(), generate_key());
        let before = ring_of(&[&old]).seal(b"x", b"s3cret");
        let rotated = ring_of(&[&new, &old]);
        assert_eq!(
            rotated.open(&before, b"x").unwrap().expose_secret(),
            "s3cret"
        );
        let after = rotated.seal(b"x", b"s3cret");
        assert_eq!(after.key_id, new.split(':').next().unwrap());
        assert!(matches!(
            ring_of(&[&old]).open(&after, b"x"),
            Err(OpenError::UnknownKey(id)) if id == after.key_id
        ));
    }

    #[test]
    fn bad_keys_say_what_is_wrong_and_never_echo_the_key() {
        for (key, says) in [
            ("nocolon", "no ':'"),
            ("id:!!!", "not base64"),
            ("id:c2hvcnQ=", "not 32 bytes"),
            (" :c2hvcnQ=", "id"),
        ] {
            let e = Keyring::parse(&[Secret::new(key)]).unwrap_err().to_string();
            assert!(e.contains(says), "{key}: {e}");
            assert!(!e.contains("c2hvcnQ"), "{e}");
        }
        let k = generate_key();
        let e = Keyring::parse(&[Secret::new(k.clone()), Secret::new(k.clone())]).unwrap_err();
        assert!(matches!(e, KeyError::DuplicateId(_)));
        assert!(!format!("{:?}", ring_of(&[&k])).contains(k.split(':').nth(1).unwrap()));
    }

    #[test]
    fn the_embedded_default_makes_its_key_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let (first, source) = Keyring::load(&config).unwrap();
        let path = dir.path().join("data/secret.key");
        assert_eq!(source, KeySource::Created(path.clone()));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (again, source) = Keyring::load(&config).unwrap();
        assert_eq!(source, KeySource::Found(path));
        let sealed = first.seal(b"a", b"b");
        assert_eq!(again.open(&sealed, b"a").unwrap().expose_secret(), "b");

        let postgres = Config {
            database_url: "postgres://copr@db/copr".into(),
            data_dir: dir.path().join("pg"),
            ..Config::default()
        };
        let e = Keyring::load(&postgres).unwrap_err().to_string();
        assert!(e.contains("secret_keys_file"), "{e}");
        assert!(
            !dir.path().join("pg").exists(),
            "no key file made for PostgreSQL"
        );
    }

    #[test]
    fn fingerprints_are_stable_short_and_keyed() {
        let ring = ring_of(&[&generate_key()]);
        let s = SecretString::from("hunter2");
        let f = ring.fingerprint(&[&s]);
        assert_eq!(f, ring.fingerprint(&[&s]));
        assert_eq!(f.len(), 19, "{f}");
        assert_ne!(f, ring_of(&[&generate_key()]).fingerprint(&[&s]));
        assert_ne!(
            ring.fingerprint(&[&SecretString::from("ab"), &SecretString::from("c")]),
            ring.fingerprint(&[&SecretString::from("a"), &SecretString::from("bc")])
        );
    }
}
