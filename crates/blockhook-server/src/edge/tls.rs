//! HTTPS served by blockhook itself: the certificate and key from PEM files, checked at start
//! (parsable, matching, currently valid), offered with ALPN `h2` and `http/1.1`, TLS 1.2 and
//! 1.3 only (rustls has no older versions and only modern cipher suites). The files are watched:
//! a changed pair is loaded for new connections without touching open ones, and a pair that
//! fails to load is logged and the previous one kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// How often the files' modification times are compared.
const WATCH_INTERVAL: Duration = Duration::from_secs(10);

/// The certificate in force, swapped on reload.
#[derive(Debug)]
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

fn tls_error(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::Config(format!("TLS: {}: {why}", path.display()))
}

/// Reads and checks the pair: a chain and a key that match, the leaf valid now.
fn load(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, Error> {
    let pem = std::fs::read(cert_path).map_err(|e| tls_error(cert_path, e))?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error(cert_path, format!("not a PEM certificate chain: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| tls_error(cert_path, "no CERTIFICATE block in the file"))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| tls_error(cert_path, format!("unreadable certificate: {e}")))?;
    let validity = parsed.validity();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if now > validity.not_after.timestamp() {
        return Err(tls_error(
            cert_path,
            format!(
                "the certificate expired on {} (renew it, e.g. with your ACME client)",
                validity.not_after
            ),
        ));
    }
    if now < validity.not_before.timestamp() {
        return Err(tls_error(
            cert_path,
            format!(
                "the certificate is not valid before {} (check the clock)",
                validity.not_before
            ),
        ));
    }
    let pem = std::fs::read(key_path).map_err(|e| tls_error(key_path, e))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| tls_error(key_path, format!("not a PEM private key: {e}")))?
        .ok_or_else(|| tls_error(key_path, "no PRIVATE KEY block in the file"))?;
    let signer = any_supported_type(&key)
        .map_err(|e| tls_error(key_path, format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|e| {
        tls_error(
            key_path,
            format!("the key does not match the certificate: {e}"),
        )
    })?;
    Ok(certified)
}

fn modified(paths: [&Path; 2]) -> Option<[SystemTime; 2]> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some([m(paths[0])?, m(paths[1])?])
}

impl CertStore {
    /// Loads the pair; an unusable pair is a startup error naming the file and the reason.
    pub fn open(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, Error> {
        let certified = load(cert_path, key_path)?;
        Ok(Arc::new(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new(Arc::new(certified)),
        }))
    }

    /// Loads the files again; on failure keeps the certificate in force.
    pub fn reload(&self) -> Result<(), Error> {
        let certified = load(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(certified);
        tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// The rustls configuration serving this store's certificate.
    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_or_else(
                    // The ring provider supports both versions; this arm is unreachable in practice.
                    |_| ServerConfig::builder().with_no_client_auth(),
                    |b| b.with_no_client_auth(),
                )
                .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Reloads when either file changes or on SIGHUP, until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let paths = [self.cert_path.as_path(), self.key_path.as_path()];
        let mut seen = modified(paths);
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            let forced = tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(WATCH_INTERVAL) => false,
                () = hangup => true,
            };
            let now = modified(paths);
            if !forced && now == seen {
                continue;
            }
            seen = now;
            if let Err(e) = self.reload() {
                tracing::error!(error = %e, "TLS certificate not reloaded; the previous one stays in use");
            }
        }
    }
}
