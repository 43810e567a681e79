//! TLS between servers and agents, on rustls with the `ring` provider (one for the whole binary,
//! passed explicitly to every config: nothing depends on a process-wide default).
//!
//! - [`ServerTls::from_pem_files`]: a listener's certificate chain and key (`--tls-cert`,
//!   `--tls-key`), checked to belong together.
//! - [`ClientTls::from_ca_file`]: the CA bundle a client verifies its peer against (`--ca-file`
//!   on agents, `--agent-ca` on servers); [`ClientTls::system_roots`] the host's roots.
//! - [`TlsListener`]: accepts TCP connections and completes their handshakes off the accept
//!   path (a slow or plain-HTTP client cannot hold the listener up).
//! - [`https_connector`]: a connector for hyper-util's client speaking `https://` (and `http://`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A server-side TLS stream (what [`TlsListener`] yields).
pub type ServerTlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// hyper-util's HTTP connector wrapped for `https://`.
pub type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The crypto provider of every TLS config fleetfn makes.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Makes [`provider`] the process default too, for any library that asks rustls for it (call
/// once at start; a second call changes nothing).
pub fn install_default_provider() {
    let _ = CryptoProvider::install_default((*provider()).clone());
}

/// Why a TLS configuration could not be made. `flag` names the option the file came from.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    // Not a `source`: the message says it all (no "Caused by" repeating it).
    #[error("cannot read {flag} {}: {error}", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{flag} {}: not valid PEM: {detail}", path.display())]
    Pem {
        flag: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("no certificate in {flag} {} (expected PEM: -----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { flag: &'static str, path: PathBuf },
    #[error(
        "no private key in {flag} {} (expected PEM: -----BEGIN PRIVATE KEY-----, RSA or EC PRIVATE KEY)",
        path.display()
    )]
    NoKey { flag: &'static str, path: PathBuf },
    #[error("the certificate in {} does not match the key in {}", cert.display(), key.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("{flag} {}: {detail}", path.display())]
    Invalid {
        flag: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("no usable root certificates on this host{detail}; give the CA bundle in a file")]
    NoSystemRoots { detail: String },
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        flag,
        path: path.to_path_buf(),
        error,
    })
}

fn certificates(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(flag, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            flag,
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            flag,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// What a listener presents: its certificate chain and key.
#[derive(Clone)]
pub struct ServerTls(Arc<rustls::ServerConfig>);

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl ServerTls {
    /// From PEM files: `cert` holds the certificate first, then any intermediates; `key` its
    /// private key (PKCS#8, PKCS#1 or SEC1). `cert_flag`/`key_flag` name the options in errors.
    pub fn from_pem_files(
        cert: &Path,
        key: &Path,
        cert_flag: &'static str,
        key_flag: &'static str,
    ) -> Result<Self, TlsError> {
        let chain = certificates(cert_flag, cert)?;
        let key_pem = read(key_flag, key)?;
        let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
                flag: key_flag,
                path: key.to_path_buf(),
            },
            e => TlsError::Pem {
                flag: key_flag,
                path: key.to_path_buf(),
                detail: e.to_string(),
            },
        })?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Invalid {
                flag: cert_flag,
                path: cert.to_path_buf(),
                detail: e.to_string(),
            })?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
                    cert: cert.to_path_buf(),
                    key: key.to_path_buf(),
                },
                e => TlsError::Invalid {
                    flag: key_flag,
                    path: key.to_path_buf(),
                    detail: e.to_string(),
                },
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self(Arc::new(config)))
    }

    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.0.clone()
    }
}

