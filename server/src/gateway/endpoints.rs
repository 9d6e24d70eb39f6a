//! Upstream endpoint lists: comma-separated `https://host:port` (one fixed endpoint) or
//! `dns:///name:port` (every address the name resolves to, re-resolved periodically, as a
//! Kubernetes headless Service publishes its ready pods). Every internal call is mutual TLS, so
//! `http://` is refused rather than quietly upgraded.

use http::Uri;

/// Where a pool's endpoints come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// One fixed endpoint.
    Static(Uri),
    /// Every address `host` resolves to, each an endpoint on `port`.
    Dns { host: String, port: u16 },
}

impl Source {
    /// One URI for clients that cannot follow a changing address set (a tonic channel resolves
    /// the name once per connection).
    pub fn uri(&self) -> Uri {
        match self {
            Self::Static(uri) => uri.clone(),
            Self::Dns { host, port } => format!("https://{}", host_port(host, *port))
                .parse()
                .expect("a validated host and port form a URI"),
        }
    }
}

/// `host:port`, with brackets around an IPv6 literal.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Parses a comma-separated endpoint list; at least one endpoint.
pub fn parse_endpoints(list: &str) -> Result<Vec<Source>, String> {
    let sources = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse_one(s).map_err(|why| format!("bad endpoint {s:?}: {why}")))
        .collect::<Result<Vec<_>, _>>()?;
    if sources.is_empty() {
        return Err(
            "no endpoints given (expected https://host:port or dns:///name:port)".to_owned(),
        );
    }
    Ok(sources)
}

fn parse_one(s: &str) -> Result<Source, String> {
    if let Some(rest) = s.strip_prefix("dns:") {
        let target = rest.strip_prefix("///").ok_or(
            "expected dns:///name:port (three slashes; a DNS server authority is not supported)",
        )?;
        let (host, port) = target
            .rsplit_once(':')
            .ok_or("expected dns:///name:port (the port is required)")?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() || host.contains(['/', '[', ']', ' ']) {
            return Err("expected dns:///name:port (bad name)".to_owned());
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or("expected dns:///name:port (bad port)")?;
        return Ok(Source::Dns {
            host: host.to_owned(),
            port,
        });
    }
    let uri: Uri = s.parse().map_err(|e| format!("{e}"))?;
    match (uri.scheme_str(), uri.authority(), uri.path()) {
        (Some("https"), Some(_), "/" | "") => Ok(Source::Static(uri)),
        (Some("http"), ..) => Err(
            "internal calls always use mutual TLS: write https://host:port or dns:///name:port"
                .to_owned(),
        ),
        _ => Err("expected https://host:port or dns:///name:port".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dns_endpoints_parse() {
        let parsed = parse_endpoints(" https://a:1, dns:///chat.juntos.svc:7703 ,dns:///[::1]:9,")
            .expect("ok");
        assert_eq!(
            parsed,
            [
                Source::Static("https://a:1".parse().expect("uri")),
                Source::Dns {
                    host: "chat.juntos.svc".to_owned(),
                    port: 7703
                },
                Source::Dns {
                    host: "::1".to_owned(),
                    port: 9
                },
            ]
        );
        assert_eq!(parsed[1].uri().to_string(), "https://chat.juntos.svc:7703/");
        assert_eq!(parsed[2].uri().to_string(), "https://[::1]:9/");
    }

    #[test]
    fn bad_endpoints_say_what_was_expected() {
        for (list, says) in [
            ("", "no endpoints given"),
            (" , ", "no endpoints given"),
            ("a:1", "expected https://host:port"),
            ("http://a:1", "always use mutual TLS"),
            ("https://a:1/path", "expected https://host:port"),
            ("dns://8.8.8.8/name:1", "three slashes"),
            ("dns:///name", "the port is required"),
            ("dns:///name:0", "bad port"),
            ("dns:///name:x", "bad port"),
            ("dns:///:80", "bad name"),
            ("https://a:1,dns:name:1", "\"dns:name:1\""),
        ] {
            let err = parse_endpoints(list).expect_err(list);
            assert!(err.contains(says), "{list:?}: {err}");
        }
    }
}
