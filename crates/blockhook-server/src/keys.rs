//! Secrets: endpoint secrets sealed at rest, API keys hashed, the admin token compared in
//! constant time.
//!
//! Endpoint secrets must be readable by their merchant (they need them to verify), so they are
//! encrypted, not hashed: XChaCha20-Poly1305 under a 32-byte master key, with a random 24-byte
//! nonce per seal (random nonces of that size never realistically collide) and the endpoint id as
//! associated data, so a sealed secret copied onto another endpoint's row does not open. API keys
//! are random 256-bit tokens, so a plain SHA-256 is enough to store them (no password stretching
//! is needed for keys nobody chose).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::Rng as _;
use rand::distributions::Alphanumeric;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use blockhook_core::{Endpoint, EndpointId, SealedSecret, SigningMode, Timestamp};
use blockhook_sig::standard::{self, StandardSecret};

use crate::Error;

const NONCE_LEN: usize = 24;

/// An endpoint's signing secret in clear. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct EndpointSecret(String);

impl EndpointSecret {
    /// The BlockATM format: `sck_` and 41 base62 characters from the OS CSPRNG.
    pub fn generate() -> Self {
        let tail: String = rand::rngs::OsRng
            .sample_iter(&Alphanumeric)
            .take(41)
            .map(char::from)
            .collect();
        Self(format!("sck_{tail}"))
    }

    /// A Standard Webhooks secret: `whsec_` and standard base64 of 32 bytes from the OS CSPRNG.
    pub fn generate_standard() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill(&mut key);
        Self(format!(
            "{}{}",
            blockhook_sig::standard::SECRET_PREFIX,
            B64.encode(key)
        ))
    }

    /// A fresh secret in the format `mode` signs with.
    pub fn generate_for(mode: SigningMode) -> Self {
        match mode {
            SigningMode::Standard => Self::generate_standard(),
            SigningMode::Sorted | SigningMode::Raw => Self::generate(),
        }
    }

    /// A merchant-supplied secret for an endpoint signing in `mode`: in Standard Webhooks mode
    /// only a `whsec_` secret (24 to 64 bytes) is accepted, as the specification writes them.
    pub fn parse_for(mode: SigningMode, raw: &str) -> Result<Self, blockhook_core::Error> {
        match mode {
            SigningMode::Standard => {
                StandardSecret::parse(raw).map_err(|e| {
                    blockhook_core::Error::invalid(
                        "secret",
                        format!(
                            "signing_mode \"standard\" takes a whsec_ secret (whsec_ and standard \
                             base64 of 24 to 64 bytes): {e}"
                        ),
                    )
                })?;
                Ok(Self(raw.to_owned()))
            }
            SigningMode::Sorted | SigningMode::Raw => Self::parse(raw),
        }
    }

    /// Whether this secret can sign in Standard Webhooks mode (a `whsec_` secret).
    pub fn is_standard(&self) -> bool {
        StandardSecret::parse(&self.0).is_ok()
    }

    /// A merchant-supplied secret: at least [`Self::MIN_LEN`] and at most 256 printable ASCII
    /// characters. Merchants migrating from another sender bring what they have; below
    /// [`Self::ADVISED_LEN`] the API answers a warning (see `is_short`).
    pub fn parse(raw: &str) -> Result<Self, blockhook_core::Error> {
        let ok = (Self::MIN_LEN..=256).contains(&raw.len())
            && raw.bytes().all(|b| (0x21..0x7f).contains(&b));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(blockhook_core::Error::invalid(
                "secret",
                "must be 16 to 256 printable ASCII characters without spaces",
            ))
        }
    }

    /// Shortest secret a merchant may bring.
    pub const MIN_LEN: usize = 16;
    /// Shortest secret accepted without a warning.
    pub const ADVISED_LEN: usize = 32;

    /// Whether this secret is shorter than [`Self::ADVISED_LEN`].
    pub fn is_short(&self) -> bool {
        self.0.len() < Self::ADVISED_LEN
    }

    /// The secret itself (grep for `expose` to find every place it leaves this type).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EndpointSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EndpointSecret([REDACTED])")
    }
}

