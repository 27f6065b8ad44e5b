//! `$bucketAuto`'s `granularity`: rounding bucket boundaries up and down to a series of preferred
//! numbers (the Renard series R5–R80, the E series E6–E192 of IEC 60063, 1-2-5) or to powers of
//! two, as MongoDB does. Boundaries are strictly rounded: a value already in the series rounds to
//! the next one up (or down).

use serde_json::Value;

use super::values::{cmd, double, shown, Num};
use crate::db::DbError;

const R5: &[f64] = &[10.0, 16.0, 25.0, 40.0, 63.0];
const R10: &[f64] = &[100.0, 125.0, 160.0, 200.0, 250.0, 315.0, 400.0, 500.0, 630.0, 800.0];
const R20: &[f64] = &[
    100.0, 112.0, 125.0, 140.0, 160.0, 180.0, 200.0, 224.0, 250.0, 280.0, 315.0, 355.0, 400.0, 450.0, 500.0, 560.0,
    630.0, 710.0, 800.0, 900.0,
];
const R40: &[f64] = &[
    100.0, 106.0, 112.0, 118.0, 125.0, 132.0, 140.0, 150.0, 160.0, 170.0, 180.0, 190.0, 200.0, 212.0, 224.0, 236.0,
    250.0, 265.0, 280.0, 300.0, 315.0, 355.0, 375.0, 400.0, 425.0, 450.0, 475.0, 500.0, 530.0, 560.0, 600.0, 630.0,
    670.0, 710.0, 750.0, 800.0, 850.0, 900.0, 950.0,
];
const R80: &[f64] = &[
    103.0, 109.0, 115.0, 122.0, 128.0, 136.0, 145.0, 155.0, 165.0, 175.0, 185.0, 195.0, 206.0, 218.0, 230.0, 243.0,
    258.0, 272.0, 290.0, 307.0, 325.0, 345.0, 365.0, 387.0, 412.0, 437.0, 462.0, 487.0, 515.0, 545.0, 575.0, 615.0,
    650.0, 690.0, 730.0, 775.0, 825.0, 875.0, 925.0, 975.0,
];
const S125: &[f64] = &[10.0, 20.0, 50.0];
const E6: &[f64] = &[10.0, 15.0, 22.0, 33.0, 47.0, 68.0];
const E12: &[f64] = &[10.0, 12.0, 15.0, 18.0, 22.0, 27.0, 33.0, 39.0, 47.0, 56.0, 68.0, 82.0];
const E24: &[f64] = &[
    10.0, 11.0, 12.0, 13.0, 15.0, 16.0, 18.0, 20.0, 22.0, 24.0, 27.0, 30.0, 33.0, 36.0, 39.0, 43.0, 47.0, 51.0, 56.0,
    62.0, 68.0, 75.0, 82.0, 91.0,
];
const E48: &[f64] = &[
    100.0, 105.0, 110.0, 115.0, 121.0, 127.0, 133.0, 140.0, 147.0, 154.0, 162.0, 169.0, 178.0, 187.0, 196.0, 205.0,
    215.0, 226.0, 237.0, 249.0, 261.0, 274.0, 287.0, 301.0, 316.0, 332.0, 348.0, 365.0, 383.0, 402.0, 422.0, 442.0,
    464.0, 487.0, 511.0, 536.0, 562.0, 590.0, 619.0, 649.0, 681.0, 715.0, 750.0, 787.0, 825.0, 866.0, 909.0, 953.0,
];
const E96: &[f64] = &[
    100.0, 102.0, 105.0, 107.0, 110.0, 113.0, 115.0, 118.0, 121.0, 124.0, 127.0, 130.0, 133.0, 137.0, 140.0, 143.0,
    147.0, 150.0, 154.0, 158.0, 162.0, 165.0, 169.0, 174.0, 178.0, 182.0, 187.0, 191.0, 196.0, 200.0, 205.0, 210.0,
    215.0, 221.0, 226.0, 232.0, 237.0, 243.0, 249.0, 255.0, 261.0, 267.0, 274.0, 280.0, 287.0, 294.0, 301.0, 309.0,
    316.0, 324.0, 332.0, 340.0, 348.0, 357.0, 365.0, 374.0, 383.0, 392.0, 402.0, 412.0, 422.0, 432.0, 442.0, 453.0,
    464.0, 475.0, 487.0, 499.0, 511.0, 523.0, 536.0, 549.0, 562.0, 576.0, 590.0, 604.0, 619.0, 634.0, 649.0, 665.0,
    681.0, 698.0, 715.0, 732.0, 750.0, 768.0, 787.0, 806.0, 825.0, 845.0, 866.0, 887.0, 909.0, 931.0, 953.0, 976.0,
];
const E192: &[f64] = &[
    100.0, 101.0, 102.0, 104.0, 105.0, 106.0, 107.0, 109.0, 110.0, 111.0, 113.0, 114.0, 115.0, 117.0, 118.0, 120.0,
    121.0, 123.0, 124.0, 126.0, 127.0, 129.0, 130.0, 132.0, 133.0, 135.0, 137.0, 138.0, 140.0, 142.0, 143.0, 145.0,
    147.0, 149.0, 150.0, 152.0, 154.0, 156.0, 158.0, 160.0, 162.0, 164.0, 165.0, 167.0, 169.0, 172.0, 174.0, 176.0,
    178.0, 180.0, 182.0, 184.0, 187.0, 189.0, 191.0, 193.0, 196.0, 198.0, 200.0, 203.0, 205.0, 208.0, 210.0, 213.0,
    215.0, 218.0, 221.0, 223.0, 226.0, 229.0, 232.0, 234.0, 237.0, 240.0, 243.0, 246.0, 249.0, 252.0, 255.0, 258.0,
    261.0, 264.0, 267.0, 271.0, 274.0, 277.0, 280.0, 284.0, 287.0, 291.0, 294.0, 298.0, 301.0, 305.0, 309.0, 312.0,
    316.0, 320.0, 324.0, 328.0, 332.0, 336.0, 340.0, 344.0, 348.0, 352.0, 357.0, 361.0, 365.0, 370.0, 374.0, 379.0,
    383.0, 388.0, 392.0, 397.0, 402.0, 407.0, 412.0, 417.0, 422.0, 427.0, 432.0, 437.0, 442.0, 448.0, 453.0, 459.0,
    464.0, 470.0, 475.0, 481.0, 487.0, 493.0, 499.0, 505.0, 511.0, 517.0, 523.0, 530.0, 536.0, 542.0, 549.0, 556.0,
    562.0, 569.0, 576.0, 583.0, 590.0, 597.0, 604.0, 612.0, 619.0, 626.0, 634.0, 642.0, 649.0, 657.0, 665.0, 673.0,
    681.0, 690.0, 698.0, 706.0, 715.0, 723.0, 732.0, 741.0, 750.0, 759.0, 768.0, 777.0, 787.0, 796.0, 806.0, 816.0,
    825.0, 835.0, 845.0, 856.0, 866.0, 876.0, 887.0, 898.0, 909.0, 920.0, 931.0, 942.0, 953.0, 965.0, 976.0, 988.0,
];

