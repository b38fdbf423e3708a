//! Kafka listeners: `--listeners NAME://HOST:PORT,...`, `--advertised-listeners` and
//! `--listener-security-protocol-map NAME:PROTOCOL,...`, with Kafka's meaning; `--listen` and
//! `--advertised-listener` are the one-PLAINTEXT-listener shorthand.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

use super::{invalid, ConfigError};

/// How a listener's connections are secured (Kafka's `security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// Neither TLS nor SASL.
    Plaintext,
    /// TLS, principal from the client certificate (mTLS) or `User:ANONYMOUS`.
    Ssl,
    /// SASL over plain TCP.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's name of the protocol.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    /// True when connections start with a TLS handshake.
    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// True when clients must authenticate with SASL before any other request.
    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Plaintext, Self::Ssl, Self::SaslPlaintext, Self::SaslSsl]
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
    }
}

/// One Kafka listener: where it binds, what Metadata advertises for it, and its protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Listener name (upper case, as Kafka compares them).
    pub name: String,
    /// Bind address.
    pub bind: SocketAddr,
    /// Advertised host.
    pub advertised_host: String,
    /// Advertised port.
    pub advertised_port: u16,
    /// Security protocol.
    pub protocol: SecurityProtocol,
}

impl Listener {
    /// The advertised `host:port` (IPv6 hosts bracketed).
    pub fn advertised(&self) -> String {
        join_host_port(&self.advertised_host, self.advertised_port)
    }
}

/// The raw listener options, each from flag, env or file.
#[derive(Debug, Default)]
pub(super) struct ListenerFlags {
    pub(super) listen: Option<String>,
    pub(super) advertised_listener: Option<String>,
    pub(super) listeners: Option<String>,
    pub(super) advertised_listeners: Option<String>,
    pub(super) protocol_map: Option<String>,
}

/// Builds the listeners, first one first (it is the address kept for members that know only
/// one).
pub(super) fn build(f: ListenerFlags) -> Result<Vec<Listener>, ConfigError> {
    let Some(spec) = f.listeners else {
        if f.advertised_listeners.is_some() || f.protocol_map.is_some() {
            return Err(invalid(
                "advertised-listeners",
                "--advertised-listeners and --listener-security-protocol-map need --listeners".into(),
            ));
        }
        return shorthand(f.listen, f.advertised_listener).map(|l| vec![l]);
    };
    if f.listen.is_some() || f.advertised_listener.is_some() {
        return Err(invalid(
            "listeners",
            "--listen and --advertised-listener are the one-listener shorthand of --listeners; \
             give either, not both (use --advertised-listeners with --listeners)"
                .into(),
        ));
    }
    let map = parse_protocol_map(f.protocol_map.as_deref().unwrap_or(""))?;
    let mut listeners: Vec<Listener> = Vec::new();
    for (name, host, port) in parse_urls("listeners", &spec)? {
        if listeners.iter().any(|l| l.name == name) {
            return Err(invalid("listeners", format!("listener {name} is named twice")));
        }
        let protocol = match map.get(&name) {
            Some(p) => *p,
            None => SecurityProtocol::parse(&name).ok_or_else(|| {
                invalid(
                    "listener-security-protocol-map",
                    format!("listener {name} has no security protocol: add {name}:PLAINTEXT (or SSL, SASL_PLAINTEXT, SASL_SSL)"),
                )
            })?,
        };
        let bind =
            resolve(&host, port).map_err(|e| invalid("listeners", format!("{name}://{host}:{port}: {e}")))?;
        if bind.port() != 0 && listeners.iter().any(|l| l.bind.port() == bind.port()) {
            return Err(invalid(
                "listeners",
                format!("port {} is used by two listeners", bind.port()),
            ));
        }
        let (advertised_host, advertised_port) = default_advertised(bind);
        listeners.push(Listener {
            name,
            bind,
            advertised_host,
            advertised_port,
            protocol,
        });
    }
    if listeners.is_empty() {
        return Err(invalid("listeners", "no listener given".into()));
    }
    if let Some(unknown) = map.keys().find(|n| !listeners.iter().any(|l| &l.name == *n)) {
        return Err(invalid(
            "listener-security-protocol-map",
            format!("{unknown} is not a listener of --listeners"),
        ));
    }
    for (name, host, port) in parse_urls(
        "advertised-listeners",
        f.advertised_listeners.as_deref().unwrap_or(""),
    )? {
        let l = listeners.iter_mut().find(|l| l.name == name).ok_or_else(|| {
            invalid(
                "advertised-listeners",
                format!("{name} is not a listener of --listeners"),
            )
        })?;
        if host.is_empty() || port == 0 {
            return Err(invalid(
                "advertised-listeners",
                format!("{name}://{host}:{port} needs a host and a port"),
            ));
        }
        l.advertised_host = host;
        l.advertised_port = port;
    }
    Ok(listeners)
}

/// `--listen` / `--advertised-listener`: one PLAINTEXT listener.
fn shorthand(listen: Option<String>, advertised: Option<String>) -> Result<Listener, ConfigError> {
    let listen_s = listen.unwrap_or_else(|| "0.0.0.0:9092".into());
    let bind: SocketAddr = listen_s
        .parse()
        .map_err(|e| invalid("listen", format!("{listen_s:?}: {e}")))?;
    let (advertised_host, advertised_port) = match advertised {
        None => default_advertised(bind),
        Some(a) => split_host_port(&a)
            .filter(|(h, p)| !h.is_empty() && *p != 0)
            .ok_or_else(|| invalid("advertised-listener", format!("{a:?} is not HOST:PORT")))?,
    };
    Ok(Listener {
        name: "PLAINTEXT".into(),
        bind,
        advertised_host,
        advertised_port,
        protocol: SecurityProtocol::Plaintext,
    })
}

