//! Date expression operators: the parts of a date (`$year` … `$isoDayOfWeek`), `$dateToString`,
//! `$dateFromString`, `$dateFromParts` and `$dateToParts`, each with an optional `timezone` (an
//! Olson name such as `Asia/Shanghai`, or an offset such as `+08:00`). Time zone rules come from
//! the tz database bundled with the `jiff` crate; the calendar arithmetic is ours.

use std::borrow::Cow;

use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;
use serde_json::{Map, Value};

use super::expr::{named_args, Deps, Env, Expr, Scope};
use super::values::{cmd, date, shown, type_name, Num, Val};
use crate::db::value::{as_date, days_from_civil};
use crate::db::DbError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Part {
    Year,
    Month,
    DayOfMonth,
    Hour,
    Minute,
    Second,
    Millisecond,
    DayOfYear,
    DayOfWeek,
    Week,
    IsoWeek,
    IsoWeekYear,
    IsoDayOfWeek,
}

const PARTS: &[(&str, Part)] = &[
    ("$year", Part::Year),
    ("$month", Part::Month),
    ("$dayOfMonth", Part::DayOfMonth),
    ("$hour", Part::Hour),
    ("$minute", Part::Minute),
    ("$second", Part::Second),
    ("$millisecond", Part::Millisecond),
    ("$dayOfYear", Part::DayOfYear),
    ("$dayOfWeek", Part::DayOfWeek),
    ("$week", Part::Week),
    ("$isoWeek", Part::IsoWeek),
    ("$isoWeekYear", Part::IsoWeekYear),
    ("$isoDayOfWeek", Part::IsoDayOfWeek),
];

/// The default `$dateToString` format (ISO 8601 in UTC).
const DEFAULT_FORMAT: &str = "%Y-%m-%dT%H:%M:%S.%LZ";