/// The master key that seals endpoint secrets, and the previous keys that may still open them
/// while a rotation is under way (`keys.old_master_keys`). Sealing always uses the current key.
#[derive(Clone)]
pub struct MasterKey {
    current: XChaCha20Poly1305,
    old: Arc<[XChaCha20Poly1305]>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

/// The text sealed as the key check value, and the associated data binding it to that use (an
/// endpoint id never equals it, so a check value cannot pass for a secret or the reverse).
const CHECK_TEXT: &[u8] = b"blockhook key check v1";
const CHECK_AAD: &[u8] = b"blockhook:key_check";

/// Which configured key opened something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opener {
    /// The current `keys.master_key`.
    Current,
    /// One of `keys.old_master_keys`.
    Old,
}

impl MasterKey {
    /// From base64 of 32 bytes.
    pub fn from_base64(b64: &str) -> Result<Self, Error> {
        let bytes = B64
            .decode(b64.trim())
            .map_err(|_| Error::Keys("master key is not valid base64".to_owned()))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::Keys("master key must be 32 bytes (base64)".to_owned()))?;
        Ok(Self {
            current: XChaCha20Poly1305::new(&key.into()),
            old: Arc::from(Vec::new()),
        })
    }

    /// A new random key, base64 (what `blockhook keys generate` prints).
    pub fn generate_base64() -> String {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill(&mut key);
        B64.encode(key)
    }

    /// This key, also opening (never sealing) with `old` keys.
    pub fn with_old_keys(mut self, old: &[MasterKey]) -> Self {
        self.old = old.iter().map(|k| k.current.clone()).collect();
        self
    }

    /// The configured key, or the one in `<data_dir>/master.key`, created (mode 0600) on first
    /// start. Returns whether it was generated, so startup can warn.
    pub fn load_or_generate(configured: &str, data_dir: &Path) -> Result<(Self, bool), Error> {
        if !configured.is_empty() {
            return Ok((Self::from_base64(configured)?, false));
        }
        let path = data_dir.join("master.key");
        if path.exists() {
            return Ok((Self::from_base64(&read_setting_file(&path)?)?, false));
        }
        let key = Self::generate_base64();
        write_private_file(&path, &key)?;
        Ok((Self::from_base64(&key)?, true))
    }

    fn seal_bytes(&self, aad: &[u8], msg: &[u8]) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill(&mut nonce);
        let ct = self
            .current
            .encrypt(XNonce::from_slice(&nonce), Payload { msg, aad })
            .map_err(|_| Error::Keys("sealing failed".to_owned()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// The clear bytes and which key opened them, or `None` when no configured key does.
    fn open_bytes(&self, aad: &[u8], sealed: &[u8]) -> Option<(Vec<u8>, Opener)> {
        if sealed.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let open = |k: &XChaCha20Poly1305| {
            k.decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
                .ok()
        };
        if let Some(clear) = open(&self.current) {
            return Some((clear, Opener::Current));
        }
        self.old
            .iter()
            .find_map(open)
            .map(|clear| (clear, Opener::Old))
    }

    /// Encrypts a secret for `endpoint`.
    pub fn seal(
        &self,
        endpoint: &EndpointId,
        secret: &EndpointSecret,
    ) -> Result<SealedSecret, Error> {
        self.seal_bytes(endpoint.as_str().as_bytes(), secret.0.as_bytes())
            .map(SealedSecret::from_stored)
    }

    /// Decrypts the secret of `endpoint` (with the current key, or a previous one).
    pub fn open(
        &self,
        endpoint: &EndpointId,
        sealed: &SealedSecret,
    ) -> Result<EndpointSecret, Error> {
        self.open_with(endpoint, sealed).map(|(secret, _)| secret)
    }

    /// Like [`MasterKey::open`], also telling which key opened it (re-sealing skips secrets the
    /// current key opens).
    pub fn open_with(
        &self,
        endpoint: &EndpointId,
        sealed: &SealedSecret,
    ) -> Result<(EndpointSecret, Opener), Error> {
        if sealed.as_stored().len() <= NONCE_LEN {
            return Err(Error::Keys("sealed secret too short".to_owned()));
        }
        let (clear, opener) = self
            .open_bytes(endpoint.as_str().as_bytes(), sealed.as_stored())
            .ok_or_else(|| Error::Keys("secret does not open with this master key".to_owned()))?;
        String::from_utf8(clear)
            .map(|s| (EndpointSecret(s), opener))
            .map_err(|_| Error::Keys("sealed secret is not UTF-8".to_owned()))
    }

    /// A fresh key check value sealed with the current key.
    pub fn seal_check(&self) -> Result<Vec<u8>, Error> {
        self.seal_bytes(CHECK_AAD, CHECK_TEXT)
    }

    /// Which configured key opens the key check value `sealed`, if any.
    pub fn open_check(&self, sealed: &[u8]) -> Option<Opener> {
        self.open_bytes(CHECK_AAD, sealed)
            .filter(|(clear, _)| clear == CHECK_TEXT)
            .map(|(_, opener)| opener)
    }

    /// Opens the endpoint's secrets and keys a signer for its signing mode: the clear secrets
    /// live only inside the HMAC states, never in a `String` that outlives this call.
    ///
    /// A previous secret (Standard Webhooks overlap) that no longer opens (`keys reseal`
    /// re-seals it, but a key may be retired without it) is left out with a warning: the
    /// current signature still goes out.
    pub fn signer(&self, endpoint: &Endpoint) -> Result<EndpointSigner, Error> {
        let secret = self.open(&endpoint.id, &endpoint.secret)?;
        if let Some(mode) = endpoint.signing_mode.blockatm() {
            return blockhook_sig::v2::Signer::new(secret.expose().as_bytes())
                .map(|signer| EndpointSigner::BlockAtm { signer, mode })
                .map_err(|e| Error::Keys(format!("endpoint secret cannot sign: {e}")));
        }
        let current = standard_signer(&secret)?;
        let previous = endpoint.previous_secret.as_ref().and_then(|p| {
            let opened = self
                .open(&endpoint.id, &p.secret)
                .and_then(|s| standard_signer(&s));
            match opened {
                Ok(signer) => Some((signer, p.until)),
                Err(e) => {
                    tracing::warn!(endpoint = %endpoint.id, error = %e,
                        "previous secret left out of the signature");
                    None
                }
            }
        });
        Ok(EndpointSigner::Standard { current, previous })
    }
}

fn standard_signer(secret: &EndpointSecret) -> Result<standard::Signer, Error> {
    StandardSecret::parse(secret.expose())
        .and_then(|s| standard::Signer::new(&s))
        .map_err(|e| Error::Keys(format!("endpoint secret cannot sign in standard mode: {e}")))
}

/// What signs an endpoint's deliveries, keyed once from its secrets (see
/// [`MasterKey::signer`]).
#[derive(Debug, Clone)]
// Built once per endpoint and shared behind an `Arc` (the signer cache): the size of a variant
// costs nothing per attempt, so the HMAC states stay inline.
#[allow(clippy::large_enum_variant)]
pub enum EndpointSigner {
    /// `BlockATM-Signature-V2` (modes `sorted` and `raw`), keyed with the secret's text.
    BlockAtm {
        /// The keyed signer.
        signer: blockhook_sig::v2::Signer,
        /// How the message is formed.
        mode: blockhook_sig::Mode,
    },
    /// Standard Webhooks, keyed with the decoded `whsec_` key; the previous secret's signer
    /// too until its overlap ends.
    Standard {
        /// The current secret's.
        current: standard::Signer,
        /// The previous secret's, and when it stops signing.
        previous: Option<(standard::Signer, Timestamp)>,
    },
}

/// The trimmed contents of a file named by a `*_file` setting (or a generated key file).
pub fn read_setting_file(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .map_err(|source| Error::Io {
            what: format!("reading {}", path.display()),
            source,
        })
}

/// Writes `contents` to a new file readable only by its owner.
pub fn write_private_file(path: &Path, contents: &str) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| Error::Io {
        what: format!("writing {}", path.display()),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// A freshly issued API key: shown once, stored as its hash.
#[derive(Clone)]
pub struct IssuedKey {
    /// The key the merchant will send as `Authorization: Bearer …`.
    pub token: String,
    /// Lowercase hex SHA-256 of `token`.
    pub hash: String,
    /// The first characters, for lists.
    pub prefix: String,
}

impl fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IssuedKey({}…)", self.prefix)
    }
}

