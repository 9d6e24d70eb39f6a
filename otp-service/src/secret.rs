//! The server secret that keys the code hashes.

use std::io::{self, Read};
use std::path::Path;

use rand::RngCore;
use rand::rngs::OsRng;

/// Length of the secret in bytes.
pub const SECRET_LEN: usize = 32;

/// Reads the 32-byte secret at `path`, or creates it (random, mode 0600, parent directory
/// created) on first use. A file of the wrong length is an `InvalidData` error, never replaced.
pub fn load_or_create_secret(path: &Path) -> io::Result<Vec<u8>> {
    match read_secret(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    let mut secret = vec![0u8; SECRET_LEN];
    OsRng.fill_bytes(&mut secret);
    if juntos_store::file::create_once(path, &secret)? {
        Ok(secret)
    } else {
        // Another process created it between our read and our create: use theirs.
        read_secret(path)
    }
}

fn read_secret(path: &Path) -> io::Result<Vec<u8>> {
    let mut secret = Vec::with_capacity(SECRET_LEN);
    std::fs::File::open(path)?.read_to_end(&mut secret)?;
    if secret.len() != SECRET_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("OTP secret file must hold exactly {SECRET_LEN} bytes"),
        ));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_reuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/otp-secret");
        let first = load_or_create_secret(&path).expect("create");
        assert_eq!(first.len(), SECRET_LEN);
        assert_ne!(first, vec![0u8; SECRET_LEN]);
        assert_eq!(load_or_create_secret(&path).expect("reload"), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn refuses_a_truncated_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("otp-secret");
        std::fs::write(&path, b"short").expect("write");
        let err = load_or_create_secret(&path).expect_err("short secret accepted");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(std::fs::read(&path).expect("read"), b"short");
    }
}
