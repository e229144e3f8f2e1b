//! Every setting of `serve`, with its environment variable, default and check.
//! clap reads flags, then the environment (after `.env` is loaded), then the
//! default; a bad value stops the program with a message naming the variable.

use clap::Args;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address (IP or host name) to listen on.
    #[arg(long, env = "IFLOW_HOST", default_value = "0.0.0.0", value_parser = parse_with("IFLOW_HOST", host))]
    pub host: String,

    /// Port to listen on (0 picks a free port and logs it).
    #[arg(long, env = "IFLOW_PORT", default_value = "28000", value_parser = parse_with("IFLOW_PORT", |s| s.parse::<u16>().map_err(|e| e.to_string())))]
    pub port: u16,

    /// HTTP worker threads (0 = one per CPU core).
    #[arg(long, env = "IFLOW_WORKERS", default_value = "0", value_parser = parse_with("IFLOW_WORKERS", |s| int_in(s, 0, 1024)))]
    pub workers: usize,

    /// Upstream calls in flight per account at once.
    #[arg(long, env = "IFLOW_CONCURRENCY", default_value = "1", value_parser = parse_with("IFLOW_CONCURRENCY", |s| int_in(s, 1, 10_000)))]
    pub concurrency: usize,

    /// Requests that may wait for a busy account before new ones get 429.
    #[arg(long, env = "IFLOW_QUEUE_SIZE", default_value = "64", value_parser = parse_with("IFLOW_QUEUE_SIZE", |s| int_in(s, 0, 1_000_000)))]
    pub queue_size: usize,

    /// Longest wait for a free slot before the request gets 429.
    #[arg(long, env = "IFLOW_QUEUE_TIMEOUT", default_value = "60s", value_parser = parse_with("IFLOW_QUEUE_TIMEOUT", duration))]
    pub queue_timeout: Duration,

    /// Requests that may wait for a free account in the pool (gateway keys).
    #[arg(long, env = "IFLOW_POOL_QUEUE_SIZE", default_value = "256", value_parser = parse_with("IFLOW_POOL_QUEUE_SIZE", |s| int_in(s, 0, 1_000_000)))]
    pub pool_queue_size: usize,

    /// Accept only gateway keys; account uuids no longer work as bearer tokens.
    #[arg(long, env = "IFLOW_REQUIRE_KEY", default_value = "false", value_parser = parse_with("IFLOW_REQUIRE_KEY", boolean), action = clap::ArgAction::Set)]
    pub require_key: bool,

    /// Accounts a pool request may try before giving up (failover).
    #[arg(long, env = "IFLOW_FAILOVER_ATTEMPTS", default_value = "3", value_parser = parse_with("IFLOW_FAILOVER_ATTEMPTS", |s| int_in(s, 1, 100)))]
    pub failover_attempts: usize,

    /// No failover starts, and a failover waits in the pool queue no longer,
    /// once the request is this old.
    #[arg(long, env = "IFLOW_FAILOVER_DEADLINE", default_value = "60s", value_parser = parse_with("IFLOW_FAILOVER_DEADLINE", duration))]
    pub failover_deadline: Duration,

    /// First rest of an account after an upstream failure; doubles per failure.
    #[arg(long, env = "IFLOW_COOLDOWN_BASE", default_value = "5s", value_parser = parse_with("IFLOW_COOLDOWN_BASE", duration))]
    pub cooldown_base: Duration,

    /// Longest rest, whatever the upstream's Retry-After says.
    #[arg(long, env = "IFLOW_COOLDOWN_MAX", default_value = "5m", value_parser = parse_with("IFLOW_COOLDOWN_MAX", cooldown_max))]
    pub cooldown_max: Duration,

    /// Keep a conversation (`x-session-id` header, `user` field or Anthropic `metadata.user_id`) on one account.
    #[arg(long, env = "IFLOW_STICKY_SESSIONS", default_value = "true", value_parser = parse_with("IFLOW_STICKY_SESSIONS", boolean), action = clap::ArgAction::Set)]
    pub sticky_sessions: bool,

    /// Which upstream model an Anthropic client's model name means:
    /// `pattern=model,…`, a trailing `*` matches a prefix, first match wins.
    #[arg(long, env = "IFLOW_ANTHROPIC_MODEL_MAP", default_value = crate::anthropic::models::DEFAULT_MAP, value_parser = parse_with("IFLOW_ANTHROPIC_MODEL_MAP", crate::anthropic::models::ModelMap::parse))]
    pub anthropic_model_map: crate::anthropic::models::ModelMap,

    #[command(flatten)]
    pub telemetry: crate::telemetry::TelemetrySettings,

    /// Serve `/metrics` without an admin key.
    #[arg(long, env = "IFLOW_METRICS_PUBLIC", default_value = "false", value_parser = parse_with("IFLOW_METRICS_PUBLIC", boolean), action = clap::ArgAction::Set)]
    pub metrics_public: bool,

    /// Browser origins allowed to call the API (CORS): comma-separated
    /// `scheme://host[:port]`, or `*` for any. Empty: no CORS headers.
    #[arg(long, env = "IFLOW_CORS_ORIGINS", default_value = "", value_parser = parse_with("IFLOW_CORS_ORIGINS", cors_origins))]
    pub cors_origins: CorsOrigins,

    /// Pass `reasoning_content` through (true) or fold it into `content` (false).
    #[arg(long, env = "IFLOW_PRESERVE_REASONING_CONTENT", default_value = "true", value_parser = parse_with("IFLOW_PRESERVE_REASONING_CONTENT", boolean), action = clap::ArgAction::Set)]
    pub preserve_reasoning_content: bool,

    /// TCP (and TLS handshake) timeout for upstream connections.
    #[arg(long, env = "IFLOW_UPSTREAM_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_with("IFLOW_UPSTREAM_CONNECT_TIMEOUT", duration))]
    pub upstream_connect_timeout: Duration,

    /// Longest wait for the upstream's reply head; a non-stream reply comes
    /// only when the model is done, so this is minutes, not seconds.
    #[arg(long, env = "IFLOW_UPSTREAM_TIMEOUT", default_value = "10m", value_parser = parse_with("IFLOW_UPSTREAM_TIMEOUT", duration))]
    pub upstream_timeout: Duration,

    /// Longest silence of an upstream stream before the stream is ended (a
    /// client that stops reading is covered by the client stall timeout).
    #[arg(long, env = "IFLOW_STREAM_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_with("IFLOW_STREAM_IDLE_TIMEOUT", duration))]
    pub stream_idle_timeout: Duration,

    /// SSE comment sent to the client while the upstream is silent.
    #[arg(long, env = "IFLOW_SSE_KEEPALIVE", default_value = "15s", value_parser = parse_with("IFLOW_SSE_KEEPALIVE", duration))]
    pub sse_keepalive: Duration,

    /// Largest accepted request body (bytes; KiB/MiB suffixes allowed).
    #[arg(long, env = "IFLOW_MAX_BODY_BYTES", default_value = "32MiB", value_parser = parse_with("IFLOW_MAX_BODY_BYTES", byte_size))]
    pub max_body_bytes: usize,

    /// Largest accepted non-stream upstream reply, and longest stream line.
    #[arg(long, env = "IFLOW_MAX_RESPONSE_BYTES", default_value = "64MiB", value_parser = parse_with("IFLOW_MAX_RESPONSE_BYTES", byte_size))]
    pub max_response_bytes: usize,

    /// Time a client has to send its request head.
    #[arg(long, env = "IFLOW_CLIENT_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_with("IFLOW_CLIENT_HEADER_TIMEOUT", duration))]
    pub client_header_timeout: Duration,

    /// Time a client has to send its whole request body.
    #[arg(long, env = "IFLOW_CLIENT_BODY_TIMEOUT", default_value = "60s", value_parser = parse_with("IFLOW_CLIENT_BODY_TIMEOUT", duration))]
    pub client_body_timeout: Duration,

    /// How long an idle client connection is kept open.
    #[arg(long, env = "IFLOW_CLIENT_KEEPALIVE", default_value = "75s", value_parser = parse_with("IFLOW_CLIENT_KEEPALIVE", duration))]
    pub client_keepalive: Duration,

    /// How long a client may leave sent data unacknowledged, or keep its
    /// receive window shut (it stopped reading), before the connection is
    /// dropped (TCP_USER_TIMEOUT).
    #[arg(long, env = "IFLOW_CLIENT_STALL_TIMEOUT", default_value = "60s", value_parser = parse_with("IFLOW_CLIENT_STALL_TIMEOUT", duration))]
    pub client_stall_timeout: Duration,

    /// On SIGINT/SIGTERM, how long in-flight requests may take to finish.
    #[arg(long, env = "IFLOW_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_with("IFLOW_SHUTDOWN_TIMEOUT", duration))]
    pub shutdown_timeout: Duration,

    /// How often in-memory usage counters are written to the account files and usage/ledger.json.
    #[arg(long, env = "IFLOW_USAGE_FLUSH_INTERVAL", default_value = "10s", value_parser = parse_with("IFLOW_USAGE_FLUSH_INTERVAL", duration))]
    pub usage_flush_interval: Duration,

    /// How often the account directory is re-read for changes made by the CLI.
    #[arg(long, env = "IFLOW_STORE_RESCAN_INTERVAL", default_value = "5s", value_parser = parse_with("IFLOW_STORE_RESCAN_INTERVAL", duration))]
    pub store_rescan_interval: Duration,
}