#[derive(Debug, Clone, Copy)]
pub(super) enum Granularity {
    /// One decade of a preferred number series (ascending; the next decade starts at 10× the first).
    Series(&'static [f64]),
    PowersOf2,
}

impl Granularity {
    pub fn named(name: &str) -> Option<Granularity> {
        Some(Granularity::Series(match name {
            "R5" => R5,
            "R10" => R10,
            "R20" => R20,
            "R40" => R40,
            "R80" => R80,
            "1-2-5" => S125,
            "E6" => E6,
            "E12" => E12,
            "E24" => E24,
            "E48" => E48,
            "E96" => E96,
            "E192" => E192,
            "POWERSOF2" => return Some(Granularity::PowersOf2),
            _ => return None,
        }))
    }

    /// Group-by values must be non-negative numbers to be rounded.
    pub fn check(&self, v: &Value) -> Result<(), DbError> {
        match Num::of(v) {
            Some(n) if n.f() >= 0.0 => Ok(()),
            _ => Err(cmd(format!(
                "`$bucketAuto` with a `granularity` groups by non-negative numbers only, found {}",
                shown(Some(v))
            ))),
        }
    }

    /// The smallest number of the series greater than `v` (0 stays 0).
    pub fn round_up(&self, v: &Value) -> Result<Value, DbError> {
        self.check(v)?;
        let n = Num::of(v).map_or(0.0, Num::f);
        if n == 0.0 {
            return Ok(v.clone());
        }
        match self {
            Granularity::PowersOf2 => power_of_two(v, n, true),
            Granularity::Series(series) => {
                let (lo, hi) = (series[0], series[series.len() - 1]);
                let mut k = 0;
                while n >= scaled(hi, k) {
                    k += 1;
                }
                while n < scaled(lo, k) {
                    let previous_min = scaled(lo, k);
                    k -= 1;
                    if n >= scaled(hi, k) {
                        return double("$bucketAuto", previous_min);
                    }
                }
                let next = series
                    .iter()
                    .map(|s| scaled(*s, k))
                    .find(|c| *c > n)
                    .unwrap_or(scaled(lo, k + 1));
                double("$bucketAuto", next)
            }
        }
    }