/// What a client trusts: the roots it verifies servers' certificates against (names checked
/// against the host or IP address it connects to).
#[derive(Clone)]
pub struct ClientTls(Arc<rustls::ClientConfig>);

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// Trusts the CA certificates of a PEM bundle (and nothing else).
    pub fn from_ca_file(path: &Path, flag: &'static str) -> Result<Self, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in certificates(flag, path)? {
            roots.add(cert).map_err(|e| TlsError::Invalid {
                flag,
                path: path.to_path_buf(),
                detail: format!("not a usable CA certificate: {e}"),
            })?;
        }
        Ok(Self::with_roots(roots))
    }

    /// Trusts the host's roots (`/etc/ssl/certs` and the like; `SSL_CERT_FILE` and
    /// `SSL_CERT_DIR` are honoured).
    pub fn system_roots() -> Result<Self, TlsError> {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = rustls::RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let detail = found
                .errors
                .first()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            return Err(TlsError::NoSystemRoots { detail });
        }
        Ok(Self::with_roots(roots))
    }

    fn with_roots(roots: rustls::RootCertStore) -> Self {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self(Arc::new(config))
    }

    pub fn config(&self) -> Arc<rustls::ClientConfig> {
        self.0.clone()
    }
}

/// A connector for hyper-util's legacy client that speaks `https://` (verified with `tls`;
/// with `None` no certificate is trusted) and, when `allow_http`, `http://`.
pub fn https_connector(
    tls: Option<&ClientTls>,
    mut http: HttpConnector,
    allow_http: bool,
) -> HttpsConnector {
    http.enforce_http(false);
    let config = match tls {
        Some(tls) => (*tls.0).clone(),
        None => (*ClientTls::with_roots(rustls::RootCertStore::empty()).0).clone(),
    };
    let b = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config);
    let b = if allow_http {
        b.https_or_http()
    } else {
        b.https_only()
    };
    b.enable_http1().wrap_connector(http)
}

/// An error with its sources (`a: b: c`): hyper's errors say what failed only in theirs (a
/// refused certificate is "client error (Connect)" on its own).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// How many handshakes may be under way at once; more connections wait in the backlog.
const MAX_HANDSHAKES: usize = 256;