/// Which browser origins may call the API (`IFLOW_CORS_ORIGINS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers: browsers may not call the API from a web page.
    Off,
    /// Any origin (`*`).
    Any,
    /// These origins, as `scheme://host[:port]`.
    List(Vec<String>),
}

fn cors_origins(s: &str) -> Result<CorsOrigins, String> {
    let parts: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    match parts.as_slice() {
        [] => return Ok(CorsOrigins::Off),
        ["*"] => return Ok(CorsOrigins::Any),
        _ => {}
    }
    let origin = |p: &str| -> Result<String, String> {
        let url = url::Url::parse(p).map_err(|e| format!("{p:?} is not an origin ({e})"))?;
        let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
        if !matches!(url.scheme(), "http" | "https") || !bare || !url.username().is_empty() {
            return Err(format!(
                "{p:?} is not an origin: give scheme://host[:port], e.g. https://chat.example.com"
            ));
        }
        Ok(url.origin().ascii_serialization())
    };
    if parts.contains(&"*") {
        return Err("`*` allows every origin and cannot be combined with others".into());
    }
    parts
        .into_iter()
        .map(origin)
        .collect::<Result<_, _>>()
        .map(CorsOrigins::List)
}

/// An alias, not `Option<ProxyUrl>` written out, so clap treats the field as
/// a plain value whose empty default means "no proxy".
pub type MaybeProxy = Option<ProxyUrl>;

