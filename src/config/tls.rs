//! The TLS settings of `[fleet]` read into what the HTTP client takes: the
//! CA certificates etcd's server certificates are checked against, and the
//! client certificate etcd's `--client-cert-auth` asks for. Read at load
//! time (so a bad file is a config error naming its key) and again when
//! the fleet role connects.

use super::FleetConfig;
use std::sync::Arc;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

/// None when no TLS file is set; Err names the key (`ca_file`, ...) and why.
pub fn fleet_tls(f: &FleetConfig) -> Result<Option<TlsConfig>, (&'static str, String)> {
    if !f.tls() {
        return Ok(None);
    }
    let mut tls = TlsConfig::builder();
    if !f.ca_file.is_empty() {
        let (certs, _) = pem("ca_file", &f.ca_file)?;
        if certs.is_empty() {
            return Err(("ca_file", format!("{} holds no PEM certificate", f.ca_file)));
        }
        tls = tls.root_certs(RootCerts::Specific(Arc::new(certs)));
    }
    if !f.cert_file.is_empty() && !f.key_file.is_empty() {
        let (chain, _) = pem("cert_file", &f.cert_file)?;
        if chain.is_empty() {
            return Err(("cert_file", format!("{} holds no PEM certificate", f.cert_file)));
        }
        let (_, keys) = pem("key_file", &f.key_file)?;
        let Some(key) = keys.into_iter().next() else {
            return Err(("key_file", format!("{} holds no PEM private key", f.key_file)));
        };
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    Ok(Some(tls.build()))
}

type Pem = (Vec<Certificate<'static>>, Vec<PrivateKey<'static>>);

fn pem(key: &'static str, path: &str) -> Result<Pem, (&'static str, String)> {
    let bytes = std::fs::read(path).map_err(|e| (key, format!("cannot read {path}: {e}")))?;
    let (mut certs, mut keys) = (Vec::new(), Vec::new());
    for item in ureq::tls::parse_pem(&bytes) {
        match item.map_err(|e| (key, format!("{path} is not PEM: {e}")))? {
            PemItem::Certificate(c) => certs.push(c),
            PemItem::PrivateKey(k) => keys.push(k),
            _ => {}
        }
    }
    Ok((certs, keys))
}
