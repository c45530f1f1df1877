//! One field of a cron expression: the values it allows, parsed from text such
//! as `*`, `1,2`, `1-5`, `*/5`, `1-30/3`, `MON-FRI` or `JAN,JUL`.

/// The six fields of a cron expression, in the order they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

const MONTH_NAMES: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const WEEKDAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Field {
    /// All fields, in the order of a 6-field expression.
    pub(super) const ALL: [Field; 6] =
        [Field::Second, Field::Minute, Field::Hour, Field::DayOfMonth, Field::Month, Field::DayOfWeek];

    /// The name used in error messages.
    pub(super) fn name(self) -> &'static str {
        match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        }
    }

    /// The smallest and largest value the field accepts, as written.
    fn bounds(self) -> (u8, u8) {
        match self {
            Field::Second | Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            // 0 and 7 both mean Sunday.
            Field::DayOfWeek => (0, 7),
        }
    }

    /// What a valid value looks like, to finish an error message.
    fn expected(self) -> String {
        let (low, high) = self.bounds();
        match self {
            Field::Month => format!("a value from {low} to {high} or a name JAN-DEC"),
            Field::DayOfWeek => format!("a value from {low} to {high} (0 and 7 are Sunday) or a name SUN-SAT"),
            _ => format!("a value from {low} to {high}"),
        }
    }

    /// Resolves a name such as `jan` or `Mon` to its number, for the fields that have names.
    fn value_of_name(self, name: &str) -> Option<u8> {
        let (names, first): (&[&str], u8) = match self {
            Field::Month => (&MONTH_NAMES, 1),
            Field::DayOfWeek => (&WEEKDAY_NAMES, 0),
            _ => return None,
        };
        let index = names.iter().position(|known| known.eq_ignore_ascii_case(name))?;
        u8::try_from(index).ok().map(|index| index + first)
    }
}

/// The set of values a field allows, one bit per value (every field's values are below 64).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ValueSet(u64);

impl ValueSet {
    /// Whether `value` is in the set.
    pub(super) fn contains(self, value: u8) -> bool {
        value < 64 && self.0 & (1 << value) != 0
    }

    /// The smallest value in the set that is `>= from`, if any.
    pub(super) fn first_from(self, from: u8) -> Option<u8> {
        if from >= 64 {
            return None;
        }
        let rest = self.0 >> from;
        if rest == 0 { None } else { u8::try_from(rest.trailing_zeros()).ok().map(|offset| from + offset) }
    }

    fn insert(&mut self, value: u8) {
        self.0 |= 1 << value;
    }

    fn remove(&mut self, value: u8) {
        self.0 &= !(1 << value);
    }

    #[cfg(test)]
    pub(super) fn values(self) -> Vec<u8> {
        (0..64).filter(|&value| self.contains(value)).collect()
    }
}

/// A parsed field: its values, and whether it was written starting with `*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ParsedField {
    pub(super) values: ValueSet,
    /// `*` or `*/n`: cron treats such a day field as unrestricted when it
    /// decides how day-of-month and day-of-week combine.
    pub(super) starts_with_star: bool,
}

/// Parses one field's text. The error is the problem in words, without the expression around it.
pub(super) fn parse_field(field: Field, text: &str) -> Result<ParsedField, String> {
    let mut values = ValueSet(0);
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!(
                "{} field {text:?} has an empty list entry; separate values with single commas, e.g. 1,2",
                field.name()
            ));
        }
        let (low, high, step) = parse_item(field, item)?;
        for value in (low..=high).step_by(step) {
            values.insert(value);
        }
    }
    if field == Field::DayOfWeek && values.contains(7) {
        values.remove(7);
        values.insert(0);
    }
    Ok(ParsedField { values, starts_with_star: text.starts_with('*') })
}