/// A validated upstream proxy address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    pub scheme: ProxyScheme,
    pub host: String,
    pub port: u16,
    /// `user:password` for proxies that need them.
    pub credentials: Option<(String, crate::secret::Secret)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyScheme {
    Http,
    Socks5,
}

/// Wraps a parser so its error names the environment variable.
pub fn parse_with<T, F>(
    var: &'static str,
    parse: F,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    F: Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static,
{
    move |raw| parse(raw.trim()).map_err(|e| format!("{var}: {e}"))
}

fn int_in(s: &str, min: usize, max: usize) -> Result<usize, String> {
    let v: usize = s
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number"))?;
    if v < min || v > max {
        return Err(format!("{v} is outside {min}..={max}"));
    }
    Ok(v)
}

/// `30s`, `5m`, `24h`, `250ms`, or a bare number of seconds.
pub fn duration(s: &str) -> Result<Duration, String> {
    let d = match s.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s)
            .map_err(|e| format!("{s:?} is not a duration like 30s or 5m ({e})"))?,
    };
    if d.is_zero() {
        return Err("must be longer than 0".into());
    }
    // Durations end up added to clocks; keep them far from any overflow.
    // A year as the parser counts it (`1y` is 365.25 days), so `10y` itself
    // is allowed.
    const TEN_YEARS: Duration = Duration::from_secs(10 * 31_557_600);
    if d > TEN_YEARS {
        return Err("must be at most 10 years".into());
    }
    Ok(d)
}

/// Longest cooldown: a duration of at most one day, so that no account
/// rests for days whatever an upstream's `Retry-After` says.
pub const COOLDOWN_CEILING: Duration = Duration::from_secs(24 * 3600);

fn cooldown_max(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d > COOLDOWN_CEILING {
        return Err("must be at most 24h".into());
    }
    Ok(d)
}

/// `true/false`, `1/0`, `yes/no`, `on/off`.
pub fn boolean(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{s:?} is not true or false")),
    }
}

