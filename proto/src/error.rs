//! How Juntos errors look on the wire, and how a client reads them back.
//!
//! Every error status carries a `google.rpc.ErrorInfo` (domain [`DOMAIN`]) whose `reason` is one
//! of the constants in [`reason`], so clients branch on a stable name instead of message text.
//! RESOURCE_EXHAUSTED also carries `google.rpc.RetryInfo` with the time to wait. Messages are for
//! humans and never contain phone numbers, codes, keys or tokens.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every Juntos error.
pub const DOMAIN: &str = "juntos";

/// `ErrorInfo.reason` values.
pub mod reason {
    /// The phone number is not E.164 or not a valid number.
    pub const INVALID_PHONE: &str = "INVALID_PHONE";
    /// Another code for this number may not be sent yet (resend schedule).
    pub const RESEND_TOO_SOON: &str = "RESEND_TOO_SOON";
    /// The number has had its maximum of codes today.
    pub const DAILY_LIMIT: &str = "DAILY_LIMIT";
    /// Too many code requests from this client address.
    pub const IP_LIMIT: &str = "IP_LIMIT";
    /// The hourly SMS budget for this country calling code is spent.
    pub const COUNTRY_BUDGET: &str = "COUNTRY_BUDGET";
    /// The SMS provider refused to send to this number.
    pub const SMS_REJECTED: &str = "SMS_REJECTED";
    /// The SMS provider could not be reached.
    pub const SMS_UNAVAILABLE: &str = "SMS_UNAVAILABLE";
    /// The code is not the six digits of a code (no try was spent).
    pub const INVALID_CODE: &str = "INVALID_CODE";
    /// The code is wrong; ErrorInfo metadata `attempts_left` says how many tries remain.
    pub const WRONG_CODE: &str = "WRONG_CODE";
    /// The code was wrong too many times and is burned.
    pub const TOO_MANY_ATTEMPTS: &str = "TOO_MANY_ATTEMPTS";
    /// The code expired.
    pub const CODE_EXPIRED: &str = "CODE_EXPIRED";
    /// No code is pending for this number.
    pub const NO_CODE: &str = "NO_CODE";
    /// The device description is invalid.
    pub const INVALID_DEVICE: &str = "INVALID_DEVICE";
    /// The account has its maximum number of devices.
    pub const TOO_MANY_DEVICES: &str = "TOO_MANY_DEVICES";
    /// The refresh token is unknown, expired or revoked.
    pub const INVALID_REFRESH_TOKEN: &str = "INVALID_REFRESH_TOKEN";
    /// A rotated refresh token was presented again; the session is revoked.
    pub const REFRESH_TOKEN_REUSED: &str = "REFRESH_TOKEN_REUSED";
    /// The call needs an access token and none was sent.
    pub const MISSING_TOKEN: &str = "MISSING_TOKEN";
    /// The access token is malformed or its signature does not verify.
    pub const INVALID_TOKEN: &str = "INVALID_TOKEN";
    /// The access token expired: refresh it.
    pub const TOKEN_EXPIRED: &str = "TOKEN_EXPIRED";
    /// The access token's session was signed out or revoked.
    pub const SESSION_REVOKED: &str = "SESSION_REVOKED";
    /// The method is not reachable through the gateway.
    pub const NOT_PUBLIC: &str = "NOT_PUBLIC";
    /// A gateway rate limit (per client address or per user).
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    /// A request message is larger than the gateway accepts.
    pub const MESSAGE_TOO_LARGE: &str = "MESSAGE_TOO_LARGE";
    /// A signed prekey's signature does not verify, or a prekey is malformed.
    pub const INVALID_PREKEY: &str = "INVALID_PREKEY";
    /// No such user.
    pub const NO_SUCH_USER: &str = "NO_SUCH_USER";
    /// A request lists more items (user ids, phone numbers) than the method accepts.
    pub const BATCH_TOO_LARGE: &str = "BATCH_TOO_LARGE";
    /// A send's device list does not match the directory; ErrorInfo metadata maps each user id
    /// to its current device ids, comma-separated.
    pub const STALE_DEVICES: &str = "STALE_DEVICES";
    /// A send is malformed (empty or duplicate recipient, bad ids).
    pub const INVALID_ENVELOPE: &str = "INVALID_ENVELOPE";
    /// An envelope is larger than 64 KiB.
    pub const ENVELOPE_TOO_LARGE: &str = "ENVELOPE_TOO_LARGE";
    /// A send names more recipient devices than allowed.
    pub const TOO_MANY_RECIPIENTS: &str = "TOO_MANY_RECIPIENTS";
    /// The user sends faster than allowed.
    pub const SEND_RATE: &str = "SEND_RATE";
    /// A storage backend is unreachable.
    pub const STORE_UNAVAILABLE: &str = "STORE_UNAVAILABLE";
    /// A profile name or about text is too long or holds control characters.
    pub const INVALID_PROFILE: &str = "INVALID_PROFILE";
    /// A privacy setting names an unknown visibility.
    pub const INVALID_PRIVACY: &str = "INVALID_PRIVACY";
    /// A request lists more users than the method accepts.
    pub const TOO_MANY_USERS: &str = "TOO_MANY_USERS";
    /// Presence (Redis) cannot be reached; messaging is unaffected.
    pub const PRESENCE_UNAVAILABLE: &str = "PRESENCE_UNAVAILABLE";
    /// A group request is malformed (bad name, ids or lists).
    pub const INVALID_GROUP: &str = "INVALID_GROUP";
    /// A group would have more members than allowed.
    pub const TOO_MANY_MEMBERS: &str = "TOO_MANY_MEMBERS";
    /// A user would be in more groups than allowed; metadata `user_id` names them.
    pub const TOO_MANY_GROUPS: &str = "TOO_MANY_GROUPS";
    /// The caller is not a member of the group (or there is no such group).
    pub const NOT_A_MEMBER: &str = "NOT_A_MEMBER";
    /// Only the group's admins may do this.
    pub const NOT_AN_ADMIN: &str = "NOT_AN_ADMIN";
    /// The change would leave the group without an admin.
    pub const LAST_ADMIN: &str = "LAST_ADMIN";
    /// A group send named another set of member devices than the group has; metadata
    /// `version` is the group's version.
    pub const STALE_GROUP: &str = "STALE_GROUP";
    /// A status request is malformed (bad id, empty ciphertext, bad audience).
    pub const INVALID_STATUS: &str = "INVALID_STATUS";
    /// A status ciphertext is larger than 64 KiB.
    pub const STATUS_TOO_LARGE: &str = "STATUS_TOO_LARGE";
    /// 100 statuses were posted in the last 24 hours; RetryInfo says when the next slot frees.
    pub const STATUS_LIMIT: &str = "STATUS_LIMIT";
    /// The caller has no such status.
    pub const NO_SUCH_STATUS: &str = "NO_SUCH_STATUS";
    /// A media request is malformed (unknown kind, zero size, bad blob id).
    pub const INVALID_MEDIA: &str = "INVALID_MEDIA";
    /// An upload is over its kind's cap (metadata `max_bytes`) or past its declared size.
    pub const MEDIA_TOO_LARGE: &str = "MEDIA_TOO_LARGE";
    /// The caller uploaded its bytes for the rolling 24 hours; RetryInfo says when the oldest
    /// leaves the window.
    pub const MEDIA_QUOTA: &str = "MEDIA_QUOTA";
    /// The caller has the most unfinished uploads allowed.
    pub const TOO_MANY_UPLOADS: &str = "TOO_MANY_UPLOADS";
    /// An upload resumed at another offset than its committed bytes (metadata
    /// `committed_bytes`).
    pub const UPLOAD_OFFSET: &str = "UPLOAD_OFFSET";
    /// A direct upload's PUT has not arrived yet.
    pub const UPLOAD_INCOMPLETE: &str = "UPLOAD_INCOMPLETE";
    /// There is no such blob (or upload) for the caller.
    pub const NO_SUCH_BLOB: &str = "NO_SUCH_BLOB";
    /// The capability presented does not open the blob.
    pub const NO_CAPABILITY: &str = "NO_CAPABILITY";
    /// The blob store has no URLs of its own (a folder): download through the service.
    pub const NO_DIRECT_URLS: &str = "NO_DIRECT_URLS";
    /// A profile photo is not a JPEG, PNG or WebP image, is damaged, or has too many pixels.
    pub const INVALID_PHOTO: &str = "INVALID_PHOTO";
    /// The user has no profile photo the caller may see.
    pub const NO_SUCH_PHOTO: &str = "NO_SUCH_PHOTO";
    /// Concurrent changes of one group kept conflicting; retry shortly.
    pub const GROUP_BUSY: &str = "GROUP_BUSY";
    /// An unexpected server-side failure (details are in the server's log).
    pub const INTERNAL: &str = "INTERNAL";
    /// No upstream for the service answered.
    pub const UPSTREAM_UNAVAILABLE: &str = "UPSTREAM_UNAVAILABLE";
    /// A call to an internal role without a valid internal client certificate.
    pub const INTERNAL_CALLER: &str = "INTERNAL_CALLER";
    /// A buffered request did not arrive within the gateway's read deadline.
    pub const REQUEST_TOO_SLOW: &str = "REQUEST_TOO_SLOW";
    /// A unary call carried more than one request message.
    pub const TOO_MANY_MESSAGES: &str = "TOO_MANY_MESSAGES";
    /// The gateway holds as many buffered requests as it may; retry shortly.
    pub const GATEWAY_BUSY: &str = "GATEWAY_BUSY";
}

