//! Checking a device's description before it is registered.

use juntos_proto::login::v1::{DeviceInfo, Platform};

use crate::config::LoginConfig;
use crate::error::{Error, Result};

/// Length of both identity public keys.
const KEY_LEN: usize = 32;

/// A device description that passed [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValidDevice {
    /// Trimmed name.
    pub(crate) name: String,
    /// A known `Platform` number (unknown values become `PLATFORM_OTHER`).
    pub(crate) platform: i32,
    /// Ed25519 public key, 32 bytes, a valid curve point of large order.
    pub(crate) identity_signing_key: Vec<u8>,
    /// X25519 public key, 32 bytes, not all zeros.
    pub(crate) identity_dh_key: Vec<u8>,
}

/// Checks `device` against `config`; the error says which part is wrong, never its value.
pub(crate) fn validate(device: Option<&DeviceInfo>, config: &LoginConfig) -> Result<ValidDevice> {
    let device = device.ok_or(Error::InvalidDevice("the device description is missing"))?;

    let name = device.name.trim();
    let chars = name.chars().count();
    if chars < config.device_name_min_chars || chars > config.device_name_max_chars {
        return Err(Error::InvalidDevice(
            "the device name must be 1 to 64 characters",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidDevice(
            "the device name must not contain control characters",
        ));
    }

    let signing: [u8; KEY_LEN] = device
        .identity_signing_key
        .as_slice()
        .try_into()
        .map_err(|_| Error::InvalidDevice("the identity signing key must be 32 bytes"))?;
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&signing).map_err(|_| {
        Error::InvalidDevice("the identity signing key is not an Ed25519 public key")
    })?;
    if verifying.is_weak() {
        return Err(Error::InvalidDevice(
            "the identity signing key is a weak Ed25519 key",
        ));
    }

    if device.identity_dh_key.len() != KEY_LEN {
        return Err(Error::InvalidDevice(
            "the identity key-agreement key must be 32 bytes",
        ));
    }
    if device.identity_dh_key.iter().all(|b| *b == 0) {
        return Err(Error::InvalidDevice(
            "the identity key-agreement key is all zeros",
        ));
    }

    let platform = Platform::try_from(device.platform).unwrap_or(Platform::Other);
    Ok(ValidDevice {
        name: name.to_owned(),
        platform: platform as i32,
        identity_signing_key: signing.to_vec(),
        identity_dh_key: device.identity_dh_key.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good_device() -> DeviceInfo {
        DeviceInfo {
            name: "  Ana's phone ".into(),
            platform: Platform::Android as i32,
            identity_signing_key: ed25519_dalek::SigningKey::from_bytes(&[5; 32])
                .verifying_key()
                .to_bytes()
                .to_vec(),
            identity_dh_key: vec![9; 32],
        }
    }

    fn reason(device: DeviceInfo) -> &'static str {
        match validate(Some(&device), &LoginConfig::default()) {
            Err(Error::InvalidDevice(why)) => why,
            other => panic!("expected InvalidDevice, got {other:?}"),
        }
    }

    #[test]
    fn valid_device_is_trimmed() {
        let valid = validate(Some(&good_device()), &LoginConfig::default()).expect("valid");
        assert_eq!(valid.name, "Ana's phone");
        assert_eq!(valid.platform, Platform::Android as i32);
        let long = DeviceInfo {
            name: "é".repeat(64),
            ..good_device()
        };
        assert!(
            validate(Some(&long), &LoginConfig::default()).is_ok(),
            "64 chars, 128 bytes"
        );
    }

    #[test]
    fn unknown_platform_becomes_other() {
        let device = DeviceInfo {
            platform: 999,
            ..good_device()
        };
        let valid = validate(Some(&device), &LoginConfig::default()).expect("valid");
        assert_eq!(valid.platform, Platform::Other as i32);
    }

    #[test]
    fn invalid_devices() {
        assert!(matches!(
            validate(None, &LoginConfig::default()),
            Err(Error::InvalidDevice(_))
        ));
        assert!(
            reason(DeviceInfo {
                name: "   ".into(),
                ..good_device()
            })
            .contains("name")
        );
        assert!(
            reason(DeviceInfo {
                name: "x".repeat(65),
                ..good_device()
            })
            .contains("name")
        );
        assert!(
            reason(DeviceInfo {
                name: "a\u{7}b".into(),
                ..good_device()
            })
            .contains("control")
        );
        assert!(
            reason(DeviceInfo {
                identity_signing_key: vec![1; 31],
                ..good_device()
            })
            .contains("signing key must be 32")
        );
        // y = 2 is not on the curve.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert!(
            reason(DeviceInfo {
                identity_signing_key: off_curve.to_vec(),
                ..good_device()
            })
            .contains("not an Ed25519")
        );
        // The identity point (y = 1) is a valid encoding but of small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(
            reason(DeviceInfo {
                identity_signing_key: identity.to_vec(),
                ..good_device()
            })
            .contains("weak")
        );
        assert!(
            reason(DeviceInfo {
                identity_dh_key: vec![1; 33],
                ..good_device()
            })
            .contains("key-agreement key must be 32")
        );
        assert!(
            reason(DeviceInfo {
                identity_dh_key: vec![0; 32],
                ..good_device()
            })
            .contains("zeros")
        );
    }
}