#[derive(Debug)]
pub(super) enum DateExpr {
    Part {
        name: &'static str,
        part: Part,
        date: Expr,
        tz: Option<Expr>,
    },
    ToString {
        date: Expr,
        format: Option<Expr>,
        tz: Option<Expr>,
        on_null: Option<Expr>,
    },
    FromString {
        string: Expr,
        format: Option<Expr>,
        tz: Option<Expr>,
        on_error: Option<Expr>,
        on_null: Option<Expr>,
    },
    FromParts {
        iso: bool,
        parts: Vec<(&'static str, Expr)>,
        tz: Option<Expr>,
    },
    ToParts {
        date: Expr,
        tz: Option<Expr>,
        iso: Option<Expr>,
    },
}

impl DateExpr {
    /// Compiles a date operator; `Ok(None)` if `name` is not one.
    pub fn compile(name: &str, operand: &Value, scope: &mut Scope) -> Result<Option<DateExpr>, DbError> {
        let opt = |m: &Map<String, Value>, k: &str, scope: &mut Scope| -> Result<Option<Expr>, DbError> {
            m.get(k).map(|v| Expr::compile(v, scope)).transpose()
        };
        if let Some(&(pname, part)) = PARTS.iter().find(|(n, _)| *n == name) {
            let named = matches!(operand, Value::Object(m) if m.contains_key("date"));
            let (date, tz) = if named {
                let m = named_args(name, operand, &["date", "timezone"], &["date"])?;
                (Expr::compile(&m["date"], scope)?, opt(&m, "timezone", scope)?)
            } else {
                let args = super::expr::arg_list(operand);
                if args.len() != 1 {
                    return Err(cmd(format!("`{name}` takes exactly 1 argument, got {}", args.len())));
                }
                (Expr::compile(&args[0], scope)?, None)
            };
            return Ok(Some(DateExpr::Part {
                name: pname,
                part,
                date,
                tz,
            }));
        }
        Ok(Some(match name {
            "$dateToString" => {
                let m = named_args(name, operand, &["date", "format", "timezone", "onNull"], &["date"])?;
                DateExpr::ToString {
                    date: Expr::compile(&m["date"], scope)?,
                    format: opt(&m, "format", scope)?,
                    tz: opt(&m, "timezone", scope)?,
                    on_null: opt(&m, "onNull", scope)?,
                }
            }
            "$dateFromString" => {
                let m = named_args(
                    name,
                    operand,
                    &["dateString", "format", "timezone", "onError", "onNull"],
                    &["dateString"],
                )?;
                DateExpr::FromString {
                    string: Expr::compile(&m["dateString"], scope)?,
                    format: opt(&m, "format", scope)?,
                    tz: opt(&m, "timezone", scope)?,
                    on_error: opt(&m, "onError", scope)?,
                    on_null: opt(&m, "onNull", scope)?,
                }
            }
            "$dateFromParts" => {
                const CAL: &[&str] = &["year", "month", "day", "hour", "minute", "second", "millisecond"];
                const ISO: &[&str] = &[
                    "isoWeekYear",
                    "isoWeek",
                    "isoDayOfWeek",
                    "hour",
                    "minute",
                    "second",
                    "millisecond",
                ];
                let m = match operand {
                    Value::Object(m) => m,
                    _ => return Err(cmd("`$dateFromParts` needs an object of date parts")),
                };
                let iso = m.contains_key("isoWeekYear");
                if iso && m.contains_key("year") {
                    return Err(cmd("`$dateFromParts` takes either `year` or `isoWeekYear`, not both"));
                }
                let names = if iso { ISO } else { CAL };
                let mut allowed: Vec<&str> = names.to_vec();
                allowed.push("timezone");
                let m = named_args(name, operand, &allowed, &[if iso { "isoWeekYear" } else { "year" }])?;
                let mut parts = Vec::new();
                for &n in names {
                    if let Some(v) = m.get(n) {
                        parts.push((n, Expr::compile(v, scope)?));
                    }
                }
                DateExpr::FromParts {
                    iso,
                    parts,
                    tz: opt(&m, "timezone", scope)?,
                }
            }
            "$dateToParts" => {
                let m = named_args(name, operand, &["date", "timezone", "iso8601"], &["date"])?;
                DateExpr::ToParts {
                    date: Expr::compile(&m["date"], scope)?,
                    tz: opt(&m, "timezone", scope)?,
                    iso: opt(&m, "iso8601", scope)?,
                }
            }
            _ => return Ok(None),
        }))
    }

    pub fn deps(&self, bound: &mut Vec<String>, d: &mut Deps) {
        let mut each = |e: &Expr| e.deps(bound, d);
        match self {
            DateExpr::Part { date, tz, .. } => {
                each(date);
                tz.iter().for_each(each);
            }
            DateExpr::ToString {
                date,
                format,
                tz,
                on_null,
            } => {
                each(date);
                format.iter().chain(tz).chain(on_null).for_each(each);
            }
            DateExpr::FromString {
                string,
                format,
                tz,
                on_error,
                on_null,
            } => {
                each(string);
                format.iter().chain(tz).chain(on_error).chain(on_null).for_each(each);
            }
            DateExpr::FromParts { parts, tz, .. } => {
                parts.iter().for_each(|(_, e)| each(e));
                tz.iter().for_each(each);
            }
            DateExpr::ToParts { date, tz, iso } => {
                each(date);
                tz.iter().chain(iso).for_each(each);
            }
        }
    }