/// A TCP listener whose connections come out with their TLS handshake done. Handshakes run in
/// their own tasks, each bounded by the handshake timeout; a failed one (a plain-HTTP client, a
/// certificate the client refused) is dropped and logged at debug level.
pub struct TlsListener {
    rx: mpsc::Receiver<(ServerTlsStream, SocketAddr)>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Accepts on `listener` (TCP_NODELAY set on every connection).
    pub fn new(
        listener: TcpListener,
        tls: &ServerTls,
        handshake_timeout: Duration,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
        let (tx, rx) = mpsc::channel(64);
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let task = tokio::spawn(async move {
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { rx, local, task })
    }

    /// The next connection with its handshake done.
    pub async fn accept(&mut self) -> (ServerTlsStream, SocketAddr) {
        match self.rx.recv().await {
            Some(accepted) => accepted,
            // The accept task never ends while this listener lives.
            None => std::future::pending().await,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // Closes the socket: nothing more is accepted.
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose,
    };

    struct Pki {
        dir: tempfile::TempDir,
    }

    impl Pki {
        /// A CA and a certificate for 127.0.0.1 and `localhost` it signed, in PEM files.
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
            let key = KeyPair::generate().unwrap();
            let params =
                CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                    .unwrap();
            let cert = params.signed_by(&key, &ca).unwrap();
            let other = KeyPair::generate().unwrap();
            let p = |n: &str| dir.path().join(n);
            std::fs::write(p("ca.pem"), ca.pem()).unwrap();
            std::fs::write(p("cert.pem"), cert.pem()).unwrap();
            std::fs::write(p("key.pem"), key.serialize_pem()).unwrap();
            std::fs::write(p("other-key.pem"), other.serialize_pem()).unwrap();
            // A second, unrelated CA.
            let mut stranger = CertificateParams::new(Vec::<String>::new()).unwrap();
            stranger.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            stranger
                .distinguished_name
                .push(rcgen::DnType::CommonName, "stranger");
            let stranger =
                CertifiedIssuer::self_signed(stranger, KeyPair::generate().unwrap()).unwrap();
            std::fs::write(p("stranger.pem"), stranger.pem()).unwrap();
            Self { dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn server(&self) -> ServerTls {
            ServerTls::from_pem_files(
                &self.path("cert.pem"),
                &self.path("key.pem"),
                "--tls-cert",
                "--tls-key",
            )
            .unwrap()
        }
    }

    #[test]
    fn loading_errors_name_the_file_and_the_problem() {
        let pki = Pki::new();
        let load = |cert: &str, key: &str| {
            ServerTls::from_pem_files(&pki.path(cert), &pki.path(key), "--tls-cert", "--tls-key")
                .unwrap_err()
                .to_string()
        };
        let missing = load("nope.pem", "key.pem");
        assert!(
            missing.starts_with("cannot read --tls-cert ") && missing.contains("nope.pem"),
            "{missing}"
        );
        // The key file has no certificate, the certificate file no key.
        assert!(load("key.pem", "key.pem").starts_with("no certificate in --tls-cert"));
        assert!(load("cert.pem", "cert.pem").starts_with("no private key in --tls-key"));
        let mismatch = load("cert.pem", "other-key.pem");
        assert!(mismatch.contains("does not match the key"), "{mismatch}");
        std::fs::write(pki.path("junk.pem"), "-----BEGIN CERTIFICATE-----\n!!!\n").unwrap();
        let junk = load("junk.pem", "key.pem");
        assert!(junk.contains("not valid PEM"), "{junk}");
        let ca = ClientTls::from_ca_file(&pki.path("key.pem"), "--ca-file").unwrap_err();
        assert!(
            ca.to_string().starts_with("no certificate in --ca-file"),
            "{ca}"
        );
        assert!(ClientTls::from_ca_file(&pki.path("ca.pem"), "--ca-file").is_ok());
    }

    async fn get(tls: &ClientTls, url: &str) -> Result<String, hyper_util::client::legacy::Error> {
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build::<_, Full<bytes::Bytes>>(https_connector(
                Some(tls),
                HttpConnector::new(),
                false,
            ));
        let resp = client.get(url.parse().unwrap()).await?;
        Ok(String::from_utf8(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap())
    }

    #[tokio::test]
    async fn a_client_trusting_the_ca_talks_to_the_listener_and_others_are_refused() {
        let pki = Pki::new();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut listener = TlsListener::new(tcp, &pki.server(), Duration::from_secs(2)).unwrap();
        let addr = listener.local_addr();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await;
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            bytes::Bytes::from_static(b"hello over tls"),
                        )))
                    }),
                ));
            }
        });
        let trusted = ClientTls::from_ca_file(&pki.path("ca.pem"), "--ca-file").unwrap();
        assert_eq!(
            get(&trusted, &format!("https://{addr}/")).await.unwrap(),
            "hello over tls"
        );
        // The certificate names 127.0.0.1 and localhost, and nothing else.
        assert_eq!(
            get(&trusted, &format!("https://localhost:{}/", addr.port()))
                .await
                .unwrap(),
            "hello over tls"
        );
        // Another CA: the certificate is refused.
        let stranger = ClientTls::from_ca_file(&pki.path("stranger.pem"), "--ca-file").unwrap();
        let refused = get(&stranger, &format!("https://{addr}/"))
            .await
            .unwrap_err();
        assert!(refused.is_connect(), "{refused:?}");
        let chain = error_chain(&refused);
        assert!(
            chain.contains("invalid peer certificate: UnknownIssuer"),
            "{chain}"
        );
        // Plain HTTP to the TLS listener gets no HTTP answer, and the listener keeps serving.
        let plain = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build_http::<Full<bytes::Bytes>>();
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            plain.get(format!("http://{addr}/").parse().unwrap()),
        )
        .await
        .expect("the listener closes a plain connection");
        assert!(answer.is_err(), "{answer:?}");
        // A https-only connector refuses http:// URLs.
        assert!(get(&trusted, &format!("http://{addr}/")).await.is_err());
        assert_eq!(
            get(&trusted, &format!("https://{addr}/")).await.unwrap(),
            "hello over tls"
        );
    }
}
