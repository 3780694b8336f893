//! Whom the mount trusts over https: the system's root certificates (found as OpenSSL finds
//! them, `SSL_CERT_FILE` and `SSL_CERT_DIR` included), plus a private CA from `-o ca_file=`
//! or kamaki's `ca_certs`. rustls with the ring provider; never a fallback to plain http.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("CA file {0}: no certificate in it")]
    NoCertificate(PathBuf),
}

/// The certificates servers are checked against.
pub struct Roots {
    store: rustls::RootCertStore,
    /// Where they came from, for error messages.
    pub origin: String,
}

impl Roots {
    /// The system's roots and `ca_file`'s. A CA file that cannot be read or holds no
    /// certificate is an error: a typo must not quietly leave the private CA out.
    pub fn load(ca_file: Option<&Path>) -> Result<Roots, TlsError> {
        let mut store = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!("system root certificates: {e}");
        }
        let (system, _unusable) = store.add_parsable_certificates(found.certs);
        let mut origin = match std::env::var("SSL_CERT_FILE") {
            Ok(f) => format!("{system} system roots from SSL_CERT_FILE={f}"),
            Err(_) => format!("{system} system roots"),
        };
        if let Some(path) = ca_file {
            let bad = |reason: String| TlsError::CaFile {
                path: path.to_path_buf(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(TlsError::NoCertificate(path.to_path_buf()));
            }
            for c in certs {
                store.add(c).map_err(|e| bad(e.to_string()))?;
            }
            origin.push_str(&format!(" and {}", path.display()));
        }
        Ok(Roots { store, origin })
    }

    /// A rustls client configuration trusting these roots. HTTP/1.1 only, as over plain http:
    /// a mount's transfers are long streams, several at once, one per connection.
    pub fn client_config(self) -> rustls::ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(self.store)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        cfg
    }
}

/// What a failed request says about the server's certificate, if that is why it failed, in
/// words for the person at the keyboard (rustls' reason is kept at the end).
pub fn certificate_problem(error_chain: &str) -> Option<String> {
    let at = error_chain.find("invalid peer certificate: ")?;
    let reason = &error_chain[at + "invalid peer certificate: ".len()..];
    let why = if reason.starts_with("UnknownIssuer") {
        "it is signed by an authority this machine does not trust (give -o ca_file=PATH, or \
         put the CA in the system's store or SSL_CERT_FILE)"
    } else if reason.contains("not valid for name") || reason.starts_with("NotValidForName") {
        "it is not made out to this host name"
    } else if reason.starts_with("Expired") {
        "it has expired"
    } else {
        "it was refused"
    };
    Some(format!("{why}: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_problems_in_plain_words() {
        let chain = "error sending request for url (https://x/): client error (Connect): \
                     invalid peer certificate: UnknownIssuer";
        let p = certificate_problem(chain).unwrap();
        assert!(p.starts_with("it is signed by an authority"), "{p}");
        assert!(p.ends_with("UnknownIssuer"), "{p}");
        let p = certificate_problem(
            "...: invalid peer certificate: certificate not valid for name \"127.0.0.1\"; certificate is only valid for DnsName(\"elsewhere.test\")",
        )
        .unwrap();
        assert!(p.starts_with("it is not made out to this host name"), "{p}");
        assert_eq!(certificate_problem("connection refused"), None);
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(matches!(Roots::load(Some(&empty)), Err(TlsError::NoCertificate(_))));
        let missing = dir.path().join("missing.pem");
        assert!(matches!(Roots::load(Some(&missing)), Err(TlsError::CaFile { .. })));
    }
}