impl IssuedKey {
    /// `bhk_` and 43 base62 characters (~256 bits).
    pub fn generate() -> Self {
        let tail: String = rand::rngs::OsRng
            .sample_iter(&Alphanumeric)
            .take(43)
            .map(char::from)
            .collect();
        let token = format!("bhk_{tail}");
        let prefix = token.chars().take(10).collect();
        Self {
            hash: hash_api_key(&token),
            token,
            prefix,
        }
    }
}

/// The stored form of an API key.
pub fn hash_api_key(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The operator token, compared in constant time.
#[derive(Clone)]
pub struct AdminToken(String);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken([REDACTED])")
    }
}

impl AdminToken {
    /// A configured token (at least 16 characters; `setting` names where it came from).
    pub fn configured(token: &str, setting: &str) -> Result<Self, Error> {
        if token.len() < 16 {
            return Err(Error::Config(format!(
                "{setting} must be at least 16 characters"
            )));
        }
        Ok(Self(token.to_owned()))
    }

    /// A new random token (`bha_` and 43 base62 characters), as `blockhook keys generate
    /// --admin-token` prints it.
    pub fn generate() -> String {
        let tail: String = rand::rngs::OsRng
            .sample_iter(&Alphanumeric)
            .take(43)
            .map(char::from)
            .collect();
        format!("bha_{tail}")
    }

