//! The persisted seed of the token signing key.

use std::io;
use std::path::Path;

use rand::RngCore as _;

/// Reads the 32-byte Ed25519 signing seed at `path`, or creates it from the OS CSPRNG (file mode
/// 0600, see [`juntos_store::file::create_once`]) when the file does not exist.
///
/// A file that exists but does not hold exactly 32 bytes, or holds only zeros, is an
/// `InvalidData` error: it is never silently replaced, since that would sign everyone out.
pub fn load_or_create_signing_seed(path: &Path) -> io::Result<[u8; 32]> {
    match std::fs::read(path) {
        Ok(bytes) => return parse(&bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut seed = [0u8; 32];
    while seed.iter().all(|b| *b == 0) {
        rand::rngs::OsRng.fill_bytes(&mut seed);
    }
    if juntos_store::file::create_once(path, &seed)? {
        Ok(seed)
    } else {
        parse(&std::fs::read(path)?)
    }
}

fn parse(bytes: &[u8]) -> io::Result<[u8; 32]> {
    let seed: [u8; 32] = bytes.try_into().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "signing seed file must hold exactly 32 bytes",
        )
    })?;
    if seed.iter().all(|b| *b == 0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "signing seed file is all zeros",
        ));
    }
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys").join("token-signing.seed");
        let first = load_or_create_signing_seed(&path).expect("create");
        assert_ne!(first, [0; 32]);
        assert_eq!(std::fs::read(&path).expect("read"), first);
        let second = load_or_create_signing_seed(&path).expect("reuse");
        assert_eq!(first, second);
        let leftovers = std::fs::read_dir(path.parent().expect("parent"))
            .expect("read dir")
            .count();
        assert_eq!(leftovers, 1, "only the seed remains, no temporary file");

        let other = load_or_create_signing_seed(&dir.path().join("other.seed")).expect("create");
        assert_ne!(first, other);
    }

    #[cfg(unix)]
    #[test]
    fn file_mode_is_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("seed");
        load_or_create_signing_seed(&path).expect("create");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn bad_file_is_an_error_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("seed");
        std::fs::write(&path, b"short").expect("write");
        let err = load_or_create_signing_seed(&path).expect_err("short file");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(std::fs::read(&path).expect("read"), b"short");

        std::fs::write(&path, [0u8; 32]).expect("write");
        let err = load_or_create_signing_seed(&path).expect_err("zero seed");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
