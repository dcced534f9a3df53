//! Mutual TLS for peers and clients (rustls, ring).
//!
//! # Identities
//! One certificate authority per cluster signs every certificate. A **node**'s certificate names
//! it: the DNS name `node-<id>.raftlet` (see [`node_name`]), plus [`CLUSTER_NAME`], with both
//! the server and the client extended key usage. A **client**'s certificate names `client.raftlet` and is for
//! client authentication only. [`generate`] makes all of them (`raftlet-kv certs`).
//!
//! # What is checked
//! * Every inbound connection must present a certificate the cluster's CA signed (the TLS
//!   handshake fails otherwise, before a byte of the protocol is read).
//! * A connection that says it is peer *N* (`P` or `F`, whose hello names *N*) must present
//!   node *N*'s certificate: a client certificate, or node 2's certificate claiming to be
//!   node 3, is refused.
//! * An outbound connection to node *N* checks that the server's certificate names node *N*.
//! * Client connections (`C`) accept client and node certificates.
//!
//! So who can do what: holders of a node certificate can act as that node (and as a client);
//! holders of a client certificate can read, write and change the membership; nobody else can
//! complete a handshake. Keys are files: protect them as the data they guard.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io;
use std::path::Path;
use std::sync::Arc;

/// The DNS name a node's certificate carries.
pub fn node_name(id: u64) -> String {
    format!("node-{id}.raftlet")
}

/// The DNS name a client's certificate carries.
pub const CLIENT_NAME: &str = "client.raftlet";

/// The DNS name every node's certificate also carries: a client checks it, since it may not
/// know which node an address belongs to.
pub const CLUSTER_NAME: &str = "cluster.raftlet";

/// A node's or a client's TLS set-up: the cluster's CA, its own certificate chain and key.
#[derive(Clone)]
pub struct Tls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls { .. }")
    }
}

fn bad(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Tls {
    /// From PEM files: the CA certificate, this party's certificate (chain) and its key.
    ///
    /// # Errors
    /// Unreadable files, bad PEM, a key that does not match.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> io::Result<Self> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))
        };
        Self::from_pem(&read(ca)?, &read(cert)?, &read(key)?)
    }

    /// From PEM bytes. See [`from_files`](Self::from_files).
    ///
    /// # Errors
    /// Bad PEM, a key that does not match.
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> io::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca) {
            roots
                .add(c.map_err(|e| bad(format!("CA certificate: {e}")))?)
                .map_err(|e| bad(format!("CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(bad("no CA certificate"));
        }
        let roots = Arc::new(roots);
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("certificate: {e}")))?;
        if chain.is_empty() {
            return Err(bad("no certificate"));
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| bad(format!("key: {e}")))?;
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(bad)?;
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(bad)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(bad)?;
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(bad)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(bad)?;
        Ok(Self {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    /// Accepts inbound connections.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server.clone())
    }

    /// Opens outbound connections.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.client.clone())
    }
}

/// The server name to expect when connecting to node `id`.
pub fn server_name(id: u64) -> ServerName<'static> {
    ServerName::try_from(node_name(id)).expect("a valid DNS name")
}

/// The server name a client expects of any node of the cluster.
pub fn cluster_server_name() -> ServerName<'static> {
    ServerName::try_from(CLUSTER_NAME).expect("a valid DNS name")
}

/// Whether `cert` (already verified against the CA by the handshake) names `name`.
pub fn names(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(end) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(name) else {
        return false;
    };
    end.verify_is_valid_for_subject_name(&name).is_ok()
}

/// Certificates for a cluster, in PEM.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The CA certificate (give it to every node and client).
    pub ca_cert: String,
    /// The CA key (keep it offline: it makes new identities).
    pub ca_key: String,
    /// Per node: id, certificate, key.
    pub nodes: Vec<(u64, String, String)>,
    /// A client certificate and key.
    pub client: (String, String),
}

/// Makes a CA, a certificate for each node id and one client certificate.
///
/// # Errors
/// Key generation or signing failed.
pub fn generate(node_ids: &[u64]) -> Result<Generated, rcgen::Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "raftlet cluster CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = CertifiedIssuer::self_signed(ca, ca_key)?;
    let leaf = |names: Vec<String>, usages: Vec<ExtendedKeyUsagePurpose>| {
        let mut p = CertificateParams::new(names.clone())?;
        p.distinguished_name
            .push(DnType::CommonName, names[0].clone());
        p.extended_key_usages = usages;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &issuer)?;
        Ok::<_, rcgen::Error>((cert.pem(), key.serialize_pem()))
    };
    let mut nodes = Vec::new();
    for &id in node_ids {
        let (c, k) = leaf(
            vec![node_name(id), CLUSTER_NAME.to_string()],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )?;
        nodes.push((id, c, k));
    }
    let client = leaf(
        vec![CLIENT_NAME.to_string()],
        vec![ExtendedKeyUsagePurpose::ClientAuth],
    )?;
    Ok(Generated {
        ca_cert: issuer.pem(),
        ca_key: ca_key_pem,
        nodes,
        client,
    })
}