/// A byte count: `1048576`, `512KiB`, `32MiB`, `1GiB` (also KB/MB/GB, as powers of 1000).
pub fn byte_size(s: &str) -> Result<usize, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 1048576 or 32MiB"))?;
    let mult: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown size unit {other:?}")),
    };
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if v == 0 {
        return Err("must be larger than 0".into());
    }
    Ok(v)
}

/// An IP address or a host name (labels of letters, digits and inner
/// hyphens, joined by dots).
fn host(s: &str) -> Result<String, String> {
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let ok = s.parse::<std::net::IpAddr>().is_ok()
        || (s.len() <= 253 && s.strip_suffix('.').unwrap_or(s).split('.').all(label));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not an IP address or host name"))
    }
}

/// A gateway key's name: shown in tables, so one line of printable text.
pub fn key_name(s: &str) -> Result<String, String> {
    if s.chars().any(char::is_control) {
        return Err("a key name cannot hold control characters (a line break, a tab)".into());
    }
    if s.chars().count() > 100 {
        return Err("a key name is at most 100 characters".into());
    }
    Ok(s.to_string())
}

/// An absolute http(s) URL.
pub fn http_url(s: &str) -> Result<String, String> {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Ok(s.to_string())
        }
        _ => Err(format!("{s:?} is not an http(s) URL")),
    }
}

/// Empty means "no proxy". Errors never repeat the password.
pub fn proxy_url(s: &str) -> Result<Option<ProxyUrl>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let url =
        url::Url::parse(s).map_err(|e| format!("{:?} is not a URL ({e})", without_password(s)))?;
    let scheme = match url.scheme() {
        "http" => ProxyScheme::Http,
        "socks5" | "socks5h" => ProxyScheme::Socks5,
        other => {
            return Err(format!(
                "proxy scheme {other:?} is not supported (http, socks5)"
            ));
        }
    };
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{:?}: a proxy address is scheme://[user:password@]host[:port], without a path or query",
            without_password(s)
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("{:?} has no host", without_password(s)))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let port = url.port_or_known_default().unwrap_or(match scheme {
        ProxyScheme::Http => 80,
        ProxyScheme::Socks5 => 1080,
    });
    let credentials = (!url.username().is_empty()).then(|| {
        // Percent-decoding only: in a URL's user and password `+` is a plus
        // (form decoding would make it a space).
        let decode = |v: &str| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        };
        (
            decode(url.username()),
            crate::secret::Secret::new(decode(url.password().unwrap_or_default())),
        )
    });
    Ok(Some(ProxyUrl {
        scheme,
        host,
        port,
        credentials,
    }))
}

/// A proxy address as it may be shown: the password, if any, replaced.
/// Works on text that is not a valid URL too, since it is used to say why.
fn without_password(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_string();
    };
    // The last `@` anywhere: a password with an unencoded `/`, `?` or `#` is
    // exactly what fails to parse, and a proxy address has no path in which
    // an `@` could be meant (masking too much is harmless here).
    let Some(at) = rest.rfind('@') else {
        return s.to_string();
    };
    let user = rest[..at]
        .split_once(':')
        .map_or(&rest[..at], |(user, _)| user);
    format!("{scheme}://{user}:***@{}", &rest[at + 1..])
}

/// clap's parser for `--upstream-proxy`: clap's own message for a bad value
/// quotes the value, which may hold the proxy's password.
#[derive(Clone)]
pub struct ProxyParser;

