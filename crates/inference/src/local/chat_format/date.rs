//! A calendar date and the little `strftime` that chat templates use (`"%d %b %Y"` and friends).

use std::time::{SystemTime, UNIX_EPOCH};

/// A day in the proleptic Gregorian calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    year: i32,
    month: u8,
    day: u8,
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
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

impl Date {
    /// `None` unless the day exists (`Date::new(2024, 2, 30)` is `None`).
    pub fn new(year: i32, month: u8, day: u8) -> Option<Self> {
        let date = Self { year, month, day };
        ((1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month)).then_some(date)
    }

    /// Today (UTC) by the system clock.
    pub fn today() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self::from_days_since_epoch(i64::try_from(secs / 86_400).unwrap_or(0))
    }

    pub fn year(&self) -> i32 {
        self.year
    }
    pub fn month(&self) -> u8 {
        self.month
    }
    pub fn day(&self) -> u8 {
        self.day
    }

    /// Formats like Python's `strftime` for the date fields: `%d %-d %e %m %B %b %Y %y %A %a %j %%`;
    /// time fields (`%H %M %S`) are midnight, anything else is kept as written.
    pub fn strftime(&self, format: &str) -> String {
        let month_name = MONTHS[usize::from(self.month - 1)];
        let weekday = WEEKDAYS[self.weekday_from_monday()];
        let mut out = String::new();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let no_pad = chars.peek() == Some(&'-');
            if no_pad {
                chars.next();
            }
            match chars.next() {
                Some('d') if no_pad => out.push_str(&self.day.to_string()),
                Some('d') => out.push_str(&format!("{:02}", self.day)),
                Some('e') => out.push_str(&format!("{:>2}", self.day)),
                Some('m') if no_pad => out.push_str(&self.month.to_string()),
                Some('m') => out.push_str(&format!("{:02}", self.month)),
                Some('B') => out.push_str(month_name),
                Some('b') | Some('h') => out.push_str(&month_name[..3]),
                Some('Y') => out.push_str(&self.year.to_string()),
                Some('y') => out.push_str(&format!("{:02}", self.year.rem_euclid(100))),
                Some('A') => out.push_str(weekday),
                Some('a') => out.push_str(&weekday[..3]),
                Some('j') => out.push_str(&format!("{:03}", self.day_of_year())),
                Some('H') | Some('M') | Some('S') | Some('I') => out.push_str("00"),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    if no_pad {
                        out.push('-');
                    }
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        out
    }

    fn day_of_year(&self) -> u32 {
        (1..self.month)
            .map(|m| u32::from(days_in_month(self.year, m)))
            .sum::<u32>()
            + u32::from(self.day)
    }

    fn days_since_epoch(&self) -> i64 {
        // Days from 1970-01-01, counting in 400-year eras starting on March 1st.
        let (y, m, d) = (
            i64::from(self.year),
            i64::from(self.month),
            i64::from(self.day),
        );
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let year_of_era = y - era * 400;
        let month_from_march = (m + 9) % 12;
        let day_of_year = (153 * month_from_march + 2) / 5 + d - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }

    fn from_days_since_epoch(days: i64) -> Self {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z - era * 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
        let month = if month_from_march < 10 {
            month_from_march + 3
        } else {
            month_from_march - 9
        };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        Self {
            year: i32::try_from(year).unwrap_or(1970),
            month: u8::try_from(month).unwrap_or(1),
            day: u8::try_from(day).unwrap_or(1),
        }
    }

    fn weekday_from_monday(&self) -> usize {
        // 1970-01-01 was a Thursday (index 3).
        usize::try_from((self.days_since_epoch() + 3).rem_euclid(7)).unwrap_or(0)
    }
}

fn days_in_month(year: i32, month: u8) -> u8 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python() {
        let date = Date::new(2024, 7, 26).expect("valid");
        assert_eq!(date.strftime("%d %b %Y"), "26 Jul 2024");
        assert_eq!(date.strftime("%d %B %Y"), "26 July 2024");
        assert_eq!(
            date.strftime("%A %Y-%m-%d %j %%"),
            "Friday 2024-07-26 208 %"
        );
        let date = Date::new(2024, 9, 4).expect("valid");
        assert_eq!(date.strftime("%-d/%-m %e %q"), "4/9  4 %q");
        assert_eq!(Date::new(2023, 2, 29), None);
        assert_eq!(Date::new(2024, 13, 1), None);
    }

    #[test]
    fn days_round_trip() {
        for days in [-800_000, -1, 0, 1, 19_000, 20_000, 2_000_000] {
            let date = Date::from_days_since_epoch(days);
            assert_eq!(date.days_since_epoch(), days);
        }
        assert_eq!(
            Date::from_days_since_epoch(0),
            Date::new(1970, 1, 1).expect("valid")
        );
        assert!(Date::today().year() >= 2024);
    }
}
