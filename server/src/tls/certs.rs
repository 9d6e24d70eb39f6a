//! Making certificates: the internal CA and one certificate per role (`juntos certs`), the
//! ephemeral set `juntos all` uses when given none, and the local CA behind
//! `--tls-self-signed`.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};

use super::Role;

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct PemPair {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for PemPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PemPair").finish_non_exhaustive()
    }
}

/// A certificate authority that can issue certificates.
pub struct Authority {
    pair: PemPair,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    /// A new CA named `name`, valid for `days`.
    pub fn generate(name: &str, days: u32) -> Result<Self, String> {
        let key = KeyPair::generate().map_err(|e| format!("cannot make a key: {e}"))?;
        let mut params = ca_params(name);
        validity(&mut params, days);
        let cert = params
            .self_signed(&key)
            .map_err(|e| format!("cannot make the CA: {e}"))?;
        let pair = PemPair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        };
        Ok(Self {
            issuer: Issuer::new(params, key),
            pair,
        })
    }

    /// A CA that [`Authority::generate`] made as `name`, from its PEM certificate and key.
    /// Issuing needs only the CA's name and key (a leaf names its issuer by subject and key
    /// identifier), so the certificate is kept as it is, not parsed.
    pub fn load(pair: PemPair, name: &str) -> Result<Self, String> {
        let key = KeyPair::from_pem(&pair.key).map_err(|e| format!("bad CA key: {e}"))?;
        Ok(Self {
            issuer: Issuer::new(ca_params(name), key),
            pair,
        })
    }

    /// The CA's own certificate and key.
    pub fn pem(&self) -> &PemPair {
        &self.pair
    }

    /// A leaf certificate for `names` (DNS names or IP addresses), good for both ends of a TLS
    /// connection (server and client authentication), valid for `days`.
    pub fn issue(&self, names: &[String], days: u32) -> Result<PemPair, String> {
        let key = KeyPair::generate().map_err(|e| format!("cannot make a key: {e}"))?;
        let mut params = CertificateParams::default();
        let first = names.first().ok_or("a certificate needs a name")?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, first);
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => name
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|e| format!("bad name {name:?}: {e}")),
            })
            .collect::<Result<_, _>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, days);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| format!("cannot issue a certificate: {e}"))?;
        Ok(PemPair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

/// A CA certificate's parameters, but for its validity.
fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// From an hour ago (clock skew between machines) to `days` from now.
fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// The SHA-256 fingerprint of the first certificate in `pem`, as colon-separated hex (the form
/// browsers and `openssl x509 -fingerprint -sha256` show).
pub fn fingerprint(pem: &str) -> Result<String, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    Ok(Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// The internal CA and a certificate for every role.
pub struct RoleCerts {
    pub ca: Authority,
    pub roles: Vec<(Role, PemPair)>,
}

impl RoleCerts {
    /// A fresh CA and one certificate per role, each for `<role>.juntos.internal` plus
    /// `extra_names`.
    pub fn generate(days: u32, extra_names: &[String]) -> Result<Self, String> {
        let ca = Authority::generate("Juntos internal CA", days)?;
        let roles = Role::ALL
            .iter()
            .map(|&role| {
                let mut names = vec![role.dns_name()];
                names.extend(extra_names.iter().cloned());
                Ok((role, ca.issue(&names, days)?))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { ca, roles })
    }

    /// Writes `ca.crt`, `ca.key` and `<role>/{tls.crt,tls.key,ca.crt}` (the layout of a
    /// cert-manager Secret mounted as a folder) under `out`. Keys are readable by the owner only.
    pub fn write(&self, out: &Path) -> Result<(), String> {
        let ca = self.ca.pem();
        write_file(&out.join("ca.crt"), &ca.cert, false)?;
        write_file(&out.join("ca.key"), &ca.key, true)?;
        for (role, pair) in &self.roles {
            let dir = out.join(role.name());
            write_file(&dir.join("tls.crt"), &pair.cert, false)?;
            write_file(&dir.join("tls.key"), &pair.key, true)?;
            write_file(&dir.join("ca.crt"), &ca.cert, false)?;
        }
        Ok(())
    }
}

/// Writes `contents` to `path` (creating its folder), atomically, owner-only when `secret`.
pub fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), String> {
    use std::io::Write;
    let dir = path.parent().ok_or("a file needs a folder")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = path.file_name().ok_or("a file needs a name")?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    // `mode` applies only to a file it creates: a leftover temp file keeps its own, so set it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(if secret {
            0o600
        } else {
            0o644
        }))
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    }
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The name of the CA behind `--tls-self-signed`.
const SELF_SIGNED_CA: &str = "Juntos local CA (self-signed)";

/// The certificate `juntos all --tls-self-signed` serves: a local CA kept in `dir` (made on
/// first use, so clients that trust it keep trusting it across restarts) and a fresh leaf for
/// `names`. Returns the leaf and the CA certificate's fingerprint.
pub fn self_signed(dir: &Path, names: &[String]) -> Result<(PemPair, String), String> {
    let ca_cert = dir.join("ca.crt");
    let ca_key = dir.join("ca.key");
    let ca = if ca_cert.exists() && ca_key.exists() {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        Authority::load(
            PemPair {
                cert: read(&ca_cert)?,
                key: read(&ca_key)?,
            },
            SELF_SIGNED_CA,
        )?
    } else {
        let ca = Authority::generate(SELF_SIGNED_CA, 3650)?;
        write_file(&ca_key, &ca.pem().key, true)?;
        write_file(&ca_cert, &ca.pem().cert, false)?;
        ca
    };
    let leaf = ca.issue(names, 365)?;
    let fingerprint = fingerprint(&ca.pem().cert)?;
    Ok((leaf, fingerprint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_signed_ca_is_kept_across_runs() {
        let dir = tempfile::tempdir().expect("dir");
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let (first, print1) = self_signed(dir.path(), &names).expect("first");
        let (second, print2) = self_signed(dir.path(), &names).expect("second");
        assert_eq!(print1, print2, "same CA");
        assert_ne!(first.cert, second.cert, "a fresh leaf each start");
        assert_eq!(print1.len(), 32 * 3 - 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("ca.key"))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the CA key is private");
        }
    }
}