impl clap::builder::TypedValueParser for ProxyParser {
    type Value = MaybeProxy;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<MaybeProxy, clap::Error> {
        let text = value.to_str().ok_or_else(|| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidUtf8,
                "IFLOW_UPSTREAM_PROXY: the value is not valid UTF-8\n",
            )
            .with_cmd(cmd)
        })?;
        proxy_url(text.trim()).map_err(|e| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("IFLOW_UPSTREAM_PROXY: {e}\n"),
            )
            .with_cmd(cmd)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_sizes_and_booleans() {
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(duration("45"), Ok(Duration::from_secs(45)));
        assert!(duration("soon").is_err());
        assert!(duration("0s").is_err());
        // The documented ceiling is itself allowed, in any unit.
        for ten_years in ["10y", "3652d", "87600h"] {
            assert!(duration(ten_years).is_ok(), "{ten_years}");
        }
        assert!(duration("11y").is_err());
        assert!(duration("3653d").is_err());
        assert_eq!(byte_size("32MiB"), Ok(32 << 20));
        assert_eq!(byte_size("1000"), Ok(1000));
        assert!(byte_size("0").is_err());
        assert!(byte_size("12XB").is_err());
        assert_eq!(boolean("FALSE"), Ok(false));
        assert!(boolean("maybe").is_err());
    }

    #[test]
    fn hosts_are_addresses_or_names_made_of_labels() {
        for good in [
            "0.0.0.0",
            "::1",
            "localhost",
            "gw-1.example.org",
            "example.org.",
        ] {
            assert_eq!(host(good).as_deref(), Ok(good), "{good}");
        }
        for bad in [
            "",
            "...",
            "-",
            "a..b",
            "-a.b",
            "a-.b",
            "under_score",
            "a b",
            ".a",
        ] {
            assert!(host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_names_are_one_line_of_text() {
        assert_eq!(key_name("ci bot é"), Ok("ci bot é".into()));
        assert!(key_name("two\nlines").is_err());
        assert!(key_name("tab\there").is_err());
        assert!(key_name(&"x".repeat(101)).is_err());
    }

    #[test]
    fn proxies() {
        assert_eq!(proxy_url(""), Ok(None));
        let p = proxy_url("http://u%40x:p%3As@127.0.0.1:3128")
            .expect("valid")
            .expect("some");
        assert_eq!(p.scheme, ProxyScheme::Http);
        assert_eq!((p.host.as_str(), p.port), ("127.0.0.1", 3128));
        let (user, pass) = p.credentials.expect("credentials");
        assert_eq!((user.as_str(), pass.expose()), ("u@x", "p:s"));
        let s = proxy_url("socks5://localhost")
            .expect("valid")
            .expect("some");
        assert_eq!((s.scheme, s.port), (ProxyScheme::Socks5, 1080));
        assert!(proxy_url("ftp://x").is_err());
        let plus = proxy_url("http://u:a+b%2Bc@h:1")
            .expect("valid")
            .expect("some");
        assert_eq!(plus.credentials.expect("credentials").1.expose(), "a+b+c");
    }

    #[test]
    fn a_bad_proxy_address_is_refused_without_its_password() {
        for bad in [
            "http://user:S3cretPass@host:abc",
            "socks5://user:S3cretPass@",
            "http://user:S3cretPass@[::1/x",
            "http://user:S3cr#etPass@proxy:3128",
            "http://user:123#S3cretPass@h:1",
            "http://user:S3c/retPass@h:1",
        ] {
            let e = proxy_url(bad).expect_err(bad);
            assert!(!e.contains("S3cretPass"), "{e}");
            assert!(e.contains("user:***@"), "{e}");
        }
        assert_eq!(without_password("http://host:1"), "http://host:1");
        for with_path in ["http://h:1/proxy", "http://h:1?x=1", "socks5://h:1/#f"] {
            assert!(proxy_url(with_path).is_err(), "{with_path}");
        }
        assert!(proxy_url("http://h:1/").is_ok());
        assert_eq!(without_password("http://u:p@h"), "http://u:***@h");
    }

    #[test]
    fn cors_origins_are_off_any_or_a_list_of_bare_origins() {
        assert_eq!(cors_origins(""), Ok(CorsOrigins::Off));
        assert_eq!(cors_origins(" , "), Ok(CorsOrigins::Off));
        assert_eq!(cors_origins("*"), Ok(CorsOrigins::Any));
        assert_eq!(
            cors_origins("https://Chat.Example.com, http://localhost:3000/"),
            Ok(CorsOrigins::List(vec![
                "https://chat.example.com".into(),
                "http://localhost:3000".into()
            ]))
        );
        for bad in [
            "chat.example.com",
            "https://chat.example.com/app",
            "ftp://chat.example.com",
            "https://u:p@chat.example.com",
            "*,https://chat.example.com",
        ] {
            assert!(cors_origins(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_variable() {
        let p = parse_with("IFLOW_CONCURRENCY", |s| int_in(s, 1, 10));
        assert_eq!(
            p("0").expect_err("bad"),
            "IFLOW_CONCURRENCY: 0 is outside 1..=10"
        );
    }
}