/// Parses one list entry into an inclusive range and a step.
fn parse_item(field: Field, item: &str) -> Result<(u8, u8, usize), String> {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(parse_step(field, item, step)?)),
        None => (item, None),
    };
    let (min, max) = field.bounds();
    let (low, high) = if range == "*" {
        (min, max)
    } else if let Some((low, high)) = range.split_once('-') {
        let (low, high) = (parse_value(field, low)?, parse_value(field, high)?);
        if low > high {
            return Err(format!(
                "{} field: range {range:?} runs backwards; write the smaller value first, e.g. {high}-{low}",
                field.name()
            ));
        }
        (low, high)
    } else {
        let low = parse_value(field, range)?;
        // `5/15` means "from 5 to the end, every 15", as in most cron implementations.
        if step.is_some() { (low, max) } else { (low, low) }
    };
    Ok((low, high, step.unwrap_or(1)))
}

fn parse_step(field: Field, item: &str, step: &str) -> Result<usize, String> {
    match step.parse::<usize>() {
        Ok(0) => Err(format!(
            "{} field: step 0 in {item:?} never advances; write a step of 1 or more, e.g. */5",
            field.name()
        )),
        Ok(step) => Ok(step),
        Err(_) => Err(format!(
            "{} field: step {step:?} in {item:?} is not a whole number; write a step of 1 or more, e.g. */5",
            field.name()
        )),
    }
}