    /// The largest number of the series smaller than `v` (0 stays 0).
    pub fn round_down(&self, v: &Value) -> Result<Value, DbError> {
        self.check(v)?;
        let n = Num::of(v).map_or(0.0, Num::f);
        if n == 0.0 {
            return Ok(v.clone());
        }
        match self {
            Granularity::PowersOf2 => power_of_two(v, n, false),
            Granularity::Series(series) => {
                let (lo, hi) = (series[0], series[series.len() - 1]);
                let mut k = 0;
                while n <= scaled(lo, k) {
                    k -= 1;
                }
                while n > scaled(hi, k) {
                    let previous_max = scaled(hi, k);
                    k += 1;
                    if n <= scaled(lo, k) {
                        return double("$bucketAuto", previous_max);
                    }
                }
                let prev = series
                    .iter()
                    .rev()
                    .map(|s| scaled(*s, k))
                    .find(|c| *c < n)
                    .unwrap_or(scaled(hi, k - 1));
                double("$bucketAuto", prev)
            }
        }
    }
}

/// `s × 10^k`, dividing for negative `k` so that 63 × 10⁻¹ is exactly the double nearest 6.3.
fn scaled(s: f64, k: i32) -> f64 {
    if k >= 0 {
        s * 10f64.powi(k)
    } else {
        s / 10f64.powi(-k)
    }
}

/// The next power of two above (or below) `n`; integers stay integers while they can.
fn power_of_two(v: &Value, n: f64, up: bool) -> Result<Value, DbError> {
    if let Some(Num::Int(i)) = Num::of(v) {
        let i = i as u64;
        let r = if up {
            (i + 1).checked_next_power_of_two()
        } else if i > 1 {
            Some(1u64 << (63 - (i - 1).leading_zeros()))
        } else {
            None
        };
        if let Some(r) = r.filter(|r| *r <= i64::MAX as u64) {
            return Ok(Value::from(r as i64));
        }
    }
    let e = n.log2();
    let p = if up { e.floor() + 1.0 } else { e.ceil() - 1.0 };
    double("$bucketAuto", 2f64.powf(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn series_round_strictly_up_and_down() {
        let r5 = Granularity::named("R5").unwrap();
        assert_eq!(r5.round_up(&json!(17)).unwrap(), json!(25.0));
        assert_eq!(r5.round_up(&json!(25)).unwrap(), json!(40.0));
        assert_eq!(r5.round_up(&json!(63)).unwrap(), json!(100.0));
        assert_eq!(r5.round_up(&json!(7)).unwrap(), json!(10.0));
        assert_eq!(r5.round_down(&json!(17)).unwrap(), json!(16.0));
        assert_eq!(r5.round_down(&json!(10)).unwrap(), json!(6.3));
        assert_eq!(r5.round_down(&json!(100)).unwrap(), json!(63.0));
        assert_eq!(r5.round_up(&json!(0)).unwrap(), json!(0));
        let e6 = Granularity::named("E6").unwrap();
        assert_eq!(e6.round_up(&json!(0.8)).unwrap(), json!(1.0));
        assert_eq!(e6.round_down(&json!(0.8)).unwrap(), json!(0.68));
        assert_eq!(
            Granularity::named("1-2-5").unwrap().round_up(&json!(120)).unwrap(),
            json!(200.0)
        );
        assert!(Granularity::named("R7").is_none());
        assert!(r5.round_up(&json!(-1)).is_err());
        assert!(r5.round_up(&json!("a")).is_err());
    }

    #[test]
    fn powers_of_two() {
        let p = Granularity::named("POWERSOF2").unwrap();
        assert_eq!(p.round_up(&json!(5)).unwrap(), json!(8));
        assert_eq!(p.round_up(&json!(8)).unwrap(), json!(16));
        assert_eq!(p.round_down(&json!(8)).unwrap(), json!(4));
        assert_eq!(p.round_down(&json!(9)).unwrap(), json!(8));
        assert_eq!(p.round_down(&json!(1)).unwrap(), json!(0.5));
        assert_eq!(p.round_up(&json!(0.3)).unwrap(), json!(0.5));
        assert_eq!(p.round_down(&json!(0.3)).unwrap(), json!(0.25));
    }
}
