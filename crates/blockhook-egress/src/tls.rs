//! The TLS client configuration: webpki roots plus the operator's extra trust anchors, the ring
//! provider named explicitly (no process-wide default needed), ALPN offering h2 then http/1.1.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

use crate::error::Error;

/// Build the rustls client configuration handed to reqwest.
pub(crate) fn client_config(extra_ca_pem: Option<&[u8]>) -> Result<ClientConfig, Error> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = extra_ca_pem {
        add_extra_anchors(&mut roots, pem)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // HTTP/2 when the server offers it, HTTP/1.1 otherwise; reqwest reads the negotiated
    // protocol back from the connection.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Add every `CERTIFICATE` block of `pem` as a trust anchor. A bundle with no certificate, an
/// unreadable block or a certificate that cannot be an anchor is a configuration error.
fn add_extra_anchors(roots: &mut RootCertStore, pem: &[u8]) -> Result<(), Error> {
    let mut added = 0usize;
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        let cert = cert.map_err(|e| Error::ExtraCa(format!("unreadable PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| Error::ExtraCa(format!("certificate {}: {e}", added + 1)))?;
        added += 1;
    }
    if added == 0 {
        return Err(Error::ExtraCa("no CERTIFICATE block found".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("{e}"))
            .pem()
    }

    #[test]
    fn webpki_roots_are_present_without_extras() {
        let config = client_config(None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn extra_anchors_are_added() {
        let one = test_ca_pem();
        let two = format!("{}{}", test_ca_pem(), test_ca_pem());
        let mut roots = RootCertStore::empty();
        add_extra_anchors(&mut roots, one.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(roots.len(), 1);
        add_extra_anchors(&mut roots, two.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(roots.len(), 3);
        assert!(client_config(Some(one.as_bytes())).is_ok());
    }

    #[test]
    fn a_bundle_without_certificates_is_refused() {
        for bad in [
            &b""[..],
            b"not pem at all",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            let err = client_config(Some(bad)).err();
            assert!(matches!(err, Some(Error::ExtraCa(_))), "{bad:?}: {err:?}");
        }
    }

    #[test]
    fn a_garbled_certificate_is_refused() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = client_config(Some(pem)).err();
        assert!(matches!(err, Some(Error::ExtraCa(_))), "{err:?}");
    }
}