    pub fn eval<'a>(&'a self, root: &'a Value, env: &mut Env) -> Result<Val<'a>, DbError> {
        let owned = |v: Value| Ok(Some(Cow::Owned(v)));
        match self {
            DateExpr::Part { name, part, date, tz } => {
                let Some(ms) = date_arg(name, date.eval(root, env)?.as_deref())? else {
                    return owned(Value::Null);
                };
                let Some(tz) = tz_arg(name, tz.as_ref(), root, env)? else {
                    return owned(Value::Null);
                };
                let l = Local::of(name, ms, &tz)?;
                owned(Value::from(l.part(*part)))
            }
            DateExpr::ToString {
                date,
                format,
                tz,
                on_null,
            } => {
                let op = "$dateToString";
                let Some(ms) = date_arg(op, date.eval(root, env)?.as_deref())? else {
                    return match on_null {
                        Some(e) => e.eval(root, env),
                        None => owned(Value::Null),
                    };
                };
                let format = match format {
                    None => DEFAULT_FORMAT.to_string(),
                    Some(f) => match f.eval(root, env)?.as_deref() {
                        None | Some(Value::Null) => return owned(Value::Null),
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => {
                            return Err(cmd(format!(
                                "`{op}`: `format` must be a string, not {}",
                                type_name(Some(other))
                            )))
                        }
                    },
                };
                let Some(tz) = tz_arg(op, tz.as_ref(), root, env)? else {
                    return owned(Value::Null);
                };
                owned(Value::String(format_date(op, &format, &Local::of(op, ms, &tz)?)?))
            }
            DateExpr::FromString {
                string,
                format,
                tz,
                on_error,
                on_null,
            } => {
                let op = "$dateFromString";
                let s = match string.eval(root, env)?.map(Cow::into_owned) {
                    None | Some(Value::Null) => {
                        return match on_null {
                            Some(e) => e.eval(root, env),
                            None => owned(Value::Null),
                        }
                    }
                    Some(Value::String(s)) => s,
                    Some(other) => {
                        return match on_error {
                            Some(e) => e.eval(root, env),
                            None => Err(cmd(format!(
                                "`{op}`: `dateString` must be a string, not {}",
                                type_name(Some(&other))
                            ))),
                        }
                    }
                };
                let format = match format {
                    None => None,
                    Some(f) => match f.eval(root, env)?.as_deref() {
                        None | Some(Value::Null) => return owned(Value::Null),
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(other) => {
                            return Err(cmd(format!(
                                "`{op}`: `format` must be a string, not {}",
                                type_name(Some(other))
                            )))
                        }
                    },
                };
                let Some(zone) = tz_arg(op, tz.as_ref(), root, env)? else {
                    return owned(Value::Null);
                };
                match parse_date(&s, format.as_deref(), &zone, tz.is_some()) {
                    Ok(ms) => owned(date(ms)),
                    Err(why) => match on_error {
                        Some(e) => e.eval(root, env),
                        None => Err(cmd(format!(
                            "`{op}`: cannot parse {}: {why}",
                            shown(Some(&Value::String(s)))
                        ))),
                    },
                }
            }
            DateExpr::FromParts { iso, parts, tz } => {
                let op = "$dateFromParts";
                // year (or ISO week-year), month (week), day (weekday), hour, minute, second, ms
                let mut vals = [0i64, 1, 1, 0, 0, 0, 0];
                const CAL: [&str; 7] = ["year", "month", "day", "hour", "minute", "second", "millisecond"];
                const ISO: [&str; 7] = [
                    "isoWeekYear",
                    "isoWeek",
                    "isoDayOfWeek",
                    "hour",
                    "minute",
                    "second",
                    "millisecond",
                ];
                let names = if *iso { ISO } else { CAL };
                for (n, e) in parts {
                    let v = e.eval(root, env)?;
                    let i = match v.as_deref() {
                        None | Some(Value::Null) => return owned(Value::Null),
                        Some(x) => Num::of(x)
                            .and_then(Num::exact_int)
                            .ok_or_else(|| cmd(format!("`{op}`: `{n}` must be an integer, not {}", shown(Some(x)))))?,
                    };
                    let (lo, hi) = if *n == "year" || *n == "isoWeekYear" {
                        (1, 9999)
                    } else {
                        (-32768, 32767)
                    };
                    if i < lo || i > hi {
                        return Err(cmd(format!("`{op}`: `{n}` must be between {lo} and {hi}, not {i}")));
                    }
                    if let Some(slot) = names.iter().position(|x| x == n) {
                        vals[slot] = i;
                    }
                }
                let Some(zone) = tz_arg(op, tz.as_ref(), root, env)? else {
                    return owned(Value::Null);
                };
                let days = if *iso {
                    iso_days(vals[0], vals[1], vals[2])
                } else {
                    let months = vals[0] * 12 + vals[1] - 1;
                    days_from_civil(months.div_euclid(12), months.rem_euclid(12) + 1, 1) + vals[2] - 1
                };
                let local = days * 86_400_000 + vals[3] * 3_600_000 + vals[4] * 60_000 + vals[5] * 1000 + vals[6];
                owned(date(to_utc(op, local, &zone)?))
            }
            DateExpr::ToParts { date: d, tz, iso } => {
                let op = "$dateToParts";
                let Some(ms) = date_arg(op, d.eval(root, env)?.as_deref())? else {
                    return owned(Value::Null);
                };
                let Some(zone) = tz_arg(op, tz.as_ref(), root, env)? else {
                    return owned(Value::Null);
                };
                let iso = match iso {
                    None => false,
                    Some(e) => match e.eval(root, env)?.as_deref() {
                        None | Some(Value::Null) => return owned(Value::Null),
                        Some(Value::Bool(b)) => *b,
                        Some(_) => return Err(cmd("`$dateToParts`: `iso8601` must be a boolean")),
                    },
                };
                let l = Local::of(op, ms, &zone)?;
                let mut out = Map::new();
                let fields: &[(&str, Part)] = if iso {
                    &[
                        ("isoWeekYear", Part::IsoWeekYear),
                        ("isoWeek", Part::IsoWeek),
                        ("isoDayOfWeek", Part::IsoDayOfWeek),
                    ]
                } else {
                    &[("year", Part::Year), ("month", Part::Month), ("day", Part::DayOfMonth)]
                };
                for (k, p) in fields.iter().chain(&[
                    ("hour", Part::Hour),
                    ("minute", Part::Minute),
                    ("second", Part::Second),
                    ("millisecond", Part::Millisecond),
                ]) {
                    out.insert((*k).to_string(), Value::from(l.part(*p)));
                }
                owned(Value::Object(out))
            }
        }
    }
}

/// The date argument: `None` for null or missing, an error for anything but a date.
fn date_arg(op: &str, v: Option<&Value>) -> Result<Option<i64>, DbError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(x) => as_date(x)
            .map(Some)
            .ok_or_else(|| cmd(format!("`{op}` needs a date, not {}", type_name(v)))),
    }
}

