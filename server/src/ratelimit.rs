//! Rate limiting: token buckets per route class, keyed per client IP and per user, with idle buckets
//! evicted so memory stays bounded. No HTTP here: `http::ratelimit` classifies requests, finds the
//! client IP (trusted proxies) and renders the 429 of each protocol.
//!
//! Buckets are `governor`'s GCRA (a token bucket stored as one 64-bit "theoretical arrival time" per
//! key): one keyed limiter per class and key kind, so each class has its own quota. A sweeper thread
//! drops buckets that have refilled completely (`retain_recent`): a dropped bucket is
//! indistinguishable from a new one, so eviction never loosens a limit.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::{mpsc, Arc, OnceLock, Weak};
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::Quota;

/// How often the sweeper drops idle buckets.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// A route class: each has its own quota (per IP and per user).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// `/auth/*` except the sign-in routes below.
    Auth,
    /// Password and ticket sign-in (`POST /auth/v1/signin`, `/auth/v1/signin/custom`,
    /// `/auth/v2/signin/username`, `/admin/v1/login`): guessable secrets, so much stricter.
    Signin,
    /// `/v1/database/*` and CLOUD_API `/web`.
    Database,
    /// `/v1/storages/*`.
    Storage,
    /// `/v1/functions/*`.
    Functions,
    /// `/admin/v1/*` except the admin login.
    Admin,
}

impl Class {
    pub const ALL: [Class; 6] = [
        Class::Auth,
        Class::Signin,
        Class::Database,
        Class::Storage,
        Class::Functions,
        Class::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Auth => "auth",
            Class::Signin => "signin",
            Class::Database => "database",
            Class::Storage => "storage",
            Class::Functions => "functions",
            Class::Admin => "admin",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A quota: `count` requests per `per`, with bursts of up to `burst` at once. Written
/// `COUNT/UNIT[:BURST]` with UNIT one of `s`, `min`, `h` (e.g. `10/min:5`, `100000/s:200000`);
/// without `:BURST` the burst equals COUNT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
    pub burst: NonZeroU32,
}

impl Rate {
    /// `count` per `per` with bursts of `burst`; `None` if a number is zero or the interval between
    /// two requests would be shorter than a nanosecond.
    pub fn new(count: u32, per: Duration, burst: u32) -> Option<Rate> {
        let rate = Rate {
            count: NonZeroU32::new(count)?,
            per,
            burst: NonZeroU32::new(burst)?,
        };
        rate.quota().map(|_| rate)
    }

    fn quota(&self) -> Option<Quota> {
        let interval = self.per.checked_div(self.count.get())?;
        Some(Quota::with_period(interval)?.allow_burst(self.burst))
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Rate, String> {
        let bad = || format!("invalid rate `{s}`: expected COUNT/UNIT[:BURST] with UNIT s, min or h (e.g. 10/min:5)");
        let (count, rest) = s.trim().split_once('/').ok_or_else(bad)?;
        let (unit, burst) = match rest.split_once(':') {
            Some((unit, burst)) => (unit, Some(burst)),
            None => (rest, None),
        };
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let burst: u32 = match burst {
            Some(b) => b.trim().parse().map_err(|_| bad())?,
            None => count,
        };
        Rate::new(count, per, burst).ok_or_else(bad)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            3600 => "h",
            60 => "min",
            _ => "s",
        };
        write!(f, "{}/{unit}:{}", self.count, self.burst)
    }
}

impl<'de> serde::Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The quota of every class (the same quota applies per IP and per user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub auth: Rate,
    pub signin: Rate,
    pub database: Rate,
    pub storage: Rate,
    pub functions: Rate,
    pub admin: Rate,
}

/// Defaults, as `COUNT/UNIT:BURST` (documented in docs/ratelimit.md and `--help`).
pub const DEFAULT_AUTH: &str = "50000/s:100000";
pub const DEFAULT_SIGNIN: &str = "10/min:10";
pub const DEFAULT_DATABASE: &str = "100000/s:200000";
pub const DEFAULT_STORAGE: &str = "50000/s:100000";
pub const DEFAULT_FUNCTIONS: &str = "50000/s:100000";
pub const DEFAULT_ADMIN: &str = "10000/s:20000";

fn rate(count: u32, per_secs: u64, burst: u32) -> Rate {
    let nz = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
    Rate {
        count: nz(count),
        per: Duration::from_secs(per_secs),
        burst: nz(burst),
    }
}