fn parse_value(field: Field, text: &str) -> Result<u8, String> {
    let (min, max) = field.bounds();
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        return match text.parse::<u8>() {
            Ok(value) if (min..=max).contains(&value) => Ok(value),
            _ => Err(format!("{} field: {text} is out of range; write {}", field.name(), field.expected())),
        };
    }
    field.value_of_name(text).ok_or_else(|| {
        let what = if text.is_empty() { "a missing value".to_owned() } else { format!("{text:?}") };
        format!("{} field: {what} is not a valid value; write {}", field.name(), field.expected())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(field: Field, text: &str) -> Vec<u8> {
        parse_field(field, text).unwrap().values.values()
    }

    fn error(field: Field, text: &str) -> String {
        parse_field(field, text).unwrap_err()
    }

    #[test]
    fn star_allows_the_whole_range() {
        assert_eq!(values(Field::Second, "*"), (0..=59).collect::<Vec<_>>());
        assert_eq!(values(Field::Hour, "*"), (0..=23).collect::<Vec<_>>());
        assert_eq!(values(Field::DayOfMonth, "*"), (1..=31).collect::<Vec<_>>());
        assert_eq!(values(Field::Month, "*"), (1..=12).collect::<Vec<_>>());
        assert_eq!(values(Field::DayOfWeek, "*"), (0..=6).collect::<Vec<_>>());
        assert!(parse_field(Field::DayOfWeek, "*").unwrap().starts_with_star);
        assert!(parse_field(Field::DayOfWeek, "*/2").unwrap().starts_with_star);
        assert!(!parse_field(Field::DayOfWeek, "0-6").unwrap().starts_with_star);
    }

    #[test]
    fn single_values_lists_and_ranges() {
        assert_eq!(values(Field::Minute, "7"), [7]);
        assert_eq!(values(Field::Minute, "1,2,30"), [1, 2, 30]);
        assert_eq!(values(Field::Hour, "1-5"), [1, 2, 3, 4, 5]);
        assert_eq!(values(Field::Hour, "0-2,22-23"), [0, 1, 2, 22, 23]);
        assert_eq!(values(Field::Second, "5,5,5"), [5]);
    }

    #[test]
    fn steps_over_star_ranges_and_single_starts() {
        assert_eq!(values(Field::Minute, "*/15"), [0, 15, 30, 45]);
        assert_eq!(values(Field::DayOfMonth, "1-30/3"), [1, 4, 7, 10, 13, 16, 19, 22, 25, 28]);
        assert_eq!(values(Field::Second, "5/20"), [5, 25, 45]);
        assert_eq!(values(Field::DayOfMonth, "*/10"), [1, 11, 21, 31]);
        assert_eq!(values(Field::Minute, "*/60"), [0]);
        assert_eq!(values(Field::Hour, "*/1"), (0..=23).collect::<Vec<_>>());
    }

    #[test]
    fn month_and_weekday_names_in_any_case() {
        assert_eq!(values(Field::Month, "JAN"), [1]);
        assert_eq!(values(Field::Month, "jan,Jul,DEC"), [1, 7, 12]);
        assert_eq!(values(Field::Month, "mar-MAY"), [3, 4, 5]);
        assert_eq!(values(Field::Month, "JAN-DEC/3"), [1, 4, 7, 10]);
        assert_eq!(values(Field::DayOfWeek, "SUN"), [0]);
        assert_eq!(values(Field::DayOfWeek, "mon-fri"), [1, 2, 3, 4, 5]);
        assert_eq!(values(Field::DayOfWeek, "Sat,sun"), [0, 6]);
    }

    #[test]
    fn day_of_week_seven_is_sunday() {
        assert_eq!(values(Field::DayOfWeek, "7"), [0]);
        assert_eq!(values(Field::DayOfWeek, "0"), [0]);
        assert_eq!(values(Field::DayOfWeek, "5-7"), [0, 5, 6]);
        assert_eq!(values(Field::DayOfWeek, "0-7"), (0..=6).collect::<Vec<_>>());
    }

    #[test]
    fn out_of_range_values_say_the_valid_range() {
        assert_eq!(error(Field::Second, "60"), "second field: 60 is out of range; write a value from 0 to 59");
        assert_eq!(error(Field::Minute, "0,75"), "minute field: 75 is out of range; write a value from 0 to 59");
        assert_eq!(error(Field::Hour, "24"), "hour field: 24 is out of range; write a value from 0 to 23");
        assert_eq!(error(Field::DayOfMonth, "0"), "day-of-month field: 0 is out of range; write a value from 1 to 31");
        assert_eq!(
            error(Field::Month, "13"),
            "month field: 13 is out of range; write a value from 1 to 12 or a name JAN-DEC"
        );
        assert_eq!(
            error(Field::DayOfWeek, "8"),
            "day-of-week field: 8 is out of range; write a value from 0 to 7 (0 and 7 are Sunday) or a name SUN-SAT"
        );
        assert!(error(Field::Minute, "99999999999999999999").contains("out of range"));
    }

    #[test]
    fn bad_steps_are_rejected() {
        assert_eq!(
            error(Field::Minute, "*/0"),
            "minute field: step 0 in \"*/0\" never advances; write a step of 1 or more, e.g. */5"
        );
        assert!(error(Field::Second, "1-30/0").contains("step 0"));
        assert!(error(Field::Minute, "*/x").contains("step \"x\" in \"*/x\" is not a whole number"));
        assert!(error(Field::Minute, "*/").contains("is not a whole number"));
        assert!(error(Field::Minute, "*/-5").contains("is not a whole number"));
    }

    #[test]
    fn malformed_values_are_rejected() {
        assert_eq!(
            error(Field::Hour, "5-1"),
            "hour field: range \"5-1\" runs backwards; write the smaller value first, e.g. 1-5"
        );
        assert_eq!(
            error(Field::DayOfWeek, "FUNDAY"),
            "day-of-week field: \"FUNDAY\" is not a valid value; write a value from 0 to 7 (0 and 7 are Sunday) \
             or a name SUN-SAT"
        );
        assert!(error(Field::Hour, "MON").starts_with("hour field: \"MON\" is not a valid value"));
        assert!(error(Field::Month, "SUN").starts_with("month field: \"SUN\" is not a valid value"));
        assert!(error(Field::Minute, "1,,2").contains("empty list entry"));
        assert!(error(Field::Minute, "1,").contains("empty list entry"));
        assert!(error(Field::Minute, "-5").contains("a missing value is not a valid value"));
        assert!(error(Field::Minute, "?").contains("\"?\" is not a valid value"));
        assert!(error(Field::Minute, "1-2-3").contains("not a valid value"));
    }

    #[test]
    fn first_from_finds_the_next_allowed_value() {
        let set = parse_field(Field::Minute, "10,20").unwrap().values;
        assert_eq!(set.first_from(0), Some(10));
        assert_eq!(set.first_from(10), Some(10));
        assert_eq!(set.first_from(11), Some(20));
        assert_eq!(set.first_from(21), None);
        assert_eq!(set.first_from(60), None);
        assert_eq!(set.first_from(64), None);
        assert_eq!(set.first_from(200), None);
    }
}