/// The time zone argument: UTC when absent, `None` when it evaluates to null or missing.
fn tz_arg(op: &str, e: Option<&Expr>, root: &Value, env: &mut Env) -> Result<Option<TimeZone>, DbError> {
    let Some(e) = e else { return Ok(Some(TimeZone::UTC)) };
    match e.eval(root, env)?.as_deref() {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => time_zone(s).map(Some).ok_or_else(|| {
            cmd(format!(
                "`{op}`: unknown time zone `{}` (use an Olson name such as `Asia/Shanghai`, or an offset such as `+08:00`)",
                s.chars().take(64).collect::<String>()
            ))
        }),
        Some(other) => Err(cmd(format!("`{op}`: `timezone` must be a string, not {}", type_name(Some(other))))),
    }
}

/// An Olson name (`Asia/Shanghai`, `UTC`) or a UTC offset (`+08:00`, `+0800`, `+08`, `-05:30`).
fn time_zone(s: &str) -> Option<TimeZone> {
    if s.starts_with('+') || s.starts_with('-') {
        return parse_offset(s)
            .and_then(|secs| Offset::from_seconds(secs).ok())
            .map(TimeZone::fixed);
    }
    if s.eq_ignore_ascii_case("utc") || s.eq_ignore_ascii_case("gmt") || s == "Z" {
        return Some(TimeZone::UTC);
    }
    jiff::tz::db().get(s).ok()
}