impl Default for RateLimits {
    fn default() -> RateLimits {
        RateLimits {
            auth: rate(50_000, 1, 100_000),
            signin: rate(10, 60, 10),
            database: rate(100_000, 1, 200_000),
            storage: rate(50_000, 1, 100_000),
            functions: rate(50_000, 1, 100_000),
            admin: rate(10_000, 1, 20_000),
        }
    }
}

impl RateLimits {
    pub fn get(&self, class: Class) -> Rate {
        match class {
            Class::Auth => self.auth,
            Class::Signin => self.signin,
            Class::Database => self.database,
            Class::Storage => self.storage,
            Class::Functions => self.functions,
            Class::Admin => self.admin,
        }
    }
}

/// An IP address or a CIDR block (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<IpNet, String> {
        let bad = || format!("invalid IP address or CIDR block `{s}`");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr = IpAddr::from_str(addr).map_err(|_| bad())?.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The reverse proxies whose `X-Forwarded-For` is believed. Written as a comma-separated list of
/// IPs and CIDR blocks; empty (the default) means no proxy is trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    fn from_str(s: &str) -> Result<TrustedProxies, String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(IpNet::from_str)
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }
}

impl<'de> serde::Deserialize<'de> for TrustedProxies {
    /// A TOML string (`"10.0.0.1, 10.1.0.0/16"`) or array of strings.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TrustedProxies, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(String),
            Many(Vec<String>),
        }
        let text = match Form::deserialize(d)? {
            Form::One(s) => s,
            Form::Many(v) => v.join(","),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A refusal: how long until the next request of this key would be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds for the `Retry-After` header: rounded up, at least 1.
    pub fn secs(&self) -> u64 {
        let d = self.0;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

/// The bucket key of an IP: the address itself for IPv4, its /64 network for IPv6 (one host
/// usually holds a whole /64, so per-address keys would let it rotate through 2^64 buckets).
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX)))),
        v4 => v4,
    }
}

type Keyed<K, C> = governor::RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Token buckets for every class, per client IP and per user.
pub struct RateLimiter<C: Clock = MonotonicClock> {
    limits: RateLimits,
    by_ip: Vec<Keyed<IpAddr, C>>,
    by_user: Vec<Keyed<Box<str>, C>>,
    clock: C,
    /// Dropped with the limiter, which wakes and ends the sweeper thread.
    stop_sweeper: OnceLock<mpsc::Sender<()>>,
}

