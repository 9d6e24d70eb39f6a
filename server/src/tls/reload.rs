//! A served certificate that follows its files.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use juntos_store::Tasks;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often the files are read again.
const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// The certificate and key from two PEM files, re-read every few seconds: a change (new bytes
/// in either file that form a valid pair) is served to every new connection from then on;
/// open connections keep theirs. A broken or half-written pair is logged and the last good one
/// stays in service.
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The file contents behind `current`.
    loaded: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Loads the pair now (an error if it is not valid).
    pub fn load(cert_path: PathBuf, key_path: PathBuf) -> Result<Arc<Self>, String> {
        let cert = super::read(&cert_path)?;
        let key = super::read(&key_path)?;
        let certified = super::certified_key(&cert, &key, &cert_path.display().to_string())?;
        Ok(Arc::new(Self {
            cert_path,
            key_path,
            current: RwLock::new(certified),
            loaded: Mutex::new((cert, key)),
        }))
    }

    /// Re-reads the files every [`RELOAD_INTERVAL`] until the returned tasks are dropped.
    pub fn watch(self: &Arc<Self>) -> Tasks {
        let mut tasks = Tasks::default();
        let this = Arc::clone(self);
        tasks.spawn(async move {
            loop {
                tokio::time::sleep(RELOAD_INTERVAL).await;
                let this = Arc::clone(&this);
                // File reads block; keep them off the async threads.
                let _ = tokio::task::spawn_blocking(move || this.reload_if_changed()).await;
            }
        });
        tasks
    }

    /// Loads the files if their bytes changed; true when a new pair went into service.
    pub fn reload_if_changed(&self) -> bool {
        let (Ok(cert), Ok(key)) = (
            std::fs::read(&self.cert_path),
            std::fs::read(&self.key_path),
        ) else {
            tracing::warn!(cert = %self.cert_path.display(), "cannot read the TLS certificate files; keeping the current certificate");
            return false;
        };
        let mut loaded = juntos_store::lock(&self.loaded);
        if loaded.0 == cert && loaded.1 == key {
            return false;
        }
        match super::certified_key(&cert, &key, &self.cert_path.display().to_string()) {
            Ok(certified) => {
                *juntos_store::sync::write(&self.current) = certified;
                *loaded = (cert, key);
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                // Often a rotation caught between writing the two files; the next look retries.
                tracing::warn!(error = %e, "new TLS certificate files are not a valid pair yet; keeping the current certificate");
                false
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&juntos_store::sync::read(&self.current)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certs::Authority;

    #[test]
    fn a_rotated_pair_is_served_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let ca = Authority::generate("test", 1).expect("ca");
        let write = |pair: &crate::tls::certs::PemPair| {
            std::fs::write(&cert_path, &pair.cert).expect("cert");
            std::fs::write(&key_path, &pair.key).expect("key");
        };
        let first = ca.issue(&["localhost".to_owned()], 1).expect("leaf");
        write(&first);
        let cert = ReloadingCert::load(cert_path.clone(), key_path.clone()).expect("load");
        let served = || {
            cert.current
                .read()
                .expect("lock")
                .cert
                .first()
                .expect("a cert")
                .clone()
        };
        let before = served();
        assert!(!cert.reload_if_changed(), "nothing changed");

        let second = ca.issue(&["localhost".to_owned()], 1).expect("leaf");
        write(&second);
        assert!(cert.reload_if_changed(), "the new pair is picked up");
        let after = served();
        assert_ne!(before, after);

        // Half a rotation: a new certificate with the old key is not a pair.
        let third = ca.issue(&["localhost".to_owned()], 1).expect("leaf");
        std::fs::write(&cert_path, &third.cert).expect("cert");
        assert!(!cert.reload_if_changed(), "a mismatched pair is refused");
        assert_eq!(served(), after, "the last good pair stays");
    }
}
