//! HTTPS (feature `tls`): rustls with the ring provider over the same
//! non-blocking sockets. Loading the certificate, key and optional client
//! CA into a server configuration (at start and at each SIGHUP; a new one
//! serves new connections), and the two I/O calls the shim makes through
//! a TLS connection: `read` (ciphertext in, plaintext out, handshake
//! replies written as they arise) and `write` (plaintext in, ciphertext
//! written as the socket takes it). Whatever rustls still holds to send
//! keeps the client's WRITABLE interest (see `Client::has_output`).

use std::io::{self, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

use crate::config::TlsSettings;

/// Plaintext rustls may hold for one client beyond what it could send.
const BUFFER_LIMIT: usize = 64 * 1024;

/// A server configuration from the files `s` names; the error names the
/// file and what is wrong with it.
pub fn load(s: &TlsSettings) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&s.cert_file)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| format!("api.tls.cert_file {}: {e}", s.cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "api.tls.cert_file {}: no certificate in it",
            s.cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&s.key_file)
        .map_err(|e| format!("api.tls.key_file {}: {e}", s.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("api.tls: {e}"))?;
    let builder = match &s.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("api.tls.client_ca_file {}: {e}", ca.display()))?
            {
                let c = c.map_err(|e| format!("api.tls.client_ca_file {}: {e}", ca.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("api.tls.client_ca_file {}: {e}", ca.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "api.tls.client_ca_file {}: no certificate in it",
                    ca.display()
                ));
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("api.tls.client_ca_file {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(v)
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("api.tls: the key does not suit the certificate: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A connection for a newly accepted client.
pub fn accept(cfg: &Arc<ServerConfig>) -> io::Result<Box<ServerConnection>> {
    let mut c = ServerConnection::new(cfg.clone()).map_err(io::Error::other)?;
    c.set_buffer_limit(Some(BUFFER_LIMIT));
    Ok(Box::new(c))
}

/// Sends what rustls holds, as far as the socket takes it.
pub fn flush(c: &mut ServerConnection, sock: &mut TcpStream) -> io::Result<()> {
    while c.wants_write() {
        match c.write_tls(sock) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Plaintext from the peer; WouldBlock when none has arrived, 0 at its end.
pub fn read(c: &mut ServerConnection, sock: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match c.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        match c.read_tls(sock) {
            Ok(0) => return Ok(0),
            Ok(_) => {
                if let Err(e) = c.process_new_packets() {
                    // The alert rustls queued tells the peer why.
                    let _ = flush(c, sock);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
                flush(c, sock)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Plaintext to the peer: how much rustls took (WouldBlock when it holds
/// all it may).
pub fn write(c: &mut ServerConnection, sock: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
    let n = c.writer().write(data)?;
    flush(c, sock)?;
    if n == 0 && !data.is_empty() {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    Ok(n)
}
