//! Graph API versions and the dates Meta retires them (from Meta's Graph API changelog, as
//! stored in November 2026). A send on a retired version fails at Meta; we refuse it first,
//! naming the date and the version to move to.

/// The newest version Meta documents; the default.
pub const NEWEST: &str = "v26.0";

/// Versions whose end of availability Meta has announced: (major, last day, `YYYY-MM-DD`).
/// Versions older than the oldest row were retired before it.
#[rustfmt::skip]
pub const SUNSETS: &[(u32, &str)] = &[
    (20, "2026-09-24"),
    (21, "2027-01-21"),
    (23, "2027-10-08"),
    (25, "2028-07-29"),
];

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The first millisecond after a `YYYY-MM-DD` day ends (UTC).
fn end_of_day_ms(date: &str) -> u64 {
    let mut parts = date.split('-').map(|p| p.parse::<i64>().unwrap_or(0));
    let (y, m, d) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(1),
        parts.next().unwrap_or(1),
    );
    u64::try_from((days_from_civil(y, m, d) + 1) * 86_400_000).unwrap_or(0)
}

/// The major version of `vNN.N`.
fn major(version: &str) -> Option<u32> {
    version.strip_prefix('v')?.split('.').next()?.parse().ok()
}

/// Why `version` can no longer be used at `now_ms`, if it cannot.
pub fn retired(version: &str, now_ms: u64) -> Option<String> {
    let major = major(version)?;
    let (oldest, oldest_day) = SUNSETS[0];
    if major < oldest {
        return Some(format!(
            "Graph API {version} was retired by Meta (every version before v{oldest}.0 was gone by {oldest_day}); use {NEWEST}"
        ));
    }
    let (_, day) = SUNSETS.iter().find(|(m, _)| *m == major)?;
    (now_ms >= end_of_day_ms(day)).then(|| {
        format!("Graph API {version} was available until {day} and is retired; use {NEWEST}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_to_the_right_day() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        // 2026-09-24 ends at 2026-09-25T00:00:00Z = 1790294400 s.
        assert_eq!(end_of_day_ms("2026-09-24"), 1_790_294_400_000);
    }

    #[test]
    fn a_version_is_refused_only_after_its_last_day() {
        let last_day = end_of_day_ms("2026-09-24");
        assert_eq!(retired("v20.0", last_day - 1), None);
        let why = retired("v20.0", last_day).unwrap();
        assert!(why.contains("2026-09-24") && why.contains(NEWEST), "{why}");
        assert!(retired("v19.0", 0).unwrap().contains("before v20.0"));
        assert_eq!(retired("v26.0", u64::MAX), None);
        assert_eq!(
            retired("v24.0", last_day),
            None,
            "no announced date: allowed"
        );
        assert_eq!(
            retired("v27.0", last_day),
            None,
            "newer than we know: allowed"
        );
    }
}