    /// The configured token, or the one in `<data_dir>/admin-token`, generated on first start.
    /// Returns the path when it lives in a file.
    pub fn load_or_generate(
        configured: &str,
        data_dir: &Path,
    ) -> Result<(Self, Option<std::path::PathBuf>), Error> {
        if !configured.is_empty() {
            return Ok((Self::configured(configured, "server.admin_token")?, None));
        }
        let path = data_dir.join("admin-token");
        if path.exists() {
            return Ok((Self(read_setting_file(&path)?), Some(path)));
        }
        let token = Self::generate();
        write_private_file(&path, &token)?;
        Ok((Self(token), Some(path)))
    }

    /// Whether `candidate` is the token (constant time).
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.as_bytes().ct_eq(candidate.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_have_blockatms_format() {
        let s = EndpointSecret::generate();
        assert_eq!(s.expose().len(), 45);
        assert!(s.expose().starts_with("sck_"));
        assert!(s.expose()[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(s, EndpointSecret::generate());
        assert_eq!(format!("{s:?}"), "EndpointSecret([REDACTED])");
    }

    #[test]
    fn seal_round_trips_and_is_bound_to_the_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (key, generated) = MasterKey::load_or_generate("", dir.path()).unwrap();
        assert!(generated);
        let (again, generated) = MasterKey::load_or_generate("", dir.path()).unwrap();
        assert!(!generated);
        let ep = EndpointId::generate();
        let secret = EndpointSecret::generate();
        let sealed = key.seal(&ep, &secret).unwrap();
        assert!(
            !sealed.as_stored().windows(4).any(|w| w == b"sck_"),
            "ciphertext hides the secret"
        );
        assert_eq!(again.open(&ep, &sealed).unwrap(), secret);
        assert!(key.open(&EndpointId::generate(), &sealed).is_err());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn api_keys_hash_and_admin_token_compares() {
        let k = IssuedKey::generate();
        assert_eq!(hash_api_key(&k.token), k.hash);
        assert!(k.token.starts_with("bhk_"));
        let t = AdminToken("bha_0123456789abcdef".into());
        assert!(t.matches("bha_0123456789abcdef"));
        assert!(!t.matches("bha_0123456789abcdeX"));
        assert!(!t.matches(""));
    }

    #[test]
    fn short_merchant_secrets_are_refused() {
        assert!(EndpointSecret::parse("short").is_err());
        assert!(EndpointSecret::parse(&"x".repeat(15)).is_err());
        assert!(EndpointSecret::parse(&"x".repeat(16)).unwrap().is_short());
        assert!(!EndpointSecret::parse(&"x".repeat(32)).unwrap().is_short());
    }
}
