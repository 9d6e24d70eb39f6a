//! Request metadata between the gateway and the services behind it.
//!
//! The gateway strips every client-sent header starting with [`PREFIX`] (and the usual
//! forwarding headers), verifies the access token, and then sets these headers from what it
//! verified. Services trust them because only the gateway can call the methods that read them:
//! every role accepts calls only from connections that present an internal client certificate,
//! and only the gateway's certificate may call public methods (`juntos-server`'s `tls::internal`).
//! They never trust a field a client put in a request body for identity.

/// Every header with this prefix is reserved for the gateway.
pub const PREFIX: &str = "x-juntos-";
/// The verified user id of the caller.
pub const USER_ID: &str = "x-juntos-user-id";
/// The verified device id of the caller.
pub const DEVICE_ID: &str = "x-juntos-device-id";
/// The verified session id (refresh-token family) of the caller's access token.
pub const SESSION_ID: &str = "x-juntos-session-id";
/// The client's IP address as the gateway saw it.
pub const CLIENT_IP: &str = "x-juntos-client-ip";

/// Client-sent headers the gateway removes before forwarding, besides everything under [`PREFIX`].
pub const STRIPPED_FORWARDING_HEADERS: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

/// The caller of an authenticated RPC, as the gateway verified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub device_id: String,
    pub session_id: String,
}

impl Caller {
    /// Reads the verified caller from a request's metadata; `UNAUTHENTICATED` when absent (a
    /// call that did not come through the gateway's token check).
    pub fn from_metadata(metadata: &tonic::metadata::MetadataMap) -> Result<Self, tonic::Status> {
        let get = |name: &str| {
            metadata
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| tonic::Status::unauthenticated("missing caller identity"))
        };
        Ok(Self {
            user_id: get(USER_ID)?,
            device_id: get(DEVICE_ID)?,
            session_id: get(SESSION_ID)?,
        })
    }
}

/// The client's IP address: the gateway's header when present (every public call goes through
/// the gateway, the only role allowed to make them), else the peer address of the connection
/// where the transport reports one (a service called in process, in tests).
pub fn client_ip<T>(request: &tonic::Request<T>) -> Option<String> {
    request
        .metadata()
        .get(CLIENT_IP)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.remote_addr().map(|a| a.ip().to_string()))
}

/// The address a per-client rate limit counts: an IPv4 address as it is, an IPv6 address by its
/// /64 network (one subscriber usually holds a whole /64, so counting single IPv6 addresses
/// would let anyone rotate around a limit).
pub fn rate_limit_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V4(_) => ip,
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & (u128::MAX << 64);
                std::net::IpAddr::V6(std::net::Ipv6Addr::from(network))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_by_slash_64() {
        let a: std::net::IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: std::net::IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        let c: std::net::IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(rate_limit_key(a), rate_limit_key(b));
        assert_ne!(rate_limit_key(a), rate_limit_key(c));
        let v4: std::net::IpAddr = "203.0.113.7".parse().expect("ip");
        assert_eq!(rate_limit_key(v4), v4);
        let mapped: std::net::IpAddr = "::ffff:203.0.113.7".parse().expect("ip");
        assert_eq!(rate_limit_key(mapped), v4);
    }
}