/// The advertised address of a bind address: itself, or `localhost` for all interfaces.
fn default_advertised(bind: SocketAddr) -> (String, u16) {
    if bind.ip().is_unspecified() {
        ("localhost".into(), bind.port())
    } else {
        (bind.ip().to_string(), bind.port())
    }
}

/// Parses `NAME://HOST:PORT,...` (HOST may be empty, or a bracketed IPv6 address).
fn parse_urls(key: &'static str, spec: &str) -> Result<Vec<(String, String, u16)>, ConfigError> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || invalid(key, format!("{item:?} is not NAME://HOST:PORT"));
        let (name, addr) = item.split_once("://").ok_or_else(bad)?;
        let name = name.trim().to_ascii_uppercase();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad());
        }
        let (host, port) = split_host_port(addr).ok_or_else(bad)?;
        out.push((name, host, port));
    }
    Ok(out)
}

fn parse_protocol_map(spec: &str) -> Result<BTreeMap<String, SecurityProtocol>, ConfigError> {
    let key = "listener-security-protocol-map";
    let mut map = BTreeMap::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, proto) = item
            .split_once(':')
            .ok_or_else(|| invalid(key, format!("{item:?} is not NAME:PROTOCOL")))?;
        let protocol = SecurityProtocol::parse(proto).ok_or_else(|| {
            invalid(
                key,
                format!("{proto:?} is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
            )
        })?;
        if map.insert(name.trim().to_ascii_uppercase(), protocol).is_some() {
            return Err(invalid(key, format!("{name} is mapped twice")));
        }
    }
    Ok(map)
}

/// Splits `host:port`; the host may be empty or a bracketed IPv6 address.
fn split_host_port(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.trim().rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    Some((host.trim_matches(['[', ']']).to_string(), port))
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The bind address of `host:port`: all interfaces for an empty host, else the address or the
/// first one the name resolves to.
fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if host.is_empty() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(listeners: &str, advertised: Option<&str>, map: Option<&str>) -> ListenerFlags {
        ListenerFlags {
            listeners: Some(listeners.into()),
            advertised_listeners: advertised.map(Into::into),
            protocol_map: map.map(Into::into),
            ..ListenerFlags::default()
        }
    }

    #[test]
    fn listeners_advertised_and_protocols_as_in_kafka() {
        let l = build(flags(
            "PLAINTEXT://127.0.0.1:9092,SSL://:9093,internal://0.0.0.0:9094",
            Some("SSL://gw-0.example.com:19093"),
            Some("INTERNAL:SASL_SSL"),
        ))
        .unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(
            (l[0].name.as_str(), l[0].protocol, l[0].advertised()),
            ("PLAINTEXT", SecurityProtocol::Plaintext, "127.0.0.1:9092".into())
        );
        assert_eq!(
            (l[1].protocol, l[1].bind.to_string(), l[1].advertised()),
            (
                SecurityProtocol::Ssl,
                "0.0.0.0:9093".into(),
                "gw-0.example.com:19093".into()
            )
        );
        assert_eq!(
            (l[2].name.as_str(), l[2].protocol, l[2].advertised()),
            ("INTERNAL", SecurityProtocol::SaslSsl, "localhost:9094".into())
        );
        assert!(l[2].protocol.tls() && l[2].protocol.sasl());
    }

    #[test]
    fn the_shorthand_is_one_plaintext_listener() {
        let l = build(ListenerFlags {
            listen: Some("0.0.0.0:9000".into()),
            advertised_listener: Some("[::1]:9001".into()),
            ..ListenerFlags::default()
        })
        .unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(
            (l[0].name.as_str(), l[0].protocol),
            ("PLAINTEXT", SecurityProtocol::Plaintext)
        );
        assert_eq!(l[0].advertised(), "[::1]:9001");
    }

    #[test]
    fn bad_listener_options_name_their_key() {
        for (f, key) in [
            (flags("FOO://:1", None, None), "listener-security-protocol-map"),
            (flags("PLAINTEXT://:1,PLAINTEXT://:2", None, None), "listeners"),
            (flags("PLAINTEXT://:1,SSL://:1", None, None), "listeners"),
            (flags("PLAINTEXT:1", None, None), "listeners"),
            (
                flags("PLAINTEXT://:1", Some("SSL://h:2"), None),
                "advertised-listeners",
            ),
            (
                flags("PLAINTEXT://:1", Some("PLAINTEXT://:2"), None),
                "advertised-listeners",
            ),
            (
                flags("A://:1", None, Some("A:TLS")),
                "listener-security-protocol-map",
            ),
            (
                flags("A://:1", None, Some("A:SSL,B:SSL")),
                "listener-security-protocol-map",
            ),
            (
                ListenerFlags {
                    listen: Some("0.0.0.0:1".into()),
                    ..flags("PLAINTEXT://:1", None, None)
                },
                "listeners",
            ),
            (
                ListenerFlags {
                    advertised_listeners: Some("X://h:1".into()),
                    ..ListenerFlags::default()
                },
                "advertised-listeners",
            ),
        ] {
            let e = build(f).unwrap_err().to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }
}