/// `±hh`, `±hhmm` or `±hh:mm` as seconds east of UTC.
fn parse_offset(s: &str) -> Option<i32> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || rest.matches(':').count() > 1 {
        return None;
    }
    let (h, m) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (digits[..2].parse::<i32>().ok()?, digits[2..].parse::<i32>().ok()?),
        _ => return None,
    };
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

/// A date seen in a time zone.
struct Local {
    dt: DateTime,
    offset_secs: i32,
}

impl Local {
    fn of(op: &str, ms: i64, tz: &TimeZone) -> Result<Local, DbError> {
        let ts = Timestamp::from_millisecond(ms)
            .map_err(|_| cmd(format!("`{op}`: the date is outside the supported range of years")))?;
        Ok(Local {
            dt: tz.to_datetime(ts),
            offset_secs: tz.to_offset(ts).seconds(),
        })
    }

    fn part(&self, p: Part) -> i64 {
        let dt = self.dt;
        match p {
            Part::Year => i64::from(dt.year()),
            Part::Month => i64::from(dt.month()),
            Part::DayOfMonth => i64::from(dt.day()),
            Part::Hour => i64::from(dt.hour()),
            Part::Minute => i64::from(dt.minute()),
            Part::Second => i64::from(dt.second()),
            Part::Millisecond => i64::from(dt.millisecond()),
            Part::DayOfYear => i64::from(dt.day_of_year()),
            Part::DayOfWeek => i64::from(dt.weekday().to_sunday_one_offset()),
            Part::Week => {
                // weeks start on Sunday; the days before the year's first Sunday are week 0
                let yday = i64::from(dt.day_of_year()) - 1;
                let wday = i64::from(dt.weekday().to_sunday_zero_offset());
                (yday + 7 - wday) / 7
            }
            Part::IsoWeek => i64::from(dt.iso_week_date().week()),
            Part::IsoWeekYear => i64::from(dt.iso_week_date().year()),
            Part::IsoDayOfWeek => i64::from(dt.weekday().to_monday_one_offset()),
        }
    }
}

/// Days since the epoch of an ISO week date (weeks start on Monday; week 1 holds January 4th).
fn iso_days(year: i64, week: i64, weekday: i64) -> i64 {
    let jan4 = days_from_civil(year, 1, 4);
    let jan4_weekday = (jan4 + 3).rem_euclid(7) + 1; // 1970-01-01 was a Thursday (4)
    jan4 - (jan4_weekday - 1) + (week - 1) * 7 + (weekday - 1)
}