impl RateLimiter<MonotonicClock> {
    pub fn new(limits: RateLimits) -> RateLimiter {
        RateLimiter::with_clock(limits, MonotonicClock)
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    /// A limiter on the given clock (tests pass governor's `FakeRelativeClock`).
    pub fn with_clock(limits: RateLimits, clock: C) -> RateLimiter<C> {
        let quota = |class: Class| {
            limits
                .get(class)
                .quota()
                .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        };
        RateLimiter {
            by_ip: Class::ALL
                .iter()
                .map(|c| Keyed::dashmap_with_clock(quota(*c), clock.clone()))
                .collect(),
            by_user: Class::ALL
                .iter()
                .map(|c| Keyed::dashmap_with_clock(quota(*c), clock.clone()))
                .collect(),
            limits,
            clock,
            stop_sweeper: OnceLock::new(),
        }
    }

    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Takes one token from the bucket of this client IP in this class (IPv6 by /64).
    pub fn check_ip(&self, class: Class, ip: IpAddr) -> Result<(), RetryAfter> {
        let limiter = &self.by_ip[class.index()];
        limiter
            .check_key(&ip_key(ip))
            .map_err(|not_until| RetryAfter(not_until.wait_time_from(self.clock.now())))
    }

    /// Takes one token from the bucket of this user in this class. `user` is any stable id of the
    /// caller: a uid after token verification, or an env-qualified account name (`env/alice`) to
    /// limit sign-in attempts against one account from many addresses.
    pub fn check_user(&self, class: Class, user: &str) -> Result<(), RetryAfter> {
        let limiter = &self.by_user[class.index()];
        limiter
            .check_key(&Box::from(user))
            .map_err(|not_until| RetryAfter(not_until.wait_time_from(self.clock.now())))
    }

    /// Drops every bucket that has refilled completely (it would behave exactly like a new one).
    pub fn evict_idle(&self) {
        for limiter in &self.by_ip {
            sweep(limiter);
        }
        for limiter in &self.by_user {
            sweep(limiter);
        }
    }

    /// How many buckets are held (all classes, IPs and users).
    pub fn buckets(&self) -> usize {
        self.by_ip.iter().map(|l| l.len()).sum::<usize>() + self.by_user.iter().map(|l| l.len()).sum::<usize>()
    }
}

fn sweep<K: std::hash::Hash + Eq + Clone, C: Clock>(limiter: &Keyed<K, C>) {
    let before = limiter.len();
    if before == 0 {
        return;
    }
    limiter.retain_recent();
    if limiter.len() < before / 2 {
        limiter.shrink_to_fit();
    }
}

impl<C: Clock + Clone + Send + Sync + 'static> RateLimiter<C> {
    /// Starts a thread that calls [`RateLimiter::evict_idle`] every `every`; it ends when the
    /// limiter is dropped. Calling it again does nothing.
    pub fn start_sweeper(self: &Arc<Self>, every: Duration) {
        let (tx, rx) = mpsc::channel::<()>();
        if self.stop_sweeper.set(tx).is_err() {
            return;
        }
        let weak: Weak<Self> = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("lightbase-ratelimit-sweeper".into())
            .spawn(move || loop {
                match rx.recv_timeout(every) {
                    Err(mpsc::RecvTimeoutError::Timeout) => match weak.upgrade() {
                        Some(limiter) => limiter.evict_idle(),
                        None => return,
                    },
                    _ => return,
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the rate-limit sweeper; idle buckets will not be evicted");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::net::Ipv4Addr;

    fn limits_with(class: Class, r: &str) -> RateLimits {
        let mut l = RateLimits::default();
        let r: Rate = r.parse().unwrap();
        match class {
            Class::Auth => l.auth = r,
            Class::Signin => l.signin = r,
            Class::Database => l.database = r,
            Class::Storage => l.storage = r,
            Class::Functions => l.functions = r,
            Class::Admin => l.admin = r,
        }
        l
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn defaults_parse_and_match_the_documented_strings() {
        let d = RateLimits::default();
        assert_eq!(d.auth, DEFAULT_AUTH.parse().unwrap());
        assert_eq!(d.signin, DEFAULT_SIGNIN.parse().unwrap());
        assert_eq!(d.database, DEFAULT_DATABASE.parse().unwrap());
        assert_eq!(d.storage, DEFAULT_STORAGE.parse().unwrap());
        assert_eq!(d.functions, DEFAULT_FUNCTIONS.parse().unwrap());
        assert_eq!(d.admin, DEFAULT_ADMIN.parse().unwrap());
        assert_eq!(d.signin.to_string(), DEFAULT_SIGNIN);
        assert_eq!(d.database.to_string(), DEFAULT_DATABASE);
    }

    #[test]
    fn rates_parse_or_are_refused() {
        let r: Rate = "10/min".parse().unwrap();
        assert_eq!((r.count.get(), r.per, r.burst.get()), (10, Duration::from_secs(60), 10));
        let r: Rate = " 5 / h : 2 ".parse().unwrap();
        assert_eq!((r.count.get(), r.per, r.burst.get()), (5, Duration::from_secs(3600), 2));
        for bad in [
            "",
            "10",
            "10/day",
            "0/s",
            "10/s:0",
            "x/s",
            "10/s:y",
            "-1/s",
            "4294967296/s",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad} should be refused");
        }
        // faster than one request per nanosecond cannot be expressed
        assert!(Rate::new(u32::MAX, Duration::from_secs(1), 1).is_none());
        assert!(Rate::new(1_000_000_000, Duration::from_secs(1), 1).is_some());
    }

    #[test]
    fn burst_then_refill_at_the_rate() {
        let clock = FakeRelativeClock::default();
        let rl = RateLimiter::with_clock(limits_with(Class::Signin, "10/min:5"), clock.clone());
        for _ in 0..5 {
            rl.check_ip(Class::Signin, ip(1)).unwrap();
        }
        let refused = rl.check_ip(Class::Signin, ip(1)).unwrap_err();
        assert_eq!(refused.0, Duration::from_secs(6));
        assert_eq!(refused.secs(), 6);
        clock.advance(Duration::from_secs(5));
        assert_eq!(rl.check_ip(Class::Signin, ip(1)).unwrap_err().secs(), 1);
        clock.advance(Duration::from_secs(1));
        rl.check_ip(Class::Signin, ip(1)).unwrap();
        assert!(rl.check_ip(Class::Signin, ip(1)).is_err());
        // a full refill gives the whole burst back, never more
        clock.advance(Duration::from_secs(600));
        for _ in 0..5 {
            rl.check_ip(Class::Signin, ip(1)).unwrap();
        }
        assert!(rl.check_ip(Class::Signin, ip(1)).is_err());
    }

    #[test]
    fn keys_classes_and_kinds_are_isolated() {
        let clock = FakeRelativeClock::default();
        let rl = RateLimiter::with_clock(limits_with(Class::Signin, "1/min:1"), clock);
        rl.check_ip(Class::Signin, ip(1)).unwrap();
        assert!(rl.check_ip(Class::Signin, ip(1)).is_err());
        rl.check_ip(Class::Signin, ip(2)).unwrap();
        rl.check_ip(Class::Database, ip(1)).unwrap();
        rl.check_ip(Class::Auth, ip(1)).unwrap();
        rl.check_user(Class::Signin, "env/alice").unwrap();
        assert!(rl.check_user(Class::Signin, "env/alice").is_err());
        rl.check_user(Class::Signin, "env/bob").unwrap();
        rl.check_user(Class::Database, "env/alice").unwrap();
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_and_mapped_v4_as_v4() {
        let clock = FakeRelativeClock::default();
        let rl = RateLimiter::with_clock(limits_with(Class::Signin, "1/min:1"), clock);
        rl.check_ip(Class::Signin, "2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(rl
            .check_ip(Class::Signin, "2001:db8:1:2:ffff::9".parse().unwrap())
            .is_err());
        rl.check_ip(Class::Signin, "2001:db8:1:3::1".parse().unwrap()).unwrap();
        rl.check_ip(Class::Signin, "10.0.0.1".parse().unwrap()).unwrap();
        assert!(rl.check_ip(Class::Signin, "::ffff:10.0.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn idle_buckets_are_evicted_and_busy_ones_kept() {
        let clock = FakeRelativeClock::default();
        let rl = RateLimiter::with_clock(limits_with(Class::Signin, "10/min:10"), clock.clone());
        for n in 0..10_000 {
            rl.check_ip(Class::Database, ip(n)).unwrap();
            rl.check_user(Class::Auth, &format!("u{n}")).unwrap();
        }
        for _ in 0..10 {
            rl.check_ip(Class::Signin, ip(7)).unwrap();
        }
        assert_eq!(rl.buckets(), 20_001);
        clock.advance(Duration::from_secs(1));
        rl.evict_idle();
        // the database buckets refilled within a second; the exhausted sign-in bucket did not
        assert_eq!(rl.buckets(), 1);
        assert!(
            rl.check_ip(Class::Signin, ip(7)).is_err(),
            "eviction must not reset a limit"
        );
        clock.advance(Duration::from_secs(120));
        rl.evict_idle();
        assert_eq!(rl.buckets(), 0);
        rl.check_ip(Class::Signin, ip(7)).unwrap();
    }

    #[test]
    fn the_sweeper_evicts_in_the_background_and_ends_with_the_limiter() {
        let rl = Arc::new(RateLimiter::new(limits_with(Class::Auth, "1000/s:1")));
        rl.start_sweeper(Duration::from_millis(10));
        rl.start_sweeper(Duration::from_millis(10)); // a second call is a no-op
        for n in 0..100 {
            rl.check_ip(Class::Auth, ip(n)).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while rl.buckets() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(rl.buckets(), 0);
        let weak = Arc::downgrade(&rl);
        drop(rl);
        // the sweeper holds only a weak reference (upgraded for the length of one sweep)
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while weak.upgrade().is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(weak.upgrade().is_none());
    }

    #[test]
    fn ip_nets_and_trusted_proxy_lists() {
        let net: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "::/129", "10.0.0", "x", "10.0.0.0/"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
        let list: TrustedProxies = " 10.0.0.1 , fd00::/8,".parse().unwrap();
        assert_eq!(list.0.len(), 2);
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
        assert!("10.0.0.1,nope".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        assert_eq!(RetryAfter(Duration::ZERO).secs(), 1);
        assert_eq!(RetryAfter(Duration::from_millis(10)).secs(), 1);
        assert_eq!(RetryAfter(Duration::from_millis(1001)).secs(), 2);
        assert_eq!(RetryAfter(Duration::from_secs(6)).secs(), 6);
    }
}
