//! Rate limiting: token buckets per route class, keyed per client IP and per user, with idle buckets
//! evicted so memory stays bounded; server-wide quotas (restart-only options) and per-env overrides
//! an admin changes at runtime ([`EnvRates`], stored by `crate::settings`). No HTTP here:
//! `http::ratelimit` classifies requests, finds the client IP (trusted proxies) and renders the 429
//! of each protocol.
//!
//! Buckets are `governor`'s GCRA (a token bucket stored as one 64-bit "theoretical arrival time" per
//! key): one keyed limiter per class and key kind, so each class has its own quota. A sweeper thread
//! drops buckets that have refilled completely (`retain_recent`): a dropped bucket is
//! indistinguishable from a new one, so eviction never loosens a limit.
//!
//! Per-env overrides are an in-memory map env → one keyed limiter per overridden class and key
//! kind (per (env, IP) and per user). Changing an env's rate for a class replaces that class's
//! limiters (the old buckets are dropped with them); classes whose rate did not change keep theirs.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, OnceLock, RwLock, RwLockReadGuard, Weak};
use std::time::Duration;

use serde_json::{Map, Value};

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
    /// `/auth/v2/signin/username`, `/admin/v1/login`) and the checks of a signed-in user's password
    /// (`/auth/v1/user/sudo`, `/auth/v1/user/password`): guessable secrets, so much stricter.
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

    /// The classes an env can override (the admin API is not per env).
    pub const PER_ENV: [Class; 5] = [
        Class::Auth,
        Class::Signin,
        Class::Database,
        Class::Storage,
        Class::Functions,
    ];

    /// The class of a name as [`Class::as_str`] writes it.
    pub fn parse(name: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.as_str() == name)
    }

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

/// An env's overrides of the server-wide quotas, per class; `None` = the server's quota. Only the
/// classes of [`Class::PER_ENV`] can be set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnvRates([Option<Rate>; Class::ALL.len()]);

impl EnvRates {
    pub fn get(&self, class: Class) -> Option<Rate> {
        self.0[class.index()]
    }

    /// Sets or clears one class; the admin class cannot be set per env.
    pub fn set(&mut self, class: Class, rate: Option<Rate>) -> Result<(), String> {
        if !Class::PER_ENV.contains(&class) {
            return Err(format!("the `{}` class is server-wide, not per env", class.as_str()));
        }
        self.0[class.index()] = rate;
        Ok(())
    }

    /// No class overridden.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }

    /// Parses `{"database": "200/s:400", "signin": null, …}`: each key a per-env class, each value a
    /// rate string or null (= the server's quota); an absent class is the server's quota too.
    /// Errors name the offending key as `{what}.{class}`.
    pub fn from_json(v: &Value, what: &str) -> Result<EnvRates, String> {
        let mut rates = EnvRates::default();
        let obj = match v {
            Value::Null => return Ok(rates),
            Value::Object(obj) => obj,
            _ => return Err(format!("`{what}` must be an object of class → rate (or null)")),
        };
        for (key, value) in obj {
            let shown: String = key.chars().take(64).collect();
            let class = Class::parse(key).filter(|c| Class::PER_ENV.contains(c)).ok_or_else(|| {
                format!("`{what}.{shown}`: unknown class; per-env classes are auth, signin, database, storage, functions")
            })?;
            let rate = match value {
                Value::Null => None,
                Value::String(s) => Some(s.parse::<Rate>().map_err(|e| format!("`{what}.{shown}`: {e}"))?),
                _ => {
                    return Err(format!(
                        "`{what}.{shown}` must be a rate string (e.g. \"200/s:400\") or null"
                    ))
                }
            };
            rates.set(class, rate)?;
        }
        Ok(rates)
    }

    /// Every per-env class, as its rate string or null.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for class in Class::PER_ENV {
            let v = self.get(class).map_or(Value::Null, |r| Value::String(r.to_string()));
            m.insert(class.as_str().into(), v);
        }
        Value::Object(m)
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

/// The limiters of one env's overridden classes (`None` where the class is not overridden).
struct EnvLimiter<C: Clock> {
    rates: EnvRates,
    by_ip: Vec<Option<Keyed<IpAddr, C>>>,
    by_user: Vec<Option<Keyed<Box<str>, C>>>,
}