/// Local wall-clock milliseconds in `tz` to UTC milliseconds (a time that a daylight-saving jump
/// skips or repeats resolves as most systems do: the earlier offset).
fn to_utc(op: &str, local_ms: i64, tz: &TimeZone) -> Result<i64, DbError> {
    let range = || cmd(format!("`{op}`: the date is outside the supported range of years"));
    let naive = Timestamp::from_millisecond(local_ms).map_err(|_| range())?;
    let dt = TimeZone::UTC.to_datetime(naive);
    let ts = tz.to_timestamp(dt).map_err(|_| range())?;
    Ok(ts.as_millisecond())
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC (how dates become strings in `$concat`-like conversions).
pub(super) fn iso_string(ms: i64) -> Result<String, DbError> {
    format_date(
        "$toString",
        DEFAULT_FORMAT,
        &Local::of("$toString", ms, &TimeZone::UTC)?,
    )
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn format_date(op: &str, format: &str, l: &Local) -> Result<String, DbError> {
    use std::fmt::Write;
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let spec = chars
            .next()
            .ok_or_else(|| cmd(format!("`{op}`: the format ends with an unfinished `%`")))?;
        let p = |part| l.part(part);
        let _ = match spec {
            'Y' => write!(out, "{:04}", p(Part::Year)),
            'G' => write!(out, "{:04}", p(Part::IsoWeekYear)),
            'm' => write!(out, "{:02}", p(Part::Month)),
            'd' => write!(out, "{:02}", p(Part::DayOfMonth)),
            'H' => write!(out, "{:02}", p(Part::Hour)),
            'M' => write!(out, "{:02}", p(Part::Minute)),
            'S' => write!(out, "{:02}", p(Part::Second)),
            'L' => write!(out, "{:03}", p(Part::Millisecond)),
            'j' => write!(out, "{:03}", p(Part::DayOfYear)),
            'w' => write!(out, "{}", p(Part::DayOfWeek)),
            'u' => write!(out, "{}", p(Part::IsoDayOfWeek)),
            'U' => write!(out, "{:02}", p(Part::Week)),
            'V' => write!(out, "{:02}", p(Part::IsoWeek)),
            'b' => write!(out, "{}", &MONTHS[(p(Part::Month) as usize).clamp(1, 12) - 1][..3]),
            'B' => write!(out, "{}", MONTHS[(p(Part::Month) as usize).clamp(1, 12) - 1]),
            'z' => {
                let s = l.offset_secs;
                let sign = if s < 0 { '-' } else { '+' };
                write!(out, "{sign}{:02}{:02}", s.abs() / 3600, s.abs() % 3600 / 60)
            }
            'Z' => write!(out, "{}", l.offset_secs / 60),
            '%' => write!(out, "%"),
            other => return Err(cmd(format!("`{op}`: unknown format specifier `%{other}`"))),
        };
    }
    Ok(out)
}

/// Parses `s` with a `$dateFromString` format (or, without one, ISO 8601: `YYYY-MM-DD`, then
/// optionally `THH:MM[:SS[.fff]]` and `Z` or an offset). A string without an offset is read in
/// `tz`; a string with one cannot be combined with an explicit `timezone`.
fn parse_date(s: &str, format: Option<&str>, tz: &TimeZone, tz_given: bool) -> Result<i64, String> {
    let default;
    let format = match format {
        Some(f) => f,
        None => {
            default = iso_format_of(s);
            &default
        }
    };
    let mut p = Parsed::default();
    let b = s.as_bytes();
    let mut i = 0usize;
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            let mut buf = [0u8; 4];
            let lit = c.encode_utf8(&mut buf).as_bytes();
            if !b[i..].starts_with(lit) {
                return Err(format!("expected `{c}` at position {}", i + 1));
            }
            i += lit.len();
            continue;
        }
        let spec = chars.next().ok_or("the format ends with an unfinished `%`")?;
        let num = |i: &mut usize, min: usize, max: usize, what: &str| digits(s, i, min, max, what);
        match spec {
            'Y' => p.year = Some(num(&mut i, 4, 4, "a 4-digit year")?),
            'G' => p.iso_year = Some(num(&mut i, 4, 4, "a 4-digit ISO year")?),
            'm' => p.month = Some(num(&mut i, 1, 2, "a month")?),
            'd' => p.day = Some(num(&mut i, 1, 2, "a day")?),
            'H' => p.hour = num(&mut i, 1, 2, "an hour")?,
            'M' => p.minute = num(&mut i, 1, 2, "minutes")?,
            'S' => p.second = num(&mut i, 1, 2, "seconds")?,
            'L' => {
                let start = i;
                let v = num(&mut i, 1, 9, "milliseconds")?;
                let digits = (i - start) as u32;
                p.millis = if digits <= 3 {
                    v * 10i64.pow(3 - digits)
                } else {
                    v / 10i64.pow(digits - 3)
                };
            }
            'j' => p.yday = Some(num(&mut i, 1, 3, "a day of the year")?),
            'V' => p.iso_week = Some(num(&mut i, 1, 2, "an ISO week")?),
            'u' => p.iso_wday = Some(num(&mut i, 1, 1, "an ISO day of the week")?),
            'z' if b.get(i) == Some(&b'Z') => {
                i += 1;
                p.offset = Some(0);
            }
            'z' => {
                let start = i;
                if matches!(b.get(i), Some(b'+' | b'-')) {
                    i += 1;
                }
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b':') && i - start < 6 {
                    i += 1;
                }
                p.offset =
                    Some(parse_offset(&s[start..i]).ok_or_else(|| format!("bad offset at position {}", start + 1))?);
            }
            'Z' => {
                let start = i;
                if matches!(b.get(i), Some(b'+' | b'-')) {
                    i += 1;
                }
                let mins = num(&mut i, 1, 4, "an offset in minutes")?;
                let neg = b.get(start) == Some(&b'-');
                p.offset = Some(if neg { -mins } else { mins } as i32 * 60);
            }
            '%' => {
                if b.get(i) != Some(&b'%') {
                    return Err(format!("expected `%` at position {}", i + 1));
                }
                i += 1;
            }
            other => return Err(format!("unknown format specifier `%{other}`")),
        }
    }
    if i != b.len() {
        return Err(format!("unexpected text at position {}", i + 1));
    }
    if p.offset.is_some() && tz_given {
        return Err("the string has a time zone offset and a `timezone` was given as well".into());
    }
    let days = if let Some(y) = p.iso_year {
        iso_days(y, p.iso_week.unwrap_or(1), p.iso_wday.unwrap_or(1))
    } else {
        let y = p.year.ok_or("no year")?;
        if let Some(yd) = p.yday {
            if !(1..=366).contains(&yd) {
                return Err("the day of the year must be between 1 and 366".into());
            }
            days_from_civil(y, 1, 1) + yd - 1
        } else {
            let (m, d) = (p.month.unwrap_or(1), p.day.unwrap_or(1));
            if !(1..=12).contains(&m) || !(1..=31).contains(&d) || d > days_in_month(y, m) {
                return Err("no such date".into());
            }
            days_from_civil(y, m, d)
        }
    };
    if p.hour > 23 || p.minute > 59 || p.second > 59 {
        return Err("no such time".into());
    }
    let local = days * 86_400_000 + p.hour * 3_600_000 + p.minute * 60_000 + p.second * 1000 + p.millis;
    match p.offset {
        Some(off) => Ok(local - i64::from(off) * 1000),
        None => to_utc("$dateFromString", local, tz).map_err(|e| e.to_string()),
    }
}