/// A status with an `ErrorInfo` of `reason`.
pub fn status(code: Code, reason: &str, message: impl Into<String>) -> Status {
    status_with_metadata(code, reason, message, HashMap::new())
}

/// A status with an `ErrorInfo` of `reason` and `metadata`.
pub fn status_with_metadata(
    code: Code,
    reason: &str,
    message: impl Into<String>,
    metadata: HashMap<String, String>,
) -> Status {
    let details = ErrorDetails::with_error_info(reason, DOMAIN, metadata);
    Status::with_error_details(code, message, details)
}

/// RESOURCE_EXHAUSTED with an `ErrorInfo` of `reason` and a `RetryInfo` of `retry_after`.
pub fn resource_exhausted(
    reason: &str,
    message: impl Into<String>,
    retry_after: Duration,
) -> Status {
    let mut details = ErrorDetails::with_error_info(reason, DOMAIN, HashMap::new());
    details.set_retry_info(Some(retry_after));
    Status::with_error_details(Code::ResourceExhausted, message, details)
}

/// The `ErrorInfo.reason` of a Juntos status, if it has one.
pub fn reason_of(status: &Status) -> Option<String> {
    status
        .get_details_error_info()
        .filter(|i| i.domain == DOMAIN)
        .map(|i| i.reason)
}

/// One `ErrorInfo.metadata` value of a Juntos status.
pub fn metadata_of(status: &Status, key: &str) -> Option<String> {
    status
        .get_details_error_info()
        .and_then(|mut i| i.metadata.remove(key))
}

/// The `RetryInfo` delay of a status, if it has one.
pub fn retry_after_of(status: &Status) -> Option<Duration> {
    status.get_details_retry_info().and_then(|r| r.retry_delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_round_trip() {
        let s = resource_exhausted(reason::RESEND_TOO_SOON, "wait", Duration::from_secs(30));
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(reason_of(&s).as_deref(), Some(reason::RESEND_TOO_SOON));
        assert_eq!(retry_after_of(&s), Some(Duration::from_secs(30)));

        let meta = HashMap::from([("attempts_left".to_owned(), "3".to_owned())]);
        let s = status_with_metadata(Code::InvalidArgument, reason::WRONG_CODE, "wrong", meta);
        assert_eq!(metadata_of(&s, "attempts_left").as_deref(), Some("3"));
        assert_eq!(retry_after_of(&s), None);
    }
}
