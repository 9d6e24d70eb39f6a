//! The plain data [`Client`](crate::Client) hands to apps (uniffi records).

use juntos_proto::login::v1 as pb;
use juntos_proto::otp::v1 as otp;

/// A code was sent.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CodeRequest {
    /// Number of digits in the code.
    pub code_length: u32,
    /// Seconds until the code expires.
    pub expires_in_seconds: u32,
    /// Seconds until another code may be requested for this number.
    pub resend_after_seconds: u32,
}

impl From<otp::RequestCodeResponse> for CodeRequest {
    fn from(r: otp::RequestCodeResponse) -> Self {
        Self {
            code_length: r.code_length,
            expires_in_seconds: r.expires_in_seconds,
            resend_after_seconds: r.resend_after_seconds,
        }
    }
}

/// The account and device a sign-in landed on.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Account {
    pub user_id: String,
    /// This device's id.
    pub device_id: String,
    /// True when this sign-in created the account.
    pub new_account: bool,
}

/// Who this device is signed in as (from local state; no network).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SessionInfo {
    pub user_id: String,
    pub device_id: String,
}

/// One registered device of the account.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DeviceSummary {
    pub device_id: String,
    /// The name the device registered with.
    pub name: String,
}

impl From<pb::Device> for DeviceSummary {
    fn from(d: pb::Device) -> Self {
        Self {
            device_id: d.device_id,
            name: d.name,
        }
    }
}

/// The account as the server knows it.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct Me {
    pub user_id: String,
    /// This device's id.
    pub device_id: String,
    /// The account's phone number, E.164.
    pub phone: String,
    /// The account's active devices, this one included.
    pub devices: Vec<DeviceSummary>,
}

impl std::fmt::Debug for Me {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the phone number: Debug output ends up in logs.
        f.debug_struct("Me")
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .field("devices", &self.devices)
            .finish_non_exhaustive()
    }
}

impl From<pb::MeResponse> for Me {
    fn from(r: pb::MeResponse) -> Self {
        Self {
            user_id: r.user_id,
            device_id: r.device_id,
            phone: r.phone,
            devices: r.devices.into_iter().map(DeviceSummary::from).collect(),
        }
    }
}