/// Token buckets for every class, per client IP and per user, and per env where an env overrides
/// a class's quota.
pub struct RateLimiter<C: Clock = MonotonicClock> {
    limits: RateLimits,
    by_ip: Vec<Keyed<IpAddr, C>>,
    by_user: Vec<Keyed<Box<str>, C>>,
    /// Envs with at least one overridden class.
    envs: RwLock<HashMap<Box<str>, EnvLimiter<C>>>,
    /// `envs` is not empty: lets requests skip the lock while no env overrides anything.
    any_env: AtomicBool,
    clock: C,
    /// Dropped with the limiter, which wakes and ends the sweeper thread.
    stop_sweeper: OnceLock<mpsc::Sender<()>>,
}

impl RateLimiter<MonotonicClock> {
    pub fn new(limits: RateLimits) -> RateLimiter {
        RateLimiter::with_clock(limits, MonotonicClock)
    }
}

fn quota_of(rate: Rate) -> Quota {
    rate.quota().unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
}

fn retry_after<C: Clock>(not_until: governor::NotUntil<C::Instant>, clock: &C) -> RetryAfter {
    RetryAfter(not_until.wait_time_from(clock.now()))
}

impl<C: Clock + Clone> RateLimiter<C> {
    /// A limiter on the given clock (tests pass governor's `FakeRelativeClock`).
    pub fn with_clock(limits: RateLimits, clock: C) -> RateLimiter<C> {
        let quota = |class: Class| quota_of(limits.get(class));
        RateLimiter {
            by_ip: Class::ALL
                .iter()
                .map(|c| Keyed::dashmap_with_clock(quota(*c), clock.clone()))
                .collect(),
            by_user: Class::ALL
                .iter()
                .map(|c| Keyed::dashmap_with_clock(quota(*c), clock.clone()))
                .collect(),
            envs: RwLock::new(HashMap::new()),
            any_env: AtomicBool::new(false),
            limits,
            clock,
            stop_sweeper: OnceLock::new(),
        }
    }

    /// The server-wide quotas.
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Takes one token from the server-wide bucket of this client IP in this class (IPv6 by /64).
    pub fn check_ip(&self, class: Class, ip: IpAddr) -> Result<(), RetryAfter> {
        self.by_ip[class.index()]
            .check_key(&ip_key(ip))
            .map_err(|n| retry_after(n, &self.clock))
    }

    /// Takes one token from the bucket of this client IP in `env`, if `env` overrides the class's
    /// quota (otherwise the server-wide [`RateLimiter::check_ip`] is the only per-IP limit and this
    /// does nothing). Costs one atomic load while no env overrides anything.
    pub fn check_env_ip(&self, env: &str, class: Class, ip: IpAddr) -> Result<(), RetryAfter> {
        if !self.any_env.load(Ordering::Acquire) {
            return Ok(());
        }
        let envs = self.read_envs();
        match envs.get(env).and_then(|e| e.by_ip[class.index()].as_ref()) {
            Some(limiter) => limiter.check_key(&ip_key(ip)).map_err(|n| retry_after(n, &self.clock)),
            None => Ok(()),
        }
    }

    /// Takes one token from the bucket of this user in this class: the quota of `env` if it
    /// overrides the class, else the server-wide one. `user` is any id of the caller unique across
    /// envs: a uid after token verification, or an env-qualified account name ([`account_key`]) to
    /// limit sign-in attempts against one account from many addresses. `env: None` (admin
    /// accounts) always uses the server-wide quota.
    pub fn check_user(&self, env: Option<&str>, class: Class, user: &str) -> Result<(), RetryAfter> {
        let key: Box<str> = Box::from(user);
        if let Some(env) = env.filter(|_| self.any_env.load(Ordering::Acquire)) {
            let envs = self.read_envs();
            if let Some(limiter) = envs.get(env).and_then(|e| e.by_user[class.index()].as_ref()) {
                return limiter.check_key(&key).map_err(|n| retry_after(n, &self.clock));
            }
        }
        self.by_user[class.index()]
            .check_key(&key)
            .map_err(|n| retry_after(n, &self.clock))
    }

    /// The overrides of `env` (empty if it has none).
    pub fn env_rates(&self, env: &str) -> EnvRates {
        self.read_envs().get(env).map(|e| e.rates).unwrap_or_default()
    }