/// Reads `min` to `max` ASCII digits of `s` at `*i` as a number.
fn digits(s: &str, i: &mut usize, min: usize, max: usize, what: &str) -> Result<i64, String> {
    let b = s.as_bytes();
    let start = *i;
    while *i < b.len() && *i - start < max && b[*i].is_ascii_digit() {
        *i += 1;
    }
    if *i - start < min {
        return Err(format!("expected {what} at position {}", start + 1));
    }
    s[start..*i].parse::<i64>().map_err(|e| e.to_string())
}

/// The format an ISO 8601 string without an explicit format has.
fn iso_format_of(s: &str) -> String {
    let mut f = String::from("%Y-%m-%d");
    let rest = s.get(10..).unwrap_or("");
    let Some(sep) = rest.chars().next() else { return f };
    if sep != 'T' && sep != ' ' {
        return f;
    }
    f.push(sep);
    f.push_str("%H:%M");
    let time = &rest[1..];
    let mut tail = time.get(5..).unwrap_or("");
    if tail.starts_with(':') {
        f.push_str(":%S");
        tail = tail.get(3..).unwrap_or("");
        if tail.starts_with('.') {
            f.push_str(".%L");
            tail = tail.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
        }
    }
    if !tail.is_empty() {
        f.push_str("%z");
    }
    f
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[derive(Default)]
struct Parsed {
    year: Option<i64>,
    month: Option<i64>,
    day: Option<i64>,
    yday: Option<i64>,
    iso_year: Option<i64>,
    iso_week: Option<i64>,
    iso_wday: Option<i64>,
    hour: i64,
    minute: i64,
    second: i64,
    millis: i64,
    offset: Option<i32>,
}
