//! Plan values with units: durations (`15s`, `2h`) and sizes (`10MB`), kept with the text the
//! operator wrote so that rendered configs say the same thing.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration as written in the plan (`"15s"`, `"2h"`, `"1m30s"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dur {
    text: String,
    value: Duration,
}

impl Dur {
    pub fn parse(text: &str) -> Result<Self, String> {
        let value = humantime::parse_duration(text).map_err(|_| {
            format!("invalid duration `{text}`, expected a number and a unit such as `15s`, `5m` or `2h`")
        })?;
        Ok(Dur {
            text: text.to_string(),
            value,
        })
    }

    pub fn from_millis(ms: u64) -> Self {
        let value = Duration::from_millis(ms);
        let mut d = Dur {
            text: String::new(),
            value,
        };
        d.text = d.compact();
        d
    }

    pub fn value(&self) -> Duration {
        self.value
    }

    pub fn as_secs(&self) -> u64 {
        self.value.as_secs()
    }

    /// The duration in Prometheus' and NATS' syntax (`1h30m`, `500ms`, `360h` for 15 days).
    pub fn compact(&self) -> String {
        let mut ms = self.value.as_millis();
        if ms == 0 {
            return "0s".into();
        }
        let mut out = String::new();
        for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
            if ms >= size {
                out.push_str(&format!("{}{unit}", ms / size));
                ms %= size;
            }
        }
        if ms > 0 {
            out.push_str(&format!("{ms}ms"));
        }
        out
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Dur::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// A byte size as written in the plan (`"10MB"`, `"512KB"`, `"1GB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Size(pub u64);

impl Size {
    pub fn parse(text: &str) -> Result<Self, String> {
        let err = || {
            format!(
                "invalid size `{text}`, expected a number and a unit such as `512KB`, `10MB` or `1GB`"
            )
        };
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits.parse().map_err(|_| err())?;
        let factor = match unit.trim() {
            "" | "B" => 1,
            "KB" => 1 << 10,
            "MB" => 1 << 20,
            "GB" => 1 << 30,
            _ => return Err(err()),
        };
        n.checked_mul(factor).map(Size).ok_or_else(err)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Size::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_keep_their_text_and_compact_to_whole_units() {
        let d = Dur::parse("90m").unwrap();
        assert_eq!(d.to_string(), "90m");
        assert_eq!(d.compact(), "1h30m");
        assert_eq!(Dur::parse("500ms").unwrap().compact(), "500ms");
        assert!(Dur::parse("soon").unwrap_err().contains("`soon`"));
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(Size::parse("10MB").unwrap(), Size(10 << 20));
        assert_eq!(Size::parse("7").unwrap(), Size(7));
        assert!(Size::parse("10 parsecs").is_err());
    }
}