    /// Replaces the overrides of `env`, from the next request on. A class whose rate changed gets
    /// fresh buckets (the old ones are dropped); a class whose rate is the same keeps its buckets,
    /// so re-saving the same settings does not hand out a fresh burst.
    pub fn set_env_rates(&self, env: &str, rates: EnvRates) {
        let mut envs = match self.envs.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if rates.is_empty() {
            envs.remove(env);
        } else {
            let n = Class::ALL.len();
            let (mut by_ip, mut by_user): (Vec<_>, Vec<_>) = match envs.remove(env) {
                Some(old) => {
                    let keep = |c: usize| old.rates.0[c] == rates.0[c];
                    let ips = old.by_ip.into_iter().enumerate().map(|(c, l)| l.filter(|_| keep(c)));
                    let users = old.by_user.into_iter().enumerate().map(|(c, l)| l.filter(|_| keep(c)));
                    (ips.collect(), users.collect())
                }
                None => ((0..n).map(|_| None).collect(), (0..n).map(|_| None).collect()),
            };
            for class in Class::ALL {
                let i = class.index();
                match rates.get(class) {
                    Some(rate) => {
                        if by_ip[i].is_none() {
                            by_ip[i] = Some(Keyed::dashmap_with_clock(quota_of(rate), self.clock.clone()));
                        }
                        if by_user[i].is_none() {
                            by_user[i] = Some(Keyed::dashmap_with_clock(quota_of(rate), self.clock.clone()));
                        }
                    }
                    None => {
                        by_ip[i] = None;
                        by_user[i] = None;
                    }
                }
            }
            envs.insert(Box::from(env), EnvLimiter { rates, by_ip, by_user });
        }
        self.any_env.store(!envs.is_empty(), Ordering::Release);
    }

    fn read_envs(&self) -> RwLockReadGuard<'_, HashMap<Box<str>, EnvLimiter<C>>> {
        // a panic while holding the lock cannot leave the map half-changed: use it as it is
        match self.envs.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Drops every bucket that has refilled completely (it would behave exactly like a new one).
    pub fn evict_idle(&self) {
        for limiter in &self.by_ip {
            sweep(limiter);
        }
        for limiter in &self.by_user {
            sweep(limiter);
        }
        for env in self.read_envs().values() {
            env.by_ip.iter().flatten().for_each(sweep);
            env.by_user.iter().flatten().for_each(sweep);
        }
    }

    /// How many buckets are held (all classes, IPs, users and envs).
    pub fn buckets(&self) -> usize {
        let envs: usize = self
            .read_envs()
            .values()
            .map(|e| {
                e.by_ip.iter().flatten().map(|l| l.len()).sum::<usize>()
                    + e.by_user.iter().flatten().map(|l| l.len()).sum::<usize>()
            })
            .sum();
        self.by_ip.iter().map(|l| l.len()).sum::<usize>() + self.by_user.iter().map(|l| l.len()).sum::<usize>() + envs
    }
}

