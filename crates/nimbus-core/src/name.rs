use std::fmt;

/// A function's name: `[a-z][a-z0-9-]{0,62}`. Validated once, at the edge.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FunctionName(String);

/// Why a string is not a valid [`FunctionName`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid function name {0:?}: use 1 to 63 characters of a-z, 0-9 and '-', starting with a letter")]
pub struct InvalidName(pub String);

impl FunctionName {
    pub const MAX_LEN: usize = 63;

    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        let mut chars = s.chars();
        let valid = matches!(chars.next(), Some('a'..='z'))
            && s.len() <= Self::MAX_LEN
            && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'));
        if valid { Ok(Self(s.to_owned())) } else { Err(InvalidName(s.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for FunctionName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for FunctionName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for ok in ["a", "hello", "hello-world-2", &"a".repeat(63)] {
            assert_eq!(FunctionName::parse(ok).map(|n| n.to_string()), Ok(ok.to_string()));
        }
    }

    #[test]
    fn rejects_invalid_names() {
        for bad in ["", "1abc", "-a", "Hello", "a_b", "a.b", "a/b", &"a".repeat(64), "é"] {
            assert!(FunctionName::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