/// The per-user bucket key of a sign-in name (username or email) in `env`: lower-cased, like the
/// uniqueness of names, so `Alice` and `alice` are one account.
pub fn account_key(env: &str, login: &str) -> String {
    format!("{env}/{}", login.to_lowercase())
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
        rl.check_user(Some("env"), Class::Signin, "env/alice").unwrap();
        assert!(rl.check_user(Some("env"), Class::Signin, "env/alice").is_err());
        rl.check_user(Some("env"), Class::Signin, "env/bob").unwrap();
        rl.check_user(None, Class::Database, "env/alice").unwrap();
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
            rl.check_user(None, Class::Auth, &format!("u{n}")).unwrap();
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

    fn rates(pairs: &[(Class, &str)]) -> EnvRates {
        let mut r = EnvRates::default();
        for (c, rate) in pairs {
            r.set(*c, Some(rate.parse().unwrap())).unwrap();
        }
        r
    }

    #[test]
    fn env_rates_parse_from_json_with_the_field_named() {
        let r = EnvRates::from_json(
            &serde_json::json!({"database": "200/s:400", "signin": null}),
            "rateLimits",
        )
        .unwrap();
        assert_eq!(r.get(Class::Database), Some("200/s:400".parse().unwrap()));
        assert_eq!(r.get(Class::Signin), None);
        assert_eq!(
            r.to_json(),
            serde_json::json!({"auth": null, "signin": null, "database": "200/s:400", "storage": null, "functions": null})
        );
        assert!(EnvRates::from_json(&Value::Null, "x").unwrap().is_empty());
        let cases = [
            (serde_json::json!({"database": "fast"}), "rateLimits.database"),
            (serde_json::json!({"database": 5}), "rateLimits.database"),
            (serde_json::json!({"admin": "1/s"}), "rateLimits.admin"),
            (serde_json::json!({"dtabase": "1/s"}), "rateLimits.dtabase"),
            (serde_json::json!(["1/s"]), "rateLimits"),
        ];
        for (v, field) in cases {
            let e = EnvRates::from_json(&v, "rateLimits").unwrap_err();
            assert!(e.contains(&format!("`{field}")), "{v}: {e}");
        }
        assert!(EnvRates::default().set(Class::Admin, None).is_err());
    }

    #[test]
    fn env_overrides_apply_per_env_ip_and_user_and_can_be_changed_and_removed() {
        let clock = FakeRelativeClock::default();
        let rl = RateLimiter::with_clock(RateLimits::default(), clock.clone());
        // no override: the per-env check is free and never refuses
        for _ in 0..100 {
            rl.check_env_ip("a", Class::Database, ip(1)).unwrap();
        }
        assert_eq!(rl.buckets(), 0);
        rl.set_env_rates("a", rates(&[(Class::Database, "2/min:2")]));
        assert_eq!(rl.env_rates("a").get(Class::Database).unwrap().to_string(), "2/min:2");
        for _ in 0..2 {
            rl.check_env_ip("a", Class::Database, ip(1)).unwrap();
        }
        assert_eq!(rl.check_env_ip("a", Class::Database, ip(1)).unwrap_err().secs(), 30);
        // other IPs, other envs, other classes are unaffected
        rl.check_env_ip("a", Class::Database, ip(2)).unwrap();
        rl.check_env_ip("b", Class::Database, ip(1)).unwrap();
        rl.check_env_ip("a", Class::Auth, ip(1)).unwrap();
        // per user: the env's quota instead of the server's
        rl.check_user(Some("a"), Class::Database, "u1").unwrap();
        rl.check_user(Some("a"), Class::Database, "u1").unwrap();
        assert!(rl.check_user(Some("a"), Class::Database, "u1").is_err());
        for _ in 0..10 {
            rl.check_user(Some("b"), Class::Database, "u2").unwrap();
        }
        // saving the same rate keeps the buckets (no fresh burst)
        rl.set_env_rates("a", rates(&[(Class::Database, "2/min:2"), (Class::Auth, "1/h:1")]));
        assert!(rl.check_env_ip("a", Class::Database, ip(1)).is_err());
        // a changed rate starts fresh buckets at the new rate; the old ones are gone
        rl.set_env_rates("a", rates(&[(Class::Database, "3/min:3")]));
        for _ in 0..3 {
            rl.check_env_ip("a", Class::Database, ip(1)).unwrap();
        }
        assert!(rl.check_env_ip("a", Class::Database, ip(1)).is_err());
        assert_eq!(rl.env_rates("a").get(Class::Auth), None);
        // back to the server default: no per-env bucket left at all
        rl.set_env_rates("a", EnvRates::default());
        rl.check_env_ip("a", Class::Database, ip(1)).unwrap();
        assert!(rl.env_rates("a").is_empty());
        let before = rl.buckets();
        rl.check_user(Some("a"), Class::Database, "u1").unwrap();
        assert_eq!(rl.buckets(), before + 1, "the server-wide user bucket");
    }

    #[test]
    fn env_buckets_are_swept_too() {
        let clock = FakeRelativeClock::default();
        let rl = RateLimiter::with_clock(RateLimits::default(), clock.clone());
        rl.set_env_rates("a", rates(&[(Class::Signin, "10/min:10")]));
        for n in 0..1000 {
            rl.check_env_ip("a", Class::Signin, ip(n)).unwrap();
            rl.check_user(Some("a"), Class::Signin, &account_key("a", &format!("User{n}")))
                .unwrap();
        }
        assert_eq!(rl.buckets(), 2000);
        clock.advance(Duration::from_secs(5));
        rl.evict_idle();
        assert_eq!(rl.buckets(), 2000, "not refilled yet");
        clock.advance(Duration::from_secs(60));
        rl.evict_idle();
        assert_eq!(rl.buckets(), 0);
        assert_eq!(account_key("env", "Alice@Example.COM"), "env/alice@example.com");
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
